//! The x86 kernels of `ops::online_attention`: Q·K in ggml's order with 16 lanes as two AVX2
//! registers or one AVX-512 register, and the weighted sum of values updated eight (AVX2) or
//! sixteen (AVX-512) at a time, rounded to f16 through `vcvtps2ph`/`vcvtph2ps` when the
//! accumulator is f16. Bit for bit the portable kernels' results (tested in `ops`): every lane
//! sees the same operations whatever the vector width.
//!
//! The AVX2 kernels run only when `quant::cpu::level()` is at least AVX2, which implies all
//! three features; the AVX-512 ones when it is AVX-512 (which implies F and VL).

use std::arch::x86_64::*;

use super::ops::{AttnKernels, AttnMath, online_attention};

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_f16(v: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
}

/// `ops::dot_ggml_order` with sixteen lanes as two AVX2 registers: every lane sees the same
/// operations.
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

/// The AVX2 kernels of `ops::online_attention`.
struct Avx2;

impl AttnKernels for Avx2 {
    #[inline(always)]
    fn dot(q: &[f32], k: &[f32]) -> f32 {
        // SAFETY: only reached through `attend_online` below, whose caller checked AVX2, FMA
        // and F16C.
        unsafe { dot(q, k) }
    }

    #[inline(always)]
    fn update(acc: &mut [f32], v: Option<&[f32]>, scale: f32, f16: bool) {
        // SAFETY: as for `dot`.
        unsafe { update(acc, v, scale, f16) }
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
    online_attention::<Avx2>(q, rows, m, acc, out)
}

/// `dot` on 512-bit registers: the 16 lanes of ggml's AVX-512 order, one register each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn dot512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let np = n & !63;
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i < np {
        for (j, l) in acc.iter_mut().enumerate() {
            let at = i + 16 * j;
            // SAFETY: at + 16 <= np <= both lengths.
            let (x, y) = unsafe {
                (
                    _mm512_loadu_ps(a.as_ptr().add(at)),
                    _mm512_loadu_ps(b.as_ptr().add(at)),
                )
            };
            *l = _mm512_fmadd_ps(x, y, *l);
        }
        i += 64;
    }
    let mut sum = 0f64;
    if np > 0 {
        let x = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
        let lo = _mm512_castps512_ps256(x);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
        let t3 = _mm256_add_ps(hi, lo);
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

/// `update` sixteen lanes at a time, the rest by the AVX2 `update`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn update512(acc: &mut [f32], v: Option<&[f32]>, scale: f32, f16: bool) {
    let n = v.map_or(acc.len(), |v| v.len().min(acc.len()));
    let sv = _mm512_set1_ps(scale);
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n <= the lengths of acc and v.
        unsafe {
            let a = _mm512_loadu_ps(acc.as_ptr().add(i));
            let mut r = match v {
                Some(v) => _mm512_fmadd_ps(_mm512_loadu_ps(v.as_ptr().add(i)), sv, a),
                None => _mm512_mul_ps(a, sv),
            };
            if f16 {
                r = _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r));
            }
            _mm512_storeu_ps(acc.as_mut_ptr().add(i), r);
        }
        i += 16;
    }
    update(&mut acc[i..n], v.map(|v| &v[i..n]), scale, f16);
}

/// The AVX-512 kernels of `ops::online_attention`.
struct Avx512;

impl AttnKernels for Avx512 {
    #[inline(always)]
    fn dot(q: &[f32], k: &[f32]) -> f32 {
        // SAFETY: only reached through `attend_online_avx512` below, whose caller checked
        // AVX-512 F and VL (and AVX2, FMA, F16C, which they imply here).
        unsafe { dot512(q, k) }
    }

    #[inline(always)]
    fn update(acc: &mut [f32], v: Option<&[f32]>, scale: f32, f16: bool) {
        // SAFETY: as for `dot`.
        unsafe { update512(acc, v, scale, f16) }
    }
}

/// As `ops::attend_online`.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C and AVX-512 F and VL.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
pub(super) unsafe fn attend_online_avx512<'a>(
    q: &[f32],
    rows: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    m: &AttnMath,
    acc: &mut [f32],
    out: &mut [f32],
) {
    online_attention::<Avx512>(q, rows, m, acc, out)
}
