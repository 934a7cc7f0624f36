//! `ops::attend_online` with AVX2, FMA and F16C: Q·K in eight lanes, and the weighted sum of
//! values updated eight at a time, rounded to f16 through `vcvtps2ph`/`vcvtph2ps` when the
//! accumulator is f16. Each accumulator element sees exactly the scalar code's operations
//! (one fused multiply-add, then the rounding); Q·K sums in ggml's order (see `dot`).
//!
//! Runs only when `quant::cpu::level()` is at least AVX2, which implies all three features.

use std::arch::x86_64::*;

use super::ops::AttnMath;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_f16(v: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
}

/// Q·K summed in exactly the order of ggml's `ggml_vec_dot_f16` as built for the AVX-512
/// machines the reference data comes from (`GGML_F16_STEP` 64: four accumulators of sixteen
/// lanes, each lane a chain of fused multiply-adds; reduced x0+x2, x1+x3, x0+x1, then 512 ->
/// 256 -> 128 bits and (l0+l2)+(l1+l3), as GCC expands `_mm512_reduce_add_ps`; the elements
/// past the last multiple of 64 added in double precision). SmolLM2's logits move by tenths
/// when only this summation order changes, so it is worth matching. Sixteen lanes are two
/// AVX2 registers here; every lane sees the same operations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let np = n & !63;
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let mut i = 0;
    while i < np {
        for (j, lanes) in acc.iter_mut().enumerate() {
            for (h, l) in lanes.iter_mut().enumerate() {
                let at = i + 16 * j + 8 * h;
                // SAFETY: at + 8 <= np <= both lengths.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(at)),
                        _mm256_loadu_ps(b.as_ptr().add(at)),
                    )
                };
                *l = _mm256_fmadd_ps(x, y, *l);
            }
        }
        i += 64;
    }
    let mut sum = 0f64;
    if np > 0 {
        let mut x = [_mm256_setzero_ps(); 2];
        for (h, xh) in x.iter_mut().enumerate() {
            let x0 = _mm256_add_ps(acc[0][h], acc[2][h]);
            let x1 = _mm256_add_ps(acc[1][h], acc[3][h]);
            *xh = _mm256_add_ps(x0, x1);
        }
        let t3 = _mm256_add_ps(x[1], x[0]);
        let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
        let mut l = [0f32; 4];
        // SAFETY: l has room for four floats.
        unsafe { _mm_storeu_ps(l.as_mut_ptr(), t6) };
        sum = f64::from((l[0] + l[2]) + (l[1] + l[3]));
    }
    for k in np..n {
        sum += f64::from(a[k] * b[k]);
    }
    sum as f32
}

/// `acc = round(acc * scale)` or, with `v`, `acc = round(v * scale + acc)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn update(acc: &mut [f32], v: Option<&[f32]>, scale: f32, f16: bool) {
    let n = v.map_or(acc.len(), |v| v.len().min(acc.len()));
    let sv = _mm256_set1_ps(scale);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= the lengths of acc and v.
        unsafe {
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            let mut r = match v {
                Some(v) => _mm256_fmadd_ps(_mm256_loadu_ps(v.as_ptr().add(i)), sv, a),
                None => _mm256_mul_ps(a, sv),
            };
            if f16 {
                r = round_f16(r);
            }
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), r);
        }
        i += 8;
    }
    let round = |x: f32| {
        if f16 {
            half::f16::from_f32(x).to_f32()
        } else {
            x
        }
    };
    while i < n {
        acc[i] = round(match v {
            Some(v) => v[i].mul_add(scale, acc[i]),
            None => acc[i] * scale,
        });
        i += 1;
    }
}

/// As `ops::attend_online`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_online<'a>(
    q: &[f32],
    rows: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    m: &AttnMath,
    acc: &mut [f32],
    out: &mut [f32],
) {
    acc.fill(0.0);
    let (mut sum, mut max) = (0f32, f32::NEG_INFINITY);
    for (k, v) in rows {
        let mut s = dot(q, k) * m.scale;
        if let Some(cap) = m.softcap {
            s = cap * (s / cap).tanh();
        }
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > max {
            ms = (max - s).exp();
            max = s;
            update(acc, None, ms, m.f16_acc);
        } else {
            vs = (s - max).exp();
        }
        update(acc, Some(v), vs, m.f16_acc);
        sum = sum.mul_add(ms, vs);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = a * inv;
    }
}
