//! Host wrapper of kernels/mmq.cu: tiled int8 tensor-core products of the 32-element formats
//! in the split layout with Q8 activations, for batches above the matrix-vector kernels'
//! `few_rows`. They compute what `mmvq` and the CPU's dot products compute (exact integer
//! block sums, scaled and added in block order), where the f16 GEMM rounds the weights and
//! activations to f16. Where there is a BLAS (CUDA) it is off unless RF_GPU_MMQ=1 until it
//! has been measured against dequantize + cuBLAS (docs/GPU.md); where there is none (HIP)
//! it is on unless RF_GPU_MMQ=0, since the alternative there reads the whole matrix again
//! for every eight rows (the matrix-vector kernels), and mmq once per 64.

use super::kernels::{
    Arg, FORMATS, MatShape, Q8Act, View, bytes_of, launch, need, split_parts, split_views,
};
use super::kernels::{to_i32, to_u32};
use super::{Dims, Func, GpuDevice, GpuStream};
use crate::{Error, Result};

/// Weight rows and tokens of one block's tile (kernels/mmq.cu MMQ_ROWS, MMQ_TOKS).
const ROWS: usize = 64;
const TOKS: usize = 64;

pub struct Mmq {
    /// Per entry of `FORMATS`: its kernel, where it has one.
    kernels: Vec<Option<Func>>,
    on: bool,
}

impl Mmq {
    pub fn load(dev: &dyn GpuDevice) -> Result<Mmq> {
        // The formats of the split layout (kernels.rs `Q8_DOT`) have one.
        let kernels = FORMATS
            .iter()
            .enumerate()
            .map(|(i, (_, name, _))| {
                split_parts(i)
                    .map(|_| dev.function(&format!("mmq_{name}")))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let on = match std::env::var("RF_GPU_MMQ").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => !dev.has_gemm(),
        };
        Ok(Mmq { kernels, on })
    }

    /// Whether products with a matrix of this shape take `mmq` (switched on, a format with
    /// the kernel, the split layout).
    pub fn takes(&self, m: &MatShape) -> bool {
        self.on
            && m.heads.is_some()
            && m.n_in.is_multiple_of(32)
            && self.kernels.get(m.format).is_some_and(Option::is_some)
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
            .kernels
            .get(m.format)
            .copied()
            .flatten()
            .filter(|_| m.n_in.is_multiple_of(32) && n > 0)
            .ok_or_else(|| Error::Internal(format!("mmq of format {}, {n} rows", m.format)))?;
        let (codes, heads) = split_views(w, m)?;
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
        let args = [
            Arg::P(codes.ptr),
            Arg::P(heads.ptr),
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
