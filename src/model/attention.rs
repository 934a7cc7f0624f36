//! Causal attention of a batch through the paged KV cache, for one layer.
//!
//! Rows are taken a sequence at a time (`Plan::groups`): the sequence's keys and values are
//! gathered through its block table once (only the window the rows can see), then every
//! (row, head) pair runs on the thread pool. A query at position p sees the positions its
//! sequence holds up to p (a range removed from the middle is a hole it skips), and on
//! sliding-window layers only those within the last `window` positions. Query head h reads
//! KV head h / (n_head / n_head_kv) (GQA, MQA).
//!
//! In the two-pass order (`AttnOrder::TwoPass`) a task is a block of up to `MAX_BLOCK`
//! queries of one KV head (its query heads, row after row), which load each value row once;
//! in llama.cpp's online order a task is one (row, head) pair.

use super::arch::MAX_HEAD_DIM;
use crate::Result;
use crate::backend::cpu::ThreadPool;
use crate::backend::cpu::disjoint::Disjoint;
use crate::backend::cpu::ops::{AttnMath, AttnOrder, attend_online};
use crate::backend::cpu::two_pass::{self, BlockScratch, KvRows, MAX_BLOCK, Query};
use crate::batch::Plan;
use crate::kv::KvCache;

/// The shape of one layer's attention.
pub(super) struct AttnLayer {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub v_head_dim: usize,
    pub math: AttnMath,
    pub window: Option<usize>,
}

/// Gathered keys and values, reused between layers and decodes.
#[derive(Default)]
pub(super) struct AttnScratch {
    ks: Vec<f32>,
    vs: Vec<f32>,
    pos: Vec<i32>,
}

thread_local! {
    /// Each pool thread's weights and accumulators for the two-pass blocks, reused.
    static BLOCK_SCRATCH: std::cell::RefCell<BlockScratch> =
        std::cell::RefCell::new(BlockScratch::default());
}

/// Positions a gather task takes at least: below this the pool's hand-off costs more than
/// the conversion it shares.
const GATHER_MIN: usize = 32;

/// `kv.gather` into `sc`, its rows shared out across the pool: the copy reads the cache from
/// L3 or memory (a decode step streams the weights through L2 between one token's visit to
/// a layer and the next), and two threads wait on misses side by side.
fn gather(
    pool: &ThreadPool,
    kv: &KvCache,
    layer: usize,
    seq: usize,
    span: (i32, i32),
    sc: &mut AttnScratch,
) -> Result<()> {
    kv.held(seq, span, &mut sc.pos)?;
    let (kd, vd) = (kv.shape().k_dim, kv.shape().v_dim);
    let n = sc.pos.len();
    sc.ks.resize(n * kd, 0.0);
    sc.vs.resize(n * vd, 0.0);
    let per_task = n.div_ceil(pool.n_threads()).max(GATHER_MIN);
    let (ks, vs) = (Disjoint::new(&mut sc.ks), Disjoint::new(&mut sc.vs));
    let pos = &sc.pos[..];
    let failed = std::sync::Mutex::new(None);
    pool.run(n.div_ceil(per_task), &|t| {
        let rows = t * per_task..((t + 1) * per_task).min(n);
        // SAFETY: task t alone writes the rows of its positions.
        let (k, v) = unsafe {
            (
                ks.slice(rows.start * kd, rows.len() * kd),
                vs.slice(rows.start * vd, rows.len() * vd),
            )
        };
        if let Err(e) = kv.gather_rows(layer, seq, &pos[rows], k, v) {
            failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        }
    });
    match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The first position a query at `pos` sees.
pub(crate) fn first_visible(pos: i32, window: Option<usize>) -> i32 {
    match window {
        Some(w) => (i64::from(pos) - w.min(i32::MAX as usize) as i64 + 1).max(0) as i32,
        None => 0,
    }
}

/// Attention of the batch's queries `q` (one row per batch row, `n_head * head_dim` wide) in
/// `layer`, whose keys and values are already in `kv`; writes `out` (rows of
/// `n_head * v_head_dim`).
#[allow(clippy::too_many_arguments)]
pub(super) fn attend(
    pool: &ThreadPool,
    kv: &KvCache,
    layer: usize,
    plan: &Plan,
    s: &AttnLayer,
    q: &[f32],
    out: &mut [f32],
    scratch: &mut AttnScratch,
) -> Result<()> {
    let (hd, vhd) = (s.head_dim, s.v_head_dim);
    let (q_dim, out_dim) = (s.n_head * hd, s.n_head * vhd);
    let (k_dim, v_dim) = (s.n_head_kv * hd, s.n_head_kv * vhd);
    let group = s.n_head / s.n_head_kv;
    let visible = |held: &[i32], pos: i32| {
        // The gathered positions are ascending: the visible ones are one run of them.
        held.partition_point(|&p| p < first_visible(pos, s.window))
            ..held.partition_point(|&p| p <= pos)
    };
    for g in &plan.groups {
        let (Some(&r0), Some(&r1)) = (g.rows.first(), g.rows.last()) else {
            continue;
        };
        let lo = first_visible(plan.positions[r0], s.window);
        let hi = plan.positions[r1];
        let sc = &mut *scratch;
        gather(pool, kv, layer, g.seq, (lo, hi), sc)?;
        let (ks, vs, held) = (&sc.ks[..], &sc.vs[..], &sc.pos[..]);
        let dst = Disjoint::new(out);
        if s.math.order == AttnOrder::TwoPass {
            // Queries of one KV head, row-major: entry e is row e / group, head e % group.
            let per_head = g.rows.len() * group;
            let n_block = (per_head * s.n_head_kv / (4 * pool.n_threads())).clamp(1, MAX_BLOCK);
            let blocks = per_head.div_ceil(n_block);
            pool.run(s.n_head_kv * blocks, &|t| {
                let (kvh, b) = (t / blocks, t % blocks);
                let kv_rows = KvRows {
                    ks,
                    vs,
                    k_stride: k_dim,
                    v_stride: v_dim,
                    k_off: kvh * hd,
                    v_off: kvh * vhd,
                    k_dim: hd,
                    v_dim: vhd,
                };
                let mut qs: [Query<'_>; MAX_BLOCK] = Default::default();
                let mut outs: [&mut [f32]; MAX_BLOCK] = Default::default();
                let entries = b * n_block..((b + 1) * n_block).min(per_head);
                let n = entries.len();
                for (i, e) in entries.enumerate() {
                    let (r, head) = (g.rows[e / group], kvh * group + e % group);
                    qs[i] = Query {
                        q: &q[r * q_dim + head * hd..][..hd],
                        keys: visible(held, plan.positions[r]),
                    };
                    // SAFETY: entry e of KV head kvh is the only task for (row r, head), and
                    // this range is exactly that row's head in `out`.
                    outs[i] = unsafe { dst.slice(r * out_dim + head * vhd, vhd) };
                }
                BLOCK_SCRATCH.with_borrow_mut(|sc| {
                    two_pass::attend(&qs[..n], &kv_rows, &s.math, &mut outs[..n], sc)
                });
            });
            continue;
        }
        pool.run(g.rows.len() * s.n_head, &|t| {
            let (r, head) = (g.rows[t / s.n_head], t % s.n_head);
            let pos = plan.positions[r];
            let kvh = head / group;
            let rows = visible(held, pos).map(|i| {
                (
                    &ks[i * k_dim + kvh * hd..][..hd],
                    &vs[i * v_dim + kvh * vhd..][..vhd],
                )
            });
            let mut acc = [0f32; MAX_HEAD_DIM];
            // SAFETY: task t is the only one for (row r, head), and this range is exactly that
            // row's head in `out`.
            let o = unsafe { dst.slice(r * out_dim + head * vhd, vhd) };
            attend_online(
                &q[r * q_dim + head * hd..][..hd],
                rows,
                &s.math,
                &mut acc[..vhd],
                o,
            );
        });
    }
    Ok(())
}
