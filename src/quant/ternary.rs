//! Ternary formats: values in {-1, 0, 1} times one f16 scale per 256. TQ2_0 packs four 2-bit
//! codes per byte; TQ1_0 packs five base-3 digits per byte (as ceil(n * 256 / 243), so the
//! digits come out by repeated multiply-by-3) plus four per byte in its last 4 bytes.
//! Arithmetic and packing follow gguf-py (bit-exact both ways).

use super::{f16_at, put_f16, quant_rows, rows};

pub const TQ1_0_BYTES: usize = 54;
pub const TQ2_0_BYTES: usize = 66;

/// The ternary digit `j` (most significant first) of a packed TQ1_0 byte, as 0..=2.
#[inline]
fn trit(byte: u8, j: u32) -> u8 {
    let shifted = byte.wrapping_mul(3u8.pow(j));
    ((u16::from(shifted) * 3) >> 8) as u8
}

/// Calls `f(e, q)` with each of the 256 codes (0..=2, the value plus one) of a TQ1_0 block.
fn tq1_0_codes(b: &[u8], mut f: impl FnMut(usize, u8)) {
    for j in 0..5u32 {
        let j_ = j as usize;
        for (l, &byte) in b[..32].iter().enumerate() {
            f(32 * j_ + l, trit(byte, j));
        }
        for (l, &byte) in b[32..48].iter().enumerate() {
            f(160 + 16 * j_ + l, trit(byte, j));
        }
    }
    for j in 0..4u32 {
        for (l, &byte) in b[48..52].iter().enumerate() {
            f(240 + 4 * j as usize + l, trit(byte, j));
        }
    }
}

/// The code (0..=2) of element `e` of a TQ2_0 block.
#[inline]
fn tq2_0_code(b: &[u8], e: usize) -> u8 {
    let (half, shift, l) = (e / 128, (e % 128) / 32, e % 32);
    (b[32 * half + l] >> (2 * shift)) & 3
}

pub fn dequantize_tq1_0(src: &[u8], dst: &mut [f32]) {
    rows::<TQ1_0_BYTES, 256>(src, dst, |b, y| {
        let d = f16_at(b, 52);
        tq1_0_codes(b, |e, q| y[e] = d * f32::from(q as i8 - 1));
    });
}

pub fn dequantize_tq2_0(src: &[u8], dst: &mut [f32]) {
    rows::<TQ2_0_BYTES, 256>(src, dst, |b, y| {
        let d = f16_at(b, 64);
        for (e, y) in y.iter_mut().enumerate() {
            *y = d * f32::from(tq2_0_code(b, e) as i8 - 1);
        }
    });
}

/// Scale (max |x|) and codes round(x / scale) + 1.
fn ternary_codes(x: &[f32; 256]) -> (f32, [u8; 256]) {
    let d = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut q = [0u8; 256];
    for (q, v) in q.iter_mut().zip(x) {
        *q = ((v * id).round() as i8 + 1) as u8;
    }
    (d, q)
}

/// Packs base-3 digits (most significant first, `weights` descending powers of 3) as
/// ceil(n * 256 / 243).
fn pack_trits(digits: impl Iterator<Item = (u8, u16)>) -> u8 {
    let n: u16 = digits.map(|(q, w)| u16::from(q) * w).sum();
    (n * 256).div_ceil(243) as u8
}

pub fn quantize_tq1_0(src: &[f32], dst: &mut [u8]) {
    quant_rows::<TQ1_0_BYTES, 256>(src, dst, |x, b| {
        let (d, q) = ternary_codes(x);
        const W5: [u16; 5] = [81, 27, 9, 3, 1];
        for l in 0..32 {
            b[l] = pack_trits((0..5).map(|j| (q[32 * j + l], W5[j])));
        }
        for l in 0..16 {
            b[32 + l] = pack_trits((0..5).map(|j| (q[160 + 16 * j + l], W5[j])));
        }
        for l in 0..4 {
            b[48 + l] = pack_trits((0..4).map(|j| (q[240 + 4 * j + l], W5[j])));
        }
        put_f16(b, 52, d);
    });
}

pub fn quantize_tq2_0(src: &[f32], dst: &mut [u8]) {
    quant_rows::<TQ2_0_BYTES, 256>(src, dst, |x, b| {
        let (d, q) = ternary_codes(x);
        b[..64].fill(0);
        for (e, &v) in q.iter().enumerate() {
            let (half, shift, l) = (e / 128, (e % 128) / 32, e % 32);
            b[32 * half + l] |= v << (2 * shift);
        }
        put_f16(b, 64, d);
    });
}

/// Dot products with Q8_K: d * dy * sum((code - 1) * a).
pub fn dot_tq1_0_q8_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in w
        .as_chunks::<TQ1_0_BYTES>()
        .0
        .iter()
        .zip(a.as_chunks::<292>().0)
    {
        let mut isum = 0i32;
        tq1_0_codes(x, |e, q| {
            isum += (i32::from(q) - 1) * i32::from(y[4 + e] as i8)
        });
        sum += f16_at(x, 52) * super::kquants::q8_k_d(y) * isum as f32;
    }
    sum
}

pub fn dot_tq2_0_q8_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in w
        .as_chunks::<TQ2_0_BYTES>()
        .0
        .iter()
        .zip(a.as_chunks::<292>().0)
    {
        let isum: i32 = (0..256)
            .map(|e| (i32::from(tq2_0_code(x, e)) - 1) * i32::from(y[4 + e] as i8))
            .sum();
        sum += f16_at(x, 64) * super::kquants::q8_k_d(y) * isum as f32;
    }
    sum
}
