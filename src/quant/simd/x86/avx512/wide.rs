//! Prompt kernels on 512-bit vectors (`quant::dot::Wide`): four weight rows against eight
//! activation rows per call, two (row, token) pairs per vector, tokens 2p and 2p + 1 in its
//! halves, the activations packed once per matrix product into panels.
//!
//! Each half is the eight-lane f32 accumulator of the one-row kernel (`q8_0_family`,
//! `q8_1_family`) for its pair, fed the same integer lanes, the same scale products and the same
//! fused multiply-adds block after block, then summed by the same `hsum`: every output equals
//! the one-row kernel's bit for bit. What changes is the work per pair: one `vpdpbusd`, one
//! conversion, one scale multiply and one FMA cover two pairs, and the decoding is done once:
//! weight rows once for all the panels of a tile (`decode_rows`), activations once per product
//! (`pack_q8_0`, `pack_q8_1`).
//!
//! The Q8_0-activation formats need signed weights times signed activations, which `vpdpbusd`
//! (unsigned x signed) cannot take directly; the one-row kernel multiplies |q| by sign(y, q). Here
//! the weights are decoded unsigned, `u = q + c` (c = 8, 16 or 128), and each pair's dot starts
//! from `-c * y` summed in the same four-byte lanes, computed once per block when packing:
//! `sum(u * y) - c * sum(y) = sum(q * y)` exactly in i32, so the lanes are the one-row kernel's.
//!
//! A panel block (`PANEL_BLOCK_BYTES`): bytes 0..256 the quants of token pairs 0..4 (64 bytes
//! each, the pair's two tokens side by side); 256..512 their scales as 16 f32 per pair (eight
//! copies of each token's); 512..768 per pair 16 i32 `-c * y` lane sums (Q8_0 activations) or
//! the eight tokens' f32 block sums `s` (Q8_1 activations).

use std::arch::x86_64::*;

use super::{bit_bytes, h2f, h2f2, hsum, load128, load256, nibbles, prefetch_ahead, qh_u32};
use crate::quant::dot::{MAX_PANEL_TOKENS, Wide};

/// Bytes of four decoded weight rows (`decode_rows`) per block of 32 values.
const ROWS_BLOCK_BYTES: usize = 160;

/// Bytes of a packed panel per block of 32 values.
const PANEL_BLOCK_BYTES: usize = 768;

/// Four weight rows by eight tokens.
const R: usize = 4;
/// Token pairs (two tokens per 512-bit vector).
const P: usize = 4;
const N: usize = 2 * P;
type Panel = [u8; PANEL_BLOCK_BYTES];

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

/// The 64 bytes at `at` of a panel block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load512(b: &Panel, at: usize) -> __m512i {
    let s: &[u8; 64] = b[at..at + 64].try_into().expect("64 bytes");
    // SAFETY: `s` is exactly 64 readable bytes; loadu has no alignment requirement.
    unsafe { _mm512_loadu_si512(s.as_ptr().cast()) }
}

/// The 16 f32 at `at` of a panel block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load512_ps(b: &Panel, at: usize) -> __m512 {
    _mm512_castsi512_ps(load512(b, at))
}

/// Writes a panel of eight activation rows with blocks of `A` bytes (scale at byte 0, quants
/// at `q..q + 32`); `extra` fills bytes 512..768 of each block from the eight blocks.
fn pack_with<const A: usize>(
    a: &[&[u8]; N],
    panel: &mut [u8],
    q: usize,
    extra: impl Fn(&[&[u8; A]; N], &mut [u8]),
) {
    let n = a.iter().map(|r| r.len() / A).min().unwrap_or(0);
    let rows = a.map(|r| &r.as_chunks::<A>().0[..n]);
    for (i, out) in panel
        .chunks_exact_mut(PANEL_BLOCK_BYTES)
        .take(n)
        .enumerate()
    {
        let blocks: [&[u8; A]; N] = std::array::from_fn(|t| &rows[t][i]);
        for (t, b) in blocks.iter().enumerate() {
            let d = crate::quant::f16_at(&b[..], 0).to_le_bytes();
            out[32 * t..32 * t + 32].copy_from_slice(&b[q..q + 32]);
            let (p, half) = (t / 2, t % 2);
            for k in 0..8 {
                let at = 256 + 64 * p + 32 * half + 4 * k;
                out[at..at + 4].copy_from_slice(&d);
            }
        }
        extra(&blocks, &mut out[512..]);
    }
}

/// A Q8_0 activation panel for weights decoded as `q + c`: per pair, `-c` times each
/// four-byte lane sum of the quants.
fn pack_q8_0(a: &[&[u8]; N], panel: &mut [u8], c: i32) {
    pack_with::<34>(a, panel, 2, |blocks, extra| {
        for (t, b) in blocks.iter().enumerate() {
            for lane in 0..8 {
                let sum: i32 = b[2 + 4 * lane..6 + 4 * lane]
                    .iter()
                    .map(|&v| i32::from(v as i8))
                    .sum();
                let at = 32 * t + 4 * lane;
                extra[at..at + 4].copy_from_slice(&(-c * sum).to_le_bytes());
            }
        }
    });
}

/// A Q8_1 activation panel: the eight tokens' block sums `s` (f16 at byte 2) as f32.
fn pack_q8_1(a: &[&[u8]; N], panel: &mut [u8]) {
    pack_with::<36>(a, panel, 4, |blocks, extra| {
        for (t, b) in blocks.iter().enumerate() {
            let s = crate::quant::f16_at(&b[..], 2).to_le_bytes();
            extra[4 * t..4 * t + 4].copy_from_slice(&s);
        }
    });
}

/// Decodes four weight rows of blocks of `W` bytes into `out` (`ROWS_BLOCK_BYTES` per block:
/// the rows' 32 unsigned quants side by side, then their scales d, then their offsets m as
/// f32). `decode` gives a block's quants, d and m (0 where the format has none).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn decode_rows<const W: usize>(
    w: &[&[u8]; R],
    out: &mut [u8],
    decode: impl Fn(&[u8; W]) -> (__m256i, f32, f32),
) {
    let n = w.iter().map(|r| r.len() / W).min().unwrap_or(0);
    let rows = w.map(|r| &r.as_chunks::<W>().0[..n]);
    let ahead = 4 * R * w[0].len();
    for (i, dst) in out.chunks_exact_mut(ROWS_BLOCK_BYTES).take(n).enumerate() {
        for (r, row) in rows.iter().enumerate() {
            prefetch_ahead(row, i, ahead);
            let (u, d, m) = decode(&row[i]);
            let q: &mut [u8; 32] = (&mut dst[32 * r..32 * r + 32])
                .try_into()
                .expect("32 bytes");
            // SAFETY: `q` is exactly 32 writable bytes; storeu has no alignment requirement.
            unsafe { _mm256_storeu_si256(q.as_mut_ptr().cast(), u) };
            dst[128 + 4 * r..132 + 4 * r].copy_from_slice(&d.to_le_bytes());
            dst[144 + 4 * r..148 + 4 * r].copy_from_slice(&m.to_le_bytes());
        }
    }
}

/// The f32 at `at`.
#[inline(always)]
fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The blocks of decoded rows and of a panel, cut to a common count.
fn blocks<'a>(rows: &'a [u8], panel: &'a [u8]) -> (&'a [[u8; ROWS_BLOCK_BYTES]], &'a [Panel]) {
    let (rb, pb) = (rows.as_chunks().0, panel.as_chunks().0);
    let n = rb.len().min(pb.len());
    (&rb[..n], &pb[..n])
}

/// One block of four decoded rows against a panel block, into the (row, token pair)
/// accumulators: each dot starts from the panel's `-c * y` lane sums (`starts`, Q8_0
/// activations) or from zero (Q8_1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn accumulate(acc: &mut [[__m512; P]; R], wr: &[u8; ROWS_BLOCK_BYTES], blk: &Panel, starts: bool) {
    for (r, acc) in acc.iter_mut().enumerate() {
        let u = _mm512_broadcast_i64x4(load256(wr, 32 * r));
        let dx = _mm512_set1_ps(f32_at(wr, 128 + 4 * r));
        for (p, acc) in acc.iter_mut().enumerate() {
            let start = if starts {
                load512(blk, 512 + 64 * p)
            } else {
                _mm512_setzero_si512()
            };
            let lanes = _mm512_dpbusd_epi32(start, u, load512(blk, 64 * p));
            let d = _mm512_mul_ps(dx, load512_ps(blk, 256 + 64 * p));
            *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), *acc);
        }
    }
}

/// Every accumulator's two halves summed: output (row r, token n).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn sums(acc: &[[__m512; P]; R]) -> [[f32; N]; R] {
    let mut out = [[0f32; N]; R];
    for (out, acc) in out.iter_mut().zip(acc) {
        for (p, &acc) in acc.iter().enumerate() {
            (out[2 * p], out[2 * p + 1]) = hsum_halves(acc);
        }
    }
    out
}

/// Four decoded rows of weights with Q8_0 activations (Q4_0, Q5_0, Q8_0, decoded as q + c and
/// packed with the same c; see the module doc) against a panel.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_panel(rows: &[u8], panel: &[u8]) -> [[f32; N]; R] {
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    let (rb, pb) = blocks(rows, panel);
    for (wr, blk) in std::iter::zip(rb, pb) {
        accumulate(&mut acc, wr, blk, true);
    }
    sums(&acc)
}

/// Four decoded rows of weights with Q8_1 activations (Q4_1, Q5_1) against a panel: the
/// block offsets m * s summed per pair as the one-row kernel sums them (a multiply, then an
/// add), sixteen pairs per vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_1_panel(rows: &[u8], panel: &[u8]) -> [[f32; N]; R] {
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    // offset[h] lane 8k + n: the offset sum of row 2h + k and token n.
    let mut offset = [_mm512_setzero_ps(); 2];
    let (rb, pb) = blocks(rows, panel);
    for (wr, blk) in std::iter::zip(rb, pb) {
        accumulate(&mut acc, wr, blk, false);
        // The eight sums s in both halves.
        let s = _mm512_castsi512_ps(_mm512_broadcast_i64x4(load256(&blk[..], 512)));
        for (h, offset) in offset.iter_mut().enumerate() {
            let mv = pair_ps(f32_at(wr, 144 + 8 * h), f32_at(wr, 148 + 8 * h));
            *offset = _mm512_add_ps(*offset, _mm512_mul_ps(mv, s));
        }
    }
    let mut offsets = [[0f32; 16]; 2];
    for h in 0..2 {
        // SAFETY: `offsets[h]` is 16 writable f32; storeu has no alignment requirement.
        unsafe { _mm512_storeu_ps(offsets[h].as_mut_ptr(), offset[h]) };
    }
    let mut out = sums(&acc);
    for (r, out) in out.iter_mut().enumerate() {
        let o = &offsets[r / 2][8 * (r % 2)..];
        for (v, &o) in out.iter_mut().zip(o) {
            // As `finish`: the sum minus the negated offset.
            *v -= -o;
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

/// Safe entry points for one format: its row decoder (`$decode` gives a block's unsigned quants,
/// d and m), activation packer and panel kernel, as a `Wide`.
macro_rules! wide_entry {
    ($wide:ident, $w:literal, $pack:expr, $panel:ident, $decode:expr) => {
        pub(super) const $wide: Option<Wide> = {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn decode(w: &[&[u8]; R], out: &mut [u8]) {
                decode_rows::<$w>(w, out, $decode)
            }

            // SAFETY (both): these kernels are handed out only through `quant::dot::kernel`
            // at the AVX-512 level, which it gives only where `cpu::detected()` reports every
            // feature enabled here.
            fn rows(w: &[&[u8]; R], out: &mut [u8]) {
                unsafe { decode(w, out) }
            }
            fn kernel(rows: &[u8], panel: &[u8]) -> [[f32; MAX_PANEL_TOKENS]; R] {
                let v = unsafe { $panel(rows, panel) };
                let mut out = [[0f32; MAX_PANEL_TOKENS]; R];
                for (o, v) in out.iter_mut().zip(&v) {
                    o[..N].copy_from_slice(v);
                }
                out
            }
            fn pack(a: &[&[u8]], panel: &mut [u8]) {
                let f: fn(&[&[u8]; N], &mut [u8]) = $pack;
                if let Ok(a) = <&[&[u8]; N]>::try_from(a) {
                    f(a, panel)
                }
            }
            Some(Wide {
                tokens: N,
                panel_block_bytes: PANEL_BLOCK_BYTES,
                rows_block_bytes: ROWS_BLOCK_BYTES,
                pack,
                rows,
                kernel,
            })
        };
    };
}

wide_entry!(WIDE_Q4_0, 18, |a, p| pack_q8_0(a, p, 8), q8_0_panel, |x| {
    (nibbles(load128(x, 2)), h2f(x, 0), 0.0)
});
wide_entry!(WIDE_Q5_0, 22, |a, p| pack_q8_0(a, p, 16), q8_0_panel, |x| {
    (q5_unsigned(qh_u32(x, 2), load128(x, 6)), h2f(x, 0), 0.0)
});
wide_entry!(
    WIDE_Q8_0,
    34,
    |a, p| pack_q8_0(a, p, 128),
    q8_0_panel,
    |x| {
        let u = _mm256_xor_si256(load256(x, 2), _mm256_set1_epi8(-128));
        (u, h2f(x, 0), 0.0)
    }
);
wide_entry!(WIDE_Q4_1, 20, pack_q8_1, q8_1_panel, |x| {
    let (d, m) = h2f2(x, 0);
    (nibbles(load128(x, 4)), d, m)
});
wide_entry!(WIDE_Q5_1, 24, pack_q8_1, q8_1_panel, |x| {
    let (d, m) = h2f2(x, 0);
    (q5_unsigned(qh_u32(x, 4), load128(x, 8)), d, m)
});
