//! 4 x 4 tiles on 512-bit vectors for prompts: four weight rows against four activation rows
//! per call, two (row, token) pairs per vector, tokens 2p and 2p + 1 in its halves.
//!
//! Each half is the eight-lane f32 accumulator of the one-row kernel (`q8_0_family`,
//! `q8_1_family`) for its pair, fed the same integer lanes, the same scale products and the same
//! fused multiply-adds block after block, then summed by the same `hsum`: every output equals
//! the one-row kernel's bit for bit. What changes is the work per pair: one `vpdpbusd`, one
//! conversion, one scale multiply and one FMA cover two pairs, a weight block is decoded once for
//! four tokens and an activation block loaded once for four rows.
//!
//! The Q8_0-activation formats need signed weights times signed activations, which `vpdpbusd`
//! (unsigned x signed) cannot take directly; the one-row kernel multiplies |q| by sign(y, q). Here
//! the weights are decoded unsigned, `u = q + c` (c = 8, 16 or 128), and each pair's dot starts
//! from `-c * y` summed in the same four-byte lanes, computed once per activation block:
//! `sum(u * y) - c * sum(y) = sum(q * y)` exactly in i32, so the lanes are the one-row kernel's.

use std::arch::x86_64::*;

use super::{
    bit_bytes, h2f, h2f2, hsum, load128, load256, nibbles, prefetch_ahead, qh_u32, tile_of,
};
use crate::quant::dot::DotTile4;

/// Four rows by four tokens.
const R: usize = 4;
/// Token pairs (two tokens per 512-bit vector).
const P: usize = 2;

/// A 256-bit vector in both halves of a 512-bit one.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn both(v: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v), v)
}

/// `lo` in the low half, `hi` in the high half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_ps(lo: f32, hi: f32) -> __m512 {
    let lo = _mm512_castps256_ps512(_mm256_set1_ps(lo));
    let hi = _mm256_castps_pd(_mm256_set1_ps(hi));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), hi))
}

/// The two eight-lane halves of `v`, each summed as the one-row kernels sum theirs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum_halves(v: __m512) -> (f32, f32) {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    (hsum(lo), hsum(hi))
}

/// Activation blocks `i` of tokens 2p and 2p + 1: their quants (bytes `at..at + 32`) side by
/// side, and the f16 scales at byte 0 as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn token_pair<const A: usize>(y0: &[u8; A], y1: &[u8; A], at: usize) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load256(y0, at)), load256(y1, at))
}

/// Weights with Q8_0 activations (Q4_0, Q5_0, Q8_0): `decode` gives a block's quants plus
/// `c` (unsigned) and its scale; see the module doc.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_wide<const W: usize>(
    w: &[&[u8]; R],
    a: &[&[u8]; 2 * P],
    c: u8,
    decode: impl Fn(&[u8; W]) -> (__m256i, f32),
) -> [[f32; 2 * P]; R] {
    let (wb, ab) = tile_of::<W, 34, R, { 2 * P }>(w, a);
    let ahead = 4 * R * w[0].len();
    let cv = _mm512_set1_epi8(c as i8);
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for i in 0..wb[0].len() {
        // Plain loops, not `array::from_fn` (see `q8_0_family`).
        let mut y = [zero; P];
        let mut minus = [zero; P];
        let mut dy = [_mm512_setzero_ps(); P];
        for p in 0..P {
            let (y0, y1) = (&ab[2 * p][i], &ab[2 * p + 1][i]);
            y[p] = token_pair(y0, y1, 2);
            minus[p] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, cv, y[p]));
            dy[p] = pair_ps(h2f(y0, 0), h2f(y1, 0));
        }
        for r in 0..R {
            prefetch_ahead(wb[r], i, ahead);
            let (u, dx) = decode(&wb[r][i]);
            let (u, dx) = (both(u), _mm512_set1_ps(dx));
            for p in 0..P {
                let lanes = _mm512_dpbusd_epi32(minus[p], u, y[p]);
                let d = _mm512_mul_ps(dx, dy[p]);
                acc[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[r][p]);
            }
        }
    }
    let mut out = [[0f32; 2 * P]; R];
    for r in 0..R {
        for p in 0..P {
            (out[r][2 * p], out[r][2 * p + 1]) = hsum_halves(acc[r][p]);
        }
    }
    out
}

/// Weights with Q8_1 activations (Q4_1, Q5_1): unsigned quants from `decode`, the block
/// offsets m * s summed per pair as the one-row kernel sums them (a multiply, then an add),
/// sixteen pairs per vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_1_wide<const W: usize>(
    w: &[&[u8]; R],
    a: &[&[u8]; 2 * P],
    decode: impl Fn(&[u8; W]) -> __m256i,
) -> [[f32; 2 * P]; R] {
    let (wb, ab) = tile_of::<W, 36, R, { 2 * P }>(w, a);
    let ahead = 4 * R * w[0].len();
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    // Lane 4r + n: the offset sum of row r and token n.
    let mut offset = _mm512_setzero_ps();
    let rows_of_lanes = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for i in 0..wb[0].len() {
        let mut y = [zero; P];
        let mut dy = [_mm512_setzero_ps(); P];
        let mut s = [0f32; 2 * P];
        for p in 0..P {
            let (y0, y1) = (&ab[2 * p][i], &ab[2 * p + 1][i]);
            y[p] = token_pair(y0, y1, 4);
            let ((d0, s0), (d1, s1)) = (h2f2(y0, 0), h2f2(y1, 0));
            dy[p] = pair_ps(d0, d1);
            (s[2 * p], s[2 * p + 1]) = (s0, s1);
        }
        let mut m = [0f32; R];
        for r in 0..R {
            prefetch_ahead(wb[r], i, ahead);
            let u = both(decode(&wb[r][i]));
            let (dx, mx) = h2f2(&wb[r][i], 0);
            m[r] = mx;
            let dx = _mm512_set1_ps(dx);
            for p in 0..P {
                let lanes = _mm512_dpbusd_epi32(zero, u, y[p]);
                let d = _mm512_mul_ps(dx, dy[p]);
                acc[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[r][p]);
            }
        }
        let mv = _mm512_permutexvar_ps(
            rows_of_lanes,
            _mm512_castps128_ps512(_mm_setr_ps(m[0], m[1], m[2], m[3])),
        );
        let sv = _mm512_broadcast_f32x4(_mm_setr_ps(s[0], s[1], s[2], s[3]));
        offset = _mm512_add_ps(offset, _mm512_mul_ps(mv, sv));
    }
    let mut offsets = [0f32; 16];
    // SAFETY: `offsets` is 16 writable f32; storeu has no alignment requirement.
    unsafe { _mm512_storeu_ps(offsets.as_mut_ptr(), offset) };
    let mut out = [[0f32; 2 * P]; R];
    for r in 0..R {
        for p in 0..P {
            let (lo, hi) = hsum_halves(acc[r][p]);
            // As `finish`: the sum minus the negated offset.
            out[r][2 * p] = lo - -offsets[4 * r + 2 * p];
            out[r][2 * p + 1] = hi - -offsets[4 * r + 2 * p + 1];
        }
    }
    out
}

/// Q5_0's 32 unsigned quants (q + 16): the nibbles with the fifth bit from `qh`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q5_unsigned(qh: u32, nib: __m128i) -> __m256i {
    let high = _mm256_and_si256(bit_bytes(qh), _mm256_set1_epi8(16));
    _mm256_or_si256(nibbles(nib), high)
}

/// A tile kernel (`$kernel`, compiled with the features, its decode closure inside it) and its
/// safe entry point.
macro_rules! wide_entry {
    ($name:ident, $kernel:ident, $body:expr) => {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn $kernel(w: &[&[u8]; R], a: &[&[u8]; 2 * P]) -> [[f32; 2 * P]; R] {
            $body(w, a)
        }

        fn $name(w: &[&[u8]; R], a: &[&[u8]; 2 * P]) -> [[f32; 2 * P]; R] {
            // SAFETY: these tiles are handed out only through `quant::dot::kernel` at the
            // AVX-512 level, which it gives only where `cpu::detected()` reports every feature
            // enabled here.
            unsafe { $kernel(w, a) }
        }
    };
}

wide_entry!(q4_0, q4_0_wide, |w, a| q8_0_wide::<18>(w, a, 8, |x| {
    (nibbles(load128(x, 2)), h2f(x, 0))
}));
wide_entry!(q5_0, q5_0_wide, |w, a| q8_0_wide::<22>(w, a, 16, |x| {
    (q5_unsigned(qh_u32(x, 2), load128(x, 6)), h2f(x, 0))
}));
wide_entry!(q8_0, q8_0_wide8, |w, a| q8_0_wide::<34>(w, a, 128, |x| {
    (
        _mm256_xor_si256(load256(x, 2), _mm256_set1_epi8(-128)),
        h2f(x, 0),
    )
}));
wide_entry!(q4_1, q4_1_wide, |w, a| q8_1_wide::<20>(w, a, |x| nibbles(
    load128(x, 4)
)));
wide_entry!(q5_1, q5_1_wide, |w, a| q8_1_wide::<24>(w, a, |x| {
    q5_unsigned(qh_u32(x, 4), load128(x, 8))
}));

pub(super) const WIDE_Q4_0: Option<DotTile4> = Some(q4_0);
pub(super) const WIDE_Q4_1: Option<DotTile4> = Some(q4_1);
pub(super) const WIDE_Q5_0: Option<DotTile4> = Some(q5_0);
pub(super) const WIDE_Q5_1: Option<DotTile4> = Some(q5_1);
pub(super) const WIDE_Q8_0: Option<DotTile4> = Some(q8_0);
