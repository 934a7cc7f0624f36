//! The block pool: which KV blocks are free and how many sequences hold each one.
//!
//! Allocation and release are O(1) (a stack of free block ids). Reference counts are checked:
//! releasing a free block is an internal error, never a wrap-around, so a bookkeeping bug
//! cannot hand one block to two owners.

use crate::{Error, Result};

/// Reference counts of `n_blocks` blocks and the stack of free ones.
#[derive(Debug, Clone)]
pub(crate) struct BlockPool {
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl BlockPool {
    /// A pool of `n_blocks` free blocks (ids `0..n_blocks`, handed out lowest first).
    pub(crate) fn new(n_blocks: u32) -> BlockPool {
        BlockPool {
            refs: vec![0; n_blocks as usize],
            free: (0..n_blocks).rev().collect(),
        }
    }

    pub(crate) fn n_total(&self) -> usize {
        self.refs.len()
    }

    pub(crate) fn n_free(&self) -> usize {
        self.free.len()
    }

    /// Blocks held by more than one sequence.
    pub(crate) fn n_shared(&self) -> usize {
        self.refs.iter().filter(|&&r| r > 1).count()
    }

    /// Takes a free block (reference count 1), or `None` when there is none.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        let b = self.free.pop()?;
        self.refs[b as usize] = 1;
        Some(b)
    }

    /// One holder more of the in-use block `b` (a sequence starts sharing it).
    pub(crate) fn retain(&mut self, b: u32) -> Result<()> {
        let r = self.count_mut(b)?;
        *r = r
            .checked_add(1)
            .ok_or_else(|| Error::Internal(format!("KV block {b} has too many holders")))?;
        Ok(())
    }

    /// How many holders block `b` has (0: free or unknown).
    pub(crate) fn count(&self, b: u32) -> u32 {
        self.refs.get(b as usize).copied().unwrap_or(0)
    }

    /// One holder fewer of block `b`; at zero it goes back to the free stack at once.
    pub(crate) fn release(&mut self, b: u32) -> Result<()> {
        let r = self.count_mut(b)?;
        *r -= 1; // count_mut checked that it is at least 1
        if *r == 0 {
            self.free.push(b);
        }
        Ok(())
    }

    /// Returns every block to the free stack.
    pub(crate) fn reset(&mut self) {
        let n = self.refs.len() as u32;
        self.refs.fill(0);
        self.free = (0..n).rev().collect();
    }

    /// The pool's own invariants: a block is on the free stack, once, exactly when nothing
    /// holds it.
    #[cfg(test)]
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let mut on_stack = vec![false; self.refs.len()];
        for &b in &self.free {
            let seen = on_stack
                .get_mut(b as usize)
                .ok_or(format!("free block {b} does not exist"))?;
            if std::mem::replace(seen, true) {
                return Err(format!("block {b} is on the free stack twice"));
            }
        }
        for (b, (&r, &free)) in self.refs.iter().zip(&on_stack).enumerate() {
            if (r == 0) != free {
                return Err(format!("block {b}: {r} holders but free={free}"));
            }
        }
        Ok(())
    }

    /// The count of an in-use block, or an internal error for an unknown or free one.
    fn count_mut(&mut self, b: u32) -> Result<&mut u32> {
        match self.refs.get_mut(b as usize) {
            Some(r) if *r > 0 => Ok(r),
            Some(_) => Err(Error::Internal(format!("KV block {b} is not in use"))),
            None => Err(Error::Internal(format!("KV block {b} does not exist"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_return_to_the_pool_and_double_release_is_refused() {
        let mut p = BlockPool::new(3);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert_eq!((a, b, p.n_free()), (0, 1, 1));
        assert_eq!(p.n_shared(), 0);
        p.retain(b).unwrap();
        assert_eq!((p.n_shared(), p.count(b)), (1, 2));
        p.release(b).unwrap();
        assert!(p.retain(2).is_err(), "a free block cannot gain a holder");
        p.release(a).unwrap();
        assert_eq!(p.n_free(), 2);
        // Releasing a free or unknown block is refused, not a wrap to u32::MAX.
        assert!(matches!(p.release(a), Err(Error::Internal(_))));
        assert!(matches!(p.release(7), Err(Error::Internal(_))));
        assert_eq!(p.alloc(), Some(a));
        assert!(p.alloc().is_some());
        assert_eq!(p.alloc(), None);
        p.reset();
        assert_eq!(p.n_free(), 3);
    }
}
