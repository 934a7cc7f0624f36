//! The paged KV cache: a pool of fixed-size blocks (16 token positions by default) shared by
//! up to `n_seq_max` sequences, each with a block table that maps its positions to blocks.
//! Attention reads a sequence's keys and values through its table (`gather`).
//!
//! Sequences share blocks: `copy` gives the destination the source's blocks for a range of
//! positions (reference counts, no data copied), and a block is copied only when a sequence
//! is about to write into one that another sequence also holds (copy-on-write of that block
//! alone). `remove` drops any range of positions; a block goes back to the pool the moment no
//! held position needs it, and a block cut at a removal boundary stays with its tail unheld.
//!
//! State changes follow plan-then-apply (as llama.cpp's memory module does): `reserve` checks
//! that a whole batch fits, copy-on-write copies included, before it takes a single block,
//! and either succeeds with a `Reservation` or fails with `Error::KvFull` having changed
//! nothing. The forward pass then writes the new positions; `commit` makes it final and
//! `rollback` (the pass failed) puts every touched sequence back as it was. Until one of the
//! two, the reservation itself holds the shared blocks a copy-on-write replaced, so rolling
//! back never needs a block that was freed meanwhile, and no write ever lands in a cell that
//! another sequence holds. Every other operation validates all its arguments first and
//! changes nothing when one is wrong. Keys and values are stored as F16 (default), F32 or
//! Q8_0 rows.
//!
//! New positions continue a sequence: its first token may take any position, later ones must
//! follow its last held position (the batch check enforces that), holes left by `remove`
//! stay holes. Reference counts are checked (`BlockPool`), so a bookkeeping bug is an
//! internal error, never a block with two owners.

mod pool;
mod seq;

use pool::BlockPool;
use seq::{Sequence, Span, keep_range, remove_range};

use crate::gguf::GgmlType;
use crate::quant;
use crate::{Error, Result};

/// Positions per block unless a context asks otherwise.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// How keys and values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F16,
    F32,
    Q8_0,
}

impl KvType {
    pub fn ggml(self) -> GgmlType {
        match self {
            KvType::F16 => GgmlType::F16,
            KvType::F32 => GgmlType::F32,
            KvType::Q8_0 => GgmlType::Q8_0,
        }
    }
}

/// The shape of a cache: what a context asks for, checked by `KvCache::new`.
#[derive(Debug, Clone, Copy)]
pub struct KvShape {
    pub n_layer: usize,
    /// Width of one position's keys (n_head_kv * head_dim), and of its values.
    pub k_dim: usize,
    pub v_dim: usize,
    /// Total positions over all sequences (rounded up to whole blocks).
    pub n_ctx: usize,
    pub block_size: usize,
    pub n_seq_max: usize,
    pub ty: KvType,
}

/// What `KvCache::stats` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvStats {
    pub block_size: usize,
    pub n_blocks_total: usize,
    pub n_blocks_used: usize,
    pub n_blocks_shared: usize,
    /// Sequences holding at least one position.
    pub n_seqs: usize,
    /// Bytes of key and value storage, all layers.
    pub bytes_total: usize,
}

/// A `reserve` not yet final: each touched sequence as it was, and the shared blocks its
/// copy-on-writes replaced (held here until `commit` releases them or `rollback` hands them
/// back to their tables).
#[derive(Debug)]
#[must_use = "a reservation is ended by KvCache::commit or KvCache::rollback"]
pub struct Reservation {
    before: Vec<(usize, Sequence)>,
    displaced: Vec<u32>,
}

pub struct KvCache {
    shape: KvShape,
    k_row: usize,
    v_row: usize,
    /// Per layer: one row of keys (values) per cell; cell = block * block_size + offset.
    k: Vec<Vec<u8>>,
    v: Vec<Vec<u8>>,
    pool: BlockPool,
    seqs: Vec<Sequence>,
    /// Layers `0..device_layers` keep their rows on a GPU (`with_device_layers`): no host
    /// storage here, and their copy-on-write copies wait in `device_copies` for the GPU
    /// backend to make before its next write.
    device_layers: usize,
    device_copies: Vec<(u32, u32)>,
}

/// A zeroed byte buffer, or `Oom` when the allocation fails (never an abort).
fn zeroed(n: usize, what: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| Error::Oom(format!("{n} bytes for {what}")))?;
    v.resize(n, 0);
    Ok(v)
}

/// `[p0, p1)` from the C convention: `p0 < 0` is the first position, `p1 < 0` past the last.
fn pos_span(p0: i32, p1: i32) -> Result<Span> {
    let (a, b) = (p0.max(0), if p1 < 0 { i32::MAX } else { p1 });
    if b < a {
        return Err(Error::InvalidArg(format!(
            "the position range [{p0}, {p1}) ends before it starts"
        )));
    }
    Ok((a, b))
}

impl KvCache {
    pub fn new(shape: KvShape) -> Result<KvCache> {
        Self::with_device_layers(shape, 0)
    }

    /// A cache whose first `device_layers` layers live on a GPU: this cache keeps their
    /// bookkeeping only (block tables, reference counts, copy-on-write requests).
    pub fn with_device_layers(shape: KvShape, device_layers: usize) -> Result<KvCache> {
        let s = shape;
        if s.block_size == 0 || s.n_ctx == 0 || s.n_seq_max == 0 || s.n_layer == 0 {
            return Err(Error::InvalidArg(format!(
                "a KV cache needs positive sizes: {s:?}"
            )));
        }
        let ty = s.ty.ggml();
        let row = |dim: usize| {
            quant::row_bytes(ty, dim).map_err(|_| {
                Error::Unsupported(format!(
                    "a {ty} KV cache needs rows that are whole blocks of {ty}; this model's are {dim} wide"
                ))
            })
        };
        let (k_row, v_row) = (row(s.k_dim)?, row(s.v_dim)?);
        let n_blocks = s.n_ctx.div_ceil(s.block_size);
        let n_blocks_u32 = u32::try_from(n_blocks)
            .map_err(|_| Error::Overflow(format!("{n_blocks} KV blocks")))?;
        let cells = n_blocks
            .checked_mul(s.block_size)
            .ok_or_else(|| Error::Overflow("the KV cell count".into()))?;
        let layer_bytes = |row: usize| {
            cells
                .checked_mul(row)
                .filter(|&b| b <= isize::MAX as usize)
                .ok_or_else(|| Error::Overflow(format!("a KV layer of {cells} rows")))
        };
        let (kb, vb) = (layer_bytes(k_row)?, layer_bytes(v_row)?);
        kb.checked_add(vb)
            .and_then(|b| b.checked_mul(s.n_layer))
            .ok_or_else(|| Error::Overflow("the KV cache size".into()))?;
        let mut k = Vec::with_capacity(s.n_layer);
        let mut v = Vec::with_capacity(s.n_layer);
        for layer in 0..s.n_layer {
            let (kb, vb) = if layer < device_layers {
                (0, 0)
            } else {
                (kb, vb)
            };
            k.push(zeroed(kb, "the KV cache")?);
            v.push(zeroed(vb, "the KV cache")?);
        }
        Ok(KvCache {
            shape,
            k_row,
            v_row,
            k,
            v,
            pool: BlockPool::new(n_blocks_u32),
            seqs: vec![Sequence::default(); s.n_seq_max],
            device_layers: device_layers.min(s.n_layer),
            device_copies: Vec::new(),
        })
    }

    pub fn shape(&self) -> &KvShape {
        &self.shape
    }

    pub fn n_seq_max(&self) -> usize {
        self.seqs.len()
    }

    fn seq(&self, seq: usize) -> Result<&Sequence> {
        self.seqs.get(seq).ok_or_else(|| {
            Error::InvalidArg(format!(
                "sequence id {seq} is out of range (n_seq_max {})",
                self.seqs.len()
            ))
        })
    }

    /// The position the next token of `seq` must have, or `None` when it holds nothing (its
    /// first token may take any position).
    pub fn next_pos(&self, seq: usize) -> Option<i32> {
        self.seqs.get(seq)?.end()
    }

    /// The first and last position `seq` holds, or `None` when empty or unknown.
    pub fn pos_range(&self, seq: usize) -> Option<(i32, i32)> {
        self.seqs.get(seq)?.range()
    }

    /// The ids of the blocks `seq` holds (shared ones included), in position order.
    pub fn seq_blocks(&self, seq: usize) -> Result<Vec<u32>> {
        Ok(self.seq(seq)?.blocks().collect())
    }

    /// The positions `seq` holds, as sorted disjoint half-open ranges.
    pub fn spans(&self, seq: usize) -> Result<&[(i32, i32)]> {
        Ok(&self.seq(seq)?.spans)
    }

    /// Blocks a batch's `appends` take: new slots, and a copy of every shared block one of
    /// them writes into.
    fn blocks_needed(&self, appends: &[(usize, i32, usize)]) -> Result<usize> {
        let bs = self.shape.block_size;
        let mut need = 0usize;
        for &(seq, pos, n) in appends {
            let s = self.seq(seq)?;
            for slot in s.append_slots(pos, n, bs) {
                need += match s.table.get(slot).copied().flatten() {
                    Some(b) if self.pool.count(b) == 1 => 0,
                    _ => 1,
                };
            }
        }
        Ok(need)
    }

    /// Makes room for `appends` (sequence, first new position, number of positions; at most
    /// one entry per sequence, positions already checked to continue each sequence) and
    /// counts the positions as held. All or nothing: `KvFull` when the blocks do not suffice.
    /// A shared block that a new position falls in is copied first (copy-on-write).
    pub fn reserve(&mut self, appends: &[(usize, i32, usize)]) -> Result<Reservation> {
        let need = self.blocks_needed(appends)?;
        if need > self.pool.n_free() {
            return Err(Error::KvFull(format!(
                "the batch needs {need} more blocks of {} positions, {} are free",
                self.shape.block_size,
                self.pool.n_free()
            )));
        }
        let bs = self.shape.block_size;
        let mut r = Reservation {
            before: Vec::with_capacity(appends.len()),
            displaced: Vec::new(),
        };
        for &(seq, pos, n) in appends {
            r.before.push((seq, self.seqs[seq].clone()));
            let slots = self.seqs[seq].append_slots(pos, n, bs);
            if self.seqs[seq].table.len() < slots.end {
                self.seqs[seq].table.resize(slots.end, None);
            }
            for slot in slots {
                let old = self.seqs[seq].table[slot];
                if old.is_some_and(|b| self.pool.count(b) == 1) {
                    continue;
                }
                // Counted above, so the pool cannot run dry here.
                let b = self
                    .pool
                    .alloc()
                    .ok_or_else(|| Error::Internal("KV pool ran out after its check".into()))?;
                if let Some(shared) = old {
                    self.copy_block(shared, b);
                    r.displaced.push(shared);
                }
                self.seqs[seq].table[slot] = Some(b);
            }
            self.seqs[seq].append(pos, n);
        }
        Ok(r)
    }

    /// Copies every layer's keys and values of block `from` into block `to`.
    fn copy_block(&mut self, from: u32, to: u32) {
        if self.device_layers > 0 {
            self.device_copies.push((from, to));
        }
        let bs = self.shape.block_size;
        let (from, to) = (from as usize * bs, to as usize * bs);
        let dl = self.device_layers;
        for (rows, w) in [(&mut self.k, self.k_row), (&mut self.v, self.v_row)] {
            for layer in rows.iter_mut().skip(dl) {
                layer.copy_within(from * w..(from + bs) * w, to * w);
            }
        }
    }

    /// Makes a reservation final once its forward pass succeeded: the shared blocks its
    /// copy-on-writes replaced lose the holder they had.
    pub fn commit(&mut self, r: Reservation) -> Result<()> {
        r.displaced
            .into_iter()
            .try_for_each(|b| self.pool.release(b))
    }

    /// Undoes a `reserve` whose forward pass failed: the blocks it took go back, every touched
    /// sequence is as it was. What was written into the returned blocks is never read.
    pub fn rollback(&mut self, r: Reservation) -> Result<()> {
        for (seq, old) in r.before.into_iter().rev() {
            let mut kept: Vec<u32> = old.blocks().collect();
            kept.sort_unstable();
            let taken: Vec<u32> = self.seqs[seq]
                .blocks()
                .filter(|b| kept.binary_search(b).is_err())
                .collect();
            for b in taken {
                self.pool.release(b)?;
            }
            // The blocks copy-on-write replaced were held by the reservation all along: their
            // holder moves back to the table.
            self.seqs[seq] = old;
        }
        Ok(())
    }

    /// The cell holding position `pos` of `seq`.
    fn cell(&self, seq: usize, pos: i32) -> Result<usize> {
        self.seqs[seq]
            .cell(pos, self.shape.block_size)
            .ok_or_else(|| Error::Internal(format!("sequence {seq} does not hold position {pos}")))
    }

    /// Layers whose rows a GPU holds.
    pub fn device_layers(&self) -> usize {
        self.device_layers
    }

    /// The block copies (from, to) that copy-on-write asked of the device layers since the
    /// last call; the GPU backend makes them before it writes.
    pub fn take_device_copies(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.device_copies)
    }

    /// Total cells (positions of all blocks).
    pub fn n_cells(&self) -> usize {
        self.pool.n_total() * self.shape.block_size
    }

    /// The cell that position `pos` of `seq` (held, reserved) is written to, checked to lie
    /// in a block no other sequence holds.
    pub fn write_cell(&self, seq: usize, pos: i32) -> Result<u32> {
        self.seq(seq)?;
        let c = self.cell(seq, pos)?;
        let block = (c / self.shape.block_size) as u32;
        if self.pool.count(block) != 1 {
            return Err(Error::Internal(format!(
                "sequence {seq} would write position {pos} into shared block {block}"
            )));
        }
        u32::try_from(c).map_err(|_| Error::Overflow(format!("KV cell {c}")))
    }

    /// The positions `seq` holds within `[lo, hi]` (ascending) and their cells.
    pub fn held_cells(
        &self,
        seq: usize,
        (lo, hi): (i32, i32),
        pos: &mut Vec<i32>,
        cells: &mut Vec<u32>,
    ) -> Result<()> {
        let s = self.seq(seq)?;
        let bs = self.shape.block_size;
        for (a, b) in s.clipped(lo, hi) {
            for p in a..b {
                let c = s.table_cell(p, bs).ok_or_else(|| {
                    Error::Internal(format!("sequence {seq}: position {p} has no block"))
                })?;
                pos.push(p);
                cells.push(c as u32);
            }
        }
        Ok(())
    }

    /// Stores the keys and values of position `pos` of `seq` in `layer` (converted to the
    /// cache's type). The position must be held (reserved), in a block no other sequence
    /// holds.
    pub fn write(
        &mut self,
        layer: usize,
        seq: usize,
        pos: i32,
        k: &[f32],
        v: &[f32],
    ) -> Result<()> {
        let c = self.cell(seq, pos)?;
        let block = (c / self.shape.block_size) as u32;
        if self.pool.count(block) != 1 {
            return Err(Error::Internal(format!(
                "sequence {seq} would write position {pos} into shared block {block}"
            )));
        }
        if layer < self.device_layers {
            return Err(Error::Internal(format!(
                "layer {layer}'s keys and values live on the GPU"
            )));
        }
        let ty = self.shape.ty.ggml();
        let (kr, vr) = (self.k_row, self.v_row);
        quant::quantize_row(ty, k, &mut self.k[layer][c * kr..(c + 1) * kr])?;
        quant::quantize_row(ty, v, &mut self.v[layer][c * vr..(c + 1) * vr])?;
        Ok(())
    }

    /// The keys and values of the positions of `seq` within `[lo, hi]` in `layer`, as f32
    /// rows one after the other, into `ks` and `vs`, and those positions (ascending) into
    /// `pos`; all three resized.
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        &self,
        layer: usize,
        seq: usize,
        (lo, hi): (i32, i32),
        ks: &mut Vec<f32>,
        vs: &mut Vec<f32>,
        pos: &mut Vec<i32>,
    ) -> Result<()> {
        self.held(seq, (lo, hi), pos)?;
        let (kd, vd) = (self.shape.k_dim, self.shape.v_dim);
        ks.resize(pos.len() * kd, 0.0);
        vs.resize(pos.len() * vd, 0.0);
        self.gather_rows(layer, seq, pos, ks, vs)
    }

    /// The positions `seq` holds within `[lo, hi]`, ascending, into `pos`.
    pub fn held(&self, seq: usize, (lo, hi): (i32, i32), pos: &mut Vec<i32>) -> Result<()> {
        let s = self.seq(seq)?;
        pos.clear();
        for (a, b) in s.clipped(lo, hi) {
            pos.extend(a..b);
        }
        Ok(())
    }

    /// The keys and values of the held positions `pos` of `seq` in `layer`, as f32 rows one
    /// after the other: `ks` takes `pos.len()` rows of `k_dim`, `vs` of `v_dim` (exactly).
    /// Parts of one gather can run on several threads, each with its own positions and rows.
    pub fn gather_rows(
        &self,
        layer: usize,
        seq: usize,
        pos: &[i32],
        ks: &mut [f32],
        vs: &mut [f32],
    ) -> Result<()> {
        let s = self.seq(seq)?;
        let (kd, vd) = (self.shape.k_dim, self.shape.v_dim);
        if ks.len() != pos.len() * kd || vs.len() != pos.len() * vd {
            return Err(Error::InvalidArg(format!(
                "gathering {} positions into {} and {} values",
                pos.len(),
                ks.len(),
                vs.len()
            )));
        }
        if layer < self.device_layers || layer >= self.shape.n_layer {
            return Err(Error::Internal(format!(
                "layer {layer}'s keys and values are not in host memory"
            )));
        }
        let ty = self.shape.ty.ggml();
        let (kr, vr) = (self.k_row, self.v_row);
        let (kl, vl) = (&self.k[layer], &self.v[layer]);
        let bs = self.shape.block_size;
        for (i, &p) in pos.iter().enumerate() {
            let c = s.table_cell(p, bs).ok_or_else(|| {
                Error::InvalidArg(format!("sequence {seq}: position {p} has no block"))
            })?;
            quant::dequantize_row(ty, &kl[c * kr..(c + 1) * kr], &mut ks[i * kd..(i + 1) * kd])?;
            quant::dequantize_row(ty, &vl[c * vr..(c + 1) * vr], &mut vs[i * vd..(i + 1) * vd])?;
        }
        Ok(())
    }

    /// Gives `seq` the held positions `spans` (a subset of what it holds): blocks no held
    /// position needs any more go back to the pool, and the table loses its empty ends.
    fn set_spans(&mut self, seq: usize, spans: Vec<Span>) -> Result<()> {
        let bs = self.shape.block_size;
        let s = &mut self.seqs[seq];
        s.spans = spans;
        let need = s.needed_slots(bs);
        for (slot, keep) in s.table.iter_mut().zip(need) {
            if !keep && let Some(b) = slot.take() {
                self.pool.release(b)?;
            }
        }
        let s = &mut self.seqs[seq];
        while s.table.last() == Some(&None) {
            s.table.pop();
        }
        let lead = s.table.iter().take_while(|b| b.is_none()).count();
        if lead > 0 {
            s.table.drain(..lead);
            // Within i32: the slots removed lay before held positions.
            s.base += (lead * bs) as i32;
        }
        if s.is_empty() {
            *s = Sequence::default();
        }
        Ok(())
    }

    /// Drops the positions `[p0, p1)` of `seq` (`p0 < 0`: from the first, `p1 < 0`: to the
    /// end). The positions before and after stay where they are; new tokens continue after
    /// the last one held.
    pub fn remove(&mut self, seq: usize, p0: i32, p1: i32) -> Result<()> {
        let (a, b) = pos_span(p0, p1)?;
        let spans = remove_range(&self.seq(seq)?.spans, a, b);
        self.set_spans(seq, spans)
    }

    /// Makes `dst` hold exactly the positions of `src` within `[p0, p1)` (conventions as
    /// `remove`), sharing `src`'s blocks; what `dst` held before is dropped.
    pub fn copy(&mut self, src: usize, dst: usize, p0: i32, p1: i32) -> Result<()> {
        let (a, b) = pos_span(p0, p1)?;
        let spans = keep_range(&self.seq(src)?.spans, a, b);
        self.seq(dst)?;
        if src == dst {
            return Err(Error::InvalidArg(format!(
                "sequence {src} cannot be copied onto itself"
            )));
        }
        self.set_spans(dst, Vec::new())?;
        let shared = self.seqs[src].clone();
        for b in shared.blocks() {
            self.pool.retain(b)?;
        }
        self.seqs[dst] = shared;
        self.set_spans(dst, spans)
    }

    /// Drops every sequence but `seq`.
    pub fn keep(&mut self, seq: usize) -> Result<()> {
        self.seq(seq)?;
        (0..self.seqs.len())
            .filter(|&s| s != seq)
            .try_for_each(|s| self.set_spans(s, Vec::new()))
    }

    /// Returns every block of `seq` to the pool (shared ones lose one holder); an empty
    /// sequence is a no-op.
    pub fn free_seq(&mut self, seq: usize) -> Result<()> {
        self.seq(seq)?;
        self.set_spans(seq, Vec::new())
    }

    /// Empties every sequence.
    pub fn clear(&mut self) {
        self.pool.reset();
        self.seqs.iter_mut().for_each(|s| *s = Sequence::default());
    }

    pub fn stats(&self) -> KvStats {
        KvStats {
            block_size: self.shape.block_size,
            n_blocks_total: self.pool.n_total(),
            n_blocks_used: self.pool.n_total() - self.pool.n_free(),
            n_blocks_shared: self.pool.n_shared(),
            n_seqs: self.seqs.iter().filter(|s| !s.is_empty()).count(),
            bytes_total: self.k.iter().chain(&self.v).map(Vec::len).sum(),
        }
    }

    /// Every invariant of the bookkeeping, for tests: the pool's own; each sequence's spans
    /// sorted, disjoint and non-adjacent, a block in exactly the slots they touch and none at
    /// either end of the table, no block twice in a table; every block's count equal to the
    /// number of tables holding it.
    #[cfg(test)]
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        self.pool.check()?;
        let bs = self.shape.block_size;
        let mut holders = vec![0u32; self.pool.n_total()];
        for (i, s) in self.seqs.iter().enumerate() {
            let bad = |why: &str| Err(format!("sequence {i}: {why}: {s:?}"));
            if s.is_empty() {
                if *s != Sequence::default() {
                    return bad("empty but holds a table");
                }
                continue;
            }
            if s.spans.iter().any(|&(a, b)| a >= b) || s.spans.windows(2).any(|w| w[0].1 >= w[1].0)
            {
                return bad("spans not sorted, disjoint and non-adjacent");
            }
            if s.spans[0].0 < s.base
                || s.slot(s.spans[s.spans.len() - 1].1 - 1, bs) >= s.table.len()
            {
                return bad("spans outside the table");
            }
            if s.table.first() == Some(&None) || s.table.last() == Some(&None) {
                return bad("an empty slot at an end of the table");
            }
            for (slot, need) in s.table.iter().zip(s.needed_slots(bs)) {
                if slot.is_some() != need {
                    return bad("a block where no span needs one, or none where one does");
                }
            }
            let mut blocks: Vec<u32> = s.blocks().collect();
            blocks.sort_unstable();
            if blocks.windows(2).any(|w| w[0] == w[1]) {
                return bad("a block twice in one table");
            }
            for b in blocks {
                holders[b as usize] += 1;
            }
        }
        for (b, &h) in holders.iter().enumerate() {
            if self.pool.count(b as u32) != h {
                return Err(format!(
                    "block {b}: count {} but {h} tables hold it",
                    self.pool.count(b as u32)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ty: KvType, n_ctx: usize) -> KvCache {
        KvCache::new(KvShape {
            n_layer: 2,
            k_dim: 32,
            v_dim: 64,
            n_ctx,
            block_size: 4,
            n_seq_max: 3,
            ty,
        })
        .unwrap()
    }

    #[test]
    fn rows_round_trip_through_blocks_in_every_type() {
        for (ty, tol) in [
            (KvType::F32, 0.0),
            (KvType::F16, 2e-3),
            (KvType::Q8_0, 3e-2),
        ] {
            let mut kv = cache(ty, 16);
            let r = kv.reserve(&[(1, 0, 6)]).unwrap();
            kv.commit(r).unwrap();
            let row = |p: i32, w: usize| -> Vec<f32> {
                (0..w)
                    .map(|i| (p as f32 - 2.5) / (1.0 + i as f32))
                    .collect()
            };
            for p in 0..6 {
                kv.write(1, 1, p, &row(p, 32), &row(p + 1, 64)).unwrap();
            }
            let (mut ks, mut vs, mut pos) = (Vec::new(), Vec::new(), Vec::new());
            kv.gather(1, 1, (2, 5), &mut ks, &mut vs, &mut pos).unwrap();
            assert_eq!(pos, [2, 3, 4, 5]);
            for (i, p) in (2..=5).enumerate() {
                let (k, v) = (row(p, 32), row(p + 1, 64));
                let dk = k
                    .iter()
                    .zip(&ks[i * 32..])
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                let dv = v
                    .iter()
                    .zip(&vs[i * 64..])
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(dk <= tol && dv <= tol, "{ty:?} position {p}: {dk} {dv}");
            }
            assert_eq!(kv.stats().n_blocks_used, 2);
            assert_eq!(kv.pos_range(1), Some((0, 5)));
        }
    }

    #[test]
    fn a_batch_that_does_not_fit_changes_nothing_and_rollback_restores() {
        let mut kv = cache(KvType::F16, 16); // 4 blocks of 4
        let r = kv.reserve(&[(0, 0, 5)]).unwrap(); // 2 blocks
        kv.commit(r).unwrap();
        let before = kv.stats();
        let err = kv.reserve(&[(0, 5, 3), (1, 0, 9)]).unwrap_err();
        assert!(matches!(err, Error::KvFull(_)), "{err}");
        assert_eq!(kv.stats(), before);
        assert_eq!(kv.next_pos(0), Some(5));
        let r = kv.reserve(&[(0, 5, 3), (2, 7, 2)]).unwrap();
        assert_eq!(kv.stats().n_blocks_used, 3);
        assert_eq!(kv.pos_range(2), Some((7, 8)));
        kv.rollback(r).unwrap();
        assert_eq!(kv.stats(), before);
        assert_eq!((kv.next_pos(0), kv.next_pos(2)), (Some(5), None));
        kv.free_seq(0).unwrap();
        kv.free_seq(0).unwrap(); // empty: a no-op
        assert_eq!(kv.stats().n_blocks_used, 0);
        assert!(kv.free_seq(3).is_err());
    }

    #[test]
    fn a_rolled_back_copy_on_write_restores_every_row() {
        let mut kv = cache(KvType::F32, 64); // 16 blocks of 4
        let row = |x: f32, w: usize| vec![x; w];
        let r = kv.reserve(&[(0, 0, 7)]).unwrap(); // positions 0..=6: blocks 0 and 1
        for p in 0..7 {
            kv.write(0, 0, p, &row(p as f32, 32), &row(-(p as f32), 64))
                .unwrap();
        }
        kv.commit(r).unwrap();
        kv.copy(0, 1, 0, 5).unwrap(); // 1 holds 0..=4 and shares both blocks
        let before = (kv.stats(), kv.seqs.clone());
        assert_eq!(before.0.n_blocks_shared, 2);
        // Both write into shared block 1 in one batch: 1 at position 5, which 0 holds. Had the
        // first copy released block 1 and the second writer written in place, 0's row 5 would
        // be 99 after the rollback.
        let r = kv.reserve(&[(0, 7, 1), (1, 5, 1)]).unwrap();
        assert_eq!(kv.stats().n_blocks_used, 4, "each writer copied block 1");
        kv.write(0, 1, 5, &row(99.0, 32), &row(99.0, 64)).unwrap();
        kv.write(0, 0, 7, &row(98.0, 32), &row(98.0, 64)).unwrap();
        kv.rollback(r).unwrap();
        kv.check().unwrap();
        assert_eq!((kv.stats(), kv.seqs.clone()), before);
        let (mut ks, mut vs, mut pos) = (Vec::new(), Vec::new(), Vec::new());
        kv.gather(0, 0, (0, 100), &mut ks, &mut vs, &mut pos)
            .unwrap();
        assert_eq!(pos, (0..7).collect::<Vec<_>>());
        assert!((0..7).all(|p| ks[p * 32] == p as f32), "{ks:?}");
    }

    #[test]
    fn sizes_are_checked_and_q8_0_needs_whole_blocks() {
        let mut s = cache(KvType::F16, 16).shape;
        assert_eq!(
            cache(KvType::F16, 16).stats().bytes_total,
            2 * 16 * (64 + 128)
        );
        s.k_dim = 48;
        s.ty = KvType::Q8_0;
        assert!(matches!(KvCache::new(s), Err(Error::Unsupported(_))));
        s.ty = KvType::F32;
        s.n_ctx = usize::MAX;
        assert!(KvCache::new(s).is_err());
    }
}

#[cfg(test)]
mod proptests;
