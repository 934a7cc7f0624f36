//! Activation quantizers on 512-bit vectors: Q8_0 and Q8_1 (runtime rounding, as
//! `legacy::quantize_q8_*_activations`) and Q8_K (as `kquants::quantize_q8_k`), byte for byte
//! the scalar ones'. Every matrix product quantizes its input on the calling thread before
//! the pool shares out the rows, so while this runs the other threads wait: the scalar loops
//! (the `f32::max` fold does not vectorize, and `as i8` saturates lane by lane) took about 2%
//! of a SmolLM2 decode step.
//!
//! The same float operations in the same order as the scalar code (a maximum is exact in any
//! order; `v * id`, then `+ magic`, then `- magic`, no fused multiply-add), so the results are
//! the same bits. A block holding a NaN or an infinity goes to the scalar code, which defines
//! what such a block becomes.

use std::arch::x86_64::*;

use crate::quant::kquants::{Q8_K_BYTES, QK_K, q8_k_block};
use crate::quant::legacy::{
    Q8_0_BYTES, Q8_1_BYTES, QK, q8_0_activation_block, q8_1_activation_block,
};
use crate::quant::{QuantizeFn, put_f16, quant_rows};

/// 1.5 * 2^23: adding and subtracting it rounds to the nearest integer, ties to even.
const MAGIC: f32 = f32::from_bits(0x4b40_0000);

/// Whether any lane of `v` is NaN or infinite (`v - v` is NaN exactly then).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn non_finite(v: __m512) -> bool {
    let z = _mm512_sub_ps(v, v);
    _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(z, z) != 0
}

/// `round(v * scale)` per lane, as the scalar code rounds it, as i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn round_scaled(v: __m512, scale: __m512) -> __m512i {
    let magic = _mm512_set1_ps(MAGIC);
    _mm512_cvtps_epi32(_mm512_sub_ps(
        _mm512_add_ps(_mm512_mul_ps(v, scale), magic),
        magic,
    ))
}

/// Loads the sixteen f32 of `x` from `at`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load16(x: &[f32], at: usize) -> __m512 {
    let x = &x[at..at + 16];
    // SAFETY: `x` is 16 readable f32; loadu has no alignment requirement.
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

/// Stores the sixteen i32 lanes of `q` (each in -128..=127) as bytes at `b[at..at + 16]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn store_i8(b: &mut [u8], at: usize, q: __m512i) {
    let dst = &mut b[at..at + 16];
    // SAFETY: `dst` is 16 writable bytes; storeu has no alignment requirement.
    unsafe { _mm_storeu_si128(dst.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(q)) };
}

/// One 32-value block with a Q8_0-style scale: the values at `b[VALUES..]`, the f16 scale at
/// 0 and, when `SUM`, `d * sum(q)` as f16 at 2 (Q8_1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_block<const VALUES: usize, const SUM: bool>(x: &[f32; QK], b: &mut [u8]) -> bool {
    let (v0, v1) = (load16(x, 0), load16(x, 16));
    if non_finite(v0) || non_finite(v1) {
        return false;
    }
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    let d = amax / 127.0;
    let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let (q0, q1) = (round_scaled(v0, id), round_scaled(v1, id));
    store_i8(b, VALUES, q0);
    store_i8(b, VALUES + 16, q1);
    put_f16(b, 0, d);
    if SUM {
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        put_f16(b, 2, sum as f32 * d);
    }
    true
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_rows(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_0_BYTES, QK>(src, dst, |x, b| {
        if !q8_block::<2, false>(x, b) {
            q8_0_activation_block(x, b);
        }
    });
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_1_rows(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_1_BYTES, QK>(src, dst, |x, b| {
        if !q8_block::<4, true>(x, b) {
            q8_1_activation_block(x, b);
        }
    });
}

/// One Q8_K block as `kquants::q8_k_block` (without `positive_wins`): the scale from the
/// first value of largest magnitude, with its sign; the sixteen-value sums as i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_k_simd(x: &[f32; QK_K], b: &mut [u8; Q8_K_BYTES]) -> bool {
    let v: [__m512; 16] = std::array::from_fn(|k| load16(x, 16 * k));
    if v.iter().any(|&v| non_finite(v)) {
        return false;
    }
    let m = v.iter().fold(_mm512_setzero_ps(), |m, &v| {
        _mm512_max_ps(_mm512_abs_ps(v), m)
    });
    let amax = _mm512_reduce_max_ps(m);
    if amax == 0.0 {
        b.fill(0);
        return true;
    }
    // The first value whose magnitude is the maximum (some lane holds it).
    let target = _mm512_set1_ps(amax);
    let Some(first) = v.iter().enumerate().find_map(|(k, &v)| {
        let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(v), target);
        (hit != 0).then(|| 16 * k + hit.trailing_zeros() as usize)
    }) else {
        return false;
    };
    let iscale = -127.0 / x[first];
    let scale = _mm512_set1_ps(iscale);
    let top = _mm512_set1_epi32(127);
    b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    for (g, &v) in v.iter().enumerate() {
        let q = _mm512_min_epi32(round_scaled(v, scale), top);
        store_i8(b, 4 + 16 * g, q);
        let s = _mm512_reduce_add_epi32(q) as i16;
        b[260 + 2 * g..262 + 2 * g].copy_from_slice(&s.to_le_bytes());
    }
    true
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_k_rows(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_K_BYTES, QK_K>(src, dst, |x, b| {
        if !q8_k_simd(x, b) {
            q8_k_block(x, b, false);
        }
    });
}

/// A safe `QuantizeFn` over one of the functions above.
macro_rules! entry {
    ($name:ident, $f:ident) => {
        pub(in crate::quant) const $name: QuantizeFn = {
            // SAFETY: handed out only by `quant::activation_quantizer_at` at the AVX-512
            // level, which it gives only where `cpu::detected()` reports every feature
            // enabled here.
            fn entry(src: &[f32], dst: &mut [u8]) {
                unsafe { $f(src, dst) }
            }
            entry
        };
    };
}

entry!(QUANTIZE_Q8_0, q8_0_rows);
entry!(QUANTIZE_Q8_1, q8_1_rows);
entry!(QUANTIZE_Q8_K, q8_k_rows);
