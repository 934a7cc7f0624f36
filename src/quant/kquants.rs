//! The K-quant formats: super-blocks of 256 elements in 16 or 8 sub-blocks with their own
//! scales. Q2_K to Q6_K are weight formats; Q8_K is the activation format they pair with.
//!
//! Layouts (ggml-common.h): Q2_K scales[16] qs[64] d dmin; Q3_K hmask[32] qs[64] scales[12] d;
//! Q4_K d dmin scales[12] qs[128]; Q5_K d dmin scales[12] qh[32] qs[128];
//! Q6_K ql[128] qh[64] scales[16] d; Q8_K d(f32) qs[256] bsums[16](i16).
//! Dequantization follows ggml's reference arithmetic (bit-exact with gguf-py).

use super::{f16_at, quant_rows, rows};

pub const QK_K: usize = 256;
pub const Q2_K_BYTES: usize = 84;
pub const Q3_K_BYTES: usize = 110;
pub const Q4_K_BYTES: usize = 144;
pub const Q5_K_BYTES: usize = 176;
pub const Q6_K_BYTES: usize = 210;
pub const Q8_K_BYTES: usize = 292;

pub fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    rows::<Q2_K_BYTES, QK_K>(src, dst, |b, y| {
        let (scales, qs) = (&b[0..16], &b[16..80]);
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for (i, y) in y.iter_mut().enumerate() {
            let (half, shift, l) = (i / 128, (i % 128) / 32, i % 32);
            let q = (qs[half * 32 + l] >> (2 * shift)) & 3;
            let sc = scales[i / 16];
            let dl = d * f32::from(sc & 0x0f);
            let ml = dmin * f32::from(sc >> 4);
            *y = dl * f32::from(q) - ml;
        }
    });
}

/// The sixteen 6-bit signed scales of a Q3_K block.
pub fn q3_k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = if i < 8 { s[i] & 0x0f } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = (low | high << 4) as i8 - 32;
    }
    out
}

pub fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    rows::<Q3_K_BYTES, QK_K>(src, dst, |b, y| {
        let (hmask, qs) = (&b[0..32], &b[32..96]);
        let scales = q3_k_scales(&b[96..108]);
        let d = f16_at(b, 108);
        for (i, y) in y.iter_mut().enumerate() {
            let (half, shift, l) = (i / 128, (i % 128) / 32, i % 32);
            let low = ((qs[half * 32 + l] >> (2 * shift)) & 3) as i8;
            // The high bit set means no offset; clear means subtract 4.
            let high = (hmask[l] >> (i / 32)) & 1;
            let q = low - if high == 0 { 4 } else { 0 };
            let dl = d * f32::from(scales[i / 16]);
            *y = dl * f32::from(q);
        }
    });
}

/// Scale and min (6 bits each) of sub-block `j` of a Q4_K/Q5_K block, from the 12 packed bytes.
pub fn k_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

pub fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    rows::<Q4_K_BYTES, QK_K>(src, dst, |b, y| {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (scales, qs) = (&b[4..16], &b[16..144]);
        for (j, y) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = k_scale_min(scales, j);
            let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
            let (chunk, shift) = (j / 2, 4 * (j % 2));
            for (l, y) in y.iter_mut().enumerate() {
                let q = (qs[chunk * 32 + l] >> shift) & 0x0f;
                *y = d1 * f32::from(q) - m1;
            }
        }
    });
}

pub fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    rows::<Q5_K_BYTES, QK_K>(src, dst, |b, y| {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
        for (j, y) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = k_scale_min(scales, j);
            let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
            let (chunk, shift) = (j / 2, 4 * (j % 2));
            for (l, y) in y.iter_mut().enumerate() {
                let q = ((qs[chunk * 32 + l] >> shift) & 0x0f) | (((qh[l] >> j) & 1) << 4);
                *y = d1 * f32::from(q) - m1;
            }
        }
    });
}

/// The 6-bit value (0..64) of element `i` of a Q6_K block.
pub fn q6_k_value(ql: &[u8], qh: &[u8], i: usize) -> u8 {
    let (half, r) = (i / 128, i % 128);
    let low = (ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0x0f;
    let high = (qh[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
    low | high << 4
}

pub fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    rows::<Q6_K_BYTES, QK_K>(src, dst, |b, y| {
        let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
        let d = f16_at(b, 208);
        for (i, y) in y.iter_mut().enumerate() {
            let q = q6_k_value(ql, qh, i) as i8 - 32;
            let d1 = d * f32::from(scales[i / 16] as i8);
            *y = d1 * f32::from(q);
        }
    });
}

pub fn q8_k_d(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub fn dequantize_q8_k(src: &[u8], dst: &mut [f32]) {
    rows::<Q8_K_BYTES, QK_K>(src, dst, |b, y| {
        let d = q8_k_d(b);
        for (j, y) in y.iter_mut().enumerate() {
            *y = d * f32::from(b[4 + j] as i8);
        }
    });
}

/// Q8_K as ggml's quantize_row_q8_K_ref: scale from the signed value of largest magnitude,
/// q = nearest(-127 / max * x) capped at 127, and the sums of each 16 values.
pub fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_K_BYTES, QK_K>(src, dst, |x, b| {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        b.fill(0);
        if amax == 0.0 {
            return;
        }
        let iscale = -127.0 / max;
        let mut q = [0i8; QK_K];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        for (j, &v) in q.iter().enumerate() {
            b[4 + j] = v as u8;
        }
        for g in 0..16 {
            let s: i16 = q[g * 16..g * 16 + 16].iter().map(|&v| i16::from(v)).sum();
            b[260 + 2 * g..262 + 2 * g].copy_from_slice(&s.to_le_bytes());
        }
    });
}

/// Round to nearest, ties to even, as ggml's nearest_int (its magic-number trick rounds in the
/// current rounding mode, which is to-nearest-even).
pub fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}
