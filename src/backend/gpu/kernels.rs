//! The kernels of `kernels/`, looked up once per device, and checked launches: every wrapper
//! checks that each buffer it is given covers what the kernel will read or write before the
//! launch, so a size mistake is an `Error::Internal`, never a stray device write.

use std::ffi::c_void;

use super::{DevBuf, DevPtr, Dims, Func, GpuDevice, GpuStream};
use crate::gguf::GgmlType;
use crate::{Error, Result};

/// Weight formats with GPU kernels, in `RF_FORMATS` order (kernels/quant.cuh), and how the
/// CPU's dot product for each rounds its activations (`ActRound`: the GPU rounds them the
/// same way, so the two backends agree).
pub const FORMATS: [(GgmlType, &str, ActRound); 15] = [
    (GgmlType::F32, "f32", ActRound::None),
    (GgmlType::F16, "f16", ActRound::F16),
    (GgmlType::Bf16, "bf16", ActRound::Bf16),
    (GgmlType::Q4_0, "q4_0", ActRound::Q8_0),
    (GgmlType::Q4_1, "q4_1", ActRound::Q8_0),
    (GgmlType::Q5_0, "q5_0", ActRound::Q8_0),
    (GgmlType::Q5_1, "q5_1", ActRound::Q8_0),
    (GgmlType::Q8_0, "q8_0", ActRound::Q8_0),
    (GgmlType::Iq4Nl, "iq4_nl", ActRound::Q8_0),
    (GgmlType::Iq4Xs, "iq4_xs", ActRound::Q8K),
    (GgmlType::Q2K, "q2_k", ActRound::Q8K),
    (GgmlType::Q3K, "q3_k", ActRound::Q8K),
    (GgmlType::Q4K, "q4_k", ActRound::Q8K),
    (GgmlType::Q5K, "q5_k", ActRound::Q8K),
    (GgmlType::Q6K, "q6_k", ActRound::Q8K),
];

/// How activations are rounded before a product (kernels/ops.cu `quantize_act` kinds):
/// Q8_0 stands for Q8_0 and Q8_1, which round alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActRound {
    None = 0,
    Q8_0 = 1,
    Q8K = 2,
    F16 = 3,
    Bf16 = 4,
}

/// The most tokens one `mmv` launch takes (kernels mmv1 .. mmv8).
pub const MMV_MAX: usize = 8;

/// The index of `ty` in `FORMATS`, or `Unsupported`.
pub fn format_index(ty: GgmlType, what: &str) -> Result<usize> {
    FORMATS
        .iter()
        .position(|&(t, ..)| t == ty)
        .ok_or_else(|| Error::Unsupported(format!("{what}: the GPU backend has no {ty} kernels")))
}

struct FormatKernels {
    mmv: [Func; MMV_MAX],
    deq_f16: Func,
    embed: Func,
}

pub struct Kernels {
    formats: Vec<FormatKernels>,
    rms_norm: Func,
    add: Func,
    add_bias: Func,
    scale: Func,
    softcap: Func,
    round_f16: Func,
    to_f16: Func,
    swiglu: Func,
    geglu: Func,
    rope: Func,
    gather_rows: Func,
    copy_cols: Func,
    kv_store: Func,
    attend: Func,
    quantize_act: Func,
}

/// A range of device memory: what a kernel argument may touch.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub ptr: DevPtr,
    pub bytes: usize,
}

impl View {
    /// The part `offset..offset + len` (bytes), checked.
    pub fn sub(self, offset: usize, len: usize) -> Result<View> {
        match offset.checked_add(len) {
            Some(end) if end <= self.bytes => Ok(View {
                ptr: self.ptr + offset as u64,
                bytes: len,
            }),
            _ => Err(Error::Internal(format!(
                "device range {offset}+{len} outside a view of {} bytes",
                self.bytes
            ))),
        }
    }
}

impl DevBuf {
    pub fn view(&self) -> View {
        View {
            ptr: self.ptr(),
            bytes: self.bytes(),
        }
    }
}

/// `count` elements of `elem` bytes, in bytes, checked.
pub fn bytes_of(count: usize, elem: usize) -> Result<usize> {
    count
        .checked_mul(elem)
        .ok_or_else(|| Error::Overflow(format!("{count} elements of {elem} bytes")))
}

/// Checks that `v` holds at least `count` elements of `elem` bytes; its address.
fn need(v: View, count: usize, elem: usize, what: &str) -> Result<DevPtr> {
    let b = bytes_of(count, elem)?;
    if v.bytes < b {
        return Err(Error::Internal(format!(
            "{what}: a kernel needs {b} bytes of a {}-byte buffer",
            v.bytes
        )));
    }
    Ok(v.ptr)
}

fn to_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Overflow(format!("{what} = {v} for a kernel")))
}

fn to_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Overflow(format!("{what} = {v} for a kernel")))
}

/// A kernel argument: each is passed by address, from a 64-bit slot whose low bytes hold it
/// (little-endian; the driver copies the parameter's own size).
#[derive(Clone, Copy)]
enum Arg {
    P(DevPtr),
    I(i32),
    U64(u64),
    F(f32),
}

const MAX_ARGS: usize = 16;

fn launch(s: &mut dyn GpuStream, f: Func, d: Dims, args: &[Arg]) -> Result<()> {
    if args.len() > MAX_ARGS {
        return Err(Error::Internal("too many kernel arguments".into()));
    }
    let mut slots = [0u64; MAX_ARGS];
    for (slot, a) in slots.iter_mut().zip(args) {
        *slot = match *a {
            Arg::P(p) => p,
            Arg::I(i) => i as u32 as u64,
            Arg::U64(u) => u,
            Arg::F(x) => u64::from(x.to_bits()),
        };
    }
    let mut ptrs = [std::ptr::null_mut::<c_void>(); MAX_ARGS];
    for (p, slot) in ptrs.iter_mut().zip(slots.iter_mut()) {
        *p = slot as *mut u64 as *mut c_void;
    }
    // SAFETY: every wrapper below checked the buffers its arguments name against the
    // elements its kernel touches at these dims, and passes the arguments in the kernel's
    // parameter order with the kernel's parameter sizes (pointers and u64 8 bytes, int and
    // float 4).
    unsafe { s.launch(f, d, &mut ptrs[..args.len()]) }
}

fn grid1(n: usize, block: u32) -> Result<Dims> {
    let blocks = n.div_ceil(block as usize).max(1);
    Ok(Dims {
        grid: (to_u32(blocks, "grid")?, 1, 1),
        block,
        shared: 0,
    })
}

fn rows(n: usize, block: u32) -> Result<Dims> {
    Ok(Dims {
        grid: (to_u32(n.max(1), "rows")?, 1, 1),
        block,
        shared: 0,
    })
}

/// The shape of one quantized matrix on the device.
#[derive(Debug, Clone, Copy)]
pub struct MatShape {
    pub format: usize,
    pub n_out: usize,
    pub n_in: usize,
    pub row_bytes: usize,
}

impl Kernels {
    pub fn load(dev: &dyn GpuDevice) -> Result<Kernels> {
        let f = |name: &str| dev.function(name);
        let mut formats = Vec::with_capacity(FORMATS.len());
        for (_, name, _) in FORMATS {
            let mut mmv = [Func(0); MMV_MAX];
            for (i, m) in mmv.iter_mut().enumerate() {
                *m = f(&format!("mmv{}_{name}", i + 1))?;
            }
            formats.push(FormatKernels {
                mmv,
                deq_f16: f(&format!("deq_f16_{name}"))?,
                embed: f(&format!("embed_{name}"))?,
            });
        }
        Ok(Kernels {
            formats,
            rms_norm: f("rms_norm")?,
            add: f("add_inplace")?,
            add_bias: f("add_bias")?,
            scale: f("scale_inplace")?,
            softcap: f("softcap_inplace")?,
            round_f16: f("round_f16_inplace")?,
            to_f16: f("to_f16")?,
            swiglu: f("swiglu")?,
            geglu: f("geglu")?,
            rope: f("rope")?,
            gather_rows: f("gather_rows")?,
            copy_cols: f("copy_cols")?,
            kv_store: f("kv_store_f16")?,
            attend: f("attend_f16")?,
            quantize_act: f("quantize_act")?,
        })
    }

    /// `y[t] = W x[t]` for `n` tokens (at most `MMV_MAX`), W in its own format.
    pub fn mmv(
        &self,
        s: &mut dyn GpuStream,
        w: View,
        m: MatShape,
        x: View,
        n: usize,
        y: View,
    ) -> Result<()> {
        if n == 0 || n > MMV_MAX || !m.n_in.is_multiple_of(8) {
            return Err(Error::Internal(format!(
                "mmv of {n} tokens, {} inputs",
                m.n_in
            )));
        }
        need(w, m.n_out, m.row_bytes, "mmv weights")?;
        need(x, n * m.n_in, 4, "mmv input")?;
        need(y, n * m.n_out, 4, "mmv output")?;
        let f = self.formats[m.format].mmv[n - 1];
        // Four warps a block, one output row each.
        let dims = Dims {
            grid: (to_u32(m.n_out.div_ceil(4), "mmv rows")?, 1, 1),
            block: 128,
            shared: 0,
        };
        let args = [
            Arg::P(w.ptr),
            Arg::U64(m.row_bytes as u64),
            Arg::P(x.ptr),
            Arg::I(to_i32(m.n_in, "K")?),
            Arg::P(y.ptr),
            Arg::I(to_i32(m.n_out, "N")?),
        ];
        launch(s, f, dims, &args)
    }

    /// The whole matrix as f16, row-major, into `out`.
    pub fn deq_f16(&self, s: &mut dyn GpuStream, w: View, m: MatShape, out: View) -> Result<()> {
        need(w, m.n_out, m.row_bytes, "deq weights")?;
        let n = m
            .n_out
            .checked_mul(m.n_in)
            .ok_or_else(|| Error::Overflow("matrix".into()))?;
        need(out, n, 2, "deq output")?;
        let args = [
            Arg::P(w.ptr),
            Arg::U64(m.row_bytes as u64),
            Arg::P(out.ptr),
            Arg::I(to_i32(m.n_out, "N")?),
            Arg::I(to_i32(m.n_in, "K")?),
        ];
        launch(s, self.formats[m.format].deq_f16, grid1(n / 8, 256)?, &args)
    }

    /// `x[t] = scale * row tokens[t] of W` (W: n_out rows of n_in = d).
    #[allow(clippy::too_many_arguments)]
    pub fn embed(
        &self,
        s: &mut dyn GpuStream,
        w: View,
        m: MatShape,
        tokens: View,
        n: usize,
        x: View,
        scale: f32,
    ) -> Result<()> {
        need(w, m.n_out, m.row_bytes, "embedding")?;
        need(tokens, n, 4, "tokens")?;
        need(x, n * m.n_in, 4, "embeddings")?;
        let args = [
            Arg::P(w.ptr),
            Arg::U64(m.row_bytes as u64),
            Arg::P(tokens.ptr),
            Arg::P(x.ptr),
            Arg::I(to_i32(m.n_in, "d")?),
            Arg::F(scale),
        ];
        launch(s, self.formats[m.format].embed, rows(n, 128)?, &args)
    }

    /// `y = rms_norm(x) * w` for `n` rows of `d` (x rows `ldx` apart, y rows `ldy`); with
    /// `add`, `y += ...` instead.
    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        ldx: usize,
        w: View,
        y: View,
        ldy: usize,
        n: usize,
        d: usize,
        eps: f32,
        add: bool,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let span = |ld: usize| (n - 1) * ld + d;
        need(x, span(ldx), 4, "norm input")?;
        need(y, span(ldy), 4, "norm output")?;
        need(w, d, 4, "norm weights")?;
        let args = [
            Arg::P(x.ptr),
            Arg::I(to_i32(ldx, "ldx")?),
            Arg::P(w.ptr),
            Arg::P(y.ptr),
            Arg::I(to_i32(ldy, "ldy")?),
            Arg::I(to_i32(d, "d")?),
            Arg::F(eps),
            Arg::I(i32::from(add)),
        ];
        launch(s, self.rms_norm, rows(n, 256)?, &args)
    }

    /// `y` = `n` floats of `x` rounded as `r` says (`r` is not `None`; `n` a multiple of 256
    /// for `Q8K`, of 32 for `Q8_0`).
    pub fn quantize_act(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        y: View,
        n: usize,
        r: ActRound,
    ) -> Result<()> {
        let unit = match r {
            ActRound::None => return Err(Error::Internal("nothing to round".into())),
            ActRound::Q8K => 256,
            ActRound::Q8_0 => 32,
            _ => 1,
        };
        if !n.is_multiple_of(unit) {
            return Err(Error::Internal(format!(
                "rounding {n} activations in blocks of {unit}"
            )));
        }
        need(x, n, 4, "activations")?;
        need(y, n, 4, "rounded activations")?;
        // Four warps a block, 256 values a warp.
        let args = [
            Arg::P(x.ptr),
            Arg::P(y.ptr),
            Arg::U64(n as u64),
            Arg::I(r as i32),
        ];
        launch(
            s,
            self.quantize_act,
            grid1(n.div_ceil(256) * 32, 128)?,
            &args,
        )
    }

    /// `x += o`, `n` floats.
    pub fn add(&self, s: &mut dyn GpuStream, x: View, o: View, n: usize) -> Result<()> {
        need(x, n, 4, "add")?;
        need(o, n, 4, "add")?;
        launch(
            s,
            self.add,
            grid1(n, 256)?,
            &[Arg::P(x.ptr), Arg::P(o.ptr), Arg::U64(n as u64)],
        )
    }

    /// Adds `b` (d floats) to each of `rows` rows of `x`.
    pub fn add_bias(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        b: View,
        rows_: usize,
        d: usize,
    ) -> Result<()> {
        let n = bytes_of(rows_, d)?;
        need(x, n, 4, "bias add")?;
        need(b, d, 4, "bias")?;
        let args = [
            Arg::P(x.ptr),
            Arg::P(b.ptr),
            Arg::I(to_i32(d, "d")?),
            Arg::U64(n as u64),
        ];
        launch(s, self.add_bias, grid1(n, 256)?, &args)
    }

    pub fn scale(&self, s: &mut dyn GpuStream, x: View, n: usize, k: f32) -> Result<()> {
        need(x, n, 4, "scale")?;
        launch(
            s,
            self.scale,
            grid1(n, 256)?,
            &[Arg::P(x.ptr), Arg::F(k), Arg::U64(n as u64)],
        )
    }

    pub fn softcap(&self, s: &mut dyn GpuStream, x: View, n: usize, cap: f32) -> Result<()> {
        need(x, n, 4, "softcap")?;
        launch(
            s,
            self.softcap,
            grid1(n, 256)?,
            &[Arg::P(x.ptr), Arg::F(cap), Arg::U64(n as u64)],
        )
    }

    pub fn round_f16(&self, s: &mut dyn GpuStream, x: View, n: usize) -> Result<()> {
        need(x, n, 4, "round")?;
        launch(
            s,
            self.round_f16,
            grid1(n, 256)?,
            &[Arg::P(x.ptr), Arg::U64(n as u64)],
        )
    }

    pub fn to_f16(&self, s: &mut dyn GpuStream, x: View, y: View, n: usize) -> Result<()> {
        need(x, n, 4, "to_f16 input")?;
        need(y, n, 2, "to_f16 output")?;
        launch(
            s,
            self.to_f16,
            grid1(n, 256)?,
            &[Arg::P(x.ptr), Arg::P(y.ptr), Arg::U64(n as u64)],
        )
    }

    /// `a = act(g) * u`, `n` floats; `gelu` picks GeGLU over SwiGLU.
    pub fn glu(
        &self,
        s: &mut dyn GpuStream,
        gelu: bool,
        g: View,
        u: View,
        a: View,
        n: usize,
    ) -> Result<()> {
        for (v, w) in [(g, "gate"), (u, "up"), (a, "act")] {
            need(v, n, 4, w)?;
        }
        let f = if gelu { self.geglu } else { self.swiglu };
        launch(
            s,
            f,
            grid1(n, 256)?,
            &[
                Arg::P(g.ptr),
                Arg::P(u.ptr),
                Arg::P(a.ptr),
                Arg::U64(n as u64),
            ],
        )
    }

    /// RoPE on `n` rows of `n_heads * head_dim` (rows `ld` apart) with `cs`: n_rot / 2
    /// (cos, sin) pairs per row.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        ld: usize,
        cs: View,
        n: usize,
        n_heads: usize,
        head_dim: usize,
        n_rot: usize,
        neox: bool,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(Error::Internal(format!(
                "rope of {n_rot} dims in heads of {head_dim}"
            )));
        }
        need(x, (n - 1) * ld + n_heads * head_dim, 4, "rope")?;
        need(cs, n * n_rot / 2, 8, "rope angles")?;
        let args = [
            Arg::P(x.ptr),
            Arg::I(to_i32(ld, "ld")?),
            Arg::P(cs.ptr),
            Arg::I(to_i32(n_heads, "heads")?),
            Arg::I(to_i32(head_dim, "head_dim")?),
            Arg::I(to_i32(n_rot, "n_rot")?),
            Arg::I(i32::from(neox)),
        ];
        launch(s, self.rope, rows(n, 128)?, &args)
    }

    /// `dst[i] = src[idx[i]]` for `n` rows of `d` (`src` holds `src_rows`; the indices were
    /// checked below it on the host).
    #[allow(clippy::too_many_arguments)]
    pub fn gather_rows(
        &self,
        s: &mut dyn GpuStream,
        src: View,
        src_rows: usize,
        idx: View,
        n: usize,
        dst: View,
        d: usize,
    ) -> Result<()> {
        need(src, src_rows * d, 4, "gather source")?;
        need(idx, n, 4, "gather indices")?;
        need(dst, n * d, 4, "gather output")?;
        let args = [
            Arg::P(src.ptr),
            Arg::P(idx.ptr),
            Arg::P(dst.ptr),
            Arg::I(to_i32(d, "d")?),
        ];
        launch(s, self.gather_rows, rows(n, 256)?, &args)
    }

    /// `dst` (n x width) = columns `col0..col0 + width` of `src` (n rows of `ld`).
    #[allow(clippy::too_many_arguments)]
    pub fn copy_cols(
        &self,
        s: &mut dyn GpuStream,
        src: View,
        ld: usize,
        col0: usize,
        n: usize,
        dst: View,
        width: usize,
    ) -> Result<()> {
        if col0 + width > ld {
            return Err(Error::Internal("copy_cols past its row".into()));
        }
        need(src, n * ld, 4, "split source")?;
        need(dst, n * width, 4, "split output")?;
        let args = [
            Arg::P(src.ptr),
            Arg::I(to_i32(ld, "ld")?),
            Arg::I(to_i32(col0, "col0")?),
            Arg::P(dst.ptr),
            Arg::I(to_i32(width, "width")?),
        ];
        launch(s, self.copy_cols, rows(n, 256)?, &args)
    }

    /// Stores k and v rows into cache cells: `pairs` holds `n` (row, cell) pairs, rows below
    /// `n_rows` and cells below `n_cells` (checked on the host when the pairs were made).
    #[allow(clippy::too_many_arguments)]
    pub fn kv_store(
        &self,
        s: &mut dyn GpuStream,
        k: View,
        v: View,
        n_rows: usize,
        pairs: View,
        n: usize,
        kc: View,
        vc: View,
        n_cells: usize,
        kd: usize,
        vd: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        need(k, n_rows * kd, 4, "keys")?;
        need(v, n_rows * vd, 4, "values")?;
        need(pairs, 2 * n, 4, "store pairs")?;
        need(kc, n_cells * kd, 2, "key cache")?;
        need(vc, n_cells * vd, 2, "value cache")?;
        let args = [
            Arg::P(k.ptr),
            Arg::P(v.ptr),
            Arg::P(pairs.ptr),
            Arg::P(kc.ptr),
            Arg::P(vc.ptr),
            Arg::I(to_i32(kd, "kd")?),
            Arg::I(to_i32(vd, "vd")?),
        ];
        launch(s, self.kv_store, rows(n, 128)?, &args)
    }
}

/// The shape of one attention launch.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_rows: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub v_head_dim: usize,
    pub scale: f32,
    /// 0: none.
    pub softcap: f32,
    /// Entries of the cells/positions lists; cache rows.
    pub n_entries: usize,
    pub n_cells: usize,
}

/// Head sizes the attention kernel takes (kernels/attention.cu: ATT_MAX_D).
pub const ATTN_MAX_HEAD: usize = 256;

/// The device views one attention launch reads and writes.
pub struct AttnIo {
    pub q: View,
    pub kc: View,
    pub vc: View,
    pub out: View,
    pub meta: View,
    pub cells: View,
    pub cpos: View,
}

impl Kernels {
    /// Attention of `a.n_rows` query rows over the cache (see kernels/attention.cu). The
    /// host built `meta` (per row: offset, count, pos, lo) with offset + count within
    /// `n_entries` and cells below `n_cells`.
    pub fn attend(&self, s: &mut dyn GpuStream, a: AttnShape, io: &AttnIo) -> Result<()> {
        if a.head_dim > ATTN_MAX_HEAD
            || a.v_head_dim > ATTN_MAX_HEAD
            || a.n_head_kv == 0
            || !a.n_head.is_multiple_of(a.n_head_kv)
        {
            return Err(Error::Internal(format!("attention shape {a:?}")));
        }
        need(io.q, a.n_rows * a.n_head * a.head_dim, 4, "queries")?;
        need(
            io.out,
            a.n_rows * a.n_head * a.v_head_dim,
            4,
            "attention output",
        )?;
        need(io.kc, a.n_cells * a.n_head_kv * a.head_dim, 2, "key cache")?;
        need(
            io.vc,
            a.n_cells * a.n_head_kv * a.v_head_dim,
            2,
            "value cache",
        )?;
        need(io.meta, a.n_rows * 4, 4, "attention rows")?;
        need(io.cells, a.n_entries, 4, "attention cells")?;
        need(io.cpos, a.n_entries, 4, "attention positions")?;
        let dims = Dims {
            grid: (to_u32(a.n_head, "heads")?, to_u32(a.n_rows, "rows")?, 1),
            block: 128,
            shared: 0,
        };
        let args = [
            Arg::P(io.q.ptr),
            Arg::P(io.kc.ptr),
            Arg::P(io.vc.ptr),
            Arg::P(io.out.ptr),
            Arg::P(io.meta.ptr),
            Arg::P(io.cells.ptr),
            Arg::P(io.cpos.ptr),
            Arg::I(to_i32(a.n_head, "heads")?),
            Arg::I(to_i32(a.n_head_kv, "kv heads")?),
            Arg::I(to_i32(a.head_dim, "head_dim")?),
            Arg::I(to_i32(a.v_head_dim, "v_head_dim")?),
            Arg::F(a.scale),
            Arg::F(a.softcap),
        ];
        launch(s, self.attend, dims, &args)
    }
}
