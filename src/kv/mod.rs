//! The paged KV cache: a pool of fixed-size blocks (16 token positions by default) shared by
//! up to `n_seq_max` sequences, each with a block table that maps its positions to blocks.
//! Attention reads a sequence's keys and values through its table (`gather`).
//!
//! State changes follow plan-then-apply (as llama.cpp's memory module does): `reserve` checks
//! that a whole batch fits before it takes a single block, and either succeeds with a
//! `Reservation` or fails with `Error::KvFull` having changed nothing; a forward pass that
//! fails after reserving calls `rollback`, which returns the blocks it took and restores every
//! sequence's length. Keys and values are stored as F16 (default), F32 or Q8_0 rows.
//!
//! A sequence holds the consecutive positions `pos0 .. pos0 + len`; its first token may start
//! at any position, later ones must continue it (the batch check enforces that).

mod pool;

use pool::BlockPool;

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

#[derive(Debug, Clone, Default)]
struct Sequence {
    pos0: i32,
    len: usize,
    blocks: Vec<u32>,
}

/// What `rollback` needs to undo a `reserve`: each touched sequence as it was.
#[derive(Debug)]
pub struct Reservation {
    before: Vec<(usize, i32, usize, usize)>,
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
}

/// A zeroed byte buffer, or `Oom` when the allocation fails (never an abort).
fn zeroed(n: usize, what: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| Error::Oom(format!("{n} bytes for {what}")))?;
    v.resize(n, 0);
    Ok(v)
}

impl KvCache {
    pub fn new(shape: KvShape) -> Result<KvCache> {
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
        for _ in 0..s.n_layer {
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
        })
    }

    pub fn shape(&self) -> &KvShape {
        &self.shape
    }

    pub fn n_seq_max(&self) -> usize {
        self.seqs.len()
    }

    /// The position the next token of `seq` must have, or `None` when it holds nothing (its
    /// first token may take any position).
    pub fn next_pos(&self, seq: usize) -> Option<i32> {
        let s = self.seqs.get(seq)?;
        (s.len > 0).then(|| s.pos0 + s.len as i32)
    }

    /// Positions `seq` holds (`pos0..pos0 + len`), or `None` when empty or unknown.
    pub fn pos_range(&self, seq: usize) -> Option<(i32, i32)> {
        let s = self.seqs.get(seq)?;
        (s.len > 0).then(|| (s.pos0, s.pos0 + s.len as i32 - 1))
    }

    /// Blocks `seq` needs to grow by `n` positions.
    fn blocks_needed(&self, seq: usize, n: usize) -> usize {
        let s = &self.seqs[seq];
        let bs = self.shape.block_size;
        (s.len + n).div_ceil(bs) - s.blocks.len()
    }

    /// Makes room for `appends` (sequence, first new position, number of positions; at most
    /// one entry per sequence, positions already checked to continue each sequence) and
    /// counts the positions as held. All or nothing: `KvFull` when the blocks do not suffice.
    pub fn reserve(&mut self, appends: &[(usize, i32, usize)]) -> Result<Reservation> {
        let mut need = 0usize;
        for &(seq, _, n) in appends {
            if seq >= self.seqs.len() {
                return Err(Error::InvalidArg(format!("sequence {seq} does not exist")));
            }
            need += self.blocks_needed(seq, n);
        }
        if need > self.pool.n_free() {
            return Err(Error::KvFull(format!(
                "the batch needs {need} more blocks of {} positions, {} are free",
                self.shape.block_size,
                self.pool.n_free()
            )));
        }
        let mut before = Vec::with_capacity(appends.len());
        for &(seq, pos, n) in appends {
            let extra = self.blocks_needed(seq, n);
            let s = &mut self.seqs[seq];
            before.push((seq, s.pos0, s.len, s.blocks.len()));
            for _ in 0..extra {
                // Counted above, so the pool cannot run dry here.
                let b = self
                    .pool
                    .alloc()
                    .ok_or_else(|| Error::Internal("KV pool ran out after its check".into()))?;
                s.blocks.push(b);
            }
            if s.len == 0 {
                s.pos0 = pos;
            }
            s.len += n;
        }
        Ok(Reservation { before })
    }

    /// Undoes a `reserve` whose forward pass failed: the blocks it took go back, the sequences
    /// get their old lengths. What was written past those lengths is never read.
    pub fn rollback(&mut self, r: Reservation) -> Result<()> {
        for (seq, pos0, len, n_blocks) in r.before.into_iter().rev() {
            let s = &mut self.seqs[seq];
            for b in s.blocks.drain(n_blocks..) {
                self.pool.release(b)?;
            }
            s.pos0 = pos0;
            s.len = len;
        }
        Ok(())
    }

    /// The cell holding position `pos` of `seq`.
    fn cell(&self, seq: usize, pos: i32) -> Result<usize> {
        let s = &self.seqs[seq];
        let i = usize::try_from(pos - s.pos0)
            .ok()
            .filter(|&i| i < s.len)
            .ok_or_else(|| {
                Error::Internal(format!("sequence {seq} does not hold position {pos}"))
            })?;
        let bs = self.shape.block_size;
        Ok(s.blocks[i / bs] as usize * bs + i % bs)
    }

    /// Stores the keys and values of position `pos` of `seq` in `layer` (converted to the
    /// cache's type). The position must be held (reserved).
    pub fn write(
        &mut self,
        layer: usize,
        seq: usize,
        pos: i32,
        k: &[f32],
        v: &[f32],
    ) -> Result<()> {
        let c = self.cell(seq, pos)?;
        let ty = self.shape.ty.ggml();
        let (kr, vr) = (self.k_row, self.v_row);
        quant::quantize_row(ty, k, &mut self.k[layer][c * kr..(c + 1) * kr])?;
        quant::quantize_row(ty, v, &mut self.v[layer][c * vr..(c + 1) * vr])?;
        Ok(())
    }

    /// The keys and values of positions `from..=to` of `seq` in `layer`, as f32 rows one after
    /// the other, into `ks` and `vs` (resized).
    pub fn gather(
        &self,
        layer: usize,
        seq: usize,
        (from, to): (i32, i32),
        ks: &mut Vec<f32>,
        vs: &mut Vec<f32>,
    ) -> Result<()> {
        let (kd, vd) = (self.shape.k_dim, self.shape.v_dim);
        let n = usize::try_from(to - from + 1).unwrap_or(0);
        ks.resize(n * kd, 0.0);
        vs.resize(n * vd, 0.0);
        let ty = self.shape.ty.ggml();
        let (kr, vr) = (self.k_row, self.v_row);
        for (i, pos) in (from..=to).enumerate() {
            let c = self.cell(seq, pos)?;
            let (kl, vl) = (&self.k[layer], &self.v[layer]);
            quant::dequantize_row(ty, &kl[c * kr..(c + 1) * kr], &mut ks[i * kd..(i + 1) * kd])?;
            quant::dequantize_row(ty, &vl[c * vr..(c + 1) * vr], &mut vs[i * vd..(i + 1) * vd])?;
        }
        Ok(())
    }

    /// Returns every block of `seq` to the pool; an empty sequence is a no-op.
    pub fn free_seq(&mut self, seq: usize) -> Result<()> {
        let s = self
            .seqs
            .get_mut(seq)
            .ok_or_else(|| Error::InvalidArg(format!("sequence {seq} does not exist")))?;
        for b in s.blocks.drain(..) {
            self.pool.release(b)?;
        }
        s.len = 0;
        s.pos0 = 0;
        Ok(())
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
            n_seqs: self.seqs.iter().filter(|s| s.len > 0).count(),
            bytes_total: self.k.iter().chain(&self.v).map(Vec::len).sum(),
        }
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
            kv.reserve(&[(1, 0, 6)]).unwrap();
            let row = |p: i32, w: usize| -> Vec<f32> {
                (0..w)
                    .map(|i| (p as f32 - 2.5) / (1.0 + i as f32))
                    .collect()
            };
            for p in 0..6 {
                kv.write(1, 1, p, &row(p, 32), &row(p + 1, 64)).unwrap();
            }
            let (mut ks, mut vs) = (Vec::new(), Vec::new());
            kv.gather(1, 1, (2, 5), &mut ks, &mut vs).unwrap();
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
        kv.reserve(&[(0, 0, 5)]).unwrap(); // 2 blocks
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
