//! Mixture-of-experts layers on the GPU, computed as `model::moe` computes them on the CPU:
//! the router's product (an ordinary matrix, through `GpuForward::matmul`), then on the
//! device without the host: `moe_route` (softmax, the `n_used` most probable experts, their
//! weights renormalized; kernels/moe.cu), the gate and up products of every (row, expert)
//! pair through that expert's matrix (`mmv_id_*`, kernels/matvec.cu: the id is read on the
//! device, so the decode stays one stream of launches and can be a recorded graph), SwiGLU,
//! the down products, and `moe_combine` (the weighted sum of a row's experts, in ascending
//! expert order as the CPU adds them). Inputs are rounded as the CPU's dot products round
//! them for each format (`quantize_act`) before the fused dequantize-dot products.
//!
//! Every pair runs its own matrix-vector products (one token each): right for decoding;
//! a prompt re-reads an expert's weights once per row routed to it (llama.cpp groups the
//! rows of an expert into one GEMM: not done here yet).

use super::kernels::{
    ActRound, Arg, FORMATS, Kernels, MatShape, View, bytes_of, count, grid1, launch, need, to_i32,
    to_u32,
};
use super::weights::GpuMat;
use super::{DevBuf, Dims, Func, GpuDevice, GpuStream};
use crate::{Error, Result};

pub struct MoeKernels {
    route: Func,
    combine: Func,
    /// `mmv_id_*`, one per entry of `FORMATS`.
    mmv_id: Vec<Func>,
}

/// One stacked expert tensor on the device, in the file's block layout: expert `e`'s
/// matrix is rows `e * rows .. (e + 1) * rows` of `mat`.
pub struct GpuExperts {
    pub mat: GpuMat,
    pub rows: usize,
    pub n_expert: usize,
}

/// A layer's experts on the device.
pub struct GpuMoe {
    pub router: GpuMat,
    pub gate: GpuExperts,
    pub up: GpuExperts,
    pub down: GpuExperts,
    pub n_used: usize,
}

impl GpuMoe {
    pub fn n_expert(&self) -> usize {
        self.router.shape.n_out
    }

    pub fn n_ff(&self) -> usize {
        self.gate.rows
    }
}

/// One context's scratch for the experts of `n_batch` rows.
pub struct MoeBufs {
    pub logits: DevBuf,
    ids: DevBuf,
    wts: DevBuf,
    /// Rounded inputs of the expert products.
    xr: DevBuf,
    g: DevBuf,
    u: DevBuf,
    a: DevBuf,
    y: DevBuf,
}

impl MoeBufs {
    /// Scratch for the largest of `layers`' experts, or `None` without any.
    pub fn new<'a>(
        dev: &std::sync::Arc<dyn GpuDevice>,
        layers: impl Iterator<Item = &'a GpuMoe>,
        n_batch: usize,
        n_embd: usize,
    ) -> Result<Option<MoeBufs>> {
        let (mut ne, mut k, mut ff) = (0, 0, 0);
        let mut any = false;
        for m in layers {
            any = true;
            ne = ne.max(m.n_expert());
            k = k.max(m.n_used);
            ff = ff.max(m.n_ff());
        }
        if !any {
            return Ok(None);
        }
        let pairs = bytes_of(n_batch, k)?;
        let f32s = |n: usize, what: &str| DevBuf::array(dev, n, 4, what);
        Ok(Some(MoeBufs {
            logits: f32s(bytes_of(n_batch, ne)?, "router logits")?,
            ids: f32s(pairs, "expert ids")?,
            wts: f32s(pairs, "expert weights")?,
            xr: f32s(bytes_of(pairs, ff.max(n_embd))?, "rounded expert inputs")?,
            g: f32s(bytes_of(pairs, ff)?, "expert gates")?,
            u: f32s(bytes_of(pairs, ff)?, "expert ups")?,
            a: f32s(bytes_of(pairs, ff)?, "expert activations")?,
            y: f32s(bytes_of(pairs, n_embd)?, "expert outputs")?,
        }))
    }
}

impl MoeKernels {
    pub fn load(dev: &dyn GpuDevice) -> Result<MoeKernels> {
        Ok(MoeKernels {
            route: dev.function("moe_route")?,
            combine: dev.function("moe_combine")?,
            mmv_id: FORMATS
                .iter()
                .map(|(_, name, _)| dev.function(&format!("mmv_id_{name}")))
                .collect::<Result<_>>()?,
        })
    }

    /// `ids`, `wts` (`n` rows of `k`): each row's `k` most probable of `ne` experts by the
    /// softmax of its `logits`, renormalized, in ascending expert order.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        s: &mut dyn GpuStream,
        logits: View,
        n: usize,
        ne: usize,
        k: usize,
        ids: View,
        wts: View,
    ) -> Result<()> {
        if k == 0 || k > ne {
            return Err(Error::Internal(format!("{k} of {ne} experts")));
        }
        need(logits, count(&[n, ne])?, 4, "router logits")?;
        need(ids, count(&[n, k])?, 4, "expert ids")?;
        need(wts, count(&[n, k])?, 4, "expert weights")?;
        let args = [
            Arg::P(logits.ptr),
            Arg::I(to_i32(n, "rows")?),
            Arg::I(to_i32(ne, "experts")?),
            Arg::I(to_i32(k, "experts used")?),
            Arg::P(ids.ptr),
            Arg::P(wts.ptr),
        ];
        launch(s, self.route, grid1(n, 64)?, &args)
    }

    /// `y[p] = W[ids[p]] x[p / x_div]` for `pairs` pairs (rows of `e.mat`'s inputs and of
    /// each expert's `e.rows` outputs).
    #[allow(clippy::too_many_arguments)]
    fn mmv_id(
        &self,
        s: &mut dyn GpuStream,
        e: &GpuExperts,
        ids: View,
        pairs: usize,
        x: View,
        x_div: usize,
        y: View,
    ) -> Result<()> {
        let m: MatShape = e.mat.shape;
        if x_div == 0 || !pairs.is_multiple_of(x_div) || !m.n_in.is_multiple_of(8) {
            return Err(Error::Internal(format!(
                "expert products of {pairs} pairs, {x_div} a row, rows of {}",
                m.n_in
            )));
        }
        let expert_bytes = bytes_of(e.rows, m.row_bytes)?;
        need(
            e.mat.view(),
            count(&[e.n_expert, e.rows])?,
            m.row_bytes,
            "expert weights",
        )?;
        need(ids, pairs, 4, "expert ids")?;
        need(x, count(&[pairs / x_div, m.n_in])?, 4, "expert inputs")?;
        need(y, count(&[pairs, e.rows])?, 4, "expert outputs")?;
        let f = *self
            .mmv_id
            .get(m.format)
            .ok_or_else(|| Error::Internal("expert format".into()))?;
        // A block per pair and four output rows (one 32-thread group each).
        let row_blocks = e.rows.div_ceil(4);
        if row_blocks > 65535 {
            return Err(Error::Overflow(format!("experts of {} rows", e.rows)));
        }
        let dims = Dims {
            grid: (to_u32(pairs.max(1), "pairs")?, row_blocks as u32, 1),
            block: 128,
            shared: 0,
        };
        let args = [
            Arg::P(e.mat.view().ptr),
            Arg::U64(m.row_bytes as u64),
            Arg::U64(expert_bytes as u64),
            Arg::I(to_i32(e.n_expert, "experts")?),
            Arg::P(ids.ptr),
            Arg::P(x.ptr),
            Arg::I(to_i32(x_div, "pairs a row")?),
            Arg::I(to_i32(m.n_in, "K")?),
            Arg::P(y.ptr),
            Arg::I(to_i32(e.rows, "N")?),
        ];
        launch(s, f, dims, &args)
    }

    /// `out[r] = sum_j wts[r][j] y[r * k + j]`, rows of `d`, in order of `j`.
    #[allow(clippy::too_many_arguments)]
    fn combine(
        &self,
        s: &mut dyn GpuStream,
        y: View,
        wts: View,
        out: View,
        n: usize,
        k: usize,
        d: usize,
    ) -> Result<()> {
        need(y, count(&[n, k, d])?, 4, "expert outputs")?;
        need(wts, count(&[n, k])?, 4, "expert weights")?;
        let total = count(&[n, d])?;
        need(out, total, 4, "mixture output")?;
        let args = [
            Arg::P(y.ptr),
            Arg::P(wts.ptr),
            Arg::P(out.ptr),
            Arg::I(to_i32(k, "experts used")?),
            Arg::I(to_i32(d, "width")?),
            Arg::U64(total as u64),
        ];
        launch(s, self.combine, grid1(total, 256)?, &args)
    }
}

/// `x` rounded as the CPU's dot products for `e`'s format round it: `x` itself where they
/// take it as it is, else a rounded copy in `scratch`.
fn rounded(
    k: &Kernels,
    s: &mut dyn GpuStream,
    e: &GpuExperts,
    x: View,
    n: usize,
    scratch: View,
) -> Result<View> {
    let r = FORMATS[e.mat.shape.format].2;
    if r == ActRound::None {
        return Ok(x);
    }
    k.quantize_act(s, x, scratch, n, r, false)?;
    scratch.sub(0, bytes_of(n, 4)?)
}

/// The experts' part of a layer for `n` rows of `h` (rows of `d`), once the router's
/// product has filled `b.logits`: the mixture's output into `out`.
#[allow(clippy::too_many_arguments)]
pub fn experts(
    k: &Kernels,
    s: &mut dyn GpuStream,
    m: &GpuMoe,
    h: View,
    n: usize,
    d: usize,
    b: &MoeBufs,
    out: View,
) -> Result<()> {
    let mk = &k.moe;
    let (ne, used, ff) = (m.n_expert(), m.n_used, m.n_ff());
    let pairs = count(&[n, used])?;
    let (ids, wts) = (b.ids.view(), b.wts.view());
    mk.route(s, b.logits.view(), n, ne, used, ids, wts)?;
    let (g, u, a, y) = (b.g.view(), b.u.view(), b.a.view(), b.y.view());
    let xr = b.xr.view();
    let hr = rounded(k, s, &m.gate, h, count(&[n, d])?, xr)?;
    mk.mmv_id(s, &m.gate, ids, pairs, hr, used, g)?;
    let format = |e: &GpuExperts| FORMATS[e.mat.shape.format].2;
    let hr = if format(&m.up) == format(&m.gate) {
        hr
    } else {
        rounded(k, s, &m.up, h, count(&[n, d])?, xr)?
    };
    mk.mmv_id(s, &m.up, ids, pairs, hr, used, u)?;
    let n_act = count(&[pairs, ff])?;
    k.glu(s, false, g, u, a, n_act)?;
    let ar = rounded(k, s, &m.down, a, n_act, xr)?;
    mk.mmv_id(s, &m.down, ids, pairs, ar, 1, y)?;
    mk.combine(s, y, wts, out, n, used, d)
}
