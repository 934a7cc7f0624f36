//! Host wrapper of kernels/mmq.cu and mmq_k.cu: tiled int8 tensor-core products of the
//! 32-element formats (split layout, or the file's blocks: a tied output matrix) with Q8
//! activations, and of Q4_K, Q5_K and Q6_K (plain rows) with Q8_K activations, for batches
//! above the matrix-vector kernels' `few_rows`. They compute what `mmvq` / `mmvqk` and the
//! CPU's dot products compute (exact integer block sums, scaled and added in block order),
//! where the f16 GEMM rounds the weights and activations to f16. Where there is a BLAS
//! (CUDA) it is off unless RF_GPU_MMQ=1 until it has been measured against dequantize + cuBLAS (docs/GPU.md); where there is none (HIP)
//! it is on unless RF_GPU_MMQ=0, since the alternative there reads the whole matrix again
//! for every eight rows (the matrix-vector kernels), and mmq once per 64.

use super::kernels::{
    Arg, FORMATS, MMVQK, MatShape, Q8Act, View, bytes_of, launch, mmvqk_fits, need, split_parts,
    split_views,
};
use super::kernels::{to_i32, to_u32};
use super::{DevPtr, Dims, Func, GpuDevice, GpuStream};
use crate::{Error, Result};

/// Weight rows and tokens of one block's tile (kernels/mmq.cu MMQ_ROWS, MMQ_TOKS).
const ROWS: usize = 64;
const TOKS: usize = 64;

pub struct Mmq {
    /// Per entry of `FORMATS`: its kernels, where it has them: for the split layout
    /// (`mmq_*`) and for rows of the file's blocks (`mmqr_*`, or `mmqk_*` for the
    /// 256-element formats of `MMVQK`).
    kernels: Vec<(Option<Func>, Option<Func>)>,
    on: bool,
}

impl Mmq {
    pub fn load(dev: &dyn GpuDevice) -> Result<Mmq> {
        // The formats of the split layout (kernels.rs `Q8_DOT`) and those of `mmvqk` have one.
        let kernels = FORMATS
            .iter()
            .enumerate()
            .map(|(i, (_, name, _))| {
                let f = |prefix: &str| dev.function(&format!("{prefix}_{name}")).map(Some);
                if split_parts(i).is_some() {
                    Ok((f("mmq")?, f("mmqr")?))
                } else if MMVQK.iter().any(|&(n, _)| n == *name) {
                    Ok((None, f("mmqk")?))
                } else {
                    Ok((None, None))
                }
            })
            .collect::<Result<_>>()?;
        let on = match std::env::var("RF_GPU_MMQ").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => !dev.has_gemm(),
        };
        Ok(Mmq { kernels, on })
    }

    /// Whether products with a matrix of this shape at `ptr` take `mmq` (switched on, a
    /// format with the kernel, in its layout and alignment).
    pub fn takes(&self, m: &MatShape, ptr: DevPtr) -> bool {
        self.on && self.kernel(m, ptr).is_some()
    }

    /// The kernel for a matrix of this shape at `ptr`: the one of its format and layout,
    /// where the shape and alignment are what it reads (whole blocks a row; the 256-element
    /// formats aligned as `mmvqk` needs, the same loads).
    fn kernel(&self, m: &MatShape, ptr: DevPtr) -> Option<Func> {
        let &(split, rows) = self.kernels.get(m.format)?;
        if m.heads.is_some() {
            split.filter(|_| m.n_in.is_multiple_of(32))
        } else if split.is_some() {
            rows.filter(|_| m.n_in.is_multiple_of(32))
        } else {
            rows.filter(|_| m.n_in.is_multiple_of(256) && mmvqk_fits(m.format, ptr, m.row_bytes))
        }
    }

    /// `y[t] = W x[t]` for `n` tokens of Q8 activations `x` (rows of `m.n_in` codes).
    pub fn run(
        &self,
        s: &mut dyn GpuStream,
        w: View,
        m: MatShape,
        x: Q8Act,
        n: usize,
        y: View,
    ) -> Result<()> {
        let f = self
            .kernel(&m, w.ptr)
            .filter(|_| n > 0)
            .ok_or_else(|| Error::Internal(format!("mmq of format {}, {n} rows", m.format)))?;
        need(x.codes, bytes_of(n, m.n_in)?, 1, "mmq codes")?;
        need(x.scales, bytes_of(n, m.n_in / 32)?, 8, "mmq scales")?;
        need(y, bytes_of(n, m.n_out)?, 4, "mmq output")?;
        // The kernel loads activation codes sixteen bytes at a time.
        if !x.codes.ptr.is_multiple_of(16) {
            return Err(Error::Internal("mmq codes not 16-byte aligned".into()));
        }
        let token_tiles = n.div_ceil(TOKS);
        if token_tiles > 65535 {
            return Err(Error::Overflow(format!("mmq of {n} tokens")));
        }
        let dims = Dims {
            grid: (
                to_u32(m.n_out.div_ceil(ROWS), "mmq rows")?,
                token_tiles as u32,
                1,
            ),
            block: 128,
            shared: 0,
        };
        // The split layout's kernels take the codes and the headers, the others the rows.
        let (first, second) = if m.heads.is_some() {
            let (codes, heads) = split_views(w, m)?;
            (Arg::P(codes.ptr), Arg::P(heads.ptr))
        } else {
            need(w, m.n_out, m.row_bytes, "mmqk weights")?;
            (Arg::P(w.ptr), Arg::U64(m.row_bytes as u64))
        };
        let args = [
            first,
            second,
            Arg::P(x.codes.ptr),
            Arg::P(x.scales.ptr),
            Arg::I(to_i32(m.n_in, "K")?),
            Arg::I(to_i32(n, "tokens")?),
            Arg::P(y.ptr),
            Arg::I(to_i32(m.n_out, "N")?),
        ];
        launch(s, f, dims, &args)
    }
}
