//! A context: one model's decoding state. It owns the paged KV cache, the thread pool and the
//! scratch buffers, and turns batches into logits (`decode`).
//!
//! A context keeps its model alive (`Arc<Model>`). It is `Send` but used by one thread at a
//! time (`&mut self`); the C API turns concurrent use into an error. Everything is sized at
//! creation: the cache holds `n_ctx` positions over all sequences, a decode takes at most
//! `n_batch` tokens.
//!
//! `decode` is all or nothing: an invalid batch, a full cache (`Error::KvFull`), an abort or
//! any failure leaves the cache and the last logits as they were.
//!
//! `decode_greedy` is `decode` for callers that only want each output row's greedy token
//! (highest logit, lowest id on ties: the greedy sampler's choice). With the head on a GPU
//! the argmax runs there and only the tokens come back, not 4 bytes a vocabulary entry a row
//! (65 MB a step for 128 rows of a 128k vocabulary); on the CPU it scans the logits. Either
//! way the logits are not kept after it: `logits` refuses, `greedy_token` answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::backend::cpu::{Numerics, ThreadPool};
use crate::backend::gpu::{GpuForward, Kept};
use crate::batch::{Batch, Plan};
use crate::kv::{DEFAULT_BLOCK_SIZE, KvCache, KvShape, KvStats, KvType};
use crate::model::transformer::ForwardScratch;
use crate::{Error, Model, Result};

/// The most sequences a context may hold (llama.cpp's limit too).
pub const MAX_SEQ: usize = 256;
/// The most threads a context may use.
pub const MAX_THREADS: usize = 1024;
/// The most KV positions a context may hold.
pub const MAX_CTX: usize = 1 << 24;

/// Called between layers during a decode; returning true stops it (`Error::Aborted`).
pub type AbortFn = Box<dyn FnMut() -> bool + Send>;

pub struct ContextParams {
    /// KV positions over all sequences (default 4096).
    pub n_ctx: usize,
    /// The most tokens one decode takes (default 512).
    pub n_batch: usize,
    /// Sequence ids are `0..n_seq_max` (default 1).
    pub n_seq_max: usize,
    /// Threads of the context's pool (default: the available cores).
    pub n_threads: usize,
    pub kv_type: KvType,
    /// Positions per KV block (default 16).
    pub block_size: usize,
    /// How products and attention round (default: batch-invariant, rocmforge's own order;
    /// `Numerics::LlamaCpp` for llama.cpp's logits bit for bit).
    pub numerics: Numerics,
    pub abort: Option<AbortFn>,
}

/// Cores this process may use.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 4096,
            n_batch: 512,
            n_seq_max: 1,
            n_threads: available_threads(),
            kv_type: KvType::F16,
            block_size: DEFAULT_BLOCK_SIZE,
            numerics: Numerics::default(),
            abort: None,
        }
    }
}

pub struct Context {
    model: Arc<Model>,
    n_batch: usize,
    pool: ThreadPool,
    kv: KvCache,
    scratch: ForwardScratch,
    /// The GPU's part of each decode, when the model has layers on a GPU. Declared before
    /// the logit buffers, so it drops first: its stream pins their memory and unpins it on
    /// drop.
    gpu: Option<GpuForward>,
    /// Logits of the last decode's output rows, `n_vocab` each.
    logits: Vec<f32>,
    /// Where the next decode writes its logits: swapped with `logits` when it succeeds, so
    /// a failed decode leaves the last logits and no decode allocates a fresh row buffer
    /// (at 128 rows of a 128k vocabulary that is 65 MB of page faults a step).
    spare: Vec<f32>,
    /// The greedy tokens of the last decode's output rows, when it was `decode_greedy`
    /// (then `logits` is empty), and where the next one writes them (as `spare`).
    tokens: Vec<u32>,
    spare_tokens: Vec<u32>,
    greedy: bool,
    abort: Option<AbortFn>,
}

/// The error of a decode whose logit `index` of output row `row` is `value`, NaN or infinite.
pub(crate) fn non_finite(index: usize, row: usize, value: f32) -> Error {
    Error::NonFinite(format!(
        "logit {index} of output row {row} is {value}; the decode was not kept"
    ))
}

/// The greedy token of each row of `n_vocab` logits (finite: checked before), on `pool`'s
/// threads for many rows (a 128k row takes about 40 us).
fn greedy_rows(pool: &ThreadPool, logits: &[f32], n_vocab: usize, out: &mut Vec<u32>) {
    let rows: Vec<&[f32]> = logits.chunks_exact(n_vocab).collect();
    let found: Vec<AtomicU32> = rows.iter().map(|_| AtomicU32::new(0)).collect();
    let one = |r: usize| {
        let t = crate::sampling::argmax(rows[r]).unwrap_or(0);
        found[r].store(t, Ordering::Relaxed);
    };
    if rows.len() >= 8 {
        pool.run(rows.len(), &one);
    } else {
        (0..rows.len()).for_each(one);
    }
    out.clear();
    out.extend(found.iter().map(|t| t.load(Ordering::Relaxed)));
}

/// The index of the first NaN or infinity of `v`. The common case, none, is one pass of an
/// integer max over the bits (all exponent bits set means NaN or infinity), which the
/// compiler vectorizes, split over `pool`'s threads for large sets of rows (the scan is
/// memory-bound: 65 MB, 128 rows of a 128k vocabulary, take 3-5 ms on one thread); only a
/// part that holds one is searched again.
fn first_non_finite(pool: &ThreadPool, v: &[f32]) -> Option<usize> {
    const CHUNK: usize = 1 << 20;
    let scan = |part: &[f32]| {
        let worst = part
            .iter()
            .fold(0u32, |m, x| m.max(x.to_bits() & 0x7fff_ffff));
        if worst < 0x7f80_0000 {
            return None;
        }
        part.iter().position(|x| !x.is_finite())
    };
    if v.len() <= CHUNK {
        return scan(v);
    }
    let first = AtomicUsize::new(usize::MAX);
    let chunks = v.len().div_ceil(CHUNK);
    pool.run(chunks, &|c| {
        let start = c * CHUNK;
        let part = &v[start..v.len().min(start + CHUNK)];
        if let Some(i) = scan(part) {
            first.fetch_min(start + i, Ordering::Relaxed);
        }
    });
    Some(first.into_inner()).filter(|&i| i != usize::MAX)
}

fn check_range(what: &str, v: usize, max: usize) -> Result<usize> {
    if v == 0 || v > max {
        return Err(Error::InvalidArg(format!(
            "{what} is {v}; it must be 1 to {max}"
        )));
    }
    Ok(v)
}

impl Context {
    pub fn new(model: Arc<Model>, params: ContextParams) -> Result<Context> {
        let t = model.transformer()?;
        let n_ctx = check_range("n_ctx", params.n_ctx, MAX_CTX)?;
        let n_batch = check_range("n_batch", params.n_batch, MAX_CTX)?;
        let n_seq_max = check_range("n_seq_max", params.n_seq_max, MAX_SEQ)?;
        let n_threads = check_range("n_threads", params.n_threads, MAX_THREADS)?;
        let block_size = check_range("block_size", params.block_size, 4096)?;
        let p = &t.params;
        let device_layers = model.gpu().map_or(0, |g| g.n_layers());
        let kv = KvCache::with_device_layers(
            KvShape {
                n_layer: p.n_layer,
                k_dim: p.k_dim(),
                v_dim: p.v_dim(),
                n_ctx,
                block_size,
                n_seq_max,
                ty: params.kv_type,
            },
            device_layers,
        )?;
        let gpu = match model.gpu() {
            Some(w) => Some(GpuForward::new(w, t, &kv, n_batch)?),
            None => None,
        };
        let pool = ThreadPool::new(n_threads)
            .map_err(|e| Error::Internal(format!("starting {n_threads} threads: {e}")))?;
        Ok(Context {
            model,
            n_batch,
            pool,
            kv,
            scratch: ForwardScratch::new(params.numerics),
            gpu,
            logits: Vec::new(),
            spare: Vec::new(),
            tokens: Vec::new(),
            spare_tokens: Vec::new(),
            greedy: false,
            abort: params.abort,
        })
    }

    /// The context's CPU threads (idle between decodes: the engine samples on them).
    pub(crate) fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Sequence ids are `0..n_seq_max()`.
    pub fn n_seq_max(&self) -> usize {
        self.kv.n_seq_max()
    }

    pub fn n_vocab(&self) -> usize {
        self.model.hparams().n_vocab as usize
    }

    /// Runs a batch: stores its keys and values and computes the logits of its output rows.
    /// All or nothing (see the module docs). Logits holding NaN or infinity fail the decode
    /// (`NonFinite`, status `RF_ERR_MODEL_FORMAT`) and it is not kept: never a silent token.
    pub fn decode(&mut self, batch: &Batch) -> Result<()> {
        self.run(batch, false)
    }

    /// `decode`, keeping only each output row's greedy token (`greedy_token`), not its
    /// logits (see the module docs). The same checks, errors and all-or-nothing rule;
    /// non-finite logits fail it as they fail `decode`.
    pub fn decode_greedy(&mut self, batch: &Batch) -> Result<()> {
        self.run(batch, true)
    }

    fn run(&mut self, batch: &Batch, greedy: bool) -> Result<()> {
        let t = self.model.transformer()?;
        let plan = Plan::new(batch, self.n_vocab(), self.n_batch, &self.kv)?;
        let reservation = self.kv.reserve(&plan.appends)?;
        let mut never = || false;
        let abort: &mut dyn FnMut() -> bool = match &mut self.abort {
            Some(f) => f,
            None => &mut never,
        };
        let file = self.model.gguf();
        let result = match (&mut self.gpu, self.model.gpu()) {
            (Some(g), Some(w)) => g.forward(
                w,
                t,
                file,
                &self.pool,
                &plan,
                &mut self.kv,
                abort,
                &mut self.scratch,
                &mut self.spare,
                greedy.then_some(&mut self.spare_tokens),
            ),
            _ => t
                .forward(
                    file,
                    &self.pool,
                    &plan,
                    &mut self.kv,
                    abort,
                    &mut self.scratch,
                    &mut self.spare,
                )
                .map(|()| Kept::Logits),
        };
        match result {
            Ok(kept) => {
                let nv = self.n_vocab();
                if kept == Kept::Logits {
                    if let Some(i) = first_non_finite(&self.pool, &self.spare) {
                        self.kv.rollback(reservation)?;
                        return Err(non_finite(i % nv, i / nv, self.spare[i]));
                    }
                    self.spare_tokens.clear();
                    if greedy {
                        greedy_rows(&self.pool, &self.spare, nv, &mut self.spare_tokens);
                        self.spare.clear();
                    }
                }
                self.kv.commit(reservation)?;
                std::mem::swap(&mut self.logits, &mut self.spare);
                std::mem::swap(&mut self.tokens, &mut self.spare_tokens);
                self.greedy = greedy;
                Ok(())
            }
            Err(e) => {
                self.kv.rollback(reservation)?;
                Err(e)
            }
        }
    }

    /// Output rows of the last successful decode.
    pub fn n_outputs(&self) -> usize {
        match self.greedy {
            true => self.tokens.len(),
            false => self.logits.len() / self.n_vocab(),
        }
    }

    /// Output row `i` of the last decode (rows flagged for output, in batch order; -1 is
    /// the last), checked.
    fn output_row(&self, i: i32, what: &str) -> Result<usize> {
        let n = self.n_outputs();
        let row = if i == -1 {
            n.checked_sub(1)
        } else {
            usize::try_from(i).ok().filter(|&i| i < n)
        };
        row.ok_or_else(|| {
            Error::InvalidArg(format!(
                "{what} row {i}: the last decode has {n} output rows"
            ))
        })
    }

    /// The logits of output row `i` of the last decode (rows flagged for output, in batch
    /// order); -1 is the last. Refused after `decode_greedy`, which keeps none.
    pub fn logits(&self, i: i32) -> Result<&[f32]> {
        if self.greedy {
            return Err(Error::InvalidArg(
                "the last decode kept greedy tokens only (decode_greedy), not logits".into(),
            ));
        }
        let row = self.output_row(i, "logits")?;
        let nv = self.n_vocab();
        Ok(&self.logits[row * nv..(row + 1) * nv])
    }

    /// The greedy token of output row `i` of the last decode (highest logit, lowest id on
    /// ties; -1 is the last row), after `decode_greedy` or `decode`.
    pub fn greedy_token(&self, i: i32) -> Result<u32> {
        let row = self.output_row(i, "greedy token")?;
        if self.greedy {
            return Ok(self.tokens[row]);
        }
        let nv = self.n_vocab();
        crate::sampling::argmax(&self.logits[row * nv..(row + 1) * nv])
            .ok_or_else(|| Error::Internal("a row of logits without a finite one".into()))
    }

    fn seq(&self, seq: i32) -> Result<usize> {
        usize::try_from(seq)
            .ok()
            .filter(|&s| s < self.kv.n_seq_max())
            .ok_or_else(|| {
                Error::InvalidArg(format!(
                    "sequence id {seq} is out of range (n_seq_max {})",
                    self.kv.n_seq_max()
                ))
            })
    }

    /// Returns every KV block of `seq` to the pool (a block it shares loses one holder); an
    /// empty sequence is a no-op.
    pub fn kv_free(&mut self, seq: i32) -> Result<()> {
        let s = self.seq(seq)?;
        self.kv.free_seq(s)
    }

    /// Drops positions `[p0, p1)` of `seq`; `p0 < 0` means from its first position, `p1 < 0`
    /// to its end. Removing the tail is the common use: the next token then continues after
    /// the last position left. A range removed from the middle leaves a hole that attention
    /// skips. `p1 < p0` (with `p1 >= 0`) is `InvalidArg`; an invalid call changes nothing.
    pub fn kv_seq_remove(&mut self, seq: i32, p0: i32, p1: i32) -> Result<()> {
        let s = self.seq(seq)?;
        self.kv.remove(s, p0, p1)
    }

    /// Makes `dst` hold exactly the positions of `src` within `[p0, p1)` (conventions as
    /// `kv_seq_remove`), sharing `src`'s blocks: nothing is copied until one of the two
    /// writes into a shared block, and then only that block. What `dst` held is dropped.
    pub fn kv_seq_copy(&mut self, src: i32, dst: i32, p0: i32, p1: i32) -> Result<()> {
        let (s, d) = (self.seq(src)?, self.seq(dst)?);
        self.kv.copy(s, d, p0, p1)
    }

    /// Drops every sequence but `seq`.
    pub fn kv_seq_keep(&mut self, seq: i32) -> Result<()> {
        let s = self.seq(seq)?;
        self.kv.keep(s)
    }

    /// Empties every sequence.
    pub fn kv_clear(&mut self) {
        self.kv.clear();
    }

    /// The positions `seq` holds, as sorted disjoint half-open ranges `[start, end)`.
    pub fn kv_seq_spans(&self, seq: i32) -> Result<Vec<(i32, i32)>> {
        self.kv.spans(self.seq(seq)?).map(<[_]>::to_vec)
    }

    /// The ids of the KV blocks `seq` holds, in position order (a block two sequences share
    /// appears in both).
    pub fn kv_seq_blocks(&self, seq: i32) -> Result<Vec<u32>> {
        self.kv.seq_blocks(self.seq(seq)?)
    }

    /// The first and last position `seq` holds, `None` when it is empty.
    pub fn kv_pos_range(&self, seq: i32) -> Result<Option<(i32, i32)>> {
        Ok(self.kv.pos_range(self.seq(seq)?))
    }

    pub fn kv_stats(&self) -> KvStats {
        self.kv.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_non_finite_logit_is_found_in_any_chunk() {
        let pool = ThreadPool::new(3).unwrap();
        // Three chunks and a bit; a short set is scanned in place.
        let mut v = vec![0.5f32; 3 * (1 << 20) + 17];
        assert_eq!(first_non_finite(&pool, &v), None);
        assert_eq!(first_non_finite(&pool, &v[..100]), None);
        v[3 * (1 << 20) + 5] = f32::INFINITY;
        assert_eq!(first_non_finite(&pool, &v), Some(3 * (1 << 20) + 5));
        v[(1 << 20) + 1] = f32::NAN;
        v[(1 << 20) + 2] = f32::NEG_INFINITY;
        assert_eq!(first_non_finite(&pool, &v), Some((1 << 20) + 1));
        v[7] = -f32::NAN;
        assert_eq!(first_non_finite(&pool, &v), Some(7));
        assert_eq!(first_non_finite(&pool, &v[..8]), Some(7));
        // The largest finite values are finite.
        assert_eq!(first_non_finite(&pool, &[f32::MAX, f32::MIN, -0.0]), None);
    }
}
