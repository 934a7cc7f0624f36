//! Attention in rocmforge's own float order (`AttnOrder::TwoPass`, the batch-invariant
//! default): for each query, every visible key's score first (Q·K in ggml's order, as
//! `dot_ggml_order`), their maximum, the weights `expf_ggml(score - max)` and their sum, then the
//! weighted sum of values in f32, key after key, one fused multiply-add per element.
//!
//! Every query's result depends only on its own vector and the keys it sees, in order, never
//! on which queries share its block or how its keys are split, so a prompt in one batch and
//! the same tokens decoded one at a time give the same bits. Unlike llama.cpp's online
//! softmax (`ops::online_attention`), nothing is rescaled when a new maximum appears, and the
//! accumulator is never rounded to f16: per (query, key) it costs the Q·K and one FMA per
//! value element, and a block of queries loads each value row once for all of them.
//!
//! The queries of a block (the query heads of one KV head, over a few consecutive rows) may
//! see different runs of keys (causal masks, sliding windows). The keys all of them see go
//! through one shared pass; those only some see (before it or after it) are taken query by
//! query. Each query still meets its keys in ascending order, so its operations are those it
//! would see alone.

use std::ops::Range;

use super::ops::{AttnKernels, AttnMath, KEYS_PER_STEP, expf_ggml};
use crate::quant::dot::reduce16;

/// Most queries a block holds (`attend_block`).
pub const MAX_BLOCK: usize = 8;

/// One query of a block: its vector and the keys it sees (indices into `KvRows`).
#[derive(Clone, Default)]
pub struct Query<'a> {
    pub q: &'a [f32],
    pub keys: Range<usize>,
}

/// Keys and values as rows of one KV head: key j is `ks[j * k_stride + k_off..][..k_dim]`,
/// its value `vs[j * v_stride + v_off..][..v_dim]`.
#[derive(Clone, Copy)]
pub struct KvRows<'a> {
    pub ks: &'a [f32],
    pub vs: &'a [f32],
    pub k_stride: usize,
    pub v_stride: usize,
    pub k_off: usize,
    pub v_off: usize,
    pub k_dim: usize,
    pub v_dim: usize,
}

impl<'a> KvRows<'a> {
    fn key(&self, j: usize) -> &'a [f32] {
        &self.ks[j * self.k_stride + self.k_off..][..self.k_dim]
    }

    /// The values of keys `keys`: row i of the window at `i * v_stride`, `v_dim` wide.
    fn values(&self, keys: &Range<usize>) -> &'a [f32] {
        if keys.is_empty() {
            return &[];
        }
        let start = keys.start * self.v_stride + self.v_off;
        let len = (keys.len() - 1) * self.v_stride + self.v_dim;
        &self.vs[start..][..len]
    }
}

/// Buffers a block reuses: the weights of every query's keys, and the accumulators.
#[derive(Default)]
pub struct BlockScratch {
    weights: Vec<f32>,
    acc: Vec<f32>,
}

/// Every query's scores, scaled (and soft-capped), into its run of `w` (query i's at
/// `starts[i]`), sixteen keys at a time for all the queries that see them (the keys stay in
/// L1 while they go by). Each score is one `K::dots` lane: the same bits whatever keys it is
/// computed beside.
#[inline(always)]
fn scores<K: AttnKernels>(
    qs: &[Query<'_>],
    kv: &KvRows<'_>,
    m: &AttnMath,
    w: &mut [f32],
    starts: &[usize; MAX_BLOCK],
) {
    let lo = qs.iter().map(|q| q.keys.start).min().unwrap_or(0);
    let hi = qs.iter().map(|q| q.keys.end).max().unwrap_or(0);
    let mut c0 = lo;
    while c0 < hi {
        let c1 = (c0 + KEYS_PER_STEP).min(hi);
        for (i, q) in qs.iter().enumerate() {
            let (o0, o1) = (c0.max(q.keys.start), c1.min(q.keys.end));
            if o0 >= o1 {
                continue;
            }
            let ks: [&[f32]; KEYS_PER_STEP] =
                std::array::from_fn(|t| if o0 + t < o1 { kv.key(o0 + t) } else { &[] });
            let dots = K::dots(q.q, &ks, o1 - o0);
            let at = starts[i] + (o0 - q.keys.start);
            for (o, &d) in w[at..at + (o1 - o0)].iter_mut().zip(&dots) {
                let mut s = d * m.scale;
                if let Some(cap) = m.softcap {
                    s = cap * (s / cap).tanh();
                }
                *o = s;
            }
        }
        c0 = c1;
    }
}

/// The largest of `w` (sixteen lanes at a time; the maximum does not depend on the order).
#[inline(always)]
fn max_of(w: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; KEYS_PER_STEP];
    let (full, rest) = w.as_chunks::<KEYS_PER_STEP>();
    for chunk in full {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l = l.max(x);
        }
    }
    for (l, &x) in lanes.iter_mut().zip(rest) {
        *l = l.max(x);
    }
    lanes.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}

/// Scores `w` become weights `expf_ggml(score - max)`; returns their sum (sixteen lanes, key
/// i of the run in lane i mod 16, reduced as `reduce16`).
#[inline(always)]
fn weights(w: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; KEYS_PER_STEP];
    let (full, rest) = w.as_chunks_mut::<KEYS_PER_STEP>();
    for chunk in full {
        for (x, l) in chunk.iter_mut().zip(lanes.iter_mut()) {
            *x = expf_ggml(*x - max);
            *l += *x;
        }
    }
    for (x, l) in rest.iter_mut().zip(lanes.iter_mut()) {
        *x = expf_ggml(*x - max);
        *l += *x;
    }
    reduce16(&lanes)
}

/// Attention of a block of at most `MAX_BLOCK` queries over `kv` with the kernels `K`:
/// `out[i]` (`kv.v_dim` wide) receives query i's result.
#[inline(always)]
pub(super) fn attend_block<K: AttnKernels>(
    qs: &[Query<'_>],
    kv: &KvRows<'_>,
    m: &AttnMath,
    out: &mut [&mut [f32]],
    s: &mut BlockScratch,
) {
    let n = qs.len().min(MAX_BLOCK).min(out.len());
    let (qs, width) = (&qs[..n], kv.v_dim);
    let total: usize = qs.iter().map(|q| q.keys.len()).sum();
    s.weights.clear();
    s.weights.resize(total, 0.0);
    s.acc.clear();
    s.acc.resize(n * width, 0.0);
    let mut starts = [0usize; MAX_BLOCK];
    let mut at = 0;
    for (i, q) in qs.iter().enumerate() {
        starts[i] = at;
        at += q.keys.len();
    }
    scores::<K>(qs, kv, m, &mut s.weights, &starts);
    let mut sums = [0f32; MAX_BLOCK];
    for (i, q) in qs.iter().enumerate() {
        let w = &mut s.weights[starts[i]..][..q.keys.len()];
        sums[i] = weights(w, max_of(w));
    }
    let w = &s.weights[..];
    // The weights of query i for keys `r` (within its run).
    let ws = |i: usize, r: &Range<usize>| {
        let from = starts[i] + (r.start - qs[i].keys.start);
        &w[from..from + r.len()]
    };
    let shared = qs.iter().map(|q| q.keys.start).max().unwrap_or(0)
        ..qs.iter().map(|q| q.keys.end).min().unwrap_or(0);
    let one = |i: usize, r: Range<usize>, acc: &mut [f32]| {
        if !r.is_empty() {
            K::mix(acc, &[ws(i, &r)], kv.values(&r), kv.v_stride);
        }
    };
    if shared.is_empty() {
        for (i, acc) in s.acc.chunks_exact_mut(width).enumerate() {
            one(i, qs[i].keys.clone(), acc);
        }
    } else {
        for (i, acc) in s.acc.chunks_exact_mut(width).enumerate() {
            one(i, qs[i].keys.start..shared.start, acc);
        }
        let all: [&[f32]; MAX_BLOCK] =
            std::array::from_fn(|i| if i < n { ws(i, &shared) } else { &[] });
        K::mix(&mut s.acc, &all[..n], kv.values(&shared), kv.v_stride);
        for (i, acc) in s.acc.chunks_exact_mut(width).enumerate() {
            one(i, shared.end..qs[i].keys.end, acc);
        }
    }
    for ((o, acc), &sum) in out.iter_mut().zip(s.acc.chunks_exact(width)).zip(&sums) {
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        for (o, &a) in o.iter_mut().zip(acc) {
            *o = a * inv;
        }
    }
}

/// The weighted sum of values, portably: for each key j of the window in order and each
/// query i, `acc[i] = fma(ws[i][j], v_j, acc[i])` elementwise, where `acc` holds
/// `ws.len()` rows and `v_j = vs[j * stride..]` as wide as one of them.
#[inline(always)]
pub(super) fn mix_portable(acc: &mut [f32], ws: &[&[f32]], vs: &[f32], stride: usize) {
    let Some(width) = acc.len().checked_div(ws.len()) else {
        return;
    };
    let n = ws.iter().map(|w| w.len()).min().unwrap_or(0);
    for j in 0..n {
        let v = &vs[j * stride..][..width];
        for (a, w) in acc.chunks_exact_mut(width).zip(ws) {
            let x = w[j];
            for (a, &y) in a.iter_mut().zip(v) {
                *a = x.mul_add(y, *a);
            }
        }
    }
}

/// Attention of a block of at most `MAX_BLOCK` queries over `kv` in the two-pass order:
/// `out[i]` (`kv.v_dim` wide) receives query i's result. AVX-512 or AVX2 where the CPU has
/// it, the portable kernels otherwise: the same bits either way.
pub fn attend(
    qs: &[Query<'_>],
    kv: &KvRows<'_>,
    m: &AttnMath,
    out: &mut [&mut [f32]],
    s: &mut BlockScratch,
) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::quant::SimdLevel;
        let level = crate::quant::cpu::level();
        if level >= SimdLevel::Avx512 {
            // SAFETY: level() never exceeds what the CPU supports, and Avx512 implies AVX2,
            // FMA, F16C and AVX-512 F and VL.
            return unsafe { super::attn_x86::attend_block_avx512(qs, kv, m, out, s) };
        }
        if level >= SimdLevel::Avx2 {
            // SAFETY: level() never exceeds what the CPU supports, and Avx2 implies AVX2, FMA
            // and F16C.
            return unsafe { super::attn_x86::attend_block_avx2(qs, kv, m, out, s) };
        }
    }
    attend_block::<super::ops::Portable>(qs, kv, m, out, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::ops::{AttnOrder, Portable};

    fn val(i: usize, j: usize) -> f32 {
        ((i * 7 + j * 13) % 29) as f32 / 7.0 - 2.0
    }

    struct Case {
        hd: usize,
        qs: Vec<Vec<f32>>,
        ks: Vec<f32>,
        vs: Vec<f32>,
    }

    impl Case {
        fn new(hd: usize, n_q: usize, n_keys: usize) -> Case {
            Case {
                hd,
                qs: (0..n_q)
                    .map(|i| (0..hd).map(|j| val(i + 1, j) * 0.3).collect())
                    .collect(),
                ks: (0..n_keys * hd).map(|x| val(x / hd, x % hd)).collect(),
                vs: (0..n_keys * hd).map(|x| val(x / hd + 3, x % hd)).collect(),
            }
        }

        fn kv(&self) -> KvRows<'_> {
            KvRows {
                ks: &self.ks,
                vs: &self.vs,
                k_stride: self.hd,
                v_stride: self.hd,
                k_off: 0,
                v_off: 0,
                k_dim: self.hd,
                v_dim: self.hd,
            }
        }

        /// Runs queries `which` with their key ranges as one block through `f`.
        fn run(
            &self,
            which: &[(usize, Range<usize>)],
            m: &AttnMath,
            f: impl Fn(&[Query<'_>], &KvRows<'_>, &AttnMath, &mut [&mut [f32]], &mut BlockScratch),
        ) -> Vec<Vec<f32>> {
            let qs: Vec<Query<'_>> = which
                .iter()
                .map(|(i, r)| Query {
                    q: &self.qs[*i],
                    keys: r.clone(),
                })
                .collect();
            let mut outs = vec![vec![0f32; self.hd]; which.len()];
            let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
            f(&qs, &self.kv(), m, &mut refs, &mut BlockScratch::default());
            outs
        }
    }

    fn math(softcap: Option<f32>) -> AttnMath {
        AttnMath {
            scale: 0.2,
            softcap,
            f16_acc: false,
            order: AttnOrder::TwoPass,
        }
    }

    #[test]
    fn two_pass_equals_softmax_attention_within_rounding() {
        let c = Case::new(24, 1, 40);
        let got = c.run(&[(0, 3..37)], &math(None), attend);
        let kv = c.kv();
        let mut scores: Vec<f64> = (3..37)
            .map(|j| {
                let k = kv.key(j);
                c.qs[0]
                    .iter()
                    .zip(k)
                    .map(|(a, b)| f64::from(a * b))
                    .sum::<f64>()
                    * 0.2
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::MIN, f64::max);
        scores.iter_mut().for_each(|s| *s = (*s - max).exp());
        let sum: f64 = scores.iter().sum();
        for (d, &g) in got[0].iter().enumerate() {
            let want: f64 = (3..37)
                .map(|j| scores[j - 3] * f64::from(c.vs[j * 24 + d]))
                .sum::<f64>()
                / sum;
            assert!((f64::from(g) - want).abs() < 1e-5, "{d}: {g} vs {want}");
        }
        // No keys: zeros.
        assert_eq!(c.run(&[(0, 5..5)], &math(None), attend)[0], vec![0f32; 24]);
    }

    /// Blocks of 1 to 8 queries whose key runs share a middle (causal rows, a sliding window)
    /// or nothing at all: every query's output equals its output alone, and the SIMD kernels
    /// equal the portable ones, bit for bit.
    #[test]
    fn a_query_in_a_block_equals_the_query_alone_on_every_kernel() {
        for hd in [256, 64, 136, 8, 48] {
            let c = Case::new(hd, 8, 100);
            for softcap in [None, Some(4.0)] {
                let m = math(softcap);
                for n in 1..=MAX_BLOCK {
                    let causal: Vec<_> = (0..n).map(|i| (i, 0..70 + i)).collect();
                    let window: Vec<_> = (0..n).map(|i| (i, 2 * i..60 + 3 * i)).collect();
                    let apart: Vec<_> = (0..n).map(|i| (i, 9 * i..9 * i + 5)).collect();
                    for which in [causal, window, apart] {
                        let got = c.run(&which, &m, attend);
                        for (w, o) in which.iter().zip(&got) {
                            let alone = c.run(std::slice::from_ref(w), &m, attend);
                            assert_eq!(o, &alone[0], "hd {hd} block {n} {w:?}");
                        }
                        let portable = c.run(&which, &m, attend_block::<Portable>);
                        assert_eq!(got, portable, "hd {hd} block {n}");
                        #[cfg(target_arch = "x86_64")]
                        if crate::quant::cpu::detected() >= crate::quant::SimdLevel::Avx2 {
                            let avx2 = c.run(&which, &m, |q, kv, m, o, s| {
                                // SAFETY: the CPU has AVX2, which implies FMA and F16C here.
                                unsafe {
                                    crate::backend::cpu::attn_x86::attend_block_avx2(q, kv, m, o, s)
                                }
                            });
                            assert_eq!(avx2, portable, "AVX2: hd {hd} block {n}");
                        }
                    }
                }
            }
        }
    }
}
