//! The x86 kernels of `ops::online_attention`: Q·K in ggml's order with 16 lanes as two AVX2
//! registers or one AVX-512 register, and the weighted sum of values updated eight (AVX2) or
//! sixteen (AVX-512) at a time, rounded to f16 through `vcvtps2ph`/`vcvtph2ps` when the
//! accumulator is f16. Bit for bit the portable kernels' results (tested in `ops`): every lane
//! sees the same operations whatever the vector width.
//!
//! The AVX2 kernels run only when `quant::cpu::level()` is at least AVX2, which implies all
//! three features; the AVX-512 ones when it is AVX-512 (which implies F and VL).

use std::arch::x86_64::*;

use super::ops::{AttnKernels, AttnMath, KEYS_PER_STEP, Step, exps_libm, online_attention};
use super::two_pass::{BlockScratch, KvRows, MAX_BLOCK, Query, attend_block, mix_portable};

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
    let mut x = [_mm256_setzero_ps(); 2];
    for (h, xh) in x.iter_mut().enumerate() {
        let x0 = _mm256_add_ps(acc[0][h], acc[2][h]);
        let x1 = _mm256_add_ps(acc[1][h], acc[3][h]);
        *xh = _mm256_add_ps(x0, x1);
    }
    dot_end(_mm256_add_ps(x[1], x[0]), a, b, np, n)
}

/// The end of ggml's order from `t3`, the 16 lanes' two halves added: 8 -> 4 lanes,
/// (l0+l2)+(l1+l3), then the elements `np..n` (past the last step of 64) added in f64. No
/// step of 64 (`np` 0): the sum starts from zero.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_end(t3: __m256, a: &[f32], b: &[f32], np: usize, n: usize) -> f32 {
    let mut sum = 0f64;
    if np > 0 {
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

    #[inline(always)]
    fn mix(acc: &mut [f32], ws: &[&[f32]], vs: &[f32], stride: usize) {
        // The portable loop, vectorized by the compiler for AVX2 and FMA (each element's
        // fused multiply-adds are the same whatever the width).
        mix_portable(acc, ws, vs, stride)
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

/// As `two_pass::attend`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_block_avx2(
    qs: &[Query<'_>],
    kv: &KvRows<'_>,
    m: &AttnMath,
    out: &mut [&mut [f32]],
    s: &mut BlockScratch,
) {
    attend_block::<Avx2>(qs, kv, m, out, s)
}

/// `dot` on 512-bit registers: the 16 lanes of ggml's AVX-512 order, one register each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn dot512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let x = key_sum(a, b);
    let lo = _mm512_castps512_ps256(x);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
    dot_end(_mm256_add_ps(hi, lo), a, b, n & !63, n)
}

/// The four accumulators of ggml's AVX-512 order over the steps of 64 of `q` and `k` (each
/// lane a chain of fused multiply-adds), added (x0 + x2) + (x1 + x3).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn key_sum(q: &[f32], k: &[f32]) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in (0..q.len().min(k.len()) & !63).step_by(64) {
        for (j, l) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16 * j + 16 <= the lengths of q and k.
            let (a, b) = unsafe {
                (
                    _mm512_loadu_ps(q.as_ptr().add(i + 16 * j)),
                    _mm512_loadu_ps(k.as_ptr().add(i + 16 * j)),
                )
            };
            *l = _mm512_fmadd_ps(a, b, *l);
        }
    }
    _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]))
}

/// `key_sum` of every key for a head of `16 * Z` values, the query held in registers (one
/// load per multiply-add instead of two).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn key_sums<const Z: usize>(q: &[f32], ks: &[&[f32]; KEYS_PER_STEP]) -> [__m512; KEYS_PER_STEP] {
    let q = &q[..16 * Z];
    let mut qv = [_mm512_setzero_ps(); Z];
    for (z, v) in qv.iter_mut().enumerate() {
        // SAFETY: 16 * z + 16 <= q.len().
        *v = unsafe { _mm512_loadu_ps(q.as_ptr().add(16 * z)) };
    }
    let mut x = [_mm512_setzero_ps(); KEYS_PER_STEP];
    for (x, k) in x.iter_mut().zip(ks) {
        let k = &k[..16 * Z];
        let mut acc = [_mm512_setzero_ps(); 4];
        for (z, &qz) in qv.iter().enumerate() {
            // SAFETY: 16 * z + 16 <= k.len().
            let kz = unsafe { _mm512_loadu_ps(k.as_ptr().add(16 * z)) };
            acc[z % 4] = _mm512_fmadd_ps(qz, kz, acc[z % 4]);
        }
        *x = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
    }
    x
}

/// `dot512` of sixteen keys at once, where the head is a multiple of 64 long (no f64 tail):
/// each key's four accumulators as in `dot512`, then the reductions of all sixteen side by
/// side, every key's lanes added in `dot512`'s pairs (16 -> 8 -> 4 lanes, then
/// (l0+l2)+(l1+l3)). Anything else goes key by key.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn dots512(q: &[f32], ks: &[&[f32]; KEYS_PER_STEP], n: usize) -> [f32; KEYS_PER_STEP] {
    let hd = q.len();
    let mut out = [0f32; KEYS_PER_STEP];
    if n < KEYS_PER_STEP || hd == 0 || !hd.is_multiple_of(64) || ks.iter().any(|k| k.len() != hd) {
        for (o, k) in out.iter_mut().zip(&ks[..n]) {
            *o = dot512(q, k);
        }
        return out;
    }
    let x = match hd {
        64 => key_sums::<4>(q, ks),
        128 => key_sums::<8>(q, ks),
        256 => key_sums::<16>(q, ks),
        _ => ks.map(|k| key_sum(q, k)),
    };
    // y[i]: keys 2i and 2i + 1, eight lanes each (hi + lo of the 16).
    let mut y = [_mm512_setzero_ps(); 8];
    for (i, y) in y.iter_mut().enumerate() {
        let (a, b) = (_mm512_castps_pd(x[2 * i]), _mm512_castps_pd(x[2 * i + 1]));
        let lo = _mm512_shuffle_f64x2::<0b01_00_01_00>(a, b);
        let hi = _mm512_shuffle_f64x2::<0b11_10_11_10>(a, b);
        *y = _mm512_add_ps(_mm512_castpd_ps(hi), _mm512_castpd_ps(lo));
    }
    // z[m], quarter i: key 4m + i, four lanes (hi + lo of the eight).
    let mut z = [_mm512_setzero_ps(); 4];
    for (m, z) in z.iter_mut().enumerate() {
        let (a, b) = (y[2 * m], y[2 * m + 1]);
        let lo = _mm512_shuffle_f32x4::<0x88>(a, b);
        let hi = _mm512_shuffle_f32x4::<0xdd>(a, b);
        *z = _mm512_add_ps(hi, lo);
    }
    // Per quarter: (l0 + l2, l1 + l3) of two keys, then their sums.
    let pair = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(a, b),
            _mm512_shuffle_ps::<0xee>(a, b),
        )
    };
    let (r01, r23) = (pair(z[0], z[1]), pair(z[2], z[3]));
    let w = _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(r01, r23),
        _mm512_shuffle_ps::<0xdd>(r01, r23),
    );
    let mut wv = [0f32; KEYS_PER_STEP];
    // SAFETY: `wv` is 16 writable f32; storeu has no alignment requirement.
    unsafe { _mm512_storeu_ps(wv.as_mut_ptr(), w) };
    // Quarter i, element e: key 4e + i.
    for (at, &v) in wv.iter().enumerate() {
        out[4 * (at % 4) + at / 4] = v;
    }
    out
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

/// `Z` vectors of the accumulator from `at`, held in registers through a whole step of keys
/// (loaded and stored once, not once per key: the per-key store and reload made each key wait
/// on store forwarding, and the chains of a few vectors could not hide the conversions).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn step_chunk512<const Z: usize>(acc: &mut [f32], at: usize, s: &Step<'_>, f16: bool) {
    let round = |r: __m512| {
        if f16 {
            _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r))
        } else {
            r
        }
    };
    let a = &mut acc[at..at + 16 * Z];
    let mut r = [_mm512_setzero_ps(); Z];
    for (z, r) in r.iter_mut().enumerate() {
        // SAFETY: 16 * z + 16 <= a.len().
        *r = unsafe { _mm512_loadu_ps(a.as_ptr().add(16 * z)) };
    }
    for j in 0..s.n {
        if s.new_max[j] {
            let e = _mm512_set1_ps(s.e[j]);
            for r in r.iter_mut() {
                *r = round(_mm512_mul_ps(*r, e));
            }
        }
        let v = &s.vs[j][at..at + 16 * Z];
        let w = _mm512_set1_ps(s.weight(j));
        for (z, r) in r.iter_mut().enumerate() {
            // SAFETY: 16 * z + 16 <= v.len().
            let x = unsafe { _mm512_loadu_ps(v.as_ptr().add(16 * z)) };
            *r = round(_mm512_fmadd_ps(x, w, *r));
        }
    }
    for (z, r) in r.iter().enumerate() {
        // SAFETY: as for the loads.
        unsafe { _mm512_storeu_ps(a.as_mut_ptr().add(16 * z), *r) };
    }
}

/// `AttnKernels::step` with the accumulator in registers, 128, 64 or 16 values at a time; the
/// last values (under 16) by the per-key `update512`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn step512(acc: &mut [f32], s: &Step<'_>, f16: bool) {
    let n = s.vs[..s.n].iter().fold(acc.len(), |n, v| n.min(v.len()));
    let mut at = 0;
    while at + 128 <= n {
        step_chunk512::<8>(acc, at, s, f16);
        at += 128;
    }
    if at + 64 <= n {
        step_chunk512::<4>(acc, at, s, f16);
        at += 64;
    }
    while at + 16 <= n {
        step_chunk512::<1>(acc, at, s, f16);
        at += 16;
    }
    if at < n {
        for j in 0..s.n {
            if s.new_max[j] {
                update512(&mut acc[at..n], None, s.e[j], f16);
            }
            update512(&mut acc[at..n], Some(&s.vs[j][at..n]), s.weight(j), f16);
        }
    }
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

    #[inline(always)]
    fn exps(x: &[f32; KEYS_PER_STEP]) -> [f32; KEYS_PER_STEP] {
        // SAFETY: as for `dot`.
        unsafe { exps512(x) }
    }

    #[inline(always)]
    fn dots(q: &[f32], ks: &[&[f32]; KEYS_PER_STEP], n: usize) -> [f32; KEYS_PER_STEP] {
        // SAFETY: as for `dot`.
        unsafe { dots512(q, ks, n) }
    }

    #[inline(always)]
    fn step(acc: &mut [f32], s: &Step<'_>, f16: bool) {
        // SAFETY: as for `dot`.
        unsafe { step512(acc, s, f16) }
    }

    #[inline(always)]
    fn mix(acc: &mut [f32], ws: &[&[f32]], vs: &[f32], stride: usize) {
        // SAFETY: as for `dot`.
        unsafe { mix512(acc, ws, vs, stride) }
    }
}

/// `two_pass::mix_portable` for up to `MAX_BLOCK` queries: 32 elements of every query's
/// accumulator in registers at a time (16 at the end, then a masked remainder) while the
/// keys go by, each value vector loaded once for all the queries.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn mix512(acc: &mut [f32], ws: &[&[f32]], vs: &[f32], stride: usize) {
    match ws.len() {
        1 => mix_n::<1>(acc, ws, vs, stride),
        2 => mix_n::<2>(acc, ws, vs, stride),
        3 => mix_n::<3>(acc, ws, vs, stride),
        4 => mix_n::<4>(acc, ws, vs, stride),
        5 => mix_n::<5>(acc, ws, vs, stride),
        6 => mix_n::<6>(acc, ws, vs, stride),
        7 => mix_n::<7>(acc, ws, vs, stride),
        8 => mix_n::<8>(acc, ws, vs, stride),
        _ => mix_portable(acc, ws, vs, stride),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn mix_n<const N: usize>(acc: &mut [f32], ws: &[&[f32]], vs: &[f32], stride: usize) {
    const { assert!(N <= MAX_BLOCK) };
    let width = acc.len() / N;
    let n = ws.iter().map(|w| w.len()).min().unwrap_or(0);
    if n == 0 || width == 0 {
        return;
    }
    // Every load below reads v_j[at..at + 16] with j < n and at + 16 <= width (or masked to
    // width), and weights w[i][j] with j < n: these bounds make them in range.
    assert!(acc.len() == N * width && vs.len() >= (n - 1) * stride + width);
    let w: [*const f32; N] = std::array::from_fn(|i| ws[i].as_ptr());
    let mut at = 0;
    while at < width {
        let left = width - at;
        let z2 = left >= 32;
        let mask: __mmask16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
        let a = acc.as_mut_ptr();
        // SAFETY: (i, at) rows of `acc` with at + 16 <= width, or masked to width.
        let mut r: [[__m512; 2]; N] = std::array::from_fn(|i| unsafe {
            let p = a.add(i * width + at);
            if z2 {
                [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))]
            } else {
                [_mm512_maskz_loadu_ps(mask, p), _mm512_setzero_ps()]
            }
        });
        let v = vs.as_ptr();
        if z2 {
            for j in 0..n {
                // SAFETY: see the assertion above.
                unsafe {
                    let p = v.add(j * stride + at);
                    let (v0, v1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                    for (i, r) in r.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*w[i].add(j));
                        r[0] = _mm512_fmadd_ps(x, v0, r[0]);
                        r[1] = _mm512_fmadd_ps(x, v1, r[1]);
                    }
                }
            }
        } else {
            for j in 0..n {
                // SAFETY: see the assertion above.
                unsafe {
                    let v0 = _mm512_maskz_loadu_ps(mask, v.add(j * stride + at));
                    for (i, r) in r.iter_mut().enumerate() {
                        r[0] = _mm512_fmadd_ps(_mm512_set1_ps(*w[i].add(j)), v0, r[0]);
                    }
                }
            }
        }
        for (i, r) in r.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe {
                let p = a.add(i * width + at);
                if z2 {
                    _mm512_storeu_ps(p, r[0]);
                    _mm512_storeu_ps(p.add(16), r[1]);
                } else {
                    _mm512_mask_storeu_ps(p, mask, r[0]);
                }
            }
        }
        at += if z2 { 32 } else { 16 };
    }
}

/// As `two_pass::attend`.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C and AVX-512 F and VL.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
pub(super) unsafe fn attend_block_avx512(
    qs: &[Query<'_>],
    kv: &KvRows<'_>,
    m: &AttnMath,
    out: &mut [&mut [f32]],
    s: &mut BlockScratch,
) {
    attend_block::<Avx512>(qs, kv, m, out, s)
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

/// glibc's `expf` table (`__exp2f_data.tab`, N = 32): entry i is the bits of 2^(i/32) (the
/// double nearest it) less i << 47, so that adding k << 47 for k = 32e + i gives 2^(k/32).
/// Computed from the definition (60-digit decimal arithmetic), not copied.
const EXP2F_TAB: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

/// The lowest argument of `expf`'s main path (log(2^-150)); below it the result is 0.
const EXPF_MIN: f32 = -103.972_08;

/// `expf` of eight values in f64 lanes, in the operations of glibc's `__expf` (the
/// Arm optimized-routines algorithm) as GCC builds its FMA variant (`__expf_fma`, what
/// glibc's dispatch picks on every CPU with FMA): k = round(x * 32 / ln 2) by the 1.5 * 2^52
/// shift with the product fused into the add, r = x * 32 / ln 2 - k fused too, then
/// 2^(k/32) * (C0 r^3 + C1 r^2 + C2 r + 1) with the three fused multiply-adds of
/// `z = C0 r + C1; y = C2 r + 1; y = z r^2 + y`. Only for arguments in [EXPF_MIN, 0], where
/// that path is all glibc runs (checked against the C library over every float there).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn expf_main_path(x: __m256) -> __m256 {
    let n = 32.0;
    let inv_ln2_n = _mm512_set1_pd(f64::from_bits(0x3ff7_1547_652b_82fe) * n);
    let shift = _mm512_set1_pd(f64::from_bits(0x4338_0000_0000_0000));
    let c0 = _mm512_set1_pd(f64::from_bits(0x3fac_6af8_4b91_2394) / n / n / n);
    let c1 = _mm512_set1_pd(f64::from_bits(0x3fce_bfce_50fa_c4f3) / n / n);
    let c2 = _mm512_set1_pd(f64::from_bits(0x3fe6_2e42_ff0c_52d6) / n);
    let xd = _mm512_cvtps_pd(x);
    let kd = _mm512_fmadd_pd(inv_ln2_n, xd, shift);
    let ki = _mm512_castpd_si512(kd);
    let kd = _mm512_sub_pd(kd, shift);
    let r = _mm512_fmsub_pd(inv_ln2_n, xd, kd);
    // SAFETY: the table is 32 u64, read as four vectors of eight.
    let tab = |i: usize| unsafe { _mm512_loadu_si512(EXP2F_TAB[8 * i..].as_ptr().cast()) };
    let idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
    let low = _mm512_permutex2var_epi64(tab(0), idx, tab(1));
    let high = _mm512_permutex2var_epi64(tab(2), idx, tab(3));
    let t = _mm512_mask_blend_epi64(
        _mm512_test_epi64_mask(idx, _mm512_set1_epi64(16)),
        low,
        high,
    );
    let s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64::<47>(ki)));
    let z = _mm512_fmadd_pd(c0, r, c1);
    let r2 = _mm512_mul_pd(r, r);
    let y = _mm512_fmadd_pd(c2, r, _mm512_set1_pd(1.0));
    let y = _mm512_fmadd_pd(z, r2, y);
    _mm512_cvtpd_ps(_mm512_mul_pd(y, s))
}

/// `expf` of sixteen values, bit for bit the C library's: the main path in vectors, any value
/// outside it (-inf, NaN, below `EXPF_MIN`, above 0: rare in attention, whose arguments are
/// differences to a running maximum) through `exps_libm`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
fn exps512(x: &[f32; KEYS_PER_STEP]) -> [f32; KEYS_PER_STEP] {
    // SAFETY: `x` is 16 readable f32; loadu has no alignment requirement.
    let v = unsafe { _mm512_loadu_ps(x.as_ptr()) };
    let inside = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, _mm512_set1_ps(EXPF_MIN))
        & _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, _mm512_setzero_ps());
    if inside != 0xffff {
        return exps_libm(x);
    }
    let lo = expf_main_path(_mm512_castps512_ps256(v));
    let hi = expf_main_path(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
        _mm512_castps_pd(v),
    )));
    let mut out = [0f32; KEYS_PER_STEP];
    // SAFETY: `out` is 16 writable f32; storeu has no alignment requirement.
    unsafe {
        _mm256_storeu_ps(out.as_mut_ptr(), lo);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector `expf` equals the C library's over [EXPF_MIN, 0] (every 61st float of it
    /// here; every float when run with `RF_EXPF_EXHAUSTIVE=1`, about a billion: done when
    /// this was written, on glibc 2.36) and on the values outside it.
    #[test]
    fn vector_expf_equals_the_c_library() {
        if crate::quant::cpu::detected() < crate::quant::SimdLevel::Avx512 {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let step = if std::env::var_os("RF_EXPF_EXHAUSTIVE").is_some() {
            1
        } else {
            61
        };
        let (first, last) = ((-0.0f32).to_bits(), EXPF_MIN.to_bits());
        let mut bits = first;
        let mut checked = 0u64;
        while bits <= last {
            let x: [f32; KEYS_PER_STEP] =
                std::array::from_fn(|j| f32::from_bits((bits + j as u32 * step).min(last)));
            // SAFETY: the CPU has AVX-512 (checked above), which implies the rest here.
            let got = unsafe { exps512(&x) };
            for (g, x) in got.iter().zip(&x) {
                assert_eq!(g.to_bits(), x.exp().to_bits(), "expf({x:e})");
            }
            checked += KEYS_PER_STEP as u64;
            bits += KEYS_PER_STEP as u32 * step;
        }
        assert!(checked > 1 << 24, "{checked}");
        let mut odd = [0f32; KEYS_PER_STEP];
        odd[..6].copy_from_slice(&[f32::NEG_INFINITY, f32::NAN, -104.0, -1e30, 0.5, 88.0]);
        // SAFETY: as above.
        let got = unsafe { exps512(&odd) };
        for (g, x) in got.iter().zip(&odd) {
            assert_eq!(g.to_bits(), x.exp().to_bits(), "expf({x:e})");
        }
    }
}
