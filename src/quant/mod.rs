//! Block quantization formats: layouts, dequantize, quantize and dot products.
//!
//! [`FORMATS`] is the one table of what each ggml type supports: its block size in elements
//! and in bytes (from `GgmlType::layout`), its scalar reference `dequantize`, its `quantize`
//! where one exists, and its dot product with the activation format it pairs with. Scalar code
//! here is the reference; SIMD paths (in `dot`) must agree with it.
//!
//! Everything in this module works on whole blocks whose counts the public functions check
//! first: the per-format code can then index fixed-size block arrays without bounds failures.

pub mod cpu;
pub mod dot;
mod fp;
mod grids;
mod iq4;
mod iq_grid;
mod kquants;
mod legacy;
mod simd;
mod ternary;

use crate::gguf::GgmlType;
use crate::{Error, Result};

pub use cpu::SimdLevel;
pub use dot::{
    Dot, MatOp, MatmulKernel, invariant_kernel, kernel, kernel_level, matmul_kernel, vec_dot,
};
pub use fp::{MXFP4_VALUES, bf16_to_f32, e8m0_to_f32_half, f32_to_bf16, round_to_f16};
pub use iq4::IQ4_VALUES;
pub use kquants::QK_K;

/// Turns whole blocks into floats: `src` holds n blocks, `dst` n * block_elems values.
pub type DequantizeFn = fn(src: &[u8], dst: &mut [f32]);
/// Turns floats into whole blocks: `src` holds n * block_elems values, `dst` n blocks.
pub type QuantizeFn = fn(src: &[f32], dst: &mut [u8]);

/// What rocmforge can do with one ggml type.
pub struct QuantFormat {
    pub ty: GgmlType,
    pub block_elems: usize,
    pub block_bytes: usize,
    pub dequantize: DequantizeFn,
    pub quantize: Option<QuantizeFn>,
    /// Dot product of a row of this type (as weights) with an activation row.
    pub dot: Option<Dot>,
}

const fn format(
    ty: GgmlType,
    dequantize: DequantizeFn,
    quantize: Option<QuantizeFn>,
    dot: Option<Dot>,
) -> QuantFormat {
    QuantFormat {
        ty,
        block_elems: ty.layout().block_elems as usize,
        block_bytes: ty.layout().block_bytes as usize,
        dequantize,
        quantize,
        dot,
    }
}

use GgmlType as T;

/// Every supported format.
pub static FORMATS: [QuantFormat; 28] = [
    format(
        T::F32,
        fp::dequantize_f32,
        Some(fp::quantize_f32),
        Some(dot::F32),
    ),
    format(
        T::F16,
        fp::dequantize_f16,
        Some(fp::quantize_f16),
        Some(dot::F16),
    ),
    format(
        T::Bf16,
        fp::dequantize_bf16,
        Some(fp::quantize_bf16),
        Some(dot::BF16),
    ),
    format(
        T::Q4_0,
        legacy::dequantize_q4_0,
        Some(legacy::quantize_q4_0),
        Some(dot::Q4_0),
    ),
    format(
        T::Q4_1,
        legacy::dequantize_q4_1,
        Some(legacy::quantize_q4_1),
        Some(dot::Q4_1),
    ),
    format(
        T::Q5_0,
        legacy::dequantize_q5_0,
        Some(legacy::quantize_q5_0),
        Some(dot::Q5_0),
    ),
    format(
        T::Q5_1,
        legacy::dequantize_q5_1,
        Some(legacy::quantize_q5_1),
        Some(dot::Q5_1),
    ),
    format(
        T::Q8_0,
        legacy::dequantize_q8_0,
        Some(legacy::quantize_q8_0),
        Some(dot::Q8_0),
    ),
    format(
        T::Q8_1,
        legacy::dequantize_q8_1,
        Some(legacy::quantize_q8_1),
        None,
    ),
    format(T::Q2K, kquants::dequantize_q2_k, None, Some(dot::Q2_K)),
    format(T::Q3K, kquants::dequantize_q3_k, None, Some(dot::Q3_K)),
    format(
        T::Q4K,
        kquants::dequantize_q4_k,
        Some(kquants::quantize_q4_k),
        Some(dot::Q4_K),
    ),
    format(
        T::Q5K,
        kquants::dequantize_q5_k,
        Some(kquants::quantize_q5_k),
        Some(dot::Q5_K),
    ),
    format(
        T::Q6K,
        kquants::dequantize_q6_k,
        Some(kquants::quantize_q6_k),
        Some(dot::Q6_K),
    ),
    format(
        T::Q8K,
        kquants::dequantize_q8_k,
        Some(kquants::quantize_q8_k),
        None,
    ),
    format(T::Iq4Nl, iq4::dequantize_iq4_nl, None, Some(dot::IQ4_NL)),
    format(T::Iq4Xs, iq4::dequantize_iq4_xs, None, Some(dot::IQ4_XS)),
    format(
        T::Mxfp4,
        fp::dequantize_mxfp4,
        Some(fp::quantize_mxfp4),
        Some(dot::MXFP4),
    ),
    format(T::Nvfp4, fp::dequantize_nvfp4, None, Some(dot::NVFP4)),
    format(T::Iq3S, iq_grid::dequantize_iq3_s, None, Some(dot::IQ3_S)),
    format(
        T::Iq3Xxs,
        iq_grid::dequantize_iq3_xxs,
        None,
        Some(dot::IQ3_XXS),
    ),
    format(T::Iq2S, iq_grid::dequantize_iq2_s, None, Some(dot::IQ2_S)),
    format(
        T::Iq2Xs,
        iq_grid::dequantize_iq2_xs,
        None,
        Some(dot::IQ2_XS),
    ),
    format(
        T::Iq2Xxs,
        iq_grid::dequantize_iq2_xxs,
        None,
        Some(dot::IQ2_XXS),
    ),
    format(T::Iq1S, iq_grid::dequantize_iq1_s, None, Some(dot::IQ1_S)),
    format(T::Iq1M, iq_grid::dequantize_iq1_m, None, Some(dot::IQ1_M)),
    format(
        T::Tq1_0,
        ternary::dequantize_tq1_0,
        Some(ternary::quantize_tq1_0),
        Some(dot::TQ1_0),
    ),
    format(
        T::Tq2_0,
        ternary::dequantize_tq2_0,
        Some(ternary::quantize_tq2_0),
        Some(dot::TQ2_0),
    ),
];

/// The format entry of `ty`, or `None` when rocmforge cannot compute with it yet.
pub fn lookup(ty: GgmlType) -> Option<&'static QuantFormat> {
    FORMATS.iter().find(|f| f.ty == ty)
}

fn require(ty: GgmlType) -> Result<&'static QuantFormat> {
    lookup(ty).ok_or_else(|| Error::Unsupported(format!("the {ty} format is not supported yet")))
}

/// Number of blocks that `n_elems` values of format `f` make, and their byte count.
fn block_count(f: &QuantFormat, n_elems: usize) -> Result<(usize, usize)> {
    if !n_elems.is_multiple_of(f.block_elems) {
        return Err(Error::InvalidArg(format!(
            "{n_elems} values are not a whole number of {} blocks of {}",
            f.ty, f.block_elems
        )));
    }
    let n_blocks = n_elems / f.block_elems;
    let bytes = n_blocks
        .checked_mul(f.block_bytes)
        .ok_or_else(|| Error::Overflow(format!("the size of {n_elems} {} values", f.ty)))?;
    Ok((n_blocks, bytes))
}

fn check_bytes(f: &QuantFormat, n_elems: usize, n_bytes: usize) -> Result<()> {
    let (_, need) = block_count(f, n_elems)?;
    if n_bytes != need {
        return Err(Error::InvalidArg(format!(
            "{n_elems} {} values take {need} bytes, not {n_bytes}",
            f.ty
        )));
    }
    Ok(())
}

/// Dequantizes `dst.len()` values from `src`, which must hold exactly their blocks.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let f = require(ty)?;
    check_bytes(f, dst.len(), src.len())?;
    (f.dequantize)(src, dst);
    Ok(())
}

/// Quantizes `src` into `dst`, which must have exactly the bytes of its blocks.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    let f = require(ty)?;
    let q = f
        .quantize
        .ok_or_else(|| Error::Unsupported(format!("quantizing to {ty} is not supported yet")))?;
    check_bytes(f, src.len(), dst.len())?;
    q(src, dst);
    Ok(())
}

/// The quantizer for activations of format `act` at run time: for Q8_0 and Q8_1, the variant
/// llama.cpp's SIMD code uses (`id = 127 / amax`, round half to even), so our matrix products
/// see the same activations as llama.cpp's; the table's reference quantizer otherwise.
pub fn activation_quantizer(act: GgmlType) -> Option<QuantizeFn> {
    activation_quantizer_at(act, cpu::level())
}

/// `activation_quantizer` at SIMD level `level` (lowered to `cpu::detected()`): every level
/// writes the same bytes, the vector ones faster.
pub fn activation_quantizer_at(act: GgmlType, level: SimdLevel) -> Option<QuantizeFn> {
    #[cfg(target_arch = "x86_64")]
    if level.min(cpu::detected()) == SimdLevel::Avx512 {
        use simd::x86::avx512::quantize as q;
        match act {
            GgmlType::Q8_0 => return Some(q::QUANTIZE_Q8_0),
            GgmlType::Q8_1 => return Some(q::QUANTIZE_Q8_1),
            GgmlType::Q8K => return Some(q::QUANTIZE_Q8_K),
            _ => {}
        }
    }
    let _ = level;
    match act {
        GgmlType::Q8_0 => Some(legacy::quantize_q8_0_activations),
        GgmlType::Q8_1 => Some(legacy::quantize_q8_1_activations),
        _ => lookup(act).and_then(|f| f.quantize),
    }
}

/// The quantizer llama.cpp applies to activation rows that its repacked kernels take four at
/// a time (`MatmulKernel::fours`); the same as `activation_quantizer` except for Q8_K.
pub fn activation_quantizer_in_fours(act: GgmlType) -> Option<QuantizeFn> {
    match act {
        GgmlType::Q8K => Some(kquants::quantize_q8_k_in_fours),
        _ => activation_quantizer(act),
    }
}

/// Bytes taken by `n_elems` values of `ty` (an error when not whole blocks).
pub fn row_bytes(ty: GgmlType, n_elems: usize) -> Result<usize> {
    block_count(require(ty)?, n_elems).map(|(_, b)| b)
}

// Helpers for the per-format code.

/// The little-endian f16 at `at`, as f32 (exact).
#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Stores `v` as f16 (round to nearest even) at `at`.
#[inline]
fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

/// Applies `f` to each block of `src` and its values in `dst` (dequantize direction). The
/// callers have checked that the counts match; extra bytes or values would be ignored.
#[inline]
fn rows<const B: usize, const E: usize>(
    src: &[u8],
    dst: &mut [f32],
    f: impl Fn(&[u8; B], &mut [f32; E]),
) {
    for (b, y) in src
        .as_chunks::<B>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<E>().0)
    {
        f(b, y);
    }
}

/// Applies `f` to each block's values in `src` and its bytes in `dst` (quantize direction).
#[inline]
fn quant_rows<const B: usize, const E: usize>(
    src: &[f32],
    dst: &mut [u8],
    f: impl Fn(&[f32; E], &mut [u8; B]),
) {
    for (x, b) in src
        .as_chunks::<E>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<B>().0)
    {
        f(x, b);
    }
}
