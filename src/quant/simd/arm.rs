//! aarch64 Advanced SIMD (NEON) kernels, baseline instructions only (every aarch64 CPU has
//! them, so no run-time detection is needed). Byte products use `smull`/`smull2` (exact i16)
//! and pairwise accumulation into i32 (`sadalp`). Like the x86 kernels, each computes the
//! scalar reference's integer sums, for one token or four (`Dot::Quant::f4`).
//!
//! Tested under qemu-aarch64 in CI (`tests/quant_simd.rs` run for the aarch64 target).

use std::arch::aarch64::*;

use crate::gguf::GgmlType;
use crate::quant::dot::Dot;
use crate::quant::f16_at;
use crate::quant::fp::{MXFP4_VALUES, bf16_to_f32, e8m0_to_f32_half};
use crate::quant::iq4::{IQ4_VALUES, iq4_xs_scale};
use crate::quant::kquants::{k_scale_min, q3_k_scales, q8_k_d};

/// 16 bytes at `at` (bounds-checked slice, then a load).
#[inline]
#[target_feature(enable = "neon")]
fn ld(b: &[u8], at: usize) -> uint8x16_t {
    let s: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    // SAFETY: `s` is exactly 16 readable bytes; `ld1` of bytes has no alignment requirement.
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// Sum of the 16 products of two i8 vectors, exactly.
#[inline]
#[target_feature(enable = "neon")]
fn dot16(a: int8x16_t, b: int8x16_t) -> i32 {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vaddvq_s32(vpadalq_s16(vpadalq_s16(vdupq_n_s32(0), lo), hi))
}

#[inline]
#[target_feature(enable = "neon")]
fn s8(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

/// Low and high nibbles of 16 bytes (elements 0..16 and 16..32 of a 32-element block).
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(v: uint8x16_t) -> (uint8x16_t, uint8x16_t) {
    (vandq_u8(v, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(v))
}

/// Bits 0..16 and 16..32 of `bits` as bytes: 0xff where set.
#[inline]
#[target_feature(enable = "neon")]
fn bit_bytes(bits: u32) -> (uint8x16_t, uint8x16_t) {
    let mask = vreinterpretq_u8_u64(vdupq_n_u64(u64::from_le_bytes([
        1, 2, 4, 8, 16, 32, 64, 128,
    ])));
    let half = |b0: u32, b1: u32| vcombine_u8(vdup_n_u8(b0 as u8), vdup_n_u8(b1 as u8));
    let lo = half(bits, bits >> 8);
    let hi = half(bits >> 16, bits >> 24);
    (vtstq_u8(lo, mask), vtstq_u8(hi, mask))
}

/// Bits `shift..shift+width` of every byte (`mask` = width), as bytes.
#[inline]
#[target_feature(enable = "neon")]
fn bits_at(v: uint8x16_t, shift: u32, mask: u8) -> uint8x16_t {
    vandq_u8(vshlq_u8(v, vdupq_n_s8(-(shift as i8))), vdupq_n_u8(mask))
}

#[inline]
#[target_feature(enable = "neon")]
fn lut16(table: &[i8; 16], idx: uint8x16_t) -> int8x16_t {
    let t: [u8; 16] = table.map(|v| v as u8);
    vqtbl1q_s8(s8(ld(&t, 0)), idx)
}

/// The blocks of a weight row and of each of `N` activation rows, cut to a common count.
#[inline]
#[target_feature(enable = "neon")]
fn rows_of<'a, const W: usize, const A: usize, const N: usize>(
    w: &'a [u8],
    a: &[&'a [u8]; N],
) -> (&'a [[u8; W]], [&'a [[u8; A]]; N]) {
    let wb = w.as_chunks::<W>().0;
    let n = a.iter().fold(wb.len(), |m, r| m.min(r.len() / A));
    (&wb[..n], a.map(|r| &r.as_chunks::<A>().0[..n]))
}

/// Weights with Q8_0 activations: `decode` gives a block's 32 signed values and its scale.
#[inline]
#[target_feature(enable = "neon")]
fn q8_0_family<const W: usize, const N: usize>(
    w: &[u8],
    a: &[&[u8]; N],
    decode: impl Fn(&[u8; W]) -> (int8x16_t, int8x16_t, f32),
) -> [f32; N] {
    let (wb, ab) = rows_of::<W, 34, N>(w, a);
    let mut sum = [0f32; N];
    for (i, x) in wb.iter().enumerate() {
        let (lo, hi, dx) = decode(x);
        for n in 0..N {
            let y = &ab[n][i];
            let s = dot16(lo, s8(ld(y, 2))) + dot16(hi, s8(ld(y, 18)));
            sum[n] += s as f32 * (dx * f16_at(y, 0));
        }
    }
    sum
}

#[target_feature(enable = "neon")]
fn q4_0<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    q8_0_family::<18, N>(w, a, |x| {
        let (lo, hi) = nibbles(ld(x, 2));
        let eight = vdupq_n_s8(8);
        (
            vsubq_s8(s8(lo), eight),
            vsubq_s8(s8(hi), eight),
            f16_at(x, 0),
        )
    })
}

#[target_feature(enable = "neon")]
fn q5_0<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    q8_0_family::<22, N>(w, a, |x| {
        let (lo, hi) = nibbles(ld(x, 6));
        let (blo, bhi) = bit_bytes(u32::from_le_bytes([x[2], x[3], x[4], x[5]]));
        // q - 16 = nibble | 0xf0 where the fifth bit is clear.
        let f0 = vdupq_n_u8(0xf0);
        (
            s8(vorrq_u8(lo, vbicq_u8(f0, blo))),
            s8(vorrq_u8(hi, vbicq_u8(f0, bhi))),
            f16_at(x, 0),
        )
    })
}

#[target_feature(enable = "neon")]
fn q8_0<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    q8_0_family::<34, N>(w, a, |x| (s8(ld(x, 2)), s8(ld(x, 18)), f16_at(x, 0)))
}

#[target_feature(enable = "neon")]
fn iq4_nl<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    q8_0_family::<18, N>(w, a, |x| {
        let (lo, hi) = nibbles(ld(x, 2));
        (lut16(&IQ4_VALUES, lo), lut16(&IQ4_VALUES, hi), f16_at(x, 0))
    })
}

#[target_feature(enable = "neon")]
fn mxfp4<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    q8_0_family::<17, N>(w, a, |x| {
        let (lo, hi) = nibbles(ld(x, 1));
        (
            lut16(&MXFP4_VALUES, lo),
            lut16(&MXFP4_VALUES, hi),
            e8m0_to_f32_half(x[0]),
        )
    })
}

/// Weights with Q8_1 activations: unsigned quants (below 32, so they fit i8) plus m * s.
#[inline]
#[target_feature(enable = "neon")]
fn q8_1_family<const W: usize, const N: usize>(
    w: &[u8],
    a: &[&[u8]; N],
    decode: impl Fn(&[u8; W]) -> (uint8x16_t, uint8x16_t),
) -> [f32; N] {
    let (wb, ab) = rows_of::<W, 36, N>(w, a);
    let mut sum = [0f32; N];
    for (i, x) in wb.iter().enumerate() {
        let (lo, hi) = decode(x);
        let (dx, mx) = (f16_at(x, 0), f16_at(x, 2));
        for n in 0..N {
            let y = &ab[n][i];
            let s = dot16(s8(lo), s8(ld(y, 4))) + dot16(s8(hi), s8(ld(y, 20)));
            sum[n] += (dx * f16_at(y, 0)) * s as f32 + mx * f16_at(y, 2);
        }
    }
    sum
}

#[target_feature(enable = "neon")]
fn q4_1<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    q8_1_family::<20, N>(w, a, |x| nibbles(ld(x, 4)))
}

#[target_feature(enable = "neon")]
fn q5_1<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    q8_1_family::<24, N>(w, a, |x| {
        let (lo, hi) = nibbles(ld(x, 8));
        let (blo, bhi) = bit_bytes(u32::from_le_bytes([x[4], x[5], x[6], x[7]]));
        let b4 = vdupq_n_u8(16);
        (
            vorrq_u8(lo, vandq_u8(blo, b4)),
            vorrq_u8(hi, vandq_u8(bhi, b4)),
        )
    })
}

/// A K-quant block as integer sums: `d_main * dy * sum_g scales[g] * dot(q_u, a in g) -
/// d_off * dy * sum_g coefs[g] * bsum[g]`, g over the 16 groups of 16 values.
struct KBlock {
    scales: [i32; 16],
    coefs: [i32; 16],
    d_main: f32,
    d_off: f32,
}

/// `chunk(x, c)` gives the unsigned quants (below 64, so they fit i8) of elements 32c..32c+32.
#[inline]
#[target_feature(enable = "neon")]
fn k_family<const W: usize, const N: usize>(
    w: &[u8],
    a: &[&[u8]; N],
    prep: impl Fn(&[u8; W]) -> KBlock,
    chunk: impl Fn(&[u8; W], usize) -> (uint8x16_t, uint8x16_t),
) -> [f32; N] {
    let (wb, ab) = rows_of::<W, 292, N>(w, a);
    let mut sum = [0f32; N];
    for (i, x) in wb.iter().enumerate() {
        let k = prep(x);
        let mut s1 = [0i32; N];
        for c in 0..8 {
            let (lo, hi) = chunk(x, c);
            for n in 0..N {
                let y = &ab[n][i];
                s1[n] += k.scales[2 * c] * dot16(s8(lo), s8(ld(y, 4 + 32 * c)))
                    + k.scales[2 * c + 1] * dot16(s8(hi), s8(ld(y, 20 + 32 * c)));
            }
        }
        for n in 0..N {
            let y = &ab[n][i];
            let s2: i32 = (0..16)
                .map(|g| {
                    k.coefs[g] * i32::from(i16::from_le_bytes([y[260 + 2 * g], y[261 + 2 * g]]))
                })
                .sum();
            let dy = q8_k_d(y);
            sum[n] += k.d_main * dy * s1[n] as f32 - k.d_off * dy * s2 as f32;
        }
    }
    sum
}

#[target_feature(enable = "neon")]
fn q2_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    k_family::<84, N>(
        w,
        a,
        |x| KBlock {
            scales: std::array::from_fn(|g| i32::from(x[g] & 0x0f)),
            coefs: std::array::from_fn(|g| i32::from(x[g] >> 4)),
            d_main: f16_at(x, 80),
            d_off: f16_at(x, 82),
        },
        |x, c| {
            let base = 16 + (c / 4) * 32;
            let shift = 2 * (c % 4) as u32;
            (
                bits_at(ld(x, base), shift, 3),
                bits_at(ld(x, base + 16), shift, 3),
            )
        },
    )
}

#[target_feature(enable = "neon")]
fn q3_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    k_family::<110, N>(
        w,
        a,
        |x| {
            let s = q3_k_scales(&x[96..108]);
            let d = f16_at(x, 108);
            KBlock {
                scales: s.map(i32::from),
                coefs: s.map(|v| 4 * i32::from(v)),
                d_main: d,
                d_off: d,
            }
        },
        // q + 4 = low two bits | the mask bit as 4: unsigned.
        |x, c| {
            let base = 32 + (c / 4) * 32;
            let shift = 2 * (c % 4) as u32;
            let part = |off: usize| {
                let low = bits_at(ld(x, base + off), shift, 3);
                let high = vshlq_n_u8::<2>(bits_at(ld(x, off), c as u32, 1));
                vorrq_u8(low, high)
            };
            (part(0), part(16))
        },
    )
}

#[target_feature(enable = "neon")]
fn k_scale_min_block(x: &[u8]) -> KBlock {
    let sm: [(u8, u8); 8] = std::array::from_fn(|j| k_scale_min(&x[4..16], j));
    KBlock {
        scales: std::array::from_fn(|g| i32::from(sm[g / 2].0)),
        coefs: std::array::from_fn(|g| i32::from(sm[g / 2].1)),
        d_main: f16_at(x, 0),
        d_off: f16_at(x, 2),
    }
}

#[target_feature(enable = "neon")]
fn q4_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    k_family::<144, N>(
        w,
        a,
        |x| k_scale_min_block(x),
        |x, j| {
            let base = 16 + (j / 2) * 32;
            let shift = 4 * (j % 2) as u32;
            (
                bits_at(ld(x, base), shift, 0x0f),
                bits_at(ld(x, base + 16), shift, 0x0f),
            )
        },
    )
}

#[target_feature(enable = "neon")]
fn q5_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    k_family::<176, N>(
        w,
        a,
        |x| k_scale_min_block(x),
        |x, j| {
            let base = 48 + (j / 2) * 32;
            let shift = 4 * (j % 2) as u32;
            let part = |off: usize| {
                let low = bits_at(ld(x, base + off), shift, 0x0f);
                let high = vshlq_n_u8::<4>(bits_at(ld(x, 16 + off), j as u32, 1));
                vorrq_u8(low, high)
            };
            (part(0), part(16))
        },
    )
}

#[target_feature(enable = "neon")]
fn q6_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    k_family::<210, N>(
        w,
        a,
        |x| {
            let s: [i32; 16] = std::array::from_fn(|g| i32::from(x[192 + g] as i8));
            let d = f16_at(x, 208);
            KBlock {
                scales: s,
                coefs: s.map(|v| 32 * v),
                d_main: d,
                d_off: d,
            }
        },
        // q + 32 (0..64): unsigned.
        |x, c| {
            let (half, k) = (c / 4, c % 4);
            let part = |off: usize| {
                let low = bits_at(
                    ld(x, half * 64 + (k % 2) * 32 + off),
                    4 * (k / 2) as u32,
                    0x0f,
                );
                let high = bits_at(ld(x, 128 + half * 32 + off), 2 * k as u32, 3);
                vorrq_u8(low, vshlq_n_u8::<4>(high))
            };
            (part(0), part(16))
        },
    )
}

#[target_feature(enable = "neon")]
fn iq4_xs<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
    let (wb, ab) = rows_of::<136, 292, N>(w, a);
    let mut sum = [0f32; N];
    for (i, x) in wb.iter().enumerate() {
        let mut s = [0i32; N];
        for ib in 0..8 {
            let (lo, hi) = nibbles(ld(x, 8 + 16 * ib));
            let (lo, hi) = (lut16(&IQ4_VALUES, lo), lut16(&IQ4_VALUES, hi));
            let scale = i32::from(iq4_xs_scale(x, ib));
            for n in 0..N {
                let y = &ab[n][i];
                s[n] += scale
                    * (dot16(lo, s8(ld(y, 4 + 32 * ib))) + dot16(hi, s8(ld(y, 20 + 32 * ib))));
            }
        }
        for n in 0..N {
            sum[n] += f16_at(x, 0) * q8_k_d(&ab[n][i]) * s[n] as f32;
        }
    }
    sum
}

/// Float weights, four values at a time; `load(i)` gives weights 4i..4i+4.
#[inline]
#[target_feature(enable = "neon")]
fn float_dot(a: &[f32], load: impl Fn(usize) -> float32x4_t, tail: impl Fn(usize) -> f32) -> f32 {
    let (chunks, _) = a.as_chunks::<4>();
    let mut acc0 = vdupq_n_f32(0.0);
    let mut acc1 = vdupq_n_f32(0.0);
    for (i, c) in chunks.iter().enumerate() {
        // SAFETY: `c` is 4 readable f32.
        let av = unsafe { vld1q_f32(c.as_ptr()) };
        if i % 2 == 0 {
            acc0 = vfmaq_f32(acc0, load(i), av);
        } else {
            acc1 = vfmaq_f32(acc1, load(i), av);
        }
    }
    let mut sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (j, x) in a.iter().enumerate().skip(chunks.len() * 4) {
        sum += tail(j) * x;
    }
    sum
}

#[target_feature(enable = "neon")]
fn f32_dot(w: &[u8], a: &[f32]) -> f32 {
    float_dot(
        a,
        |i| vreinterpretq_f32_u8(ld(w, 16 * i)),
        |j| f32::from_le_bytes([w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]]),
    )
}

#[target_feature(enable = "neon")]
fn bf16_dot(w: &[u8], a: &[f32]) -> f32 {
    float_dot(
        a,
        |i| {
            let s: &[u8; 8] = w[8 * i..8 * i + 8].try_into().expect("8 bytes");
            // SAFETY: `s` is exactly 8 readable bytes (4 u16); no alignment requirement.
            let v = unsafe { vld1_u16(s.as_ptr().cast()) };
            vreinterpretq_f32_u32(vshll_n_u16::<16>(v))
        },
        |j| bf16_to_f32(u16::from_le_bytes([w[2 * j], w[2 * j + 1]])),
    )
}

macro_rules! entry {
    ($one:ident, $four:ident, $kernel:ident) => {
        fn $one(w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: NEON is part of the aarch64 baseline; this target always enables it.
            unsafe { $kernel::<1>(w, &[a])[0] }
        }

        fn $four(w: &[u8], a: &[&[u8]; 4]) -> [f32; 4] {
            // SAFETY: as above.
            unsafe { $kernel::<4>(w, a) }
        }
    };
}

entry!(e_q4_0, e4_q4_0, q4_0);
entry!(e_q4_1, e4_q4_1, q4_1);
entry!(e_q5_0, e4_q5_0, q5_0);
entry!(e_q5_1, e4_q5_1, q5_1);
entry!(e_q8_0, e4_q8_0, q8_0);
entry!(e_q2_k, e4_q2_k, q2_k);
entry!(e_q3_k, e4_q3_k, q3_k);
entry!(e_q4_k, e4_q4_k, q4_k);
entry!(e_q5_k, e4_q5_k, q5_k);
entry!(e_q6_k, e4_q6_k, q6_k);
entry!(e_iq4_nl, e4_iq4_nl, iq4_nl);
entry!(e_iq4_xs, e4_iq4_xs, iq4_xs);
entry!(e_mxfp4, e4_mxfp4, mxfp4);

fn e_f32(w: &[u8], a: &[f32]) -> f32 {
    // SAFETY: NEON is part of the aarch64 baseline; this target always enables it.
    unsafe { f32_dot(w, a) }
}

fn e_bf16(w: &[u8], a: &[f32]) -> f32 {
    // SAFETY: as above.
    unsafe { bf16_dot(w, a) }
}

/// The NEON kernel for weight format `ty` (same activation format as the scalar reference).
pub(in crate::quant) fn dot(ty: GgmlType) -> Option<Dot> {
    type One = fn(&[u8], &[u8]) -> f32;
    type Four = fn(&[u8], &[&[u8]; 4]) -> [f32; 4];
    let q = |act, f: One, f4: Four| {
        Some(Dot::Quant {
            act,
            f,
            f4: Some(f4),
            tiles: None,
        })
    };
    match ty {
        GgmlType::F32 => Some(Dot::Float(e_f32)),
        GgmlType::Bf16 => Some(Dot::Float(e_bf16)),
        GgmlType::Q4_0 => q(GgmlType::Q8_0, e_q4_0, e4_q4_0),
        GgmlType::Q4_1 => q(GgmlType::Q8_1, e_q4_1, e4_q4_1),
        GgmlType::Q5_0 => q(GgmlType::Q8_0, e_q5_0, e4_q5_0),
        GgmlType::Q5_1 => q(GgmlType::Q8_1, e_q5_1, e4_q5_1),
        GgmlType::Q8_0 => q(GgmlType::Q8_0, e_q8_0, e4_q8_0),
        GgmlType::Q2K => q(GgmlType::Q8K, e_q2_k, e4_q2_k),
        GgmlType::Q3K => q(GgmlType::Q8K, e_q3_k, e4_q3_k),
        GgmlType::Q4K => q(GgmlType::Q8K, e_q4_k, e4_q4_k),
        GgmlType::Q5K => q(GgmlType::Q8K, e_q5_k, e4_q5_k),
        GgmlType::Q6K => q(GgmlType::Q8K, e_q6_k, e4_q6_k),
        GgmlType::Iq4Nl => q(GgmlType::Q8_0, e_iq4_nl, e4_iq4_nl),
        GgmlType::Iq4Xs => q(GgmlType::Q8K, e_iq4_xs, e4_iq4_xs),
        GgmlType::Mxfp4 => q(GgmlType::Q8_0, e_mxfp4, e4_mxfp4),
        _ => None,
    }
}
