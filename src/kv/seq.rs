//! One sequence's view of the cache: the positions it holds and its block table.
//!
//! Slot `i` of the table covers positions `base + i * bs .. base + (i + 1) * bs` (`bs` the
//! block size); a position is held when it lies in one of the sequence's spans. The spans are
//! sorted, disjoint, non-adjacent, non-empty half-open ranges: usually one, more after a
//! removal in the middle. A slot holds a block exactly when some span touches it, and the
//! table has no empty slot at either end, so a block that no held position needs is never
//! kept. A block partly covered (the tail cut off by a removal, the head of a copied range)
//! stays; its other cells are simply not held.

/// Half-open range of positions.
pub(super) type Span = (i32, i32);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Sequence {
    /// The position of slot 0's first cell (meaningless while the sequence is empty).
    pub base: i32,
    pub table: Vec<Option<u32>>,
    pub spans: Vec<Span>,
}

impl Sequence {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// One past the last position held.
    pub fn end(&self) -> Option<i32> {
        self.spans.last().map(|s| s.1)
    }

    /// The first and last position held.
    pub fn range(&self) -> Option<(i32, i32)> {
        Some((self.spans.first()?.0, self.spans.last()?.1 - 1))
    }

    /// The slot of `pos`, which must not precede `base`.
    pub fn slot(&self, pos: i32, bs: usize) -> usize {
        ((i64::from(pos) - i64::from(self.base)) as usize) / bs
    }

    /// The slots that `n` new positions from `pos` fall in (`pos` continues the sequence, or
    /// starts it when it is empty).
    pub fn append_slots(&self, pos: i32, n: usize, bs: usize) -> std::ops::Range<usize> {
        if n == 0 {
            return 0..0;
        }
        let base = if self.is_empty() { pos } else { self.base };
        let rel = (i64::from(pos) - i64::from(base)) as usize;
        rel / bs..(rel + n - 1) / bs + 1
    }

    /// Counts `n` positions from `pos` as held (the blocks are already in the table).
    pub fn append(&mut self, pos: i32, n: usize) {
        let end = pos + n as i32; // below i32::MAX: the batch check bounds every position
        match self.spans.last_mut() {
            Some(last) if last.1 == pos => last.1 = end,
            Some(_) => self.spans.push((pos, end)),
            None => {
                self.base = pos;
                self.spans.push((pos, end));
            }
        }
    }

    /// Whether `pos` is held.
    pub fn holds(&self, pos: i32) -> bool {
        let i = self.spans.partition_point(|s| s.1 <= pos);
        self.spans.get(i).is_some_and(|s| s.0 <= pos)
    }

    /// The cell of a held position, `None` when `pos` is not held.
    pub fn cell(&self, pos: i32, bs: usize) -> Option<usize> {
        if !self.holds(pos) {
            return None;
        }
        self.table_cell(pos, bs)
    }

    /// The cell the table maps `pos` to (not before `base`), without asking whether it is
    /// held: for positions already known to be (`clipped`'s).
    pub fn table_cell(&self, pos: i32, bs: usize) -> Option<usize> {
        let rel = (i64::from(pos) - i64::from(self.base)) as usize;
        let b = self.table.get(rel / bs).copied().flatten()?;
        Some(b as usize * bs + rel % bs)
    }

    /// The held positions within `[lo, hi]`, as spans.
    pub fn clipped(&self, lo: i32, hi: i32) -> impl Iterator<Item = Span> + '_ {
        let first = self.spans.partition_point(|s| s.1 <= lo);
        self.spans[first..]
            .iter()
            .take_while(move |s| s.0 <= hi)
            .map(move |&(a, b)| (a.max(lo), b.min(hi.saturating_add(1))))
    }

    /// The blocks of the table.
    pub fn blocks(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().flatten().copied()
    }

    /// Which slots the spans touch.
    pub fn needed_slots(&self, bs: usize) -> Vec<bool> {
        let mut need = vec![false; self.table.len()];
        for &(a, b) in &self.spans {
            let (s0, s1) = (self.slot(a, bs), self.slot(b - 1, bs));
            for n in need.iter_mut().take(s1 + 1).skip(s0) {
                *n = true;
            }
        }
        need
    }
}

/// `spans` without the positions `[p0, p1)`.
pub(super) fn remove_range(spans: &[Span], p0: i32, p1: i32) -> Vec<Span> {
    let mut out = Vec::with_capacity(spans.len() + 1);
    for &(a, b) in spans {
        if b <= p0 || a >= p1 || p0 >= p1 {
            out.push((a, b));
            continue;
        }
        if a < p0 {
            out.push((a, p0));
        }
        if b > p1 {
            out.push((p1, b));
        }
    }
    out
}

/// `spans` within `[p0, p1)`.
pub(super) fn keep_range(spans: &[Span], p0: i32, p1: i32) -> Vec<Span> {
    spans
        .iter()
        .map(|&(a, b)| (a.max(p0), b.min(p1)))
        .filter(|&(a, b)| a < b)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_split_clip_and_map_to_cells() {
        let mut s = Sequence::default();
        assert_eq!(s.append_slots(10, 9, 4), 0..3);
        s.table = vec![Some(7), Some(2), Some(5)];
        s.append(10, 9); // 10..19
        assert_eq!((s.base, s.range()), (10, Some((10, 18))));
        assert_eq!(s.append_slots(19, 2, 4), 2..3);
        assert_eq!(s.append_slots(19, 4, 4), 2..4);
        assert_eq!(s.cell(10, 4), Some(28));
        assert_eq!(s.cell(15, 4), Some(9));
        assert_eq!(s.cell(9, 4), None);
        s.spans = remove_range(&s.spans, 12, 15);
        assert_eq!(s.spans, vec![(10, 12), (15, 19)]);
        assert!(!s.holds(12) && s.holds(15) && s.cell(13, 4).is_none());
        assert_eq!(
            s.clipped(11, 16).collect::<Vec<_>>(),
            vec![(11, 12), (15, 17)]
        );
        assert_eq!(s.needed_slots(4), vec![true, true, true]);
        s.spans = keep_range(&s.spans, 15, 100);
        assert_eq!(s.needed_slots(4), vec![false, true, true]);
        assert_eq!(remove_range(&[(0, 4)], 0, 4), vec![]);
        assert_eq!(remove_range(&[(0, 4)], 1, 2), vec![(0, 1), (2, 4)]);
        assert_eq!(remove_range(&[(0, 4)], 2, 2), vec![(0, 4)]);
    }
}
