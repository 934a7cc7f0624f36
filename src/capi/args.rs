//! Checked conversions of C arguments: versioned params structs in and out, and text written
//! into caller buffers with the two-call protocol.

use std::ffi::c_char;
use std::mem::size_of;
use std::ptr;

use crate::Error;

/// Marker for `repr(C)` structs whose first field is `uint32_t struct_size` and in which every
/// byte pattern is a valid value (integers, raw pointers, `Option` of function pointers), so a
/// prefix copied from the caller can never form an invalid value.
///
/// # Safety
/// Implement only for types that satisfy both conditions.
pub(crate) unsafe trait Versioned: Copy {
    /// Size of the first published version of the struct: the smallest `struct_size` accepted.
    const MIN_SIZE: usize;
    const NAME: &'static str;
}

fn check_size<T: Versioned>(size: u32) -> Result<usize, Error> {
    let size = size as usize;
    if size < T::MIN_SIZE || size > size_of::<T>() {
        return Err(Error::InvalidArg(format!(
            "{}.struct_size is {size}; this library accepts {} to {} (initialise the struct with its _default() function)",
            T::NAME,
            T::MIN_SIZE,
            size_of::<T>()
        )));
    }
    Ok(size)
}

/// Reads a caller's params struct: NULL means `default`; otherwise the first `struct_size`
/// bytes are the caller's and the rest keep their defaults (an older caller's struct is
/// shorter).
///
/// # Safety
/// `p` must be NULL or point to at least `struct_size` readable bytes.
pub(crate) unsafe fn read_params<T: Versioned>(p: *const T, default: T) -> Result<T, Error> {
    if p.is_null() {
        return Ok(default);
    }
    // SAFETY: p is non-NULL and, by the caller's contract, readable for at least the 4 bytes
    // of struct_size; read_unaligned makes no alignment assumption.
    let size = check_size::<T>(unsafe { ptr::read_unaligned(p.cast::<u32>()) })?;
    let mut out = default;
    // SAFETY: size <= size_of::<T>() (checked), the caller's struct has size readable bytes,
    // the two do not overlap (out is a local), and any byte pattern is a valid T (Versioned).
    unsafe { ptr::copy_nonoverlapping(p.cast::<u8>(), (&raw mut out).cast::<u8>(), size) };
    Ok(out)
}

/// Writes `value` into a caller's out struct, at most as many bytes as the caller's
/// `struct_size` says it has; the caller's `struct_size` is left as it was.
///
/// # Safety
/// `out` must be NULL or point to at least `struct_size` writable bytes.
pub(crate) unsafe fn write_versioned<T: Versioned>(out: *mut T, value: &T) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::InvalidArg(format!(
            "the {} pointer is NULL",
            T::NAME
        )));
    }
    // SAFETY: as in read_params: non-NULL, at least 4 readable bytes.
    let raw = unsafe { ptr::read_unaligned(out.cast::<u32>()) };
    let size = check_size::<T>(raw)?;
    // SAFETY: size <= size_of::<T>(), out has size writable bytes, value is a distinct object.
    unsafe {
        ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), out.cast::<u8>(), size);
        ptr::write_unaligned(out.cast::<u32>(), raw);
    }
    Ok(())
}

/// Copies `bytes` into a fixed `char` array, NUL-terminated; returns false (and writes an empty
/// string) when it does not fit.
pub(crate) fn fill_fixed(dst: &mut [c_char], bytes: &[u8]) -> bool {
    if bytes.len() >= dst.len() {
        if let Some(first) = dst.first_mut() {
            *first = 0;
        }
        return false;
    }
    for (d, &b) in dst.iter_mut().zip(bytes) {
        *d = b as c_char;
    }
    dst[bytes.len()] = 0;
    true
}

/// The two-call protocol for text: `*out_len` always receives the length of the text in bytes,
/// without its terminating NUL; when `cap > *out_len` the text and a NUL are written to `buf`,
/// otherwise nothing is written and the result is `BufferTooSmall`. `buf` may be NULL only when
/// `cap` is 0 (to ask for the length).
///
/// # Safety
/// `buf` must be NULL or point to `cap` writable bytes; `out_len` must be NULL or writable.
pub(crate) unsafe fn write_text(
    bytes: &[u8],
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> Result<(), Error> {
    let need = bytes
        .len()
        .checked_add(1)
        .ok_or_else(|| Error::Overflow("the text length".into()))?;
    // SAFETY: contract of this function.
    unsafe { report_len(buf.is_null(), cap, out_len, bytes.len(), need) }?;
    // SAFETY: buf is non-NULL (cap >= need >= 1) and has cap >= len + 1 writable bytes.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        buf.add(bytes.len()).write(0);
    }
    Ok(())
}

/// The checks every two-call output shares: `out_len` non-NULL, `buf` NULL only with `cap`
/// 0; writes `len` to `*out_len`; `BufferTooSmall` when `cap < need`.
///
/// # Safety
/// `out_len` must be NULL or writable.
unsafe fn report_len(
    buf_is_null: bool,
    cap: usize,
    out_len: *mut usize,
    len: usize,
    need: usize,
) -> Result<(), Error> {
    if out_len.is_null() {
        return Err(Error::InvalidArg("out_len is NULL".into()));
    }
    if buf_is_null && cap != 0 {
        return Err(Error::InvalidArg(format!("buf is NULL but cap is {cap}")));
    }
    // SAFETY: out_len is non-NULL and writable by contract.
    unsafe { out_len.write(len) };
    if cap < need {
        return Err(Error::BufferTooSmall { need, cap });
    }
    Ok(())
}

/// Rejects a NULL out-pointer, naming it.
pub(crate) fn non_null<T>(p: *mut T, what: &str) -> Result<*mut T, Error> {
    if p.is_null() {
        Err(Error::InvalidArg(format!("{what} is NULL")))
    } else {
        Ok(p)
    }
}

/// The two-call protocol for bytes (token pieces, detokenized text): `*out_len` always
/// receives the length; the bytes are written (no terminating NUL) only when `cap` is at least
/// that, otherwise the result is `BufferTooSmall`. `buf` may be NULL only when `cap` is 0.
///
/// # Safety
/// `buf` must be NULL or point to `cap` writable bytes; `out_len` must be NULL or writable.
pub(crate) unsafe fn write_bytes(
    bytes: &[u8],
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> Result<(), Error> {
    // SAFETY: the same contract, for bytes.
    unsafe { write_slice(bytes, buf.cast::<u8>(), cap, out_len) }
}

/// The two-call protocol for any `Copy` elements (token ids): as `write_bytes`, counted in
/// elements.
///
/// # Safety
/// `buf` must be NULL or point to `cap` writable elements; `out_len` NULL or writable.
pub(crate) unsafe fn write_slice<T: Copy>(
    items: &[T],
    buf: *mut T,
    cap: usize,
    out_len: *mut usize,
) -> Result<(), Error> {
    // SAFETY: contract of this function.
    unsafe { report_len(buf.is_null(), cap, out_len, items.len(), items.len()) }?;
    if !items.is_empty() {
        // SAFETY: buf is non-NULL (cap >= len >= 1) with cap >= len writable elements.
        unsafe { ptr::copy_nonoverlapping(items.as_ptr(), buf, items.len()) };
    }
    Ok(())
}

/// An input buffer `(ptr, len)`: NULL is allowed only with `len == 0`.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable elements that outlive the result.
pub(crate) unsafe fn input<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], Error> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Error::InvalidArg(format!(
            "{what} is NULL but its length is {len}"
        )));
    }
    len.checked_mul(size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| Error::Overflow(format!("{what} of {len} elements")))?;
    // SAFETY: non-NULL, `len` readable elements by contract, total size checked above.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Locks the mutex of a handle for one call: NULL (`name` is NULL) and a handle another
/// thread is inside (`what` is in use) are `InvalidArg`, never a wait or a race.
///
/// # Safety
/// `h` must be NULL or point to a live handle that outlives the guard.
pub(crate) unsafe fn lock_handle<'a, H: 'a, T: 'a>(
    h: *const H,
    field: impl FnOnce(&'a H) -> &'a parking_lot::Mutex<T>,
    name: &str,
    what: &str,
) -> Result<parking_lot::MutexGuard<'a, T>, Error> {
    if h.is_null() {
        return Err(Error::InvalidArg(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and live for 'a by the caller's contract.
    let m = field(unsafe { &*h });
    m.try_lock().ok_or_else(|| {
        Error::InvalidArg(format!(
            "the {what} is in use by another thread (use one per thread)"
        ))
    })
}
