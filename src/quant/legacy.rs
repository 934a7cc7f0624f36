//! The 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (weights) and Q8_1 (activations).
//!
//! Arithmetic follows ggml's reference code operation by operation (f32, no fused
//! multiply-add), so dequantization is bit-exact with ggml and gguf-py.

use super::{f16_at, put_f16, quant_rows, rows};

pub const QK: usize = 32;
pub const Q4_0_BYTES: usize = 18;
pub const Q4_1_BYTES: usize = 20;
pub const Q5_0_BYTES: usize = 22;
pub const Q5_1_BYTES: usize = 24;
pub const Q8_0_BYTES: usize = 34;
pub const Q8_1_BYTES: usize = 36;

/// The value of largest magnitude (the first one on ties), with its sign.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn inverse(d: f32) -> f32 {
    if d == 0.0 { 0.0 } else { 1.0 / d }
}

pub fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    rows::<Q4_0_BYTES, QK>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            y[j] = d * f32::from((q & 0x0f) as i8 - 8);
            y[j + 16] = d * f32::from((q >> 4) as i8 - 8);
        }
    });
}

pub fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q4_0_BYTES, QK>(src, dst, |x, b| {
        let d = signed_absmax(x) / -8.0;
        let id = inverse(d);
        put_f16(b, 0, d);
        let q = |v: f32| ((v * id + 8.5) as u8).min(15);
        for j in 0..16 {
            b[2 + j] = q(x[j]) | (q(x[j + 16]) << 4);
        }
    });
}

pub fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    rows::<Q4_1_BYTES, QK>(src, dst, |b, y| {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for j in 0..16 {
            let q = b[4 + j];
            y[j] = d * f32::from(q & 0x0f) + m;
            y[j + 16] = d * f32::from(q >> 4) + m;
        }
    });
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

pub fn quantize_q4_1(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q4_1_BYTES, QK>(src, dst, |x, b| {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        let q = |v: f32| (((v - min) * id + 0.5) as u8).min(15);
        for j in 0..16 {
            b[4 + j] = q(x[j]) | (q(x[j + 16]) << 4);
        }
    });
}

pub fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    rows::<Q5_0_BYTES, QK>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for j in 0..16 {
            let q = b[6 + j];
            let lo = (q & 0x0f) | (((qh >> j) & 1) as u8) << 4;
            let hi = (q >> 4) | (((qh >> (j + 16)) & 1) as u8) << 4;
            y[j] = d * f32::from(lo as i8 - 16);
            y[j + 16] = d * f32::from(hi as i8 - 16);
        }
    });
}

pub fn quantize_q5_0(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q5_0_BYTES, QK>(src, dst, |x, b| {
        let d = signed_absmax(x) / -16.0;
        let id = inverse(d);
        put_f16(b, 0, d);
        let q = |v: f32| ((v * id + 16.5) as u8).min(31);
        let mut qh = 0u32;
        for j in 0..16 {
            let (lo, hi) = (q(x[j]), q(x[j + 16]));
            b[6 + j] = (lo & 0x0f) | ((hi & 0x0f) << 4);
            qh |= u32::from(lo >> 4) << j | u32::from(hi >> 4) << (j + 16);
        }
        b[2..6].copy_from_slice(&qh.to_le_bytes());
    });
}

pub fn dequantize_q5_1(src: &[u8], dst: &mut [f32]) {
    rows::<Q5_1_BYTES, QK>(src, dst, |b, y| {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for j in 0..16 {
            let q = b[8 + j];
            let lo = (q & 0x0f) | (((qh >> j) & 1) as u8) << 4;
            let hi = (q >> 4) | (((qh >> (j + 16)) & 1) as u8) << 4;
            y[j] = d * f32::from(lo) + m;
            y[j + 16] = d * f32::from(hi) + m;
        }
    });
}

pub fn quantize_q5_1(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q5_1_BYTES, QK>(src, dst, |x, b| {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        let q = |v: f32| (((v - min) * id + 0.5) as u8).min(31);
        let mut qh = 0u32;
        for j in 0..16 {
            let (lo, hi) = (q(x[j]), q(x[j + 16]));
            b[8 + j] = (lo & 0x0f) | ((hi & 0x0f) << 4);
            qh |= u32::from(lo >> 4) << j | u32::from(hi >> 4) << (j + 16);
        }
        b[4..8].copy_from_slice(&qh.to_le_bytes());
    });
}

pub fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    rows::<Q8_0_BYTES, QK>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for j in 0..QK {
            y[j] = f32::from(b[2 + j] as i8) * d;
        }
    });
}

/// Scale and rounded values of one Q8 block: d = amax / 127, q = round(x / d) (half away from
/// zero), as ggml's quantize_row_q8_0_ref.
fn q8_block(x: &[f32; QK]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    let mut q = [0i8; QK];
    for (q, v) in q.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    (d, q)
}

pub fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_0_BYTES, QK>(src, dst, |x, b| {
        let (d, q) = q8_block(x);
        put_q8_0(b, d, &q);
    });
}

/// Q8_1: Q8_0 plus `s = d * sum(q)`, which lets Q4_1/Q5_1 dot products apply their offset
/// `m` once per block.
pub fn dequantize_q8_1(src: &[u8], dst: &mut [f32]) {
    rows::<Q8_1_BYTES, QK>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for j in 0..QK {
            y[j] = f32::from(b[4 + j] as i8) * d;
        }
    });
}

pub fn quantize_q8_1(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_1_BYTES, QK>(src, dst, |x, b| {
        let (d, q) = q8_block(x);
        put_q8_1(b, d, &q);
    });
}

/// Q8 scale and values as llama.cpp's SIMD quantizers compute them for activations at run
/// time: `id = 127 / amax` and round half to even. (The reference quantizer, kept bit-exact
/// with gguf-py above, divides by `d` and rounds half away from zero; on large activations the
/// two round some values differently, and matching llama.cpp's choice keeps logits close.)
fn q8_block_runtime(x: &[f32; QK]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    // Round half to even by the magic-number trick (as ggml's nearest_int): exact for
    // |v * id| <= 2^22, and these are at most 127. `round_ties_even` gives the same values but
    // is a call to libm's rintf per value on CPUs without SSE4.1 in the baseline build.
    let magic = f32::from_bits(0x4b40_0000); // 1.5 * 2^23
    let mut q = [0i8; QK];
    for (q, v) in q.iter_mut().zip(x) {
        *q = ((v * id + magic) - magic) as i8;
    }
    (d, q)
}

/// Q8_0 for activations (see `q8_block_runtime`).
pub fn quantize_q8_0_activations(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_0_BYTES, QK>(src, dst, q8_0_activation_block);
}

/// One block of `quantize_q8_0_activations` (the SIMD quantizers' fallback).
pub(super) fn q8_0_activation_block(x: &[f32; QK], b: &mut [u8; Q8_0_BYTES]) {
    let (d, q) = q8_block_runtime(x);
    put_q8_0(b, d, &q);
}

/// Writes a Q8_0 block: the f16 scale, then the values.
fn put_q8_0(b: &mut [u8; Q8_0_BYTES], d: f32, q: &[i8; QK]) {
    put_f16(b, 0, d);
    for j in 0..QK {
        b[2 + j] = q[j] as u8;
    }
}

/// Writes a Q8_1 block: the f16 scale, `d * sum(q)` as f16, then the values.
fn put_q8_1(b: &mut [u8; Q8_1_BYTES], d: f32, q: &[i8; QK]) {
    let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
    put_f16(b, 0, d);
    put_f16(b, 2, sum as f32 * d);
    for j in 0..QK {
        b[4 + j] = q[j] as u8;
    }
}

/// Q8_1 for activations (see `q8_block_runtime`).
pub fn quantize_q8_1_activations(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_1_BYTES, QK>(src, dst, q8_1_activation_block);
}

/// One block of `quantize_q8_1_activations` (the SIMD quantizers' fallback).
pub(super) fn q8_1_activation_block(x: &[f32; QK], b: &mut [u8; Q8_1_BYTES]) {
    let (d, q) = q8_block_runtime(x);
    put_q8_1(b, d, &q);
}

#[cfg(test)]
mod runtime_rounding {
    use super::*;

    /// The magic-number rounding of `q8_block_runtime` is round-half-to-even exactly: every
    /// value a block can produce, ties included.
    #[test]
    fn activation_rounding_is_round_half_to_even() {
        let mut x = [0f32; QK];
        for step in 0..=254 * 8 {
            let v = -127.0 + step as f32 / 8.0; // quarter and half steps: ties included
            x[step % QK] = v;
            if step % QK == QK - 1 || step == 254 * 8 {
                let (_, q) = q8_block_runtime(&x);
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                for (q, v) in q.iter().zip(&x) {
                    assert_eq!(*q, (v * id).round_ties_even() as i8, "{v}");
                }
            }
        }
        let ties = [0.5f32, 1.5, 2.5, -0.5, -1.5, 126.5, -126.5];
        let mut x = [0f32; QK];
        x[0] = 127.0; // id = 1
        x[1..=ties.len()].copy_from_slice(&ties);
        let (_, q) = q8_block_runtime(&x);
        assert_eq!(&q[1..=ties.len()], &[0, 2, 2, 0, -2, 126, -126]);
    }
}
