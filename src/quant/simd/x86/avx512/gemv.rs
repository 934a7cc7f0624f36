//! Decoding kernels (one token) on 512-bit vectors with sixteen weight rows in the lanes, for
//! the Q8_0-activation formats summed block by block (`q8_0_blockwise`: Q4_0 and IQ4_NL as
//! llama.cpp's repacked GEMV sums them, Q5_0 and Q8_0 in the batch-invariant order): per row,
//! each block's integer sum whole, then `acc = fma(sum, dw * dy, acc)`.
//!
//! The one-row kernels reduce each block's eight-lane integer sum to a scalar on its own
//! (five vector operations), then convert, scale and accumulate it alone: about a dozen
//! operations per (row, block). Here sixteen rows' block sums are reduced together by a
//! transposing tree (21 operations for 16 rows), and the conversion, the scale product and
//! the fused multiply-add cover all sixteen rows at once; the sixteen scales come in by two
//! gathers.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: the weights, decoded signed, are offset to
//! `w + 128` (0..255) and the activations stay signed, so each sum is
//! `sum(w * y) + 128 * sum(y)`; `sum(y)`, once per block for all sixteen rows, is subtracted.
//! Integers are exact, so every output is the one-row kernel's bit for bit.

use std::arch::x86_64::*;

use super::{decode_iq4_nl, decode_q4_0, decode_q8_0, h2f, h2f2, hsum_i32, load128, load256};
use crate::quant::dot::DotRows16;

/// Rows per call.
const R: usize = 16;

/// Row pairs in the order that `reduce` leaves the sums in: vector k holds row `PAIRS[k].0`
/// in its low half and `PAIRS[k].1` in its high half.
const PAIRS: [(usize, usize); 8] = [
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
    (8, 12),
    (9, 13),
    (10, 14),
    (11, 15),
];

/// Asks for the line of block `i` of the row `ahead` bytes on, into L2 only. A core has
/// few more L1 line-fill buffers than the sixteen rows read side by side need, so hints into
/// L1 stall on them (7 GB/s on one thread for a matrix streamed from memory); into L2 they
/// take the deeper L2 queue.
#[inline(always)]
fn prefetch_l2<const W: usize>(row: &[[u8; W]], i: usize, ahead: usize) {
    let p = row
        .as_ptr()
        .cast::<u8>()
        .wrapping_add(i * W)
        .wrapping_add(ahead);
    // SAFETY: a prefetch is only a hint: it never faults, whatever the address, and reads no
    // value.
    unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) };
}

/// Eight vectors of sixteen i32 lanes (two rows' eight lanes each, paired as `PAIRS`) to one
/// vector whose lane r is the sum of row r's eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn reduce(z: &[__m512i; 8]) -> __m512i {
    // Within each 128-bit chunk: [a0 + a2, b0 + b2, a1 + a3, b1 + b3] for the pair (a, b).
    let pair32 = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    };
    let u = [
        pair32(z[0], z[1]),
        pair32(z[2], z[3]),
        pair32(z[4], z[5]),
        pair32(z[6], z[7]),
    ];
    // Within each chunk: the chunk sums of four vectors.
    let pair64 = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    };
    let (v0, v1) = (pair64(u[0], u[1]), pair64(u[2], u[3]));
    // Chunks 0 + 1 are a low row's eight lanes, 2 + 3 a high row's.
    let even = _mm512_shuffle_i32x4::<0b10_00_10_00>(v0, v1);
    let odd = _mm512_shuffle_i32x4::<0b11_01_11_01>(v0, v1);
    _mm512_add_epi32(even, odd)
}

/// Each row's distance in bytes from row 0, rows 0..8 and 8..16, for the scale gathers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn row_offsets(w: &[&[u8]; R]) -> [__m512i; 2] {
    let base = w[0].as_ptr() as i64;
    let off = |r: usize| (w[r].as_ptr() as i64).wrapping_sub(base);
    let eight = |k: usize| {
        let o = [0, 1, 2, 3, 4, 5, 6, 7].map(|r| off(8 * k + r));
        _mm512_set_epi64(o[7], o[6], o[5], o[4], o[3], o[2], o[1], o[0])
    };
    [eight(0), eight(1)]
}

/// The first four bytes of block `i` of each of the sixteen rows (the f16 scales), lane r
/// row r.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn scales<const W: usize>(rows: &[&[[u8; W]]; R], i: usize, off: &[__m512i; 2]) -> __m512i {
    const { assert!(W >= 4) };
    // SAFETY: lane r reads the four bytes at `rows[0][i] + off(r)`, which is `rows[r][i]`
    // (`row_offsets`): inside that block of W >= 4 bytes. Callers pass i < every row's length.
    unsafe {
        let at = rows[0][i].as_ptr().cast();
        let lo = _mm512_i64gather_epi32::<1>(off[0], at);
        let hi = _mm512_i64gather_epi32::<1>(off[1], at);
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    }
}

/// Block `i` of rows `lo` and `hi` as `unsigned` makes them: the two rows' 32 weights plus
/// 128, as the two halves of one vector.
#[inline(always)]
fn pair<const W: usize>(
    rows: &[&[[u8; W]]; R],
    (lo, hi): (usize, usize),
    i: usize,
    ahead: usize,
    unsigned: &impl Fn(&[u8; W], &[u8; W]) -> __m512i,
) -> __m512i {
    prefetch_l2(rows[lo], i, ahead);
    prefetch_l2(rows[hi], i, ahead);
    // SAFETY: every row has the callers' `n` blocks and i < n.
    let (bl, bh) = unsafe { (rows[lo].get_unchecked(i), rows[hi].get_unchecked(i)) };
    unsigned(bl, bh)
}

/// Two blocks decoded by `decode` (signed weights) as one vector of weights plus 128.
#[inline(always)]
fn offset_pair<const W: usize>(
    bl: &[u8; W],
    bh: &[u8; W],
    decode: impl Fn(&[u8; W]) -> __m256i,
) -> __m512i {
    // SAFETY: AVX-512 F is enabled in every caller (this inlines into them).
    unsafe {
        let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(decode(bl)), decode(bh));
        _mm512_xor_si512(v, _mm512_set1_epi8(-128))
    }
}

/// Two Q5_0 blocks as weights plus 128, both at once in 512-bit lanes: each row's nibbles
/// spread by one 128-bit shuffle and one variable shift, masked and offset by one ternary
/// logic op, the fifth bits added as a byte mask (`vpaddb` under the 64 bits of both rows'
/// `qh`). A quarter of the operations of decoding the rows one by one, which made Q5_0 the
/// one format whose decode bound its speed from memory (5.7 GB/s a thread).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q5_0_pair(bl: &[u8; 22], bh: &[u8; 22]) -> __m512i {
    let qh = |b: &[u8; 22]| u64::from(u32::from_le_bytes([b[2], b[3], b[4], b[5]]));
    let bits = qh(bl) | (qh(bh) << 32);
    // [lo's quants, hi's quants, -, -] -> [lo, lo, hi, hi]: low then high nibbles of each.
    let q = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(load128(bl, 6)), load128(bh, 6));
    let q =
        _mm512_shuffle_i64x2::<0b01_01_00_00>(_mm512_castsi256_si512(q), _mm512_castsi256_si512(q));
    let shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    let q = _mm512_srlv_epi64(q, shifts);
    // (q & 0x0f) | 0x70: the nibble plus 112 (= -16 + 128).
    let u = _mm512_ternarylogic_epi32::<0xea>(q, _mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x70));
    _mm512_mask_add_epi8(u, bits, u, _mm512_set1_epi8(16))
}

/// Sixteen weight rows of blocks of `W` bytes (f16 d first; `decode` gives the 32 signed
/// weights) against one Q8_0 activation row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows16<const W: usize>(
    w: &[&[u8]; R],
    a: &[u8],
    unsigned: impl Fn(&[u8; W], &[u8; W]) -> __m512i,
) -> [f32; R] {
    let n = w.iter().fold(a.len() / 34, |m, r| m.min(r.len() / W));
    let rows = w.map(|r| &r.as_chunks::<W>().0[..n]);
    let acts = &a.as_chunks::<34>().0[..n];
    let ahead = 4 * R * w[0].len();
    let off = row_offsets(w);
    let ones = _mm256_set1_epi8(1);
    let mut acc = _mm512_setzero_ps();
    for (i, y) in acts.iter().enumerate() {
        let yv = load256(y, 2);
        let y2 = _mm512_broadcast_i64x4(yv);
        let y_sum = hsum_i32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, yv));
        let mut z = [_mm512_setzero_si512(); 8];
        for (z, &p) in z.iter_mut().zip(&PAIRS) {
            let q = pair(&rows, p, i, ahead, &unsigned);
            *z = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y2);
        }
        let sum = _mm512_sub_epi32(reduce(&z), _mm512_set1_epi32(128 * y_sum));
        let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(scales(&rows, i, &off)));
        let d = _mm512_mul_ps(dw, _mm512_set1_ps(h2f(y, 0)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, acc);
    }
    let mut out = [0f32; R];
    // SAFETY: `out` is 16 writable f32; storeu has no alignment requirement.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

/// Sixteen Q4_1 rows against one Q8_1 activation row, in `q4_1_blockwise`'s order. A vector
/// holds the sixteen quant bytes of four rows (rows k, 4 + k, 8 + k, 12 + k in its 128-bit
/// chunks); its low nibbles meet the activations' first sixteen bytes and its high nibbles
/// the last sixteen, both broadcast to every chunk, in one accumulator. The nibbles are
/// unsigned already, so the sums need no correction; each block's d and m come in by the
/// same gather.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows16_q4_1(w: &[&[u8]; R], a: &[u8]) -> [f32; R] {
    let n = w.iter().fold(a.len() / 36, |m, r| m.min(r.len() / 20));
    let rows = w.map(|r| &r.as_chunks::<20>().0[..n]);
    let acts = &a.as_chunks::<36>().0[..n];
    let ahead = 4 * R * w[0].len();
    let off = row_offsets(w);
    let low = _mm512_set1_epi8(0x0f);
    let (mut acc, mut acc_m) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for (i, y) in acts.iter().enumerate() {
        let y_lo = _mm512_broadcast_i32x4(load128(y, 4));
        let y_hi = _mm512_broadcast_i32x4(load128(y, 20));
        let mut z = [_mm512_setzero_si512(); 4];
        for (k, z) in z.iter_mut().enumerate() {
            // SAFETY: every row has `n` blocks and i < n (`acts` has n).
            let b = |c: usize| unsafe { rows[4 * c + k].get_unchecked(i) };
            if i % 2 == 0 {
                // Every other block: two blocks are 40 bytes, less than a line.
                for c in 0..4 {
                    prefetch_l2(rows[4 * c + k], i, ahead);
                }
            }
            let v =
                _mm512_inserti32x4::<1>(_mm512_castsi128_si512(load128(b(0), 4)), load128(b(1), 4));
            let v = _mm512_inserti32x4::<2>(v, load128(b(2), 4));
            let v = _mm512_inserti32x4::<3>(v, load128(b(3), 4));
            let lo = _mm512_and_si512(v, low);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
            *z = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, y_lo),
                hi,
                y_hi,
            );
        }
        let sum = reduce4(&z);
        let dm = scales(&rows, i, &off);
        let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        let mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(dm)));
        let (dy, sy) = h2f2(y, 0);
        let d = _mm512_mul_ps(dw, _mm512_set1_ps(dy));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, acc);
        acc_m = _mm512_fmadd_ps(mw, _mm512_set1_ps(sy), acc_m);
    }
    let mut out = [0f32; R];
    // SAFETY: `out` is 16 writable f32; storeu has no alignment requirement.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), _mm512_add_ps(acc, acc_m)) };
    out
}

/// Four vectors of four rows' four lanes each (vector k: rows k, 4 + k, 8 + k, 12 + k by
/// chunk) to one vector whose lane r is the sum of row r's four lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn reduce4(z: &[__m512i; 4]) -> __m512i {
    let pair32 = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    };
    let (u0, u1) = (pair32(z[0], z[1]), pair32(z[2], z[3]));
    // Chunk c: [z0, z1, z2, z3]'s chunk-c sums, rows 4c..4c + 4.
    _mm512_add_epi32(_mm512_unpacklo_epi64(u0, u1), _mm512_unpackhi_epi64(u0, u1))
}

/// A safe `DotRows16` for one format.
macro_rules! gemv_entry {
    ($name:ident, $w:literal, $decode:ident) => {
        pub(super) const $name: Option<DotRows16> = {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn kernel(w: &[&[u8]; R], a: &[u8]) -> [f32; R] {
                rows16::<$w>(w, a, |bl, bh| offset_pair(bl, bh, |x| $decode(x).0))
            }
            // SAFETY: handed out only through `quant::dot`'s kernel tables at the AVX-512
            // level, which they give only where `cpu::detected()` reports every feature
            // enabled here.
            fn entry(w: &[&[u8]; R], a: &[u8]) -> [f32; R] {
                unsafe { kernel(w, a) }
            }
            Some(entry)
        };
    };
}

gemv_entry!(GEMV_Q4_0_BW, 18, decode_q4_0);
/// Q5_0's, with both rows of a pair decoded at once (`q5_0_pair`).
pub(super) const GEMV_Q5_0_BW: Option<DotRows16> = {
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn kernel(w: &[&[u8]; R], a: &[u8]) -> [f32; R] {
        rows16::<22>(w, a, |bl, bh| q5_0_pair(bl, bh))
    }
    // SAFETY: as in `gemv_entry!`.
    fn entry(w: &[&[u8]; R], a: &[u8]) -> [f32; R] {
        unsafe { kernel(w, a) }
    }
    Some(entry)
};
gemv_entry!(GEMV_Q8_0_BW, 34, decode_q8_0);
gemv_entry!(GEMV_IQ4_NL_BW, 18, decode_iq4_nl);

/// Q4_1's (`q4_1_blockwise`'s order), as a `DotRows16`.
pub(super) const GEMV_Q4_1_BW: Option<DotRows16> = {
    // SAFETY: as in `gemv_entry!`.
    fn entry(w: &[&[u8]; R], a: &[u8]) -> [f32; R] {
        unsafe { rows16_q4_1(w, a) }
    }
    Some(entry)
};
