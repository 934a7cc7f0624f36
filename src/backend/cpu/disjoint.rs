//! `Disjoint`: one output slice that the thread pool's tasks fill at indices no two tasks
//! share, without a lock.

use std::marker::PhantomData;

/// A slice that tasks on several threads write to at indices no two tasks share.
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: tasks write disjoint elements only (each caller states why), so sharing the pointer
// across threads cannot create two live references to one element.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub(crate) fn new(s: &'a mut [T]) -> Self {
        Disjoint {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _borrow: PhantomData,
        }
    }

    /// The elements `range`, for one task to fill.
    ///
    /// # Safety
    /// No other task may access any element of `range` while the returned slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(
            start <= self.len && len <= self.len - start,
            "range inside the slice"
        );
        // SAFETY: in bounds (checked above); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// # Safety
    /// No other task may access element `i` concurrently.
    pub(crate) unsafe fn set(&self, i: usize, v: T) {
        assert!(i < self.len, "index inside the slice");
        // SAFETY: in bounds (checked above); exclusive by the caller's contract.
        unsafe { self.ptr.add(i).write(v) }
    }
}
