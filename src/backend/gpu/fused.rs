//! Host wrappers of kernels/fused.cu: one launch for what the decode otherwise does in
//! several (residual add + RMSNorm + Q8_0/Q8_K quantization; SwiGLU/GeGLU + the same; RoPE of
//! queries and keys + query scale and f16 rounding + the KV cache store), with the same bits.

use super::kernels::{
    ActRound, Arg, Q8Act, View, bytes_of, count, grid1, launch, need, norm_block, rows, to_i32,
    to_u32,
};
use super::{Dims, Func, GpuDevice, GpuStream};
use crate::{Error, Result};

pub struct Fused {
    add_rms_norm_q8: Func,
    glu_q8: Func,
    rope_qk: Func,
}

/// The float4 loads of the fused kernels need 16-byte aligned buffers.
fn aligned(views: &[View], what: &str) -> Result<()> {
    if views.iter().any(|v| v.ptr % 16 != 0) {
        return Err(Error::Internal(format!(
            "{what}: a buffer not 16-byte aligned"
        )));
    }
    Ok(())
}

/// The f16 output of a fused kernel's `count` values in rows of `d`: its pointer and
/// `quantize_act` kind (null and 0 for none), checked.
fn f16_out(h: Option<(View, ActRound)>, count: usize, d: usize, what: &str) -> Result<(u64, i32)> {
    let Some((v, r)) = h else {
        return Ok((0, 0));
    };
    if !Fused::rounds_f16(d, r) {
        return Err(Error::Internal(format!(
            "{what}: rows of {d} rounded as {r:?} in a fused kernel"
        )));
    }
    need(v, count, 2, "f16 activations")?;
    Ok((v.ptr, r as i32))
}

/// The quantized output of a fused kernel's `count` values in rows of `d`: Q8_0 blocks
/// (`quantize_q8`) or, for Q4_K/Q5_K/Q6_K products, Q8_K blocks (`quantize_q8k`, rows of a
/// multiple of 256); its codes, scales and kind (null, null and 0 for none), checked.
fn q8_out(
    q: Option<(Q8Act, ActRound)>,
    count: usize,
    d: usize,
    what: &str,
) -> Result<(u64, u64, i32)> {
    let Some((q, r)) = q else {
        return Ok((0, 0, 0));
    };
    match r {
        ActRound::Q8_0 => {}
        ActRound::Q8K if d.is_multiple_of(256) => {}
        _ => {
            return Err(Error::Internal(format!(
                "{what}: rows of {d} quantized as {r:?} in a fused kernel"
            )));
        }
    }
    need(q.codes, count, 1, "codes")?;
    need(q.scales, count / 32, 8, "scales")?;
    aligned(&[q.codes, q.scales], what)?;
    Ok((q.codes.ptr, q.scales.ptr, r as i32))
}

/// A fused kernel's `xq`, `xds`, `yh` and `kind`: the kind says how `xq` is quantized when
/// it is given, else how `yh` is rounded (never both).
fn outputs(
    q: Option<(Q8Act, ActRound)>,
    h: Option<(View, ActRound)>,
    count: usize,
    d: usize,
    what: &str,
) -> Result<[Arg; 4]> {
    if q.is_some() && h.is_some() {
        return Err(Error::Internal(format!("{what}: both Q8 and f16 outputs")));
    }
    let (xq, xds, qk) = q8_out(q, count, d, what)?;
    let (hp, hk) = f16_out(h, count, d, what)?;
    Ok([Arg::P(xq), Arg::P(xds), Arg::P(hp), Arg::I(qk.max(hk))])
}

impl Fused {
    pub fn load(dev: &dyn GpuDevice) -> Result<Fused> {
        Ok(Fused {
            add_rms_norm_q8: dev.function("add_rms_norm_q8")?,
            glu_q8: dev.function("glu_q8")?,
            rope_qk: dev.function("rope_qk")?,
        })
    }

    /// Whether rows of `d` suit the fused norm and activation kernels.
    pub fn fits(d: usize) -> bool {
        d.is_multiple_of(32)
    }

    /// For `n` contiguous rows of `d` (`fits(d)`): `x += o` when `o` is given, then
    /// `y = rms_norm(x) * w`, and `y` quantized into `q.0` as `q.1` says (Q8_0 or Q8_K
    /// blocks) when given, or rounded as `h.1`
    /// says into `h.0` as f16 (`rounds_f16`: the f16 GEMM's input, as `quantize_act` makes
    /// it) when that is given.
    #[allow(clippy::too_many_arguments)]
    pub fn add_rms_norm_q8(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        o: Option<View>,
        w: View,
        y: View,
        q: Option<(Q8Act, ActRound)>,
        h: Option<(View, ActRound)>,
        n: usize,
        d: usize,
        eps: f32,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if !Fused::fits(d) {
            return Err(Error::Internal(format!("fused norm of rows of {d}")));
        }
        let count = bytes_of(n, d)?;
        need(x, count, 4, "norm input")?;
        need(y, count, 4, "norm output")?;
        need(w, d, 4, "norm weights")?;
        aligned(&[x, y, w], "fused norm")?;
        if let Some(o) = o {
            need(o, count, 4, "residual")?;
            aligned(&[o], "fused norm")?;
        }
        let [xq, xds, yh, kind] = outputs(q, h, count, d, "fused norm")?;
        let args = [
            Arg::P(x.ptr),
            Arg::P(o.map_or(0, |o| o.ptr)),
            Arg::P(w.ptr),
            Arg::P(y.ptr),
            xq,
            xds,
            Arg::I(to_i32(d, "d")?),
            Arg::F(eps),
            yh,
            kind,
        ];
        launch(s, self.add_rms_norm_q8, rows(n, norm_block(d))?, &args)
    }

    /// `a = swiglu(g, u)` (geglu with `gelu`) over `count` values (`fits(count)`), and `a`
    /// quantized into `q.0` as `q.1` says (rows of a multiple of 32 quantize alike flat or
    /// by rows into Q8_0 blocks; Q8_K blocks need rows of a multiple of 256) when given, or
    /// rounded as `h.1` says into `h.0` as f16 when that is given (`rounds_f16`
    /// of rows of `d`).
    #[allow(clippy::too_many_arguments)]
    pub fn glu_q8(
        &self,
        s: &mut dyn GpuStream,
        gelu: bool,
        g: View,
        u: View,
        a: View,
        q: Option<(Q8Act, ActRound)>,
        h: Option<(View, ActRound)>,
        count: usize,
        d: usize,
    ) -> Result<()> {
        if !Fused::fits(count) {
            return Err(Error::Internal(format!(
                "fused activation of {count} values"
            )));
        }
        for (v, what) in [(g, "gate"), (u, "up"), (a, "act")] {
            need(v, count, 4, what)?;
        }
        aligned(&[g, u, a], "fused activation")?;
        let [xq, xds, yh, kind] = outputs(q, h, count, d, "fused activation")?;
        let n4 = count / 4;
        let args = [
            Arg::P(g.ptr),
            Arg::P(u.ptr),
            Arg::P(a.ptr),
            xq,
            xds,
            Arg::U64(n4 as u64),
            Arg::I(i32::from(gelu)),
            yh,
            kind,
        ];
        // 256 threads a block: 1024 values, whole 256-value chunks for the f16 rounding.
        launch(s, self.glu_q8, grid1(n4, 256)?, &args)
    }

    /// Whether rows of `d` can be rounded as `r` into f16 inside these kernels (the
    /// rounding's blocks may not cross rows: Q8_K's 256 values need rows of a multiple of
    /// 256).
    pub fn rounds_f16(d: usize, r: ActRound) -> bool {
        Fused::fits(d) && (r != ActRound::Q8K || d.is_multiple_of(256))
    }

    /// RoPE on `n` contiguous rows of queries (`n_head` heads of `hd`) and keys
    /// (`n_head_kv`), angles `cs` (n_rot / 2 pairs per row); then the queries times
    /// `q_scale` and rounded through f16. With `store`, the keys and the values go into the
    /// cache (what `Kernels::kv_store` does) instead of the keys back into `k`: for batches
    /// whose every row has one cell, pair r being (r, cell).
    #[allow(clippy::too_many_arguments)]
    pub fn rope_qk(
        &self,
        s: &mut dyn GpuStream,
        q: View,
        k: View,
        cs: View,
        n: usize,
        heads: (usize, usize),
        hd: usize,
        n_rot: usize,
        neox: bool,
        q_scale: f32,
        store: Option<&RopeStore>,
    ) -> Result<()> {
        let (n_head, n_head_kv) = heads;
        if n == 0 {
            return Ok(());
        }
        if n_rot > hd || !n_rot.is_multiple_of(2) || !hd.is_multiple_of(2) {
            return Err(Error::Internal(format!(
                "rope of {n_rot} dims in heads of {hd}"
            )));
        }
        need(q, count(&[n, n_head, hd])?, 4, "rope queries")?;
        need(k, count(&[n, n_head_kv, hd])?, 4, "rope keys")?;
        need(cs, bytes_of(n, n_rot / 2)?, 8, "rope angles")?;
        let mut threads = (n_head + n_head_kv) * (hd / 2);
        let (mut v, mut pairs, mut kc, mut vc, mut vd) = (0, 0, 0, 0, 0);
        if let Some(st) = store {
            need(st.v, count(&[n, st.vd])?, 4, "rope values")?;
            need(st.pairs, count(&[n, 2])?, 4, "rope store pairs")?;
            need(st.kc, count(&[st.n_cells, n_head_kv, hd])?, 2, "key cache")?;
            need(st.vc, count(&[st.n_cells, st.vd])?, 2, "value cache")?;
            threads += st.vd.div_ceil(2);
            (v, pairs, kc, vc, vd) = (st.v.ptr, st.pairs.ptr, st.kc.ptr, st.vc.ptr, st.vd);
        }
        let dims = Dims {
            grid: (
                to_u32(n, "rope rows")?,
                to_u32(threads.div_ceil(128).max(1), "rope pairs")?,
                1,
            ),
            block: 128,
            shared: 0,
        };
        let args = [
            Arg::P(q.ptr),
            Arg::P(k.ptr),
            Arg::P(cs.ptr),
            Arg::I(to_i32(n_head, "heads")?),
            Arg::I(to_i32(n_head_kv, "kv heads")?),
            Arg::I(to_i32(hd, "head_dim")?),
            Arg::I(to_i32(n_rot, "n_rot")?),
            Arg::I(i32::from(neox)),
            Arg::F(q_scale),
            Arg::P(v),
            Arg::P(pairs),
            Arg::P(kc),
            Arg::P(vc),
            Arg::I(to_i32(vd, "vd")?),
        ];
        launch(s, self.rope_qk, dims, &args)
    }
}

/// Where `Fused::rope_qk` stores a batch's keys and values: `v` (rows of `vd`), the
/// (row, cell) pairs, one a row in row order, and the f16 caches of `n_cells` rows.
pub struct RopeStore {
    pub v: View,
    pub pairs: View,
    pub kc: View,
    pub vc: View,
    pub n_cells: usize,
    pub vd: usize,
}
