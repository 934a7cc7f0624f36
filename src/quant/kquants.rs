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
    quant_rows::<Q8_K_BYTES, QK_K>(src, dst, |x, b| q8_k_block(x, b, false));
}

/// Q8_K as ggml's `ggml_quantize_mat_q8_K_4x8` quantizes rows for its repacked kernels: the
/// same, except that when the largest magnitude is reached by both a positive and a negative
/// value the positive one sets the sign (the reference takes the first).
pub fn quantize_q8_k_in_fours(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q8_K_BYTES, QK_K>(src, dst, |x, b| q8_k_block(x, b, true));
}

pub(super) fn q8_k_block(x: &[f32; QK_K], b: &mut [u8; Q8_K_BYTES], positive_wins: bool) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if positive_wins && x.contains(&amax) {
        max = amax;
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
}

/// Round to nearest, ties to even, as ggml's nearest_int. Its magic-number trick, (v + 1.5 *
/// 2^23) - 1.5 * 2^23, is exact for |v| <= 2^22 and rounds in the current rounding mode
/// (to-nearest-even); it is used here too because `round_ties_even` is a call to libm's
/// `rintf` per value on x86-64 baseline builds (the activation quantizer runs it for every
/// value of every K-quant matmul input). Larger values, NaN included, take the exact path.
pub fn nearest_int(v: f32) -> i32 {
    if v.abs() <= 4_194_303.0 {
        let magic = f32::from_bits(0x4b40_0000);
        ((v + magic) - magic) as i32
    } else {
        v.round_ties_even() as i32
    }
}

/// Weights for fitting one sub-block: every value counts, large ones more (their error costs
/// more in a dot product).
fn fit_weights(x: &[f32], w: &mut [f32]) {
    let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    for (w, v) in w.iter_mut().zip(x) {
        *w = rms + v.abs();
    }
}

/// Fits `x ~ scale * q - min` with q in 0..=nmax and min >= 0 (an asymmetric grid that always
/// contains 0's neighbourhood), minimising the weighted squared error. Tries a range of grid
/// spacings around the min-max one, solves the weighted least squares for (scale, min) on each
/// rounding, and keeps the best. Returns (scale, min); `scale` is 0 for a constant sub-block.
fn fit_scale_min(x: &[f32], w: &[f32], nmax: u8) -> (f32, f32) {
    let lo = x.iter().fold(f32::INFINITY, |m, &v| m.min(v)).min(0.0);
    let hi = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if hi <= lo {
        return (0.0, -lo);
    }
    let n = f32::from(nmax);
    let mut best = ((hi - lo) / n, -lo);
    let err = |scale: f32, min: f32| -> f32 {
        x.iter()
            .zip(w)
            .map(|(&v, &wt)| {
                let q = ((v + min) / scale).round().clamp(0.0, n);
                let e = scale * q - min - v;
                wt * e * e
            })
            .sum()
    };
    let mut best_err = err(best.0, best.1);
    for step in -10..=10 {
        let iscale = (n + 0.1 * step as f32) / (hi - lo);
        // Round with this spacing, then refit scale and min to those integers.
        let (mut sw, mut swq, mut swqq, mut swx, mut swqx) = (0f32, 0f32, 0f32, 0f32, 0f32);
        for (&v, &wt) in x.iter().zip(w) {
            let q = (iscale * (v - lo)).round().clamp(0.0, n);
            sw += wt;
            swq += wt * q;
            swqq += wt * q * q;
            swx += wt * v;
            swqx += wt * q * v;
        }
        let det = sw * swqq - swq * swq;
        if det <= 0.0 {
            continue;
        }
        let scale = (sw * swqx - swq * swx) / det;
        let mut min = -(swqq * swx - swq * swqx) / det;
        if scale <= 0.0 {
            continue;
        }
        if min < 0.0 {
            min = 0.0;
        }
        let e = err(scale, min);
        if e < best_err {
            best_err = e;
            best = (scale, min);
        }
    }
    best
}

/// Packs eight 6-bit scales and mins into the 12 bytes `k_scale_min` reads.
fn pack_scale_min(sc: &[u8; 8], m: &[u8; 8], out: &mut [u8]) {
    for j in 0..4 {
        out[j] = sc[j] | (sc[j + 4] >> 4) << 6;
        out[j + 4] = m[j] | (m[j + 4] >> 4) << 6;
        out[j + 8] = (sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4;
    }
}

/// The common part of Q4_K and Q5_K: per-sub-block fits, 6-bit scales and mins under two f16
/// super-scales, then the quants against the stored (rounded) scales. Returns the quants.
fn quantize_k_scale_min(x: &[f32; QK_K], b: &mut [u8], nmax: u8) -> [u8; QK_K] {
    let mut w = [0f32; 32];
    let mut fits = [(0f32, 0f32); 8];
    for (j, fit) in fits.iter_mut().enumerate() {
        let xs = &x[32 * j..32 * j + 32];
        fit_weights(xs, &mut w);
        *fit = fit_scale_min(xs, &w, nmax);
    }
    let max_scale = fits.iter().fold(0f32, |m, f| m.max(f.0));
    let max_min = fits.iter().fold(0f32, |m, f| m.max(f.1));
    let d = max_scale / 63.0;
    let dmin = max_min / 63.0;
    let q6 = |v: f32, s: f32| {
        if s > 0.0 {
            nearest_int(v / s).clamp(0, 63) as u8
        } else {
            0
        }
    };
    let sc: [u8; 8] = std::array::from_fn(|j| q6(fits[j].0, d));
    let m: [u8; 8] = std::array::from_fn(|j| q6(fits[j].1, dmin));
    super::put_f16(b, 0, d);
    super::put_f16(b, 2, dmin);
    pack_scale_min(&sc, &m, &mut b[4..16]);
    // Quantize against exactly what dequantization will use.
    let (d, dmin) = (super::f16_at(b, 0), super::f16_at(b, 2));
    let mut q = [0u8; QK_K];
    for j in 0..8 {
        let (s, mn) = k_scale_min(&b[4..16], j);
        let (d1, m1) = (d * f32::from(s), dmin * f32::from(mn));
        if d1 == 0.0 {
            continue;
        }
        for l in 0..32 {
            q[32 * j + l] = nearest_int((x[32 * j + l] + m1) / d1).clamp(0, i32::from(nmax)) as u8;
        }
    }
    q
}

pub fn quantize_q4_k(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q4_K_BYTES, QK_K>(src, dst, |x, b| {
        let q = quantize_k_scale_min(x, b, 15);
        for c in 0..4 {
            for l in 0..32 {
                b[16 + 32 * c + l] = q[64 * c + l] | q[64 * c + 32 + l] << 4;
            }
        }
    });
}

pub fn quantize_q5_k(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q5_K_BYTES, QK_K>(src, dst, |x, b| {
        let q = quantize_k_scale_min(x, b, 31);
        b[16..48].fill(0);
        for c in 0..4 {
            for l in 0..32 {
                let (lo, hi) = (q[64 * c + l], q[64 * c + 32 + l]);
                b[48 + 32 * c + l] = (lo & 0x0f) | (hi & 0x0f) << 4;
                b[16 + l] |= (lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1);
            }
        }
    });
}

/// Fits `x ~ scale * q` with q in -32..=31 minimising the error weighted by x^2 (large values
/// matter most), over a range of spacings around the one that maps the extreme value to -32.
fn fit_symmetric(x: &[f32]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| (iscale * v).round().clamp(-32.0, 31.0);
    let mut best = (0f32, f32::INFINITY);
    for step in -9..=9 {
        let iscale = -(32.0 + 0.1 * step as f32) / max;
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let l = quant(iscale, v);
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        if suml2 <= 0.0 {
            continue;
        }
        let scale = sumlx / suml2;
        let err: f32 = x
            .iter()
            .map(|&v| {
                let e = v - scale * quant(1.0 / scale, v);
                v * v * e * e
            })
            .sum();
        if err < best.1 {
            best = (scale, err);
        }
    }
    best.0
}

pub fn quantize_q6_k(src: &[f32], dst: &mut [u8]) {
    quant_rows::<Q6_K_BYTES, QK_K>(src, dst, |x, b| {
        let scales: [f32; 16] = std::array::from_fn(|g| fit_symmetric(&x[16 * g..16 * g + 16]));
        let (mut max, mut amax) = (0f32, 0f32);
        for &s in &scales {
            if s.abs() > amax {
                amax = s.abs();
                max = s;
            }
        }
        b.fill(0);
        if amax == 0.0 {
            return;
        }
        let iscale = -128.0 / max;
        for (g, &s) in scales.iter().enumerate() {
            b[192 + g] = nearest_int(iscale * s).clamp(-128, 127) as i8 as u8;
        }
        super::put_f16(b, 208, 1.0 / iscale);
        let d = super::f16_at(b, 208);
        let mut q = [32u8; QK_K];
        for (i, q) in q.iter_mut().enumerate() {
            let d1 = d * f32::from(b[192 + i / 16] as i8);
            if d1 != 0.0 {
                *q = (nearest_int(x[i] / d1).clamp(-32, 31) + 32) as u8;
            }
        }
        for (i, &v) in q.iter().enumerate() {
            let (half, r) = (i / 128, i % 128);
            b[half * 64 + r % 64] |= (v & 0x0f) << (4 * (r / 64));
            b[128 + half * 32 + r % 32] |= (v >> 4) << (2 * (r / 32));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::nearest_int;

    #[test]
    fn nearest_int_is_round_half_to_even() {
        let mut values: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 8.0).collect();
        values.extend([
            0.5,
            1.5,
            2.5,
            -0.5,
            -2.5,
            4_194_302.5,
            4_194_303.0,
            -4_194_303.0,
        ]);
        values.extend([4_194_304.0, 1e9, -1e9, 8_388_609.0, f32::NAN]);
        for v in values {
            assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
        }
    }
}
