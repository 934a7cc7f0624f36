//! Dot products of one weight row (any supported format) with one activation row, the scalar
//! reference versions. Quantized weights pair with activations quantized to Q8_0 (Q4_0, Q5_0,
//! Q8_0, IQ4_NL, MXFP4), Q8_1 (Q4_1, Q5_1: the activation block carries d * sum(q) so the
//! weight offset applies once per block) or Q8_K (the K-quants and IQ4_XS: the activation
//! block carries sums of 16 values for the sub-block minimums). Float weights take f32
//! activations. Integer products are summed exactly per block, then scaled in f32, as ggml does.

use super::f16_at;
use super::fp::{MXFP4_VALUES, bf16_to_f32, e8m0_to_f32_half, ue4m3_to_f32_half};
use super::iq4::{IQ4_VALUES, iq4_xs_scale};
use super::kquants::{k_scale_min, q3_k_scales, q6_k_value, q8_k_d};
use crate::gguf::GgmlType;
use crate::{Error, Result};

/// One weight row against four activation rows at once.
pub type DotX4 = fn(w: &[u8], a: &[&[u8]; 4]) -> [f32; 4];

/// Four weight rows against one activation row (decode).
pub type DotRows4 = fn(w: &[&[u8]; 4], a: &[u8]) -> [f32; 4];
/// Sixteen weight rows against one activation row (decode, 512-bit vectors).
pub type DotRows16 = fn(w: &[&[u8]; 16], a: &[u8]) -> [f32; 16];
/// Two weight rows against four activation rows (prefill).
pub type DotTile = fn(w: &[&[u8]; 2], a: &[&[u8]; 4]) -> [[f32; 4]; 2];
/// Prompt kernels on 512-bit vectors over activations packed once per product: `pack` lays
/// out `tokens` activation rows as a panel of `panel_block_bytes` per block of 32 values,
/// `rows` decodes four weight rows (`rows_block_bytes` per block), once for all the panels
/// they meet, and `kernel` multiplies them with one panel (outputs [row][token], the first
/// `tokens` of each row). Each output equals the one-row kernel's bit for bit. Two layouts:
/// eight tokens as pairs side by side, each pair's vector halves the one-row kernel's
/// eight-lane accumulators (`avx512/wide.rs`), or sixteen tokens in the lanes of one vector
/// for formats summed block by block (`avx512/lanes.rs`).
#[derive(Clone, Copy)]
pub struct Wide {
    pub tokens: usize,
    pub panel_block_bytes: usize,
    pub rows_block_bytes: usize,
    pub pack: fn(a: &[&[u8]], panel: &mut [u8]),
    pub rows: fn(w: &[&[u8]; 4], out: &mut [u8]),
    pub kernel: fn(rows: &[u8], panel: &[u8]) -> [[f32; MAX_PANEL_TOKENS]; 4],
}

/// The most tokens a `Wide` panel holds.
pub const MAX_PANEL_TOKENS: usize = 16;

/// Kernels over several weight rows at once, where a SIMD level has them: each output equals
/// the one-row kernel's (`Dot::Quant::f`) bit for bit, so they change speed, never results.
/// One row alone waits on its accumulator's latency block after block; several rows' chains
/// run side by side, and each activation block is loaded once for all of them.
#[derive(Clone, Copy)]
pub struct Tiles {
    pub rows4: DotRows4,
    /// Where the level has 512-bit vectors and the format is summed block by block: sixteen
    /// rows in the vector lanes.
    pub rows16: Option<DotRows16>,
    pub r2x4: DotTile,
    /// Where the level has 512-bit vectors: two (row, token) pairs per vector, each half
    /// its own eight-lane accumulator in the one-row order.
    pub wide: Option<Wide>,
}

/// How a weight format computes dot products.
#[derive(Clone, Copy)]
pub enum Dot {
    /// Float weights (bytes) with f32 activations.
    Float(fn(w: &[u8], a: &[f32]) -> f32),
    /// Quantized weights with activations quantized to `act`; both rows hold the same number
    /// of values, as whole blocks. `f4`, where a SIMD level has it, computes the dots of one
    /// weight row with four activation rows at once (decoding each weight block once).
    Quant {
        act: GgmlType,
        f: fn(w: &[u8], a: &[u8]) -> f32,
        f4: Option<DotX4>,
        tiles: Option<Tiles>,
    },
}

pub const F32: Dot = Dot::Float(dot_f32);
pub const F16: Dot = Dot::Float(dot_f16);
pub const BF16: Dot = Dot::Float(dot_bf16);
pub const Q4_0: Dot = Dot::Quant {
    act: GgmlType::Q8_0,
    f: dot_q4_0_q8_0,
    f4: None,
    tiles: None,
};
pub const Q4_1: Dot = Dot::Quant {
    act: GgmlType::Q8_1,
    f: dot_q4_1_q8_1,
    f4: None,
    tiles: None,
};
pub const Q5_0: Dot = Dot::Quant {
    act: GgmlType::Q8_0,
    f: dot_q5_0_q8_0,
    f4: None,
    tiles: None,
};
pub const Q5_1: Dot = Dot::Quant {
    act: GgmlType::Q8_1,
    f: dot_q5_1_q8_1,
    f4: None,
    tiles: None,
};
pub const Q8_0: Dot = Dot::Quant {
    act: GgmlType::Q8_0,
    f: dot_q8_0_q8_0,
    f4: None,
    tiles: None,
};
pub const Q2_K: Dot = Dot::Quant {
    act: GgmlType::Q8K,
    f: dot_q2_k_q8_k,
    f4: None,
    tiles: None,
};
pub const Q3_K: Dot = Dot::Quant {
    act: GgmlType::Q8K,
    f: dot_q3_k_q8_k,
    f4: None,
    tiles: None,
};
pub const Q4_K: Dot = Dot::Quant {
    act: GgmlType::Q8K,
    f: dot_q4_k_q8_k,
    f4: None,
    tiles: None,
};
pub const Q5_K: Dot = Dot::Quant {
    act: GgmlType::Q8K,
    f: dot_q5_k_q8_k,
    f4: None,
    tiles: None,
};
pub const Q6_K: Dot = Dot::Quant {
    act: GgmlType::Q8K,
    f: dot_q6_k_q8_k,
    f4: None,
    tiles: None,
};
pub const IQ4_NL: Dot = Dot::Quant {
    act: GgmlType::Q8_0,
    f: dot_iq4_nl_q8_0,
    f4: None,
    tiles: None,
};
pub const IQ4_XS: Dot = Dot::Quant {
    act: GgmlType::Q8K,
    f: dot_iq4_xs_q8_k,
    f4: None,
    tiles: None,
};
pub const MXFP4: Dot = Dot::Quant {
    act: GgmlType::Q8_0,
    f: dot_mxfp4_q8_0,
    f4: None,
    tiles: None,
};
pub const IQ3_S: Dot = grid(super::iq_grid::dot_iq3_s_q8_k);
pub const IQ3_XXS: Dot = grid(super::iq_grid::dot_iq3_xxs_q8_k);
pub const IQ2_S: Dot = grid(super::iq_grid::dot_iq2_s_q8_k);
pub const IQ2_XS: Dot = grid(super::iq_grid::dot_iq2_xs_q8_k);
pub const IQ2_XXS: Dot = grid(super::iq_grid::dot_iq2_xxs_q8_k);
pub const IQ1_S: Dot = grid(super::iq_grid::dot_iq1_s_q8_k);
pub const IQ1_M: Dot = grid(super::iq_grid::dot_iq1_m_q8_k);
pub const TQ1_0: Dot = grid(super::ternary::dot_tq1_0_q8_k);
pub const TQ2_0: Dot = grid(super::ternary::dot_tq2_0_q8_k);

/// The codebook and ternary formats all pair with Q8_K.
const fn grid(f: fn(&[u8], &[u8]) -> f32) -> Dot {
    Dot::Quant {
        act: GgmlType::Q8K,
        f,
        f4: None,
        tiles: None,
    }
}

pub const NVFP4: Dot = Dot::Quant {
    act: GgmlType::Q8_0,
    f: dot_nvfp4_q8_0,
    f4: None,
    tiles: None,
};

/// The SIMD level of the kernel `kernel(ty, level)` returns (`Scalar` where the level has no
/// kernel for the format).
pub fn kernel_level(ty: GgmlType, level: super::SimdLevel) -> super::SimdLevel {
    let level = level.min(super::cpu::detected());
    #[cfg(target_arch = "x86_64")]
    {
        use super::simd::x86;
        let has = match level {
            super::SimdLevel::Avx512 => x86::avx512::dot(ty).is_some(),
            super::SimdLevel::Avx2 => x86::avx2::dot(ty).is_some(),
            super::SimdLevel::Scalar | super::SimdLevel::Neon => false,
        };
        if has {
            return level;
        }
    }
    #[cfg(target_arch = "aarch64")]
    if level >= super::SimdLevel::Neon && super::simd::arm::dot(ty).is_some() {
        return super::SimdLevel::Neon;
    }
    let _ = (ty, level);
    super::SimdLevel::Scalar
}

/// The dot product kernel for weight format `ty` at SIMD level `level`, lowered to what this
/// CPU supports (`cpu::detected()`), falling back to the scalar reference where a level has no
/// kernel for the format. Every kernel of one format pairs with the same activation format.
/// This is the one dispatch place: SIMD kernels are reachable only through it.
pub fn kernel(ty: GgmlType, level: super::SimdLevel) -> Option<Dot> {
    let scalar = super::lookup(ty).and_then(|f| f.dot);
    let level = level.min(super::cpu::detected());
    #[cfg(target_arch = "x86_64")]
    {
        use super::simd::x86;
        let simd = match level {
            super::SimdLevel::Avx512 => x86::avx512::dot(ty),
            super::SimdLevel::Avx2 => x86::avx2::dot(ty),
            super::SimdLevel::Scalar | super::SimdLevel::Neon => None,
        };
        if simd.is_some() {
            return simd;
        }
    }
    #[cfg(target_arch = "aarch64")]
    if level >= super::SimdLevel::Neon
        && let Some(simd) = super::simd::arm::dot(ty)
    {
        return Some(simd);
    }
    let _ = level;
    scalar
}

/// A matrix product's kernels: what llama.cpp's CPU backend computes for a matrix of this
/// format and shape on this CPU.
#[derive(Clone, Copy)]
pub struct MatmulKernel {
    /// The kernel for every activation row; where `fours` is set, for the rows past the last
    /// multiple of four (llama.cpp's GEMV).
    pub dot: Dot,
    /// Where llama.cpp repacks the matrix ("CPU_REPACK"): the kernel for the activation rows
    /// it takes four at a time (its GEMM), whose activations are quantized by
    /// `quant::activation_quantizer_in_fours`.
    pub fours: Option<Dot>,
}

/// Which of llama.cpp's matrix operations a product stands for: they take different kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatOp {
    /// `GGML_OP_MUL_MAT`: a weight matrix times a batch.
    MulMat,
    /// `GGML_OP_MUL_MAT_ID`: one expert of a mixture times the rows routed to it.
    Expert,
}

/// The kernels for `n_tokens` activation rows through a matrix of `n_rows` rows of format
/// `ty` at SIMD level `level`, chosen as llama.cpp's CPU backend (an AVX-512 build, as the
/// reference data's) chooses on x86-64, so that logits equal llama.cpp's bit for bit:
///
/// 1. Q4_0, IQ4_NL, Q4_K and Q2_K matrices with a multiple of 8 rows are repacked
///    (`ggml-cpu/arch/x86/repack.cpp`): their GEMV sums each block whole and accumulates
///    block after block; their GEMM (rows in groups of four, `MatOp::MulMat` with 4 rows or
///    more) does the same, Q4_K every two sub-blocks.
/// 2. Other K-quant and IQ4_XS matrices take the tiled kernel (`ggml-cpu/tiled`) for 8 rows
///    or more.
/// 3. BF16 takes llamafile's tinyBLAS for 2 rows or more (rows of a multiple of 32 values).
/// 4. Everything else goes through `ggml_vec_dot_*`, whose order `kernel` reproduces.
///
/// With `n_tokens` 1 this is what llama.cpp computes for one row, in every row's place.
pub fn matmul_kernel(
    ty: GgmlType,
    n_rows: usize,
    n_tokens: usize,
    op: MatOp,
    level: super::SimdLevel,
) -> Option<MatmulKernel> {
    let level = level.min(super::cpu::detected());
    #[cfg(target_arch = "x86_64")]
    {
        use super::simd::x86;
        type Table = fn(GgmlType) -> Option<Dot>;
        let (blockwise, gemm, tiled): (Table, Table, Table) = match level {
            super::SimdLevel::Avx512 => (
                x86::avx512::blockwise,
                x86::avx512::blockwise_gemm,
                x86::avx512::tiled_k,
            ),
            _ => (
                x86::avx2::blockwise,
                x86::avx2::blockwise_gemm,
                x86::avx2::tiled_k,
            ),
        };
        let x86 = level >= super::SimdLevel::Avx2;
        // Q2_K is repacked by AVX-512 builds only; the reference data comes from one, so we
        // follow it at the AVX2 level too (as the AVX2 kernels emulate its other roundings).
        let repacks = n_rows.is_multiple_of(8);
        if x86
            && repacks
            && let Some(dot) = blockwise(ty)
        {
            // llama.cpp's GEMM needs four rows; MUL_MAT_ID takes the GEMV for every row.
            let fours = if op == MatOp::MulMat && n_tokens >= 4 {
                gemm(ty)
            } else {
                None
            };
            return Some(MatmulKernel { dot, fours });
        }
        if x86
            && n_tokens >= 8
            && let Some(dot) = tiled(ty)
        {
            return Some(MatmulKernel { dot, fours: None });
        }
        if x86 && ty == GgmlType::Bf16 {
            let f = if n_tokens >= 2 {
                dot_bf16_tinyblas
            } else {
                dot_bf16_vec_dot
            };
            return Some(MatmulKernel {
                dot: Dot::Float(f),
                fours: None,
            });
        }
    }
    let _ = (n_rows, n_tokens, op);
    kernel(ty, level).map(|dot| MatmulKernel { dot, fours: None })
}

/// The kernels of the batch-invariant order (`Numerics::BatchInvariant`) for a matrix of
/// `n_rows` rows of format `ty`: the same for every batch. Where this level has one
/// (`x86::*::invariant`: Q5_0 and Q8_0 summed block by block, as llama.cpp's repacked formats
/// are), that; otherwise what llama.cpp computes for a single row (`matmul_kernel` with one
/// token).
pub fn invariant_kernel(
    ty: GgmlType,
    n_rows: usize,
    op: MatOp,
    level: super::SimdLevel,
) -> Option<MatmulKernel> {
    let level = level.min(super::cpu::detected());
    #[cfg(target_arch = "x86_64")]
    {
        use super::simd::x86;
        let own = match level {
            super::SimdLevel::Avx512 => x86::avx512::invariant(ty),
            super::SimdLevel::Avx2 => x86::avx2::invariant(ty),
            super::SimdLevel::Scalar | super::SimdLevel::Neon => None,
        };
        if let Some(dot) = own {
            return Some(MatmulKernel { dot, fours: None });
        }
    }
    matmul_kernel(ty, n_rows, 1, op, level)
}

/// The dot product of `n` values: weights `w` of type `ty`, activations `a` as f32 (quantized
/// here to the format `ty` pairs with). Sizes are checked.
pub fn vec_dot(ty: GgmlType, w: &[u8], a: &[f32]) -> Result<f32> {
    let f = super::lookup(ty)
        .ok_or_else(|| Error::Unsupported(format!("the {ty} format is not supported yet")))?;
    let dot = kernel(ty, super::cpu::level())
        .ok_or_else(|| Error::Unsupported(format!("{ty} is not a weight format")))?;
    super::check_bytes(f, a.len(), w.len())?;
    match dot {
        Dot::Float(f) => Ok(f(w, a)),
        Dot::Quant { act, f, .. } => {
            let mut q = vec![0u8; super::row_bytes(act, a.len())?];
            super::quantize_row(act, a, &mut q)?;
            Ok(f(w, &q))
        }
    }
}

fn dot_f32(w: &[u8], a: &[f32]) -> f32 {
    w.as_chunks::<4>()
        .0
        .iter()
        .zip(a)
        .map(|(b, x)| f32::from_le_bytes(*b) * x)
        .sum()
}

fn dot_f16(w: &[u8], a: &[f32]) -> f32 {
    w.as_chunks::<2>()
        .0
        .iter()
        .zip(a)
        .map(|(b, x)| half::f16::from_le_bytes(*b).to_f32() * x)
        .sum()
}

fn dot_bf16(w: &[u8], a: &[f32]) -> f32 {
    w.as_chunks::<2>()
        .0
        .iter()
        .zip(a)
        .map(|(b, x)| bf16_to_f32(u16::from_le_bytes(*b)) * x)
        .sum()
}

/// GCC's `_mm512_reduce_add_ps`: halves 16 -> 8 -> 4 lanes, then (l0 + l2) + (l1 + l3).
pub(crate) fn reduce16(x: &[f32; 16]) -> f32 {
    let t8: [f32; 8] = std::array::from_fn(|l| x[l + 8] + x[l]);
    let t4: [f32; 4] = std::array::from_fn(|l| t8[l + 4] + t8[l]);
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// One `vdpbf16ps` lane: the odd pair's product added first, then the even one's, each
/// rounded once (bf16 products are exact in f32).
#[cfg(target_arch = "x86_64")]
fn dpbf16(acc: f32, w: (f32, f32), a: (f32, f32)) -> f32 {
    w.0.mul_add(a.0, w.1.mul_add(a.1, acc))
}

/// BF16 as ggml's `ggml_vec_dot_bf16` with AVX-512 BF16 instructions: two accumulators of 16
/// `vdpbf16ps` lanes over steps of 64, each reduced, summed in f64 with the tail's products.
#[cfg(target_arch = "x86_64")]
pub(super) fn dot_bf16_vec_dot(w: &[u8], a: &[f32]) -> f32 {
    let wv = |i: usize| bf16_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]));
    let n = a.len().min(w.len() / 2);
    let np = n & !63;
    let mut c = [[0f32; 16]; 2];
    for i in (0..np).step_by(64) {
        for (j, lanes) in c.iter_mut().enumerate() {
            for (l, s) in lanes.iter_mut().enumerate() {
                let at = i + 32 * j + 2 * l;
                *s = dpbf16(*s, (wv(at), wv(at + 1)), (a[at], a[at + 1]));
            }
        }
    }
    let mut sum = f64::from(reduce16(&c[0]));
    sum += f64::from(reduce16(&c[1]));
    for (k, &x) in a.iter().enumerate().take(n).skip(np) {
        sum += f64::from(wv(k) * x);
    }
    sum as f32
}

/// BF16 as llamafile's tinyBLAS (llama.cpp's product for two rows or more, AVX-512 BF16):
/// one accumulator of 16 `vdpbf16ps` lanes per 32 values, reduced at the end. tinyBLAS
/// declines rows that are not a multiple of 32 values; llama.cpp then takes `vec_dot`.
#[cfg(target_arch = "x86_64")]
pub(super) fn dot_bf16_tinyblas(w: &[u8], a: &[f32]) -> f32 {
    let wv = |i: usize| bf16_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]));
    let n = a.len().min(w.len() / 2);
    if !n.is_multiple_of(32) {
        return dot_bf16_vec_dot(w, a);
    }
    let mut c = [0f32; 16];
    for i in (0..n).step_by(32) {
        for (l, s) in c.iter_mut().enumerate() {
            let at = i + 2 * l;
            *s = dpbf16(*s, (wv(at), wv(at + 1)), (a[at], a[at + 1]));
        }
    }
    reduce16(&c)
}

/// Pairs the blocks of a weight row and an activation row.
fn blocks<'a, const W: usize, const A: usize>(
    w: &'a [u8],
    a: &'a [u8],
) -> impl Iterator<Item = (&'a [u8; W], &'a [u8; A])> {
    w.as_chunks::<W>().0.iter().zip(a.as_chunks::<A>().0)
}

#[inline]
fn i8_at(b: &[u8], at: usize) -> i32 {
    i32::from(b[at] as i8)
}

/// The 32 activation values of a Q8_0 (`off` 2) or Q8_1 (`off` 4) block.
#[inline]
fn q8(y: &[u8], off: usize, j: usize) -> i32 {
    i8_at(y, off + j)
}

fn dot_q4_0_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<18, 34>(w, a) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = x[2 + j];
            sumi += (i32::from(q & 0x0f) - 8) * q8(y, 2, j);
            sumi += (i32::from(q >> 4) - 8) * q8(y, 2, j + 16);
        }
        sum += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sum
}

fn dot_q4_1_q8_1(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<20, 36>(w, a) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = x[4 + j];
            sumi += i32::from(q & 0x0f) * q8(y, 4, j) + i32::from(q >> 4) * q8(y, 4, j + 16);
        }
        sum += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sum
}

/// The 5-bit values of a Q5 block: low nibbles at `qs`, high bits in the u32 at `qh`.
#[inline]
fn q5(x: &[u8], qh: usize, qs: usize, j: usize) -> (i32, i32) {
    let h = u32::from_le_bytes([x[qh], x[qh + 1], x[qh + 2], x[qh + 3]]);
    let q = x[qs + j];
    let lo = i32::from(q & 0x0f) | (((h >> j) & 1) as i32) << 4;
    let hi = i32::from(q >> 4) | (((h >> (j + 16)) & 1) as i32) << 4;
    (lo, hi)
}

fn dot_q5_0_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<22, 34>(w, a) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let (lo, hi) = q5(x, 2, 6, j);
            sumi += (lo - 16) * q8(y, 2, j) + (hi - 16) * q8(y, 2, j + 16);
        }
        sum += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sum
}

fn dot_q5_1_q8_1(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<24, 36>(w, a) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let (lo, hi) = q5(x, 4, 8, j);
            sumi += lo * q8(y, 4, j) + hi * q8(y, 4, j + 16);
        }
        sum += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sum
}

fn dot_q8_0_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<34, 34>(w, a) {
        let sumi: i32 = (0..32).map(|j| i8_at(x, 2 + j) * q8(y, 2, j)).sum();
        sum += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sum
}

fn dot_iq4_nl_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<18, 34>(w, a) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = x[2 + j];
            sumi += i32::from(IQ4_VALUES[usize::from(q & 0x0f)]) * q8(y, 2, j);
            sumi += i32::from(IQ4_VALUES[usize::from(q >> 4)]) * q8(y, 2, j + 16);
        }
        sum += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sum
}

fn dot_mxfp4_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<17, 34>(w, a) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = x[1 + j];
            sumi += i32::from(MXFP4_VALUES[usize::from(q & 0x0f)]) * q8(y, 2, j);
            sumi += i32::from(MXFP4_VALUES[usize::from(q >> 4)]) * q8(y, 2, j + 16);
        }
        sum += sumi as f32 * (e8m0_to_f32_half(x[0]) * f16_at(y, 0));
    }
    sum
}

/// NVFP4 (64 values) against two Q8_0 blocks: each 16-value sub-block has its own scale.
fn dot_nvfp4_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<36, 68>(w, a) {
        for s in 0..4 {
            let yb = &y[34 * (s / 2)..34 * (s / 2) + 34];
            let base = 16 * (s % 2);
            let mut sumi = 0i32;
            for j in 0..8 {
                let q = x[4 + 8 * s + j];
                sumi += i32::from(MXFP4_VALUES[usize::from(q & 0x0f)]) * q8(yb, 2, base + j);
                sumi += i32::from(MXFP4_VALUES[usize::from(q >> 4)]) * q8(yb, 2, base + j + 8);
            }
            sum += sumi as f32 * (ue4m3_to_f32_half(x[s]) * f16_at(yb, 0));
        }
    }
    sum
}

/// The i-th activation value and the g-th 16-value sum of a Q8_K block.
#[inline]
fn q8k(y: &[u8], i: usize) -> i32 {
    i8_at(y, 4 + i)
}

#[inline]
fn q8k_bsum(y: &[u8], g: usize) -> i32 {
    i32::from(i16::from_le_bytes([y[260 + 2 * g], y[261 + 2 * g]]))
}

fn dot_q2_k_q8_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<84, 292>(w, a) {
        let (scales, qs) = (&x[0..16], &x[16..80]);
        let mut isum = 0i32;
        let mut summs = 0i32;
        for (g, &sc) in scales.iter().enumerate() {
            summs += i32::from(sc >> 4) * q8k_bsum(y, g);
            let mut s = 0i32;
            for i in g * 16..g * 16 + 16 {
                let (half, shift, l) = (i / 128, (i % 128) / 32, i % 32);
                s += i32::from((qs[half * 32 + l] >> (2 * shift)) & 3) * q8k(y, i);
            }
            isum += i32::from(sc & 0x0f) * s;
        }
        let dy = q8_k_d(y);
        sum += dy * f16_at(x, 80) * isum as f32 - dy * f16_at(x, 82) * summs as f32;
    }
    sum
}

fn dot_q3_k_q8_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<110, 292>(w, a) {
        let (hmask, qs) = (&x[0..32], &x[32..96]);
        let scales = q3_k_scales(&x[96..108]);
        let mut isum = 0i32;
        for (g, &sc) in scales.iter().enumerate() {
            let mut s = 0i32;
            for i in g * 16..g * 16 + 16 {
                let (half, shift, l) = (i / 128, (i % 128) / 32, i % 32);
                let low = i32::from((qs[half * 32 + l] >> (2 * shift)) & 3);
                let high = (hmask[l] >> (i / 32)) & 1;
                s += (low - if high == 0 { 4 } else { 0 }) * q8k(y, i);
            }
            isum += i32::from(sc) * s;
        }
        sum += f16_at(x, 108) * q8_k_d(y) * isum as f32;
    }
    sum
}

/// Q4_K and Q5_K: sub-blocks of 32 with 6-bit scales and mins; `value(j, l)` is the quant.
#[inline]
fn dot_k_scale_min(x: &[u8], y: &[u8], value: impl Fn(usize, usize) -> i32) -> f32 {
    let scales = &x[4..16];
    let (mut isum, mut msum) = (0i32, 0i32);
    for j in 0..8 {
        let (sc, m) = k_scale_min(scales, j);
        let s: i32 = (0..32).map(|l| value(j, l) * q8k(y, j * 32 + l)).sum();
        isum += i32::from(sc) * s;
        msum += i32::from(m) * (q8k_bsum(y, 2 * j) + q8k_bsum(y, 2 * j + 1));
    }
    let dy = q8_k_d(y);
    dy * f16_at(x, 0) * isum as f32 - dy * f16_at(x, 2) * msum as f32
}

fn dot_q4_k_q8_k(w: &[u8], a: &[u8]) -> f32 {
    blocks::<144, 292>(w, a)
        .map(|(x, y)| {
            let qs = &x[16..144];
            dot_k_scale_min(x, y, |j, l| {
                i32::from((qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0f)
            })
        })
        .sum()
}

fn dot_q5_k_q8_k(w: &[u8], a: &[u8]) -> f32 {
    blocks::<176, 292>(w, a)
        .map(|(x, y)| {
            let (qh, qs) = (&x[16..48], &x[48..176]);
            dot_k_scale_min(x, y, |j, l| {
                let low = (qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0f;
                i32::from(low | ((qh[l] >> j) & 1) << 4)
            })
        })
        .sum()
}

fn dot_q6_k_q8_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<210, 292>(w, a) {
        let (ql, qh, scales) = (&x[0..128], &x[128..192], &x[192..208]);
        let mut isum = 0i32;
        for (g, &sc) in scales.iter().enumerate() {
            let s: i32 = (g * 16..g * 16 + 16)
                .map(|i| (i32::from(q6_k_value(ql, qh, i)) - 32) * q8k(y, i))
                .sum();
            isum += i32::from(sc as i8) * s;
        }
        sum += f16_at(x, 208) * q8_k_d(y) * isum as f32;
    }
    sum
}

fn dot_iq4_xs_q8_k(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (x, y) in blocks::<136, 292>(w, a) {
        let qs = &x[8..136];
        let mut isum = 0i32;
        for ib in 0..8 {
            let mut s = 0i32;
            for j in 0..16 {
                let q = qs[ib * 16 + j];
                s += i32::from(IQ4_VALUES[usize::from(q & 0x0f)]) * q8k(y, ib * 32 + j);
                s += i32::from(IQ4_VALUES[usize::from(q >> 4)]) * q8k(y, ib * 32 + j + 16);
            }
            isum += i32::from(iq4_xs_scale(x, ib)) * s;
        }
        sum += f16_at(x, 0) * q8_k_d(y) * isum as f32;
    }
    sum
}
