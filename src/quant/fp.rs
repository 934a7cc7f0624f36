//! Float formats (F32, F16, BF16) and MXFP4 (E2M1 values with an E8M0 block scale).

use super::{quant_rows, rows};

pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    rows::<4, 1>(src, dst, |b, y| y[0] = f32::from_le_bytes(*b));
}

pub fn quantize_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.iter().zip(dst.as_chunks_mut::<4>().0) {
        *b = x.to_le_bytes();
    }
}

/// F16 to f32 (exact). The KV cache is read through this for every attention step: with
/// F16C (the AVX2 level and above) eight values per instruction, straight from the bytes;
/// otherwise 64 values per call of `half`'s slice conversion (a call per value was 6% of a
/// decode step, the slice conversion's per-call checks still 2%).
pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::detected() >= super::SimdLevel::Avx2 {
        // SAFETY: the CPU has AVX2 and F16C (`cpu::detected()` reports the AVX2 level only
        // when it has AVX2, FMA and F16C).
        unsafe { dequantize_f16_f16c(src, dst) };
        return;
    }
    use half::slice::HalfFloatSliceExt;
    let n = dst.len().min(src.len() / 2);
    let mut buf = [half::f16::ZERO; 64];
    for (s, d) in src[..2 * n].chunks(128).zip(dst[..n].chunks_mut(64)) {
        let h = &mut buf[..d.len()];
        for (x, b) in h.iter_mut().zip(s.as_chunks::<2>().0) {
            *x = half::f16::from_le_bytes(*b);
        }
        h.convert_to_f32_slice(d);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn dequantize_f16_f16c(src: &[u8], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = dst.len().min(src.len() / 2);
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let (s8, s_rest) = src.as_chunks::<16>();
    let (d8, d_rest) = dst.as_chunks_mut::<8>();
    for (s, d) in s8.iter().zip(d8.iter_mut()) {
        // SAFETY: `s` is 16 readable bytes and `d` 8 writable f32; loadu/storeu have no
        // alignment requirement.
        unsafe {
            let h = _mm_loadu_si128(s.as_ptr().cast());
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for (b, d) in s_rest.as_chunks::<2>().0.iter().zip(d_rest) {
        *d = half::f16::from_le_bytes(*b).to_f32();
    }
}

/// f32 to F16, rounding to nearest even: with F16C eight values per instruction (the KV
/// cache is written through this for every token of every layer).
pub fn quantize_f16(src: &[f32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::detected() >= super::SimdLevel::Avx2 {
        // SAFETY: the CPU has AVX2 and F16C (as in `dequantize_f16`).
        unsafe { quantize_f16_f16c(src, dst) };
        return;
    }
    quantize_f16_scalar(src, dst);
}

/// Rounds every value of `x` to the nearest f16 (ties to even), as f32: what a value
/// becomes through an F16 KV cache.
pub fn round_to_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::detected() >= super::SimdLevel::Avx2 {
        // SAFETY: the CPU has AVX2 and F16C (as in `dequantize_f16`).
        unsafe { round_to_f16_f16c(x) };
        return;
    }
    for v in x {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn round_to_f16_f16c(x: &mut [f32]) {
    use std::arch::x86_64::*;
    let (x8, rest) = x.as_chunks_mut::<8>();
    for v in x8 {
        // SAFETY: `v` is 8 f32; loadu/storeu have no alignment requirement.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(v.as_ptr()));
            _mm256_storeu_ps(v.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for v in rest {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn quantize_f16_f16c(src: &[f32], dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len() / 2);
    let (s8, s_rest) = src[..n].as_chunks::<8>();
    let (d8, d_rest) = dst[..2 * n].as_chunks_mut::<16>();
    for (s, d) in s8.iter().zip(d8.iter_mut()) {
        // SAFETY: `s` is 8 readable f32 and `d` 16 writable bytes; loadu/storeu have no
        // alignment requirement.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s.as_ptr()));
            _mm_storeu_si128(d.as_mut_ptr().cast(), h);
        }
    }
    quantize_f16_scalar(s_rest, d_rest);
}

fn quantize_f16_scalar(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.iter().zip(dst.as_chunks_mut::<2>().0) {
        *b = half::f16::from_f32(*x).to_le_bytes();
    }
}

pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Round to nearest even; NaN stays NaN (made quiet), as ggml_compute_fp32_to_bf16.
pub fn f32_to_bf16(x: f32) -> u16 {
    let n = x.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        return ((n >> 16) | 64) as u16;
    }
    ((u64::from(n) + 0x7fff + u64::from((n >> 16) & 1)) >> 16) as u16
}

pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    rows::<2, 1>(src, dst, |b, y| y[0] = bf16_to_f32(u16::from_le_bytes(*b)));
}

pub fn quantize_bf16(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.iter().zip(dst.as_chunks_mut::<2>().0) {
        *b = f32_to_bf16(*x).to_le_bytes();
    }
}

/// E2M1 values, doubled (the block scale is halved to match).
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of 2^(e - 127): the E8M0 block scale with the doubling of `MXFP4_VALUES` undone.
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

pub const MXFP4_BYTES: usize = 17;

pub fn dequantize_mxfp4(src: &[u8], dst: &mut [f32]) {
    rows::<MXFP4_BYTES, 32>(src, dst, |b, y| {
        let d = e8m0_to_f32_half(b[0]);
        for j in 0..16 {
            let q = b[1 + j];
            y[j] = d * f32::from(MXFP4_VALUES[usize::from(q & 0x0f)]);
            y[j + 16] = d * f32::from(MXFP4_VALUES[usize::from(q >> 4)]);
        }
    });
}

pub fn quantize_mxfp4(src: &[f32], dst: &mut [u8]) {
    quant_rows::<MXFP4_BYTES, 32>(src, dst, |x, b| {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as u8
        } else {
            0
        };
        let d = e8m0_to_f32_half(e);
        let best = |v: f32| {
            let mut best = 0;
            let mut best_err = f32::INFINITY;
            for (k, &kv) in MXFP4_VALUES.iter().enumerate() {
                let err = (d * f32::from(kv) - v).abs();
                if err < best_err {
                    best_err = err;
                    best = k as u8;
                }
            }
            best
        };
        b[0] = e;
        for j in 0..16 {
            b[1 + j] = best(x[j]) | (best(x[j + 16]) << 4);
        }
    });
}

/// NVFP4: 64 values in four sub-blocks of 16, each with an unsigned E4M3 scale; values are
/// E2M1 (the doubled `MXFP4_VALUES`, so scales are halved). Layout: d[4], qs[32]; sub-block s
/// takes the low nibbles of qs[8s..8s+8] then their high nibbles.
pub const NVFP4_BYTES: usize = 36;

/// An unsigned E4M3 scale (bias 7; bit 7 ignored; 0x7f, the NaN code, reads as 0), halved.
pub fn ue4m3_to_f32_half(x: u8) -> f32 {
    if x == 0 || x == 0x7f {
        return 0.0;
    }
    let exp = i32::from((x >> 3) & 0x0f);
    let man = f32::from(x & 7);
    let raw = if exp == 0 {
        man * (-9f32).exp2()
    } else {
        (1.0 + man / 8.0) * ((exp - 7) as f32).exp2()
    };
    raw * 0.5
}

pub fn dequantize_nvfp4(src: &[u8], dst: &mut [f32]) {
    rows::<NVFP4_BYTES, 64>(src, dst, |b, y| {
        for (s, y) in y.chunks_exact_mut(16).enumerate() {
            let d = ue4m3_to_f32_half(b[s]);
            for j in 0..8 {
                let q = b[4 + 8 * s + j];
                y[j] = d * f32::from(MXFP4_VALUES[usize::from(q & 0x0f)]);
                y[j + 8] = d * f32::from(MXFP4_VALUES[usize::from(q >> 4)]);
            }
        }
    });
}

#[cfg(test)]
mod f16_tests {
    /// f32 to f16 rounds as `half` does (ties to even, overflow to infinity, subnormals),
    /// in bytes and in place, NaN to NaN.
    #[test]
    fn f32_to_f16_rounds_as_half_does() {
        let mut x: Vec<f32> = (0..200_000u32)
            .map(|i| f32::from_bits(i.wrapping_mul(0x9e37_79b9)))
            .collect();
        x.extend([
            65504.0,
            65520.0,
            1e-8,
            -0.0,
            f32::INFINITY,
            f32::NAN,
            1.000_488_3,
        ]);
        let mut b = vec![0u8; 2 * x.len()];
        super::quantize_f16(&x, &mut b);
        let mut r = x.clone();
        super::round_to_f16(&mut r);
        for (i, &v) in x.iter().enumerate() {
            let want = half::f16::from_f32(v);
            let got = half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
            let same =
                |a: half::f16| a.to_bits() == want.to_bits() || (a.is_nan() && want.is_nan());
            assert!(same(got), "{v}: {got} vs {want}");
            assert!(same(half::f16::from_f32(r[i])), "{v}: {} vs {want}", r[i]);
        }
    }

    /// Every f16 value converts exactly (NaNs to NaNs), at every row length's tail.
    #[test]
    fn every_f16_converts_exactly() {
        let src: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        for n in [65536, 65533, 7, 1] {
            let mut dst = vec![0f32; n];
            super::dequantize_f16(&src[..2 * n], &mut dst);
            for (h, d) in (0..=u16::MAX).zip(&dst) {
                let want = half::f16::from_bits(h).to_f32();
                assert!(
                    d.to_bits() == want.to_bits() || (d.is_nan() && want.is_nan()),
                    "{h:#06x}: {d} vs {want}"
                );
            }
        }
    }
}
