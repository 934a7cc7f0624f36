//! Prompt kernels on 512-bit vectors with sixteen tokens in the lanes (`quant::dot::Wide`),
//! for the Q8_0-activation formats summed block by block (`q8_0_blockwise`: Q4_0 and IQ4_NL
//! as llama.cpp's repacked kernels sum them, Q5_0 and Q8_0 in the batch-invariant order):
//! per (row, token), each block's integer sum whole, then `acc = fma(sum, dw * da, acc)`.
//!
//! Lane t of a vector is token t of the panel. A block's integer sums for sixteen tokens take
//! eight `vpdpbusd`, each multiplying four activation bytes of every token (the panel's
//! unsigned bytes) by four weight bytes broadcast to every lane; the scale product, the
//! conversion and the fused multiply-add then cover sixteen (row, token) pairs at once. That
//! is about 43 multiply-adds per vector operation where the eight-lane order of the one-row
//! kernels (`wide.rs`) allows 16: with tokens in lanes there is no horizontal sum per block.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: the activations are packed as `y + 128`
//! (0..255) and the weights decoded signed, so each sum is `sum(w * y) + 128 * sum(w)`;
//! `128 * sum(w)`, once per row and block, is stored with the decoded rows and subtracted.
//! Integers are exact, so every output is the one-row kernel's bit for bit.
//!
//! A panel block (`PANEL_BLOCK_BYTES`): bytes 64q..64q + 64 hold bytes 4q..4q + 4 of every
//! token's block (token t at 4t), then the sixteen tokens' scales as f32 (and for Q8_1, in
//! `Q8_1_PANEL_BLOCK_BYTES`, their sums s as f32 after them). Four decoded rows
//! (`ROWS_BLOCK_BYTES` per block): row r at 44r, its 32 weights (signed, or Q4_1's unsigned
//! nibbles), d as f32, `128 * sum(w)` as i32 and Q4_1's m as f32.
//!
//! Q4_1 (`q4_1_blockwise`) adds `off = fma(m, sy, off)` per (row, token) and block, a chain
//! of its own, and returns `acc + off`.
//!
//! Q4_K the same way, as llama.cpp's repacked GEMV sums it (`q4_k_blockwise`): per
//! super-block and (row, token) the exact integer sum of `scale * q * y` and of
//! `min * (sums of 32 y)`, then one fused multiply-add each with `d * dy` and `dmin * dy`, and
//! their difference at the end. The sub-block sums take eight `vpdpbusd` each (weights 0..15
//! broadcast, activations `y + 128`), times the sub-block's scale (`vpmulld`); the mins one
//! `vpdpwssd` per pair of sub-blocks over the tokens' sums of 32 (i16) and the pair of mins.
//! A Q8_K panel super-block (`K_PANEL_BYTES`): 64 groups of four bytes of every token, the 16
//! dy, then four pairs of sums of 32 per token (i16, i16). A decoded Q4_K row super-block
//! (`K_ROW_BYTES`): 256 quants, 8 scales as i32, 4 pairs of mins (i16, i16), d, dmin,
//! `128 * sum(scale * sum(q))`.

use std::arch::x86_64::*;

use super::{
    decode_iq4_nl, decode_q4_0, decode_q5_0, decode_q8_0, h2f, h2f2, hsum_i32, load128, nibbles,
    prefetch_ahead, prefetch_block, q4_k_chunk, q6_k_chunk,
};
use crate::quant::dot::{MAX_PANEL_TOKENS, Wide};
use crate::quant::kquants::k_scale_min;

/// Tokens per panel.
const T: usize = 16;
/// Rows per call.
const R: usize = 4;
/// Bytes per block of a panel and of four decoded rows.
const PANEL_BLOCK_BYTES: usize = 32 * T + 4 * T;
const Q8_1_PANEL_BLOCK_BYTES: usize = 32 * T + 8 * T;
const ROW_BYTES: usize = 44;
const ROWS_BLOCK_BYTES: usize = R * ROW_BYTES;

/// Packs sixteen activation rows of `A`-byte blocks: Q8_0 (34: f16 d, 32 quants) or Q8_1
/// (36: f16 d, f16 s, 32 quants), into panel blocks of `PB` bytes.
fn pack_q8<const A: usize, const PB: usize>(a: &[&[u8]], panel: &mut [u8]) {
    if a.len() != T {
        return;
    }
    let quants = A - 32;
    let n = a.iter().map(|r| r.len() / A).min().unwrap_or(0);
    for (i, out) in panel.chunks_exact_mut(PB).take(n).enumerate() {
        for (t, row) in a.iter().enumerate() {
            let b = &row[A * i..A * i + A];
            for q in 0..8 {
                let at = 64 * q + 4 * t;
                for k in 0..4 {
                    out[at + k] = b[quants + 4 * q + k] ^ 0x80;
                }
            }
            let d = crate::quant::f16_at(b, 0).to_le_bytes();
            out[32 * T + 4 * t..32 * T + 4 * t + 4].copy_from_slice(&d);
            if A == 36 {
                let s = crate::quant::f16_at(b, 2).to_le_bytes();
                out[36 * T + 4 * t..36 * T + 4 * t + 4].copy_from_slice(&s);
            }
        }
    }
}

fn pack(a: &[&[u8]], panel: &mut [u8]) {
    pack_q8::<34, PANEL_BLOCK_BYTES>(a, panel)
}

/// Decodes four weight rows of blocks of `W` bytes (`decode` gives a block's 32 weights, d
/// and m).
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
    let ones = _mm256_set1_epi8(1);
    for (i, dst) in out.chunks_exact_mut(ROWS_BLOCK_BYTES).take(n).enumerate() {
        for (r, row) in rows.iter().enumerate() {
            prefetch_ahead(row, i, ahead);
            let (q, d, m) = decode(&row[i]);
            let sum = hsum_i32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q));
            let o = &mut dst[ROW_BYTES * r..ROW_BYTES * (r + 1)];
            let qs: &mut [u8; 32] = (&mut o[..32]).try_into().expect("32 bytes");
            // SAFETY: `qs` is exactly 32 writable bytes; storeu has no alignment requirement.
            unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), q) };
            o[32..36].copy_from_slice(&d.to_le_bytes());
            o[36..40].copy_from_slice(&(128 * sum).to_le_bytes());
            o[40..44].copy_from_slice(&m.to_le_bytes());
        }
    }
}

/// The i32 at `at`.
#[inline(always)]
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Four decoded rows against a panel of `PB`-byte blocks: [row][token]; with `M`, Q4_1's
/// offsets.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn panel_kernel<const PB: usize, const M: bool>(rows: &[u8], panel: &[u8]) -> [[f32; T]; R] {
    let (rb, pb) = (
        rows.as_chunks::<ROWS_BLOCK_BYTES>().0,
        panel.as_chunks::<PB>().0,
    );
    let (mut acc, mut acc_m) = ([_mm512_setzero_ps(); R], [_mm512_setzero_ps(); R]);
    for (wr, blk) in std::iter::zip(rb, pb) {
        // Two chains per row (even and odd four-byte groups) keep eight `vpdpbusd` in flight.
        let mut s = [[_mm512_setzero_si512(); 2]; R];
        for q in 0..8 {
            // SAFETY: 64q + 64 <= 512 < PANEL_BLOCK_BYTES readable bytes of `blk`.
            let y = unsafe { _mm512_loadu_si512(blk.as_ptr().add(64 * q).cast()) };
            for (r, s) in s.iter_mut().enumerate() {
                let w = _mm512_set1_epi32(i32_at(wr, ROW_BYTES * r + 4 * q));
                s[q % 2] = _mm512_dpbusd_epi32(s[q % 2], y, w);
            }
        }
        let dy = load_ps(blk, 32 * T);
        for (r, (acc, s)) in acc.iter_mut().zip(&s).enumerate() {
            let o = ROW_BYTES * r;
            let corr = _mm512_set1_epi32(i32_at(wr, o + 36));
            let sum = _mm512_sub_epi32(_mm512_add_epi32(s[0], s[1]), corr);
            let dx = f32::from_bits(i32_at(wr, o + 32) as u32);
            let d = _mm512_mul_ps(_mm512_set1_ps(dx), dy);
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, *acc);
        }
        if M {
            let sy = load_ps(blk, 36 * T);
            for (r, acc_m) in acc_m.iter_mut().enumerate() {
                let m = f32::from_bits(i32_at(wr, ROW_BYTES * r + 40) as u32);
                *acc_m = _mm512_fmadd_ps(_mm512_set1_ps(m), sy, *acc_m);
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for (o, (a, m)) in out.iter_mut().zip(acc.iter().zip(&acc_m)) {
        let v = if M { _mm512_add_ps(*a, *m) } else { *a };
        // SAFETY: `o` is 16 writable f32; storeu has no alignment requirement.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
    }
    out
}

/// Sixteen f32 at `at` of a panel block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load_ps(blk: &[u8], at: usize) -> __m512 {
    let s: &[u8; 64] = blk[at..at + 64].try_into().expect("64 bytes");
    // SAFETY: `s` is exactly 64 readable bytes; loadu has no alignment requirement.
    unsafe { _mm512_loadu_ps(s.as_ptr().cast()) }
}

/// Safe entry points for one format, as a `Wide`.
macro_rules! lanes_entry {
    ($wide:ident, $w:literal, $decode:expr) => {
        lanes_entry!($wide, $w, $decode, pack, PANEL_BLOCK_BYTES, false);
    };
    ($wide:ident, $w:literal, $decode:expr, $pack:ident, $pb:ident, $m:literal) => {
        pub(super) const $wide: Option<Wide> = {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn decode(w: &[&[u8]; R], out: &mut [u8]) {
                decode_rows::<$w>(w, out, $decode)
            }

            // SAFETY (both): these kernels are handed out only through `quant::dot`'s kernel
            // tables at the AVX-512 level, which they give only where `cpu::detected()`
            // reports every feature enabled here.
            fn rows(w: &[&[u8]; R], out: &mut [u8]) {
                unsafe { decode(w, out) }
            }
            fn kernel(rows: &[u8], panel: &[u8]) -> [[f32; MAX_PANEL_TOKENS]; R] {
                unsafe { panel_kernel::<$pb, $m>(rows, panel) }
            }
            Some(Wide {
                tokens: T,
                panel_block_bytes: $pb,
                rows_block_bytes: ROWS_BLOCK_BYTES,
                pack: $pack,
                rows,
                kernel,
            })
        };
    };
}

/// A decoder of `lanes_entry!` from one that gives the weights and d (no m).
macro_rules! no_m {
    ($decode:ident) => {
        |x| {
            let (q, d) = $decode(x);
            (q, d, 0.0)
        }
    };
}

lanes_entry!(WIDE_Q4_0_BW, 18, no_m!(decode_q4_0));
lanes_entry!(WIDE_Q5_0_BW, 22, no_m!(decode_q5_0));
lanes_entry!(WIDE_Q8_0_BW, 34, no_m!(decode_q8_0));
lanes_entry!(WIDE_IQ4_NL_BW, 18, no_m!(decode_iq4_nl));

fn pack_q8_1(a: &[&[u8]], panel: &mut [u8]) {
    pack_q8::<36, Q8_1_PANEL_BLOCK_BYTES>(a, panel)
}

lanes_entry!(
    WIDE_Q4_1_BW,
    20,
    |x| {
        let (d, m) = h2f2(x, 0);
        (nibbles(load128(x, 4)), d, m)
    },
    pack_q8_1,
    Q8_1_PANEL_BLOCK_BYTES,
    true
);

/// Bytes of a Q8_K panel and of one decoded Q4_K row, per super-block.
const K_PANEL_BYTES: usize = 256 * T + 4 * T + 4 * 4 * T;
const K_ROW_BYTES: usize = 320;

/// Packs sixteen Q8_K activation rows (292-byte blocks: f32 d, 256 quants, 16 i16 sums of 16).
fn pack_q8_k(a: &[&[u8]], panel: &mut [u8]) {
    if a.len() != T {
        return;
    }
    let n = a.iter().map(|r| r.len() / 292).min().unwrap_or(0);
    for (i, out) in panel.chunks_exact_mut(K_PANEL_BYTES).take(n).enumerate() {
        for (t, row) in a.iter().enumerate() {
            let b = &row[292 * i..292 * i + 292];
            for q in 0..64 {
                let at = 64 * q + 4 * t;
                for k in 0..4 {
                    out[at + k] = b[4 + 4 * q + k] ^ 0x80;
                }
            }
            out[256 * T + 4 * t..256 * T + 4 * t + 4].copy_from_slice(&b[..4]);
            let sum16 = |j: usize| i32::from(i16::from_le_bytes([b[260 + 2 * j], b[261 + 2 * j]]));
            for k in 0..4 {
                let at = 260 * T + 64 * k + 4 * t;
                for h in 0..2 {
                    // The sum of 32 of sub-block 2k + h: at most 32 * 128, an i16.
                    let s = (sum16(4 * k + 2 * h) + sum16(4 * k + 2 * h + 1)) as i16;
                    out[at + 2 * h..at + 2 * h + 2].copy_from_slice(&s.to_le_bytes());
                }
            }
        }
    }
}

/// Decodes four Q4_K weight rows (144-byte super-blocks), `K_ROW_BYTES` per row and
/// super-block, the four rows' super-block i side by side.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn decode_q4_k_rows(w: &[&[u8]; R], out: &mut [u8]) {
    let n = w.iter().map(|r| r.len() / 144).min().unwrap_or(0);
    let rows = w.map(|r| &r.as_chunks::<144>().0[..n]);
    let ahead = 4 * R * w[0].len();
    for (i, dst) in out.chunks_exact_mut(R * K_ROW_BYTES).take(n).enumerate() {
        for (r, row) in rows.iter().enumerate() {
            prefetch_ahead(row, i, ahead);
            let x = &row[i];
            let o = &mut dst[K_ROW_BYTES * r..K_ROW_BYTES * (r + 1)];
            let mut corr = 0i32;
            for c in 0..8 {
                let q = q4_k_chunk(x, c);
                let qs: &mut [u8; 32] = (&mut o[32 * c..32 * c + 32]).try_into().expect("32");
                // SAFETY: `qs` is exactly 32 writable bytes; storeu has no alignment need.
                unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), q) };
                let sad = _mm256_sad_epu8(q, _mm256_setzero_si256());
                let sum = hsum_i32(sad);
                let (sc, _) = k_scale_min(&x[4..16], c);
                corr += i32::from(sc) * sum;
                o[256 + 4 * c..260 + 4 * c].copy_from_slice(&i32::from(sc).to_le_bytes());
            }
            for k in 0..4 {
                let (_, m0) = k_scale_min(&x[4..16], 2 * k);
                let (_, m1) = k_scale_min(&x[4..16], 2 * k + 1);
                o[288 + 4 * k..290 + 4 * k].copy_from_slice(&i16::from(m0).to_le_bytes());
                o[290 + 4 * k..292 + 4 * k].copy_from_slice(&i16::from(m1).to_le_bytes());
            }
            let (d, dmin) = h2f2(x, 0);
            o[304..308].copy_from_slice(&d.to_le_bytes());
            o[308..312].copy_from_slice(&dmin.to_le_bytes());
            o[312..316].copy_from_slice(&(128 * corr).to_le_bytes());
        }
    }
}

/// Four decoded Q4_K rows against a Q8_K panel: [row][token].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_k_panel(rows: &[u8], panel: &[u8]) -> [[f32; T]; R] {
    let (rb, pb) = (
        rows.as_chunks::<{ R * K_ROW_BYTES }>().0,
        panel.as_chunks::<K_PANEL_BYTES>().0,
    );
    let (mut acc, mut acc_min) = ([_mm512_setzero_ps(); R], [_mm512_setzero_ps(); R]);
    let load = |b: &[u8; K_PANEL_BYTES], at: usize| {
        let s: &[u8; 64] = b[at..at + 64].try_into().expect("64 bytes");
        // SAFETY: `s` is exactly 64 readable bytes; loadu has no alignment requirement.
        unsafe { _mm512_loadu_si512(s.as_ptr().cast()) }
    };
    for (wr, blk) in std::iter::zip(rb, pb) {
        let mut sum = [_mm512_setzero_si512(); R];
        for sb in 0..8 {
            // Two chains per row (even and odd groups) keep eight `vpdpbusd` in flight.
            let mut s = [[_mm512_setzero_si512(); 2]; R];
            for q in 0..8 {
                let y = load(blk, 64 * (8 * sb + q));
                for (r, s) in s.iter_mut().enumerate() {
                    let w = _mm512_set1_epi32(i32_at(wr, K_ROW_BYTES * r + 32 * sb + 4 * q));
                    s[q % 2] = _mm512_dpbusd_epi32(s[q % 2], y, w);
                }
            }
            for (r, (sum, s)) in sum.iter_mut().zip(&s).enumerate() {
                let sc = _mm512_set1_epi32(i32_at(wr, K_ROW_BYTES * r + 256 + 4 * sb));
                let p = _mm512_mullo_epi32(_mm512_add_epi32(s[0], s[1]), sc);
                *sum = _mm512_add_epi32(*sum, p);
            }
        }
        let mut mins = [_mm512_setzero_si512(); R];
        for k in 0..4 {
            let y = load(blk, 260 * T + 64 * k);
            for (r, m) in mins.iter_mut().enumerate() {
                let pair = _mm512_set1_epi32(i32_at(wr, K_ROW_BYTES * r + 288 + 4 * k));
                *m = _mm512_dpwssd_epi32(*m, y, pair);
            }
        }
        let dy = _mm512_castsi512_ps(load(blk, 256 * T));
        for r in 0..R {
            let o = K_ROW_BYTES * r;
            let corr = _mm512_set1_epi32(i32_at(wr, o + 312));
            let s = _mm512_cvtepi32_ps(_mm512_sub_epi32(sum[r], corr));
            let d = f32::from_bits(i32_at(wr, o + 304) as u32);
            let dmin = f32::from_bits(i32_at(wr, o + 308) as u32);
            acc[r] = _mm512_fmadd_ps(s, _mm512_mul_ps(_mm512_set1_ps(d), dy), acc[r]);
            let m = _mm512_cvtepi32_ps(mins[r]);
            acc_min[r] = _mm512_fmadd_ps(m, _mm512_mul_ps(_mm512_set1_ps(dmin), dy), acc_min[r]);
        }
    }
    let mut out = [[0f32; T]; R];
    for (o, (a, m)) in out.iter_mut().zip(acc.iter().zip(&acc_min)) {
        // SAFETY: `o` is 16 writable f32; storeu has no alignment requirement.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), _mm512_sub_ps(*a, *m)) };
    }
    out
}

/// Q4_K's panel kernels (`q4_k_blockwise`'s order), as a `Wide`.
pub(super) const WIDE_Q4_K_BW: Option<Wide> = {
    // SAFETY (both): as in `lanes_entry!`.
    fn rows(w: &[&[u8]; R], out: &mut [u8]) {
        unsafe { decode_q4_k_rows(w, out) }
    }
    fn kernel(rows: &[u8], panel: &[u8]) -> [[f32; MAX_PANEL_TOKENS]; R] {
        unsafe { q4_k_panel(rows, panel) }
    }
    Some(Wide {
        tokens: T,
        panel_block_bytes: K_PANEL_BYTES / 8,
        rows_block_bytes: R * K_ROW_BYTES / 8,
        pack: pack_q8_k,
        rows,
        kernel,
    })
};

/// Bytes of one decoded Q6_K row per super-block: 256 signed weights (q - 32), 16 scales as
/// i32, d as f32, `128 * sum(scale * sum(q - 32))` as i32.
const Q6_ROW_BYTES: usize = 328;

/// Decodes four Q6_K weight rows (210-byte super-blocks), the four rows' super-block i side
/// by side.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn decode_q6_k_rows(w: &[&[u8]; R], out: &mut [u8]) {
    let n = w.iter().map(|r| r.len() / 210).min().unwrap_or(0);
    let rows = w.map(|r| &r.as_chunks::<210>().0[..n]);
    let ahead = 4 * R * w[0].len();
    for (i, dst) in out.chunks_exact_mut(R * Q6_ROW_BYTES).take(n).enumerate() {
        for (r, row) in rows.iter().enumerate() {
            prefetch_block(row, i, ahead);
            let x = &row[i];
            let o = &mut dst[Q6_ROW_BYTES * r..Q6_ROW_BYTES * (r + 1)];
            for c in 0..8 {
                let q = _mm256_sub_epi8(q6_k_chunk(x, c), _mm256_set1_epi8(32));
                let qs: &mut [u8; 32] = (&mut o[32 * c..32 * c + 32]).try_into().expect("32");
                // SAFETY: `qs` is exactly 32 writable bytes; storeu has no alignment need.
                unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), q) };
            }
            let mut corr = 0i32;
            for sb in 0..16 {
                let sum: i32 = o[16 * sb..16 * sb + 16]
                    .iter()
                    .map(|&b| i32::from(b as i8))
                    .sum();
                let sc = i32::from(x[192 + sb] as i8);
                corr += sc * sum;
                o[256 + 4 * sb..260 + 4 * sb].copy_from_slice(&sc.to_le_bytes());
            }
            o[320..324].copy_from_slice(&h2f(x, 208).to_le_bytes());
            o[324..328].copy_from_slice(&(128 * corr).to_le_bytes());
        }
    }
}

/// Four decoded Q6_K rows against a Q8_K panel: [row][token]. Per sub-block of 16 values
/// four `vpdpbusd` (weights broadcast, activations `y + 128`), times the sub-block's scale.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q6_k_panel(rows: &[u8], panel: &[u8]) -> [[f32; T]; R] {
    let (rb, pb) = (
        rows.as_chunks::<{ R * Q6_ROW_BYTES }>().0,
        panel.as_chunks::<K_PANEL_BYTES>().0,
    );
    let mut acc = [_mm512_setzero_ps(); R];
    let load = |b: &[u8; K_PANEL_BYTES], at: usize| {
        let s: &[u8; 64] = b[at..at + 64].try_into().expect("64 bytes");
        // SAFETY: `s` is exactly 64 readable bytes; loadu has no alignment requirement.
        unsafe { _mm512_loadu_si512(s.as_ptr().cast()) }
    };
    for (wr, blk) in std::iter::zip(rb, pb) {
        let mut sum = [_mm512_setzero_si512(); R];
        for sb in 0..16 {
            let mut s = [_mm512_setzero_si512(); R];
            for q in 0..4 {
                let y = load(blk, 64 * (4 * sb + q));
                for (r, s) in s.iter_mut().enumerate() {
                    let w = _mm512_set1_epi32(i32_at(wr, Q6_ROW_BYTES * r + 16 * sb + 4 * q));
                    *s = _mm512_dpbusd_epi32(*s, y, w);
                }
            }
            for (r, (sum, s)) in sum.iter_mut().zip(&s).enumerate() {
                let sc = _mm512_set1_epi32(i32_at(wr, Q6_ROW_BYTES * r + 256 + 4 * sb));
                *sum = _mm512_add_epi32(*sum, _mm512_mullo_epi32(*s, sc));
            }
        }
        let dy = _mm512_castsi512_ps(load(blk, 256 * T));
        for (r, acc) in acc.iter_mut().enumerate() {
            let o = Q6_ROW_BYTES * r;
            let corr = _mm512_set1_epi32(i32_at(wr, o + 324));
            let s = _mm512_cvtepi32_ps(_mm512_sub_epi32(sum[r], corr));
            let d = f32::from_bits(i32_at(wr, o + 320) as u32);
            *acc = _mm512_fmadd_ps(s, _mm512_mul_ps(_mm512_set1_ps(d), dy), *acc);
        }
    }
    let mut out = [[0f32; T]; R];
    for (o, a) in out.iter_mut().zip(&acc) {
        // SAFETY: `o` is 16 writable f32; storeu has no alignment requirement.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
    }
    out
}

/// Q6_K's panel kernels (`q6_k_blockwise`'s order), as a `Wide`.
pub(super) const WIDE_Q6_K_BW: Option<Wide> = {
    // SAFETY (both): as in `lanes_entry!`.
    fn rows(w: &[&[u8]; R], out: &mut [u8]) {
        unsafe { decode_q6_k_rows(w, out) }
    }
    fn kernel(rows: &[u8], panel: &[u8]) -> [[f32; MAX_PANEL_TOKENS]; R] {
        unsafe { q6_k_panel(rows, panel) }
    }
    Some(Wide {
        tokens: T,
        panel_block_bytes: K_PANEL_BYTES / 8,
        rows_block_bytes: R * Q6_ROW_BYTES / 8,
        pack: pack_q8_k,
        rows,
        kernel,
    })
};

const _: () = assert!(T <= MAX_PANEL_TOKENS);
const _: () = assert!((R * Q6_ROW_BYTES).is_multiple_of(8));
const _: () = assert!(K_PANEL_BYTES.is_multiple_of(8) && (R * K_ROW_BYTES).is_multiple_of(8));
