//! The kernels of `kernels/`, looked up once per device, and checked launches: every wrapper
//! checks that each buffer it is given covers what the kernel will read or write before the
//! launch, so a size mistake is an `Error::Internal`, never a stray device write.

use std::ffi::c_void;

use super::fused::Fused;
use super::mmq::Mmq;
use super::moe::MoeKernels;
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

/// The fewest weight slices (sixteen codes) one `mmvq` thread takes, where rows allow.
const MMVQ_SLICES: usize = 4;

/// The most matrices one `mmvq_group` launch takes (a layer's Q, K and V).
pub const MMVQ_GROUP: usize = 3;

/// Threads of an `argmax_rows` block (kernels/ops.cu RF_ARGMAX_THREADS: its shared arrays).
const ARGMAX_THREADS: u32 = 512;

/// The most tokens one `mmv` launch takes (kernels mmv1 .. mmv8).
pub const MMV_MAX: usize = 8;

/// The formats with integer-dot kernels on Q8_K activations (kernels/matvec_q8k.cu
/// `mmvqk`), and whether theirs load whole 16-byte lines (rows and matrix 16-byte aligned).
pub(super) const MMVQK: [(&str, bool); 3] = [("q4_k", true), ("q5_k", true), ("q6_k", false)];

/// Whether `mmvqk` can take a matrix of `format` at `ptr` with rows of `row_bytes`.
pub fn mmvqk_fits(format: usize, ptr: DevPtr, row_bytes: usize) -> bool {
    let Some(name) = FORMATS.get(format).map(|f| f.1) else {
        return false;
    };
    MMVQK.iter().any(|&(n, lines)| {
        n == name && (!lines || (ptr.is_multiple_of(16) && row_bytes.is_multiple_of(16)))
    })
}

/// The index of `ty` in `FORMATS`, or `Unsupported`.
pub fn format_index(ty: GgmlType, what: &str) -> Result<usize> {
    FORMATS
        .iter()
        .position(|&(t, ..)| t == ty)
        .ok_or_else(|| Error::Unsupported(format!("{what}: the GPU backend has no {ty} kernels")))
}

/// The formats with integer-dot kernels (kernels/matvec_q8.cu `mmvq`): blocks of 32 whose
/// CPU dot products take Q8_0 or Q8_1 activations, with each block's header and code bytes
/// (the split layout's two parts).
const Q8_DOT: [(&str, usize, usize); 6] = [
    ("q4_0", 2, 16),
    ("q4_1", 4, 16),
    ("q5_0", 6, 16),
    ("q5_1", 8, 16),
    ("q8_0", 2, 32),
    ("iq4_nl", 2, 16),
];

/// A block's header and code bytes, for the formats the split layout takes.
pub fn split_parts(format: usize) -> Option<(usize, usize)> {
    let name = FORMATS.get(format)?.1;
    Q8_DOT
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, hb, qb)| (hb, qb))
}

/// The integer-dot kernels of a format: for the blocks layout, for the split one, and the
/// split layout's f16 dequantization.
#[derive(Clone, Copy)]
struct DotKernels {
    blocks: [Func; MMV_MAX],
    split: [Func; MMV_MAX],
    /// Whole-block products over up to three split matrices (`mmvqb`), for the formats of
    /// sixteen code bytes a block.
    whole: Option<[Func; MMV_MAX]>,
    deq_f16_split: Func,
}

struct FormatKernels {
    mmv: [Func; MMV_MAX],
    mmvq: Option<DotKernels>,
    /// Integer-dot kernels on Q8_K activations (kernels/matvec_q8k.cu), for Q4_K.
    mmvqk: Option<[Func; MMV_MAX]>,
    deq_f16: Func,
    embed: Func,
}

/// Activations quantized for `mmvq`: int8 codes, rows of K, and one {d, s} float pair per
/// 32 codes.
#[derive(Debug, Clone, Copy)]
pub struct Q8Act {
    pub codes: View,
    pub scales: View,
}

impl Q8Act {
    /// Rows `t0..t0 + n` of rows of `k` codes.
    pub fn rows(self, t0: usize, n: usize, k: usize) -> Result<Q8Act> {
        let blocks = k / 32;
        Ok(Q8Act {
            codes: self.codes.sub(bytes_of(t0, k)?, bytes_of(n, k)?)?,
            scales: self
                .scales
                .sub(bytes_of(t0, blocks * 8)?, bytes_of(n, blocks * 8)?)?,
        })
    }
}

pub struct Kernels {
    formats: Vec<FormatKernels>,
    rms_norm: Func,
    add: Func,
    add_bias: Func,
    softcap: Func,
    argmax: Func,
    swiglu: Func,
    geglu: Func,
    gather_rows: Func,
    copy_cols: Func,
    kv_store: Func,
    attend: Func,
    /// Attention for many rows of one list (prefill), and whether it is on (the default;
    /// RF_GPU_ATTN_ROWS=0 turns it off, to measure it against `attend`).
    attend_rows: Func,
    attend_rows_on: bool,
    /// The same on tensor cores (kernels/attention_mma.cu), and whether it is on: by default
    /// where the vendor BLAS is (NVIDIA: the f16 mma instruction from sm_80; on AMD its
    /// portable form would be slower than `attend_rows`); RF_GPU_ATTN_MMA=0/1 overrides.
    attend_mma: Func,
    attend_mma_on: bool,
    /// Attention for many rows with a list each (many sequences' decode steps), and whether
    /// it is on (the default; RF_GPU_ATTN_HEADS=0 turns it off, to measure it).
    attend_heads: Func,
    attend_heads_on: bool,
    /// Whether decodes of few rows split each row's entries over several blocks of
    /// `attend_heads_f16` (the default; RF_GPU_ATTN_SPLIT=0 turns it off, to measure it).
    attend_split_on: bool,
    quantize_act: Func,
    quantize_q8: Func,
    quantize_q8k: Func,
    /// Whether Q4_K, Q5_K and Q6_K take `mmvqk` (the default; RF_GPU_MMVQK=0 turns it off for the fused
    /// dequantize-dot `mmv`, to measure it).
    mmvqk_on: bool,
    /// Whether the whole-block products (`mmvqb`) are used: the default; RF_GPU_MMVQB=0
    /// turns them off (to measure what they save against `mmvqs`).
    whole_on: bool,
    /// Launches that do the work of several of the above (kernels/fused.cu).
    pub fused: Fused,
    /// Mixture-of-experts routing and products (kernels/moe.cu).
    pub moe: MoeKernels,
    /// Tiled int8 products of the split layout for larger batches (kernels/mmq.cu).
    pub mmq: Mmq,
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
/// Threads of a norm's block for rows of `d`: a float4 each where the row allows, in whole
/// AMD wavefronts (64). `rms_norm` and the fused norm share it, so their sums run in the same
/// order.
pub(super) fn norm_block(d: usize) -> u32 {
    (d.div_ceil(4).div_ceil(64).max(1) * 64).min(1024) as u32
}

/// The product of `factors` (element counts of a launch), checked.
pub(super) fn count(factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |a, &f| a.checked_mul(f))
        .ok_or_else(|| Error::Overflow(format!("a kernel's element count {factors:?}")))
}

pub(super) fn need(v: View, count: usize, elem: usize, what: &str) -> Result<DevPtr> {
    let b = bytes_of(count, elem)?;
    if v.bytes < b {
        return Err(Error::Internal(format!(
            "{what}: a kernel needs {b} bytes of a {}-byte buffer",
            v.bytes
        )));
    }
    Ok(v.ptr)
}

pub(super) fn to_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Overflow(format!("{what} = {v} for a kernel")))
}

pub(super) fn to_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Overflow(format!("{what} = {v} for a kernel")))
}

/// A kernel argument: each is passed by address, from a 64-bit slot whose low bytes hold it
/// (little-endian; the driver copies the parameter's own size).
#[derive(Clone, Copy)]
pub(super) enum Arg {
    P(DevPtr),
    I(i32),
    U64(u64),
    F(f32),
}

const MAX_ARGS: usize = 20;

pub(super) fn launch(s: &mut dyn GpuStream, f: Func, d: Dims, args: &[Arg]) -> Result<()> {
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

pub(super) fn grid1(n: usize, block: u32) -> Result<Dims> {
    let blocks = n.div_ceil(block as usize).max(1);
    Ok(Dims {
        grid: (to_u32(blocks, "grid")?, 1, 1),
        block,
        shared: 0,
    })
}

pub(super) fn rows(n: usize, block: u32) -> Result<Dims> {
    Ok(Dims {
        grid: (to_u32(n.max(1), "rows")?, 1, 1),
        block,
        shared: 0,
    })
}

/// The codes and the headers of a matrix in the split layout, each checked to hold its
/// `n_out * n_in / 32` blocks' parts.
pub(super) fn split_views(w: View, m: MatShape) -> Result<(View, View)> {
    let (hb, qb) = split_parts(m.format)
        .ok_or_else(|| Error::Internal("split layout of a format without one".into()))?;
    let at = m
        .heads
        .ok_or_else(|| Error::Internal("not the split layout".into()))?;
    let blocks = bytes_of(m.n_out, m.n_in / 32)?;
    let codes = w.sub(0, bytes_of(blocks, qb)?)?;
    if at != codes.bytes || !at.is_multiple_of(16) {
        return Err(Error::Internal("split layout: headers misplaced".into()));
    }
    Ok((codes, w.sub(at, bytes_of(blocks, hb)?)?))
}

/// The shape of one quantized matrix on the device.
#[derive(Debug, Clone, Copy)]
pub struct MatShape {
    pub format: usize,
    pub n_out: usize,
    pub n_in: usize,
    pub row_bytes: usize,
    /// The split layout (kernels/matvec_q8.cu): where its headers start, after the codes.
    pub heads: Option<usize>,
}

impl Kernels {
    pub fn load(dev: &dyn GpuDevice) -> Result<Kernels> {
        let f = |name: &str| dev.function(name);
        let mut formats = Vec::with_capacity(FORMATS.len());
        let per_tokens = |prefix: &str, name: &str| -> Result<[Func; MMV_MAX]> {
            let mut fs = [Func(0); MMV_MAX];
            for (i, m) in fs.iter_mut().enumerate() {
                *m = f(&format!("{prefix}{}_{name}", i + 1))?;
            }
            Ok(fs)
        };
        for (_, name, _) in FORMATS {
            formats.push(FormatKernels {
                mmv: per_tokens("mmv", name)?,
                mmvq: if let Some(&(_, _, qb)) = Q8_DOT.iter().find(|(n, _, _)| *n == name) {
                    Some(DotKernels {
                        blocks: per_tokens("mmvq", name)?,
                        split: per_tokens("mmvqs", name)?,
                        whole: if qb == 16 {
                            Some(per_tokens("mmvqb", name)?)
                        } else {
                            None
                        },
                        deq_f16_split: f(&format!("deqs_f16_{name}"))?,
                    })
                } else {
                    None
                },
                mmvqk: if MMVQK.iter().any(|&(n, _)| n == name) {
                    Some(per_tokens("mmvqk", name)?)
                } else {
                    None
                },
                deq_f16: f(&format!("deq_f16_{name}"))?,
                embed: f(&format!("embed_{name}"))?,
            });
        }
        Ok(Kernels {
            formats,
            rms_norm: f("rms_norm")?,
            add: f("add_inplace")?,
            add_bias: f("add_bias")?,
            softcap: f("softcap_inplace")?,
            argmax: f("argmax_rows")?,
            swiglu: f("swiglu")?,
            geglu: f("geglu")?,
            gather_rows: f("gather_rows")?,
            copy_cols: f("copy_cols")?,
            kv_store: f("kv_store_f16")?,
            attend: f("attend_f16")?,
            attend_rows: f("attend_rows_f16")?,
            attend_rows_on: std::env::var("RF_GPU_ATTN_ROWS").map_or(true, |v| v != "0"),
            attend_mma: f("attend_rows_mma")?,
            attend_mma_on: match std::env::var("RF_GPU_ATTN_MMA").as_deref() {
                Ok("1") => true,
                Ok("0") => false,
                _ => dev.has_gemm(),
            },
            attend_heads: f("attend_heads_f16")?,
            attend_heads_on: std::env::var("RF_GPU_ATTN_HEADS").map_or(true, |v| v != "0"),
            attend_split_on: std::env::var("RF_GPU_ATTN_SPLIT").map_or(true, |v| v != "0"),
            quantize_act: f("quantize_act")?,
            quantize_q8: f("quantize_q8")?,
            quantize_q8k: f("quantize_q8k")?,
            mmvqk_on: std::env::var("RF_GPU_MMVQK").map_or(true, |v| v != "0"),
            whole_on: std::env::var("RF_GPU_MMVQB").map_or(true, |v| v != "0"),
            fused: Fused::load(dev)?,
            moe: MoeKernels::load(dev)?,
            mmq: Mmq::load(dev)?,
        })
    }

    /// Whether format `format` (an index into `FORMATS`) has `mmvq` kernels.
    pub fn has_mmvq(&self, format: usize) -> bool {
        self.formats.get(format).is_some_and(|f| f.mmvq.is_some())
    }

    /// Whether format `format` has integer-dot kernels on Q8_K activations (`mmvqk`).
    pub fn has_mmvqk(&self, format: usize) -> bool {
        self.mmvqk_on && self.formats.get(format).is_some_and(|f| f.mmvqk.is_some())
    }

    /// `n` rows of `k` floats of `x` to Q8_K codes and scales for `mmvqk` (`k` a multiple of
    /// 256), rounded as the CPU rounds Q8_K activations.
    pub fn quantize_q8k(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        q: Q8Act,
        n: usize,
        k: usize,
    ) -> Result<()> {
        if !k.is_multiple_of(256) {
            return Err(Error::Internal(format!(
                "quantizing rows of {k} in blocks of 256"
            )));
        }
        let count = bytes_of(n, k)?;
        need(x, count, 4, "activations")?;
        need(q.codes, count, 1, "activation codes")?;
        need(q.scales, count / 32, 8, "activation scales")?;
        let blocks = count / 256;
        let args = [
            Arg::P(x.ptr),
            Arg::P(q.codes.ptr),
            Arg::P(q.scales.ptr),
            Arg::U64(blocks as u64),
        ];
        // Four 32-thread groups a block, one 256-value block each.
        launch(s, self.quantize_q8k, grid1(blocks * 32, 128)?, &args)
    }

    /// `y[t] = W x[t]` for `n` tokens (at most `MMV_MAX`) of Q8_K activations `x`, with the
    /// Q8_K integer-dot kernels (`has_mmvqk`; blocks layout, aligned as `mmvqk_fits` says).
    pub fn mmvqk(
        &self,
        s: &mut dyn GpuStream,
        w: View,
        m: MatShape,
        x: Q8Act,
        n: usize,
        y: View,
    ) -> Result<()> {
        let fs = self
            .formats
            .get(m.format)
            .and_then(|f| f.mmvqk)
            .ok_or_else(|| Error::Internal("no Q8_K integer-dot kernels for this format".into()))?;
        if n == 0
            || n > MMV_MAX
            || !m.n_in.is_multiple_of(256)
            || m.heads.is_some()
            || !mmvqk_fits(m.format, w.ptr, m.row_bytes)
            || !x.codes.ptr.is_multiple_of(16)
        {
            return Err(Error::Internal(format!(
                "mmvqk of {n} tokens, {} inputs",
                m.n_in
            )));
        }
        need(w, m.n_out, m.row_bytes, "mmvqk weights")?;
        need(x.codes, bytes_of(n, m.n_in)?, 1, "mmvqk codes")?;
        need(x.scales, bytes_of(n, m.n_in / 32)?, 8, "mmvqk scales")?;
        need(y, bytes_of(n, m.n_out)?, 4, "mmvqk output")?;
        // Four warps a block, one row each.
        let dims = Dims {
            grid: (to_u32(m.n_out.div_ceil(4), "mmvqk rows")?, 1, 1),
            block: 128,
            shared: 0,
        };
        let args = [
            Arg::P(w.ptr),
            Arg::U64(m.row_bytes as u64),
            Arg::P(x.codes.ptr),
            Arg::P(x.scales.ptr),
            Arg::I(to_i32(m.n_in, "K")?),
            Arg::P(y.ptr),
            Arg::I(to_i32(m.n_out, "N")?),
        ];
        launch(s, fs[n - 1], dims, &args)
    }

    /// `n` rows of `k` floats of `x` to codes and scales for `mmvq` (`k` a multiple of 32).
    pub fn quantize_q8(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        q: Q8Act,
        n: usize,
        k: usize,
    ) -> Result<()> {
        if !k.is_multiple_of(32) {
            return Err(Error::Internal(format!(
                "quantizing rows of {k} in blocks of 32"
            )));
        }
        let count = bytes_of(n, k)?;
        let blocks = count / 32;
        need(x, count, 4, "activations")?;
        need(q.codes, count, 1, "activation codes")?;
        need(q.scales, blocks, 8, "activation scales")?;
        let args = [
            Arg::P(x.ptr),
            Arg::P(q.codes.ptr),
            Arg::P(q.scales.ptr),
            Arg::U64(blocks as u64),
        ];
        launch(s, self.quantize_q8, grid1(blocks, 128)?, &args)
    }

    /// Whether `mmvq_group` can take these matrices in one launch: one to three of them, all
    /// in the split layout of the same format with whole-block kernels, with the same inputs.
    pub fn groups<'a>(&self, mut mats: impl Iterator<Item = &'a MatShape>) -> bool {
        let Some(first) = mats.next() else {
            return false;
        };
        let mut count = 1;
        for m in mats {
            if m.format != first.format || m.n_in != first.n_in || m.heads.is_none() {
                return false;
            }
            count += 1;
        }
        self.whole_on
            && count <= MMVQ_GROUP
            && first.heads.is_some()
            && self.whole(first.format).is_some()
    }

    fn whole(&self, format: usize) -> Option<[Func; MMV_MAX]> {
        self.formats.get(format)?.mmvq?.whole
    }

    /// `y_i[t] = W_i x[t]` for `n` tokens (at most `MMV_MAX`) and each `(W_i, shape_i, y_i)`
    /// of `mats`, in one launch (`groups` must hold for their shapes).
    pub fn mmvq_group(
        &self,
        s: &mut dyn GpuStream,
        mats: &[(View, MatShape, View)],
        x: Q8Act,
        n: usize,
    ) -> Result<()> {
        let first = match mats.first() {
            Some(m) if self.groups(mats.iter().map(|m| &m.1)) => m.1,
            _ => {
                return Err(Error::Internal(format!(
                    "mmvq group of {} matrices",
                    mats.len()
                )));
            }
        };
        let k = first.n_in;
        if n == 0 || n > MMV_MAX || !k.is_multiple_of(32) {
            return Err(Error::Internal(format!(
                "mmvq group of {n} tokens, {k} inputs"
            )));
        }
        let f = self
            .whole(first.format)
            .ok_or_else(|| Error::Internal("no whole-block kernels".into()))?[n - 1];
        need(x.codes, bytes_of(n, k)?, 1, "mmvq codes")?;
        need(x.scales, bytes_of(n, k / 32)?, 8, "mmvq scales")?;
        // Four arguments a matrix (an absent one: NULLs and 0 rows), then the inputs.
        let mut args = [Arg::I(0); 4 * MMVQ_GROUP + 3];
        let mut rows = 0usize;
        for (i, &(w, m, y)) in mats.iter().enumerate() {
            need(w, m.n_out, m.row_bytes, "mmvq weights")?;
            let (codes, heads) = split_views(w, m)?;
            need(y, bytes_of(n, m.n_out)?, 4, "mmvq output")?;
            rows = rows
                .checked_add(m.n_out)
                .ok_or_else(|| Error::Overflow("mmvq rows".into()))?;
            args[4 * i..4 * i + 4].copy_from_slice(&[
                Arg::P(codes.ptr),
                Arg::P(heads.ptr),
                Arg::P(y.ptr),
                Arg::I(to_i32(m.n_out, "N")?),
            ]);
        }
        for i in mats.len()..MMVQ_GROUP {
            args[4 * i..4 * i + 3].copy_from_slice(&[Arg::P(0); 3]);
        }
        args[4 * MMVQ_GROUP..].copy_from_slice(&[
            Arg::P(x.codes.ptr),
            Arg::P(x.scales.ptr),
            Arg::I(to_i32(k, "K")?),
        ]);
        // 32 lanes a row, four rows a block of 128 threads; the kernel counts rows in an int.
        to_i32(rows, "mmvq rows")?;
        let dims = Dims {
            grid: (to_u32(rows.div_ceil(4), "mmvq rows")?, 1, 1),
            block: 128,
            shared: 0,
        };
        launch(s, f, dims, &args)
    }

    /// `y[t] = W x[t]` for `n` tokens (at most `MMV_MAX`) of quantized activations, W in a
    /// format that `has_mmvq`.
    pub fn mmvq(
        &self,
        s: &mut dyn GpuStream,
        w: View,
        m: MatShape,
        x: Q8Act,
        n: usize,
        y: View,
    ) -> Result<()> {
        if self.groups([m].iter()) {
            return self.mmvq_group(s, &[(w, m, y)], x, n);
        }
        let ks = self
            .formats
            .get(m.format)
            .and_then(|f| f.mmvq)
            .ok_or_else(|| Error::Internal("no integer-dot kernels for this format".into()))?;
        if n == 0 || n > MMV_MAX || !m.n_in.is_multiple_of(32) {
            return Err(Error::Internal(format!(
                "mmvq of {n} tokens, {} inputs",
                m.n_in
            )));
        }
        need(w, m.n_out, m.row_bytes, "mmvq weights")?;
        let (f, w0, w1) = match m.heads {
            Some(_) => {
                let (codes, heads) = split_views(w, m)?;
                (ks.split[n - 1], Arg::P(codes.ptr), Arg::P(heads.ptr))
            }
            None => (
                ks.blocks[n - 1],
                Arg::P(w.ptr),
                Arg::U64(m.row_bytes as u64),
            ),
        };
        need(x.codes, bytes_of(n, m.n_in)?, 1, "mmvq codes")?;
        need(x.scales, bytes_of(n, m.n_in / 32)?, 8, "mmvq scales")?;
        need(y, bytes_of(n, m.n_out)?, 4, "mmvq output")?;
        // Two slices of sixteen codes per block of 32: the most threads a row (of 32, 64,
        // 128) that leaves each at least MMVQ_SLICES slices.
        let tasks = m.n_in / 16;
        let tpr = [128, 64]
            .into_iter()
            .find(|&t| tasks >= t * MMVQ_SLICES)
            .unwrap_or(32);
        let dims = Dims {
            grid: (to_u32(m.n_out.div_ceil(128 / tpr), "mmvq rows")?, 1, 1),
            block: 128,
            shared: 0,
        };
        let args = [
            w0,
            w1,
            Arg::P(x.codes.ptr),
            Arg::P(x.scales.ptr),
            Arg::I(to_i32(m.n_in, "K")?),
            Arg::P(y.ptr),
            Arg::I(to_i32(m.n_out, "N")?),
            Arg::I(tpr as i32),
        ];
        launch(s, f, dims, &args)
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
        if n == 0 || n > MMV_MAX || !m.n_in.is_multiple_of(8) || m.heads.is_some() {
            return Err(Error::Internal(format!(
                "mmv of {n} tokens, {} inputs",
                m.n_in
            )));
        }
        need(w, m.n_out, m.row_bytes, "mmv weights")?;
        need(x, count(&[n, m.n_in])?, 4, "mmv input")?;
        need(y, count(&[n, m.n_out])?, 4, "mmv output")?;
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
        // Each thread stores eight values with one 16-byte store.
        if !m.n_in.is_multiple_of(8) || !out.ptr.is_multiple_of(16) {
            return Err(Error::Internal(format!(
                "f16 rows of {} at {:#x}: 16-byte stores need rows of a multiple of 8",
                m.n_in, out.ptr
            )));
        }
        let fk = &self.formats[m.format];
        let (f, w1) = match (m.heads, fk.mmvq) {
            (Some(_), Some(ks)) => (ks.deq_f16_split, Arg::P(split_views(w, m)?.1.ptr)),
            (Some(_), None) => return Err(Error::Internal("split layout of a format".into())),
            (None, _) => (fk.deq_f16, Arg::U64(m.row_bytes as u64)),
        };
        let args = [
            Arg::P(w.ptr),
            w1,
            Arg::P(out.ptr),
            Arg::I(to_i32(m.n_out, "N")?),
            Arg::I(to_i32(m.n_in, "K")?),
        ];
        launch(s, f, grid1(n / 8, 256)?, &args)
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
        if m.heads.is_some() {
            return Err(Error::Internal("an embedding in the split layout".into()));
        }
        need(tokens, n, 4, "tokens")?;
        need(x, count(&[n, m.n_in])?, 4, "embeddings")?;
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
        let span = |ld: usize| {
            count(&[n - 1, ld])?
                .checked_add(d)
                .ok_or_else(|| Error::Overflow("norm rows".into()))
        };
        need(x, span(ldx)?, 4, "norm input")?;
        need(y, span(ldy)?, 4, "norm output")?;
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
        launch(s, self.rms_norm, rows(n, norm_block(d))?, &args)
    }

    /// `y` = `n` floats of `x` rounded as `r` says (`n` a multiple of 256 for `Q8K`, of 32
    /// for `Q8_0`): f32 where `f16` is false (`r` is not `None` then), else f16, the f16
    /// GEMM's input (`None`: only converted).
    pub fn quantize_act(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        y: View,
        n: usize,
        r: ActRound,
        f16: bool,
    ) -> Result<()> {
        let unit = match r {
            ActRound::None if !f16 => return Err(Error::Internal("nothing to round".into())),
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
        let (y32, y16) = if f16 {
            need(y, n, 2, "f16 activations")?;
            (0, y.ptr)
        } else {
            need(y, n, 4, "rounded activations")?;
            (y.ptr, 0)
        };
        // Four warps a block, 256 values a warp.
        let args = [
            Arg::P(x.ptr),
            Arg::P(y32),
            Arg::P(y16),
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

    pub fn softcap(&self, s: &mut dyn GpuStream, x: View, n: usize, cap: f32) -> Result<()> {
        need(x, n, 4, "softcap")?;
        launch(
            s,
            self.softcap,
            grid1(n, 256)?,
            &[Arg::P(x.ptr), Arg::F(cap), Arg::U64(n as u64)],
        )
    }

    /// The greedy token of each of `n` rows of `d` logits in `x` (highest logit, lowest index
    /// on ties) into `out[2 * row]`, and the row's first non-finite index into
    /// `out[2 * row + 1]` (-1: none).
    pub fn argmax_rows(
        &self,
        s: &mut dyn GpuStream,
        x: View,
        n: usize,
        d: usize,
        out: View,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        need(x, count(&[n, d])?, 4, "argmax logits")?;
        need(out, count(&[n, 2])?, 4, "argmax tokens")?;
        let args = [
            Arg::P(x.ptr),
            Arg::I(to_i32(d, "vocabulary")?),
            Arg::P(out.ptr),
        ];
        launch(s, self.argmax, rows(n, ARGMAX_THREADS)?, &args)
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
        need(src, count(&[src_rows, d])?, 4, "gather source")?;
        need(idx, n, 4, "gather indices")?;
        need(dst, count(&[n, d])?, 4, "gather output")?;
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
        need(src, count(&[n, ld])?, 4, "split source")?;
        need(dst, count(&[n, width])?, 4, "split output")?;
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
        need(k, count(&[n_rows, kd])?, 4, "keys")?;
        need(v, count(&[n_rows, vd])?, 4, "values")?;
        need(pairs, count(&[2, n])?, 4, "store pairs")?;
        need(kc, count(&[n_cells, kd])?, 2, "key cache")?;
        need(vc, count(&[n_cells, vd])?, 2, "value cache")?;
        let args = [
            Arg::P(k.ptr),
            Arg::P(v.ptr),
            Arg::P(pairs.ptr),
            Arg::P(kc.ptr),
            Arg::P(vc.ptr),
            Arg::I(to_i32(kd, "kd")?),
            Arg::I(to_i32(vd, "vd")?),
        ];
        let dims = Dims {
            grid: (
                to_u32(n, "store pairs")?,
                to_u32(kd.max(vd).div_ceil(256).max(1), "store width")?,
                1,
            ),
            block: 256,
            shared: 0,
        };
        launch(s, self.kv_store, dims, &args)
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
    /// Entries ({cell, position} pairs) of the attention lists; cache rows.
    pub n_entries: usize,
    pub n_cells: usize,
    /// Distinct entry lists among the rows (sequences with rows in the batch).
    pub n_lists: usize,
}

/// What a kernel already made of a product's input for the next product: nothing, its Q8
/// quantization (in the Q8 scratch), or its f16 rounding as a format asks (in the f16
/// GEMM input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    Nothing,
    /// Q8_0 blocks (`quantize_q8`).
    Q8,
    /// Q8_K blocks (`quantize_q8k`), for the Q4_K, Q5_K and Q6_K products.
    Q8K,
    F16(ActRound),
}

/// Head sizes the attention kernel takes (kernels/attention.cu: ATT_MAX_D).
pub const ATTN_MAX_HEAD: usize = 256;

/// Queries a block of `attend_rows_f16` takes (kernels/attention.cu: ATR_Q).
const ATTN_ROWS_Q: usize = 16;

/// Queries a block of `attend_rows_mma` takes, and its largest head (kernels/attention_mma.cu:
/// ATM_Q, ATM_D).
const ATTN_MMA_Q: usize = 64;
const ATTN_MMA_D: usize = 128;

/// `attend_heads_f16`'s limits (kernels/attention.cu: ATH_G, ATH_OUT), and the fewest rows
/// it takes (with fewer, one block per KV head and row leaves most of the GPU idle, and
/// `attend_f16`'s block per query head and row does better).
const ATTN_HEADS_G: usize = 8;
const ATTN_HEADS_OUT: usize = 1024;
const ATTN_HEADS_MIN_ROWS: usize = 16;

/// Split decode attention (fewer rows than `ATTN_HEADS_MIN_ROWS`): blocks a launch aims at
/// (enough for every multiprocessor of the GPUs in view, twice over on an H100's 132), and
/// the most blocks a row and KV head's entries go to (kernels/attention.cu: ATH_SPLIT).
pub const ATTN_SPLIT_BLOCKS: usize = 256;
const ATTN_SPLIT_MAX: usize = 32;

/// Floats of the split attention's partial results for heads of `vhd` values, `group`
/// query heads a KV head: `ATTN_SPLIT_BLOCKS` blocks' worth (kernels/attention.cu:
/// ath_partial_words).
pub fn attn_split_floats(group: usize, vhd: usize) -> Result<usize> {
    count(&[
        ATTN_SPLIT_BLOCKS,
        group,
        vhd.checked_add(2)
            .ok_or_else(|| Error::Internal("value head size overflows".into()))?,
    ])
}

/// The device views one attention launch reads and writes.
pub struct AttnIo {
    pub q: View,
    pub kc: View,
    pub vc: View,
    pub out: View,
    pub meta: View,
    /// {cell, position} pairs, u32 each.
    pub entries: View,
    /// Scratch of the split decode attention: partial results (`attn_split_floats`) and
    /// `ATTN_SPLIT_BLOCKS` tickets, zero between launches (each launch leaves them so).
    /// Without it, few rows take one block per query head and row.
    pub split: Option<(View, View)>,
}

impl Kernels {
    /// Attention of `a.n_rows` query rows over the cache (see kernels/attention.cu). The
    /// host built `meta` (per row: offset, count, pos, lo) with offset + count within
    /// `n_entries` and cells below `n_cells`.
    /// Attention of `io.q` over the cache into `io.out`. With `q8`, the one-block-a-row
    /// kernels (decode) also quantize the output into it for the next integer-dot product,
    /// where the value heads are whole Q8 blocks; with `h16`, they round it into that f16
    /// buffer as `quantize_act` would (the GEMM's input), where each block's outputs are
    /// whole blocks of the rounding. Returns what it made of the output besides.
    pub fn attend(
        &self,
        s: &mut dyn GpuStream,
        a: AttnShape,
        io: &AttnIo,
        q8: Option<(Q8Act, ActRound)>,
        h16: Option<(View, ActRound)>,
    ) -> Result<Prepared> {
        if a.head_dim > ATTN_MAX_HEAD
            || a.v_head_dim > ATTN_MAX_HEAD
            || a.n_head_kv == 0
            || !a.n_head.is_multiple_of(a.n_head_kv)
        {
            return Err(Error::Internal(format!("attention shape {a:?}")));
        }
        need(
            io.q,
            count(&[a.n_rows, a.n_head, a.head_dim])?,
            4,
            "queries",
        )?;
        need(
            io.out,
            count(&[a.n_rows, a.n_head, a.v_head_dim])?,
            4,
            "attention output",
        )?;
        need(
            io.kc,
            count(&[a.n_cells, a.n_head_kv, a.head_dim])?,
            2,
            "key cache",
        )?;
        need(
            io.vc,
            count(&[a.n_cells, a.n_head_kv, a.v_head_dim])?,
            2,
            "value cache",
        )?;
        need(io.meta, count(&[a.n_rows, 4])?, 4, "attention rows")?;
        need(
            io.entries,
            count(&[a.n_entries, 2])?,
            4,
            "attention entries",
        )?;
        // Many rows a list (prefill): blocks of ATTN_ROWS_Q queries of one KV head share
        // every key and value they load. Many rows with a list each (the decode steps of
        // many sequences): one block per row and KV head, its query heads sharing the keys
        // and values. Otherwise (few rows) one block per row and query head.
        let group = a.n_head / a.n_head_kv;
        let rows = self.attend_rows_on
            && a.n_rows >= 16
            && a.n_rows >= 4 * a.n_lists
            && group <= ATTN_ROWS_Q
            && a.head_dim.is_multiple_of(2)
            && a.v_head_dim.is_multiple_of(2);
        // The tensor-core form where it is on and the head sizes suit its fragments.
        let mma = rows
            && self.attend_mma_on
            && a.head_dim.is_multiple_of(16)
            && a.head_dim <= ATTN_MMA_D
            && a.v_head_dim.is_multiple_of(8)
            && a.v_head_dim <= ATTN_MMA_D;
        let heads_fit = !rows
            && group <= ATTN_HEADS_G
            && group * a.v_head_dim <= ATTN_HEADS_OUT
            && a.head_dim.is_multiple_of(8)
            && a.v_head_dim.is_multiple_of(2);
        // Few rows with a list each (decode steps of few sequences): each row and KV head's
        // entries split over up to n_split blocks (tiles of 32 entries dealt round-robin),
        // where that gives at least two blocks each. Rows that share a list (a short
        // prompt) keep attend_f16: SmolLM2's logits after a 12-token prompt moved by up to
        // 1.25 through attend_heads_f16's order of the q.k sums (emulator; the bound is
        // 1.06, the CPU's own two orders differ by 0.71), 0.81 through attend_f16's.
        let n_split = match io.split {
            Some(_)
                if heads_fit
                    && self.attend_split_on
                    && a.n_rows < ATTN_HEADS_MIN_ROWS
                    && a.n_lists == a.n_rows =>
            {
                (ATTN_SPLIT_BLOCKS / (a.n_head_kv * a.n_rows)).min(ATTN_SPLIT_MAX)
            }
            _ => 1,
        };
        let split = n_split >= 2;
        let heads = (heads_fit && self.attend_heads_on && a.n_rows >= ATTN_HEADS_MIN_ROWS) || split;
        let n_split = if split { n_split } else { 1 };
        let (f, grid) = if rows {
            let (f, per_block) = match mma {
                true => (self.attend_mma, ATTN_MMA_Q / group),
                false => (self.attend_rows, ATTN_ROWS_Q / group),
            };
            (
                f,
                (
                    to_u32(a.n_head_kv, "kv heads")?,
                    to_u32(a.n_rows.div_ceil(per_block), "row blocks")?,
                    1,
                ),
            )
        } else if heads {
            (
                self.attend_heads,
                (
                    to_u32(a.n_head_kv, "kv heads")?,
                    to_u32(a.n_rows, "rows")?,
                    to_u32(n_split, "splits")?,
                ),
            )
        } else {
            (
                self.attend,
                (to_u32(a.n_head, "heads")?, to_u32(a.n_rows, "rows")?, 1),
            )
        };
        let dims = Dims {
            grid,
            block: 128,
            shared: 0,
        };
        let head = [
            Arg::P(io.q.ptr),
            Arg::P(io.kc.ptr),
            Arg::P(io.vc.ptr),
            Arg::P(io.out.ptr),
            Arg::P(io.meta.ptr),
            Arg::P(io.entries.ptr),
            Arg::I(to_i32(a.n_head, "heads")?),
            Arg::I(to_i32(a.n_head_kv, "kv heads")?),
            Arg::I(to_i32(a.head_dim, "head_dim")?),
            Arg::I(to_i32(a.v_head_dim, "v_head_dim")?),
        ];
        // attend_rows_f16 then takes the rows (its last block may not fill), attend_f16 and
        // attend_heads_f16 (the same arguments) the Q8 outputs (null for none) after the
        // scales.
        // A block's outputs: a query head's (attend_f16) or a KV head's G (attend_heads_f16).
        let per_block = if heads {
            group * a.v_head_dim
        } else {
            a.v_head_dim
        };
        // Q8_0 blocks of 32 or Q8_K blocks of 256 (kind 2), whole within each block's outputs.
        let q8 = q8.filter(|&(_, r)| {
            !rows
                && match r {
                    ActRound::Q8_0 => a.v_head_dim.is_multiple_of(32),
                    ActRound::Q8K => per_block.is_multiple_of(256),
                    _ => false,
                }
        });
        let h16 = h16.filter(|&(_, r)| {
            let unit = match r {
                ActRound::Q8K => 256,
                ActRound::Q8_0 => 32,
                _ => 1,
            };
            q8.is_none() && !rows && per_block.is_multiple_of(unit)
        });
        let (yh, mut kind) = match h16 {
            Some((v, r)) => {
                let values = count(&[a.n_rows, a.n_head, a.v_head_dim])?;
                (need(v, values, 2, "attention f16 output")?, r as i32)
            }
            None => (0, 0),
        };
        let (xq, xds) = match q8 {
            Some((x, r)) => {
                let values = count(&[a.n_rows, a.n_head, a.v_head_dim])?;
                need(x.codes, values, 1, "attention output codes")?;
                need(x.scales, values / 32, 8, "attention output scales")?;
                kind = r as i32;
                (x.codes.ptr, x.scales.ptr)
            }
            None => (0, 0),
        };
        let rows_tail = [
            Arg::I(to_i32(a.n_rows, "rows")?),
            Arg::F(a.scale),
            Arg::F(a.softcap),
        ];
        let one_tail = [
            Arg::F(a.scale),
            Arg::F(a.softcap),
            Arg::P(xq),
            Arg::P(xds),
            Arg::P(yh),
            Arg::I(kind),
        ];
        let (part, tickets) = match (split, io.split) {
            (true, Some((part, tickets))) => {
                let units = count(&[a.n_rows, a.n_head_kv])?;
                let floats = count(&[units, n_split, group, a.v_head_dim + 2])?;
                (
                    need(part, floats, 4, "split attention partials")?,
                    need(tickets, units, 4, "split attention tickets")?,
                )
            }
            _ => (0, 0),
        };
        let split_tail = [
            Arg::I(to_i32(n_split, "splits")?),
            Arg::P(part),
            Arg::P(tickets),
        ];
        let mut args = [Arg::I(0); 20];
        let mut n = 0;
        let parts: [&[Arg]; 3] = match (rows, heads) {
            (true, _) => [&head, &rows_tail, &[]],
            (false, true) => [&head, &one_tail, &split_tail],
            (false, false) => [&head, &one_tail, &[]],
        };
        for part in parts {
            args[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        launch(s, f, dims, &args[..n])?;
        Ok(match (q8, h16) {
            (Some((_, ActRound::Q8K)), _) => Prepared::Q8K,
            (Some(_), _) => Prepared::Q8,
            (None, Some((_, r))) => Prepared::F16(r),
            (None, None) => Prepared::Nothing,
        })
    }
}
