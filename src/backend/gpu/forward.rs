//! One context's forward pass on the GPU: its key/value cache rows for the offloaded
//! layers, activation buffers sized for `n_batch` tokens, and the per-decode tables the host
//! computes (tokens, RoPE angles, cache cells to write and to read).
//!
//! Per decode: block copies that copy-on-write asked for, one upload of the tables, the
//! layers as a stream of kernel launches, then one download: the logits (all layers on the
//! GPU) or the hidden states that the CPU takes on from (partial offload). Products of up to
//! `few_rows` tokens go through the matrix-vector kernels (integer-dot ones on Q8-quantized
//! inputs where the format has them, up to 32 tokens, grouping a layer's Q, K, V and its
//! gate and up into one launch where `Kernels::groups` allows; the fused dequantize-dot ones
//! up to 8 tokens for the other formats); larger batches take the tiled int8 kernels
//! (`mmq`, where switched on and the format has them) or the vendor BLAS on f16 (the
//! weights' f16 copies where the weights keep them, else each matrix dequantized first).

use super::fused::{Fused, RopeStore};
use super::kernels::{
    ATTN_SPLIT_BLOCKS, ActRound, AttnIo, AttnShape, FORMATS, MMV_MAX, Prepared, Q8Act, View,
    attn_split_floats, bytes_of, mmvqk_fits,
};
use super::moe::{self, MoeBufs};
use super::timing::{Phase, PhaseClock};
use super::weights::{GpuFfn, GpuMat, GpuQkv, GpuWeights};
use super::{DevBuf, DevPtr, GpuStream, GraphId};
use crate::backend::cpu::ThreadPool;
use crate::backend::cpu::ops::RopeCache;
use crate::batch::Plan;
use crate::context::non_finite;
use crate::gguf::GgufFile;
use crate::kv::{KvCache, KvType};
use crate::model::arch::{FfnAct, RopeStyle};
use crate::model::attention::first_visible;
use crate::model::transformer::{ForwardScratch, Transformer, resize_logits};
use crate::{Error, Result};

/// Batches of up to this many launches of the integer-dot matrix-vector kernels (of
/// `MMV_MAX` tokens) skip the f16 GEMM.
const MMV_CHUNKS: usize = 4;

/// The most rows a product with a matrix of `format` takes through the matrix-vector
/// kernels before the f16 GEMM: four launches of the integer-dot ones (Q8 or, for Q4_K,
/// Q8_K activations), or one of the fused
/// dequantize-dot `mmv` (f32 activations, which each thread reloads per token: on an H100,
/// a 14336x4096 Q4_K matrix took 147 us for 8 tokens with `mmv`, and about 110 us for 16
/// tokens dequantized to f16 through cuBLAS).
fn few_rows(w: &GpuWeights, format: usize) -> usize {
    if w.kernels.has_mmvq(format) || w.kernels.has_mmvqk(format) {
        MMV_CHUNKS * MMV_MAX
    } else {
        MMV_MAX
    }
}

/// `few_rows` of the model's matrix that takes the fewest.
fn fewest_rows(w: &GpuWeights) -> usize {
    (0..FORMATS.len())
        .filter(|&f| w.mat_formats >> f & 1 == 1)
        .map(|f| few_rows(w, f))
        .min()
        .unwrap_or(MMV_CHUNKS * MMV_MAX)
}

/// The most recorded graphs a context keeps (one per decode layout, oldest out first).
const GRAPHS_KEPT: usize = 8;

/// What makes two decodes' launches identical: the same table layout (all but the count of
/// attention entries, which the kernels read from the tables), rows, output rows and buffers.
/// Everything else a launch takes (weights, caches, activations) is fixed for the context.
#[derive(Clone, Copy, PartialEq, Eq)]
struct GraphKey {
    tables: Tables,
    rows: usize,
    /// Output rows: not implied by the table offsets (padding can hide a change of count).
    outputs: usize,
    table_buf: DevPtr,
    logits_buf: DevPtr,
    /// Whether the greedy tokens are computed after the head (`argmax_rows`).
    greedy: bool,
}

/// What a decode left for the caller: the logits of its output rows, or only each output
/// row's greedy token (asked for, and the head on the GPU: the logits stay there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Logits,
    Tokens,
}

fn aborted() -> Error {
    Error::Aborted("decode aborted by the abort callback".into())
}

struct Acts {
    x: DevBuf,
    h: DevBuf,
    q: DevBuf,
    k: DevBuf,
    v: DevBuf,
    attn: DevBuf,
    o: DevBuf,
    g: DevBuf,
    u: DevBuf,
    a: DevBuf,
    fused: DevBuf,
    /// A product's input rounded as the CPU's dot products round it.
    xq: DevBuf,
    /// A product's input quantized for the integer-dot kernels: codes and scales.
    x8: DevBuf,
    x8s: DevBuf,
    /// f16 copies of a GEMM's activations and weights, where batches take the GEMM (`xh`
    /// is there exactly then; `wh` unless the weights keep f16 copies).
    xh: Option<DevBuf>,
    wh: Option<DevBuf>,
    /// Per output row: its greedy token and first non-finite logit (`argmax_rows`).
    best: DevBuf,
    /// The split decode attention's partial results and tickets (`AttnIo::split`).
    split_part: DevBuf,
    split_tickets: DevBuf,
}

/// Where each table of a decode sits in the uploaded words. The attention entries, the one
/// table whose length changes from one decode to the next, come last: two decodes of the
/// same rows, pairs and outputs have the same offsets (see `GraphKey`).
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Tables {
    tokens: usize,
    rope: usize,
    rope_swa: usize,
    pairs: usize,
    n_pairs: usize,
    meta: usize,
    meta_swa: usize,
    outputs: usize,
    entries: usize,
    n_entries: usize,
    /// Entry lists (one per group of rows of a sequence).
    n_lists: usize,
    /// Every row writes one cache cell: pair r is (r, cell), and RoPE stores the keys and
    /// values (`Fused::rope_qk`).
    one_cell_each: bool,
}

pub struct GpuForward {
    stream: Box<dyn GpuStream>,
    /// Per offloaded layer: `n_cells` rows of keys and of values, f16.
    kc: Vec<DevBuf>,
    vc: Vec<DevBuf>,
    n_cells: usize,
    n_batch: usize,
    acts: Acts,
    /// Scratch of the mixture-of-experts layers, when the model has any on the GPU.
    moe: Option<MoeBufs>,
    /// The uploaded tables, and the logits of the output rows (grown on demand).
    words: Vec<u32>,
    table_buf: Option<DevBuf>,
    logits_buf: Option<DevBuf>,
    /// Host scratch: RoPE angles and attention lists.
    rope: RopeCache,
    rope_swa: RopeCache,
    pos: Vec<i32>,
    cells: Vec<u32>,
    /// Recorded decode graphs (see `forward`); off with RF_GPU_GRAPHS=0 or where capture
    /// fails.
    graphs: Vec<(GraphKey, GraphId)>,
    graphs_on: bool,
    /// Layouts of many-row decodes seen once and not recorded (see `forward`).
    seen: Vec<GraphKey>,
    /// RF_GPU_TIMING=1: wall time by phase (`timing`).
    clock: PhaseClock,
    /// Whether greedy decodes take their tokens on the device (`argmax_rows`): the default;
    /// RF_GPU_ARGMAX=0 brings the logits back for the CPU to scan instead (to measure it).
    argmax_on: bool,
}

fn f32_buf(w: &GpuWeights, n: usize, what: &str) -> Result<DevBuf> {
    DevBuf::array(&w.dev, n, 4, what)
}

impl GpuForward {
    /// Buffers for a context of `n_batch` tokens a decode over `kv`.
    pub fn new(
        w: &GpuWeights,
        t: &Transformer,
        kv: &KvCache,
        n_batch: usize,
    ) -> Result<GpuForward> {
        let p = &t.params;
        if kv.shape().ty != KvType::F16 && w.n_layers() > 0 {
            return Err(Error::Unsupported(format!(
                "the GPU backend keeps keys and values as f16; a {:?} cache stays on the CPU \
                 (n_gpu_layers 0)",
                kv.shape().ty
            )));
        }
        let n_cells = kv.n_cells();
        let (kd, vd) = (p.k_dim(), p.v_dim());
        let mut kc = Vec::with_capacity(w.n_layers());
        let mut vc = Vec::with_capacity(w.n_layers());
        for _ in 0..w.n_layers() {
            kc.push(DevBuf::array(
                &w.dev,
                bytes_of(n_cells, kd)?,
                2,
                "the key cache",
            )?);
            vc.push(DevBuf::array(
                &w.dev,
                bytes_of(n_cells, vd)?,
                2,
                "the value cache",
            )?);
        }
        let nb = n_batch;
        let rows = |width: usize| bytes_of(nb, width);
        let q_dim = p.n_head * p.head_dim;
        let fused = (q_dim + kd + vd).max(2 * p.n_ff);
        let max_in = p.n_embd.max(p.n_ff).max(p.n_head * p.v_head_dim);
        let all_tiled = w.all_tiled();
        let gemm = nb > fewest_rows(w) && w.dev.has_gemm() && !all_tiled;
        let acts = Acts {
            x: f32_buf(w, rows(p.n_embd)?, "activations")?,
            h: f32_buf(w, rows(p.n_embd)?, "activations")?,
            q: f32_buf(w, rows(q_dim)?, "queries")?,
            k: f32_buf(w, rows(kd)?, "keys")?,
            v: f32_buf(w, rows(vd)?, "values")?,
            attn: f32_buf(w, rows(p.n_head * p.v_head_dim)?, "attention")?,
            o: f32_buf(w, rows(p.n_embd)?, "activations")?,
            g: f32_buf(w, rows(p.n_ff)?, "gate")?,
            u: f32_buf(w, rows(p.n_ff)?, "up")?,
            a: f32_buf(w, rows(p.n_ff)?, "activation")?,
            fused: f32_buf(w, rows(fused)?, "fused outputs")?,
            xq: f32_buf(w, rows(max_in)?, "rounded inputs")?,
            x8: DevBuf::array(&w.dev, rows(max_in)?, 1, "quantized inputs")?,
            x8s: DevBuf::array(&w.dev, rows(max_in.div_ceil(32))?, 8, "input scales")?,
            xh: if gemm {
                Some(DevBuf::array(&w.dev, rows(max_in)?, 2, "f16 inputs")?)
            } else {
                None
            },
            wh: if gemm && !w.has_f16() {
                Some(DevBuf::array(&w.dev, w.max_mat_elems, 2, "f16 weights")?)
            } else {
                None
            },
            best: DevBuf::array(&w.dev, rows(2)?, 4, "greedy tokens")?,
            split_part: DevBuf::array(
                &w.dev,
                attn_split_floats(p.n_head / p.n_head_kv.max(1), p.v_head_dim)?,
                4,
                "split attention partials",
            )?,
            split_tickets: DevBuf::array(&w.dev, ATTN_SPLIT_BLOCKS, 4, "split attention tickets")?,
        };
        let mut stream = w.dev.new_stream()?;
        let zeros = vec![0u8; acts.split_tickets.bytes()];
        // SAFETY: the tickets buffer was just allocated with exactly this many bytes.
        unsafe { stream.upload(acts.split_tickets.ptr(), &zeros)? };
        let experts = w.layers.iter().filter_map(|l| match &l.ffn {
            GpuFfn::Experts(m) => Some(m),
            _ => None,
        });
        let moe = MoeBufs::new(&w.dev, experts, nb, p.n_embd)?;
        Ok(GpuForward {
            stream,
            kc,
            vc,
            n_cells,
            n_batch,
            acts,
            moe,
            words: Vec::new(),
            table_buf: None,
            logits_buf: None,
            rope: RopeCache::default(),
            rope_swa: RopeCache::default(),
            pos: Vec::new(),
            cells: Vec::new(),
            graphs: Vec::new(),
            graphs_on: std::env::var("RF_GPU_GRAPHS").map_or(true, |v| v != "0"),
            seen: Vec::new(),
            clock: PhaseClock::from_env(),
            argmax_on: std::env::var("RF_GPU_ARGMAX").map_or(true, |v| v != "0"),
        })
    }

    /// Builds the decode's tables in `self.words` (see `Tables`).
    fn build_tables(&mut self, t: &Transformer, plan: &Plan, kv: &KvCache) -> Result<Tables> {
        let p = &t.params;
        let n = plan.len();
        let mut tb = Tables::default();
        let w = &mut self.words;
        w.clear();
        align(w);
        tb.tokens = w.len();
        w.extend_from_slice(&plan.tokens);
        let same_rope = p.rope_base_swa == p.rope_base || !p.swa_layers.contains(&true);
        self.rope.fill(&t.rope(p.rope_base), &plan.positions);
        align(w);
        tb.rope = w.len();
        w.extend(
            self.rope
                .angles()
                .iter()
                .flat_map(|&(c, s)| [c.to_bits(), s.to_bits()]),
        );
        tb.rope_swa = tb.rope;
        if !same_rope {
            self.rope_swa
                .fill(&t.rope(p.rope_base_swa), &plan.positions);
            align(w);
            tb.rope_swa = w.len();
            w.extend(
                self.rope_swa
                    .angles()
                    .iter()
                    .flat_map(|&(c, s)| [c.to_bits(), s.to_bits()]),
            );
        }
        align(w);
        tb.pairs = w.len();
        tb.one_cell_each = true;
        for r in 0..n {
            let seqs = plan.row_seqs(r);
            tb.one_cell_each &= seqs.len() == 1;
            for &seq in seqs {
                w.push(r as u32);
                w.push(kv.write_cell(seq, plan.positions[r])?);
                tb.n_pairs += 1;
            }
        }
        // Each group's held positions up to its last row, once; rows point into them.
        self.pos.clear();
        self.cells.clear();
        let mut meta = vec![[0i32; 4]; n];
        for g in &plan.groups {
            let off = self.pos.len();
            let hi = g.rows.iter().map(|&r| plan.positions[r]).max().unwrap_or(0);
            kv.held_cells(g.seq, (0, hi), &mut self.pos, &mut self.cells)?;
            let len = self.pos.len() - off;
            for &r in &g.rows {
                let to_i = |v: usize| {
                    i32::try_from(v).map_err(|_| Error::Overflow("attention list".into()))
                };
                meta[r] = [to_i(off)?, to_i(len)?, plan.positions[r], 0];
            }
        }
        if self.cells.iter().any(|&c| c as usize >= self.n_cells) {
            return Err(Error::Internal("a KV cell beyond the device cache".into()));
        }
        align(w);
        tb.meta = w.len();
        w.extend(meta.iter().flatten().map(|&v| v as u32));
        align(w);
        tb.meta_swa = w.len();
        for m in &meta {
            let lo = first_visible(m[2], p.n_swa);
            w.extend([m[0] as u32, m[1] as u32, m[2] as u32, lo as u32]);
        }
        align(w);
        tb.outputs = w.len();
        w.extend(plan.outputs.iter().map(|&r| r as u32));
        tb.n_entries = self.pos.len();
        tb.n_lists = plan.groups.len();
        align(w);
        tb.entries = w.len();
        w.extend(
            self.cells
                .iter()
                .zip(&self.pos)
                .flat_map(|(&c, &p)| [c, p as u32]),
        );
        Ok(tb)
    }

    /// Uploads `self.words` (growing the device buffer when needed); its view.
    fn upload_tables(&mut self, w: &GpuWeights) -> Result<View> {
        let bytes = bytes_of(self.words.len(), 4)?;
        if self.table_buf.as_ref().is_none_or(|b| b.bytes() < bytes) {
            // The old buffer may still be read by queued work, and by recorded graphs.
            self.stream.synchronize()?;
            self.drop_graphs();
            self.table_buf = Some(DevBuf::new(&w.dev, bytes.next_power_of_two().max(4096))?);
        }
        let buf = self
            .table_buf
            .as_ref()
            .ok_or_else(|| Error::Internal("tables".into()))?;
        // SAFETY: the buffer holds at least `bytes` bytes (checked just above).
        unsafe { self.stream.upload(buf.ptr(), words_as_bytes(&self.words))? };
        Ok(buf.view())
    }

    /// `y_i = W_i x` for `n` rows, for each (W_i, y_i) of `mats`: `x` is rounded once per
    /// rounding the matrices' formats ask for (`ActRound`). `prep` says what a fused kernel
    /// already made of `x`: its Q8 quantization in the Q8 scratch, or its f16 rounding in
    /// `xh`.
    fn matmul(
        &mut self,
        w: &GpuWeights,
        mats: &[(&GpuMat, View)],
        x: View,
        n: usize,
        prep: Prepared,
    ) -> Result<()> {
        let mut rounded: Option<ActRound> = None;
        // The integer-dot products share one quantization of `x`, and one launch when the
        // whole-block kernels take them together (Q, K and V; gate and up).
        let q8: Vec<(&GpuMat, View)> = mats
            .iter()
            .copied()
            .filter(|(m, _)| self.wants_q8(w, m, n))
            .collect();
        if let Some(&(first, _)) = q8.first() {
            let q = self.q8();
            if prep != Prepared::Q8 {
                w.kernels
                    .quantize_q8(self.stream.as_mut(), x, q, n, first.shape.n_in)?;
            }
            let together = w.kernels.groups(q8.iter().map(|(m, _)| &m.shape));
            let tiled = self.tiled(w, first, n);
            let s = self.stream.as_mut();
            if tiled {
                // Too many rows for the matrix-vector kernels: the tiled int8 products.
                let xs = q.rows(0, n, first.shape.n_in)?;
                for &(m, y) in &q8 {
                    w.kernels.mmq.run(s, m.view(), m.shape, xs, n, y)?;
                }
            }
            let mut t0 = if tiled { n } else { 0 };
            while t0 < n {
                let nt = (n - t0).min(MMV_MAX);
                let rows =
                    |m: &GpuMat, y: View| y.sub(t0 * m.shape.n_out * 4, nt * m.shape.n_out * 4);
                let xs = q.rows(t0, nt, first.shape.n_in)?;
                if together {
                    let group = q8
                        .iter()
                        .map(|&(m, y)| Ok((m.view(), m.shape, rows(m, y)?)))
                        .collect::<Result<Vec<_>>>()?;
                    w.kernels.mmvq_group(s, &group, xs, nt)?;
                } else {
                    for &(m, y) in &q8 {
                        w.kernels.mmvq(s, m.view(), m.shape, xs, nt, rows(m, y)?)?;
                    }
                }
                t0 += nt;
            }
        }
        // Q4_K, Q5_K and Q6_K on Q8_K activations: their own quantization of `x` (the Q8
        // scratch is free again: the launches above are queued before this overwrites it).
        let q8k: Vec<(&GpuMat, View)> = mats
            .iter()
            .copied()
            .filter(|(m, _)| self.wants_q8k(w, m, n))
            .collect();
        if let Some(&(first, _)) = q8k.first() {
            let q = self.q8();
            let k_in = first.shape.n_in;
            // Made already unless Q8_0 products above took the scratch.
            if prep != Prepared::Q8K || !q8.is_empty() {
                w.kernels
                    .quantize_q8k(self.stream.as_mut(), x, q, n, k_in)?;
            }
            for &(m, y) in &q8k {
                let tiled = self.tiled(w, m, n);
                let s = self.stream.as_mut();
                if tiled {
                    w.kernels
                        .mmq
                        .run(s, m.view(), m.shape, q.rows(0, n, k_in)?, n, y)?;
                    continue;
                }
                let mut t0 = 0;
                while t0 < n {
                    let nt = (n - t0).min(MMV_MAX);
                    let ys = y.sub(t0 * m.shape.n_out * 4, nt * m.shape.n_out * 4)?;
                    w.kernels
                        .mmvqk(s, m.view(), m.shape, q.rows(t0, nt, k_in)?, nt, ys)?;
                    t0 += nt;
                }
            }
        }
        // The rest: the fused dequantize-dot kernels (`mmv`) on f32 inputs rounded as each
        // format asks (in `xq`), or the f16 GEMM on those values in f16 (in `xh`), each
        // rounding made once for all the matrices that share it.
        let mut halved = match prep {
            Prepared::F16(r) => Some(r),
            _ => None,
        };
        for &(m, y) in mats {
            if self.wants_q8(w, m, n) || self.wants_q8k(w, m, n) {
                continue;
            }
            let r = FORMATS[m.shape.format].2;
            let count = bytes_of(n, m.shape.n_in)?;
            if self.few(w, m.shape.format, n) {
                let input = if r == ActRound::None {
                    x
                } else {
                    let xq = self.acts.xq.view();
                    if rounded != Some(r) {
                        w.kernels
                            .quantize_act(self.stream.as_mut(), x, xq, count, r, false)?;
                        rounded = Some(r);
                    }
                    xq
                };
                self.mmv_rows(w, m, input, n, y)?;
            } else {
                let xh = self.acts.xh.as_ref().map(DevBuf::view);
                let xh = xh.ok_or_else(|| Error::Internal("no f16 scratch".into()))?;
                if halved != Some(r) {
                    w.kernels
                        .quantize_act(self.stream.as_mut(), x, xh, count, r, true)?;
                    halved = Some(r);
                }
                self.gemm(w, m, n, y)?;
            }
        }
        Ok(())
    }

    /// `y = W x` for `n` rows of already rounded f32 inputs, through the fused
    /// dequantize-dot kernels.
    fn mmv_rows(&mut self, w: &GpuWeights, m: &GpuMat, x: View, n: usize, y: View) -> Result<()> {
        let s = self.stream.as_mut();
        let mut t0 = 0;
        while t0 < n {
            let nt = (n - t0).min(MMV_MAX);
            let xs = x.sub(t0 * m.shape.n_in * 4, nt * m.shape.n_in * 4)?;
            let ys = y.sub(t0 * m.shape.n_out * 4, nt * m.shape.n_out * 4)?;
            w.kernels.mmv(s, m.view(), m.shape, xs, nt, ys)?;
            t0 += nt;
        }
        Ok(())
    }

    /// `y = W x` for `n` rows whose f16 inputs are in `xh`: `W` in f16 (its copy, or
    /// dequantized now), then the BLAS GEMM (f32 accumulation).
    fn gemm(&mut self, w: &GpuWeights, m: &GpuMat, n: usize, y: View) -> Result<()> {
        let xh = self.acts.xh.as_ref().map(DevBuf::view);
        let xh = xh.ok_or_else(|| Error::Internal("no f16 scratch".into()))?;
        let (n_in, n_out) = (m.shape.n_in, m.shape.n_out);
        let s = self.stream.as_mut();
        // The weights' f16 copy, or `W` dequantized into the scratch now.
        let wh = match (w.f16_of(m), &self.acts.wh) {
            (Some(copy), _) => copy,
            (None, Some(wh)) => {
                w.kernels.deq_f16(s, m.view(), m.shape, wh.view())?;
                wh.view()
            }
            (None, None) => return Err(Error::Internal("no f16 weights".into())),
        };
        if wh.bytes < bytes_of(bytes_of(n_out, n_in)?, 2)? {
            return Err(Error::Internal("f16 weights too small".into()));
        }
        if xh.bytes < bytes_of(bytes_of(n, n_in)?, 2)?
            || y.bytes < bytes_of(bytes_of(n, n_out)?, 4)?
        {
            return Err(Error::Internal("GEMM buffers too small".into()));
        }
        // SAFETY: wh holds n_out x n_in f16, xh n x n_in f16 and y n x n_out f32 (checked
        // above).
        unsafe { s.gemm_f16(n_out, n, n_in, wh.ptr, xh.ptr, y.ptr) }
    }

    /// Runs the offloaded part of a checked, reserved batch and writes the logits of
    /// `plan.outputs` into `logits` (reusing its memory), finishing on the CPU when layers
    /// remain there. With `tokens` and the head on the GPU, only each output row's greedy
    /// token comes back, into `tokens` (`Kept::Tokens`; `logits` is left empty): a logit that
    /// is NaN or infinite fails the decode (`NonFinite`) as the CPU's check would.
    ///
    /// With every layer and the head on the GPU, the launches of a decode of at most
    /// `graph_rows` rows (no GEMM) run as a graph recorded the first time a decode of that
    /// layout is seen (`GraphKey`) and replayed after; a decode of more rows, one token per
    /// sequence (the engine's generation steps, whose GEMMs are recorded too), the second
    /// time its layout is seen, so that the layouts of a changing batch are not each
    /// recorded for one use. The abort callback is then asked once, before.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        w: &GpuWeights,
        t: &Transformer,
        file: &GgufFile,
        pool: &ThreadPool,
        plan: &Plan,
        kv: &mut KvCache,
        abort: &mut dyn FnMut() -> bool,
        cpu: &mut ForwardScratch,
        logits: &mut Vec<f32>,
        tokens: Option<&mut Vec<u32>>,
    ) -> Result<Kept> {
        let p = &t.params;
        let n = plan.len();
        if n > self.n_batch {
            return Err(Error::Internal("batch larger than the GPU buffers".into()));
        }
        self.clock.start();
        self.copy_blocks(kv, p.k_dim(), p.v_dim())?;
        let tb = self.build_tables(t, plan, kv)?;
        let tv = self.upload_tables(w)?;
        self.clock.lap(Phase::Tables);
        let Some((norm, out)) = &w.head else {
            self.layers(w, t, &tb, tv, n, abort)?;
            let mut xs = vec![0f32; n * p.n_embd];
            let x = self.acts.x.view().sub(0, n * p.n_embd * 4)?;
            // SAFETY: x holds n * d floats (its size was checked by every kernel that wrote
            // it); the download synchronizes the stream first.
            unsafe { self.stream.download(as_bytes_mut(&mut xs), x.ptr)? };
            // The CPU may reallocate `logits`: unpinned first.
            self.stream.unpin_host(logits.as_mut_ptr().cast());
            t.forward_from(file, pool, plan, kv, abort, cpu, w.n_layers(), &xs, logits)?;
            return Ok(Kept::Logits);
        };
        let m = plan.outputs.len();
        if m == 0 {
            self.layers(w, t, &tb, tv, n, abort)?;
            logits.clear();
            return Ok(Kept::Logits);
        }
        let best = match tokens.is_some() && self.argmax_on {
            true => Some(self.acts.best.view().sub(0, bytes_of(m, 8)?)?),
            false => None,
        };
        let count = bytes_of(m, p.n_vocab)?;
        let lv = self.logits_view(w, count)?;
        let (norm, out) = (norm.view(), out.as_ref());
        let key = GraphKey {
            tables: Tables { n_entries: 0, ..tb },
            rows: n,
            outputs: m,
            table_buf: tv.ptr,
            logits_buf: lv.ptr,
            greedy: best.is_some(),
        };
        let graph =
            self.graphs_on && (n <= self.graph_rows(w) || tb.n_lists == n && self.seen_before(key));
        if graph {
            if abort() {
                return Err(aborted());
            }
            self.run_graph(key, &mut |this: &mut Self| {
                this.layers(w, t, &tb, tv, n, &mut || false)?;
                this.head(w, t, plan, &tb, tv, norm, out, lv, best)
            })?;
        } else {
            self.layers(w, t, &tb, tv, n, abort)?;
            self.head(w, t, plan, &tb, tv, norm, out, lv, best)?;
        }
        self.clock.lap(Phase::Launches);
        if self.clock.on() {
            self.stream.synchronize()?;
            self.clock.lap(Phase::Wait);
        }
        if let (Some(tokens), Some(best)) = (tokens, best) {
            self.download_greedy(best, lv, m, p.n_vocab, tokens)?;
            logits.clear();
            self.clock.done(n, m * 8);
            return Ok(Kept::Tokens);
        }
        if logits.capacity() < count {
            // About to be reallocated: unpinned first.
            self.stream.unpin_host(logits.as_mut_ptr().cast());
        }
        resize_logits(logits, m, p.n_vocab)?;
        // Pinned, the download lands there directly instead of through the driver's
        // staging copy: with 128 rows of a 128k vocabulary that is 65 MB a step. Only the
        // first decode into each of the context's two buffers pins it (a no-op after).
        // SAFETY: the buffer stays allocated until unpinned: it is only reallocated above
        // and before the CPU's part of a partial offload, both after unpinning it, and the
        // context drops this stream (which unpins all) before its logit buffers.
        unsafe {
            self.stream
                .pin_host(logits.as_mut_ptr().cast(), logits.capacity() * 4)
        };
        // SAFETY: lv holds at least `count` floats (logits_view); the download synchronizes
        // the stream before copying.
        unsafe { self.stream.download(as_bytes_mut(logits), lv.ptr)? };
        self.clock.done(n, count * 4);
        Ok(Kept::Logits)
    }

    /// Reads the `m` output rows' greedy tokens that `argmax_rows` left in `best` into
    /// `tokens`; a row with a non-finite logit (in `lv`, rows of `nv`) fails as `NonFinite`.
    fn download_greedy(
        &mut self,
        best: View,
        lv: View,
        m: usize,
        nv: usize,
        tokens: &mut Vec<u32>,
    ) -> Result<()> {
        // Pairs of i32, read through f32 slots (every bit pattern is a valid f32).
        let mut words = vec![0f32; 2 * m];
        // SAFETY: best holds 2m words (sized for m rows above); the download synchronizes
        // the stream first.
        unsafe { self.stream.download(as_bytes_mut(&mut words), best.ptr)? };
        tokens.clear();
        for (row, pair) in words.chunks_exact(2).enumerate() {
            let (token, bad) = (pair[0].to_bits() as i32, pair[1].to_bits() as i32);
            if let Ok(i) = usize::try_from(bad) {
                let at = lv.sub(
                    bytes_of(
                        bytes_of(row, nv)?
                            .checked_add(i)
                            .ok_or_else(|| Error::Overflow("logit index".into()))?,
                        4,
                    )?,
                    4,
                )?;
                let mut v = [0f32];
                // SAFETY: `at` is one float inside the logits buffer (checked by `sub`).
                unsafe { self.stream.download(as_bytes_mut(&mut v), at.ptr)? };
                return Err(non_finite(i, row, v[0]));
            }
            match u32::try_from(token) {
                Ok(t) if (t as usize) < nv => tokens.push(t),
                _ => {
                    return Err(Error::Internal(format!(
                        "greedy token {token} of output row {row} outside the vocabulary"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Replays the graph recorded for `key`, or records `body` as one and replays it. Where
    /// graphs do not work (a capture that cannot begin or end), `body` runs directly from
    /// then on.
    fn run_graph(
        &mut self,
        key: GraphKey,
        body: &mut dyn FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        if let Some(&(_, id)) = self.graphs.iter().find(|(k, _)| *k == key) {
            return self.stream.replay(id);
        }
        if self.stream.begin_capture().is_err() {
            self.graphs_on = false;
            return body(self);
        }
        let recorded = body(self);
        let ended = self.stream.end_capture();
        recorded?;
        let Ok(id) = ended else {
            // Nothing ran while recording: run it now, and without graphs from now on.
            self.graphs_on = false;
            return body(self);
        };
        if self.graphs.len() >= GRAPHS_KEPT {
            let (_, old) = self.graphs.remove(0);
            self.stream.drop_graph(old);
        }
        self.graphs.push((key, id));
        self.stream.replay(id)
    }

    /// Whether a decode of layout `key` ran before (recorded or not); remembers it if not.
    fn seen_before(&mut self, key: GraphKey) -> bool {
        if self.seen.contains(&key) || self.graphs.iter().any(|(k, _)| *k == key) {
            return true;
        }
        if self.seen.len() >= GRAPHS_KEPT {
            self.seen.remove(0);
        }
        self.seen.push(key);
        false
    }

    /// Frees the recorded graphs (their buffers are about to change).
    fn drop_graphs(&mut self) {
        for (_, id) in std::mem::take(&mut self.graphs) {
            self.stream.drop_graph(id);
        }
        self.seen.clear();
    }

    /// The logits buffer, grown to `count` floats when needed.
    fn logits_view(&mut self, w: &GpuWeights, count: usize) -> Result<View> {
        let need = bytes_of(count, 4)?;
        if self.logits_buf.as_ref().is_none_or(|b| b.bytes() < need) {
            self.stream.synchronize()?;
            self.drop_graphs();
            self.logits_buf = Some(DevBuf::new(&w.dev, need)?);
        }
        Ok(self
            .logits_buf
            .as_ref()
            .ok_or_else(|| Error::Internal("logits".into()))?
            .view())
    }

    /// The embedding lookup and every offloaded layer, leaving the hidden states in `x`.
    fn layers(
        &mut self,
        w: &GpuWeights,
        t: &Transformer,
        tb: &Tables,
        tv: View,
        n: usize,
        abort: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        let p = &t.params;
        let (d, hd) = (p.n_embd, p.head_dim);
        let (kd, vd) = (p.k_dim(), p.v_dim());
        let q_dim = p.n_head * hd;
        let words = |at: usize, len: usize| tv.sub(at * 4, len * 4);
        let k = &w.kernels;
        let a = &self.acts;
        let (x, h, q, kk, v) = (a.x.view(), a.h.view(), a.q.view(), a.k.view(), a.v.view());
        let (attn, o, g, u, act, fused) = (
            a.attn.view(),
            a.o.view(),
            a.g.view(),
            a.u.view(),
            a.a.view(),
            a.fused.view(),
        );
        let scale = if t.spec.embed_scale {
            (d as f32).sqrt()
        } else {
            1.0
        };
        k.embed(
            self.stream.as_mut(),
            w.token_embd.view(),
            w.token_embd.shape,
            words(tb.tokens, n)?,
            n,
            x,
            scale,
        )?;
        let (q_scale, attn_scale) = if t.spec.q_prescale {
            (1.0 / (hd as f32).sqrt(), 1.0)
        } else {
            (1.0, 1.0 / (hd as f32).sqrt())
        };
        let n_pairs_rope = p.n_rot / 2;
        // A residual `x += pending` not yet made: the next norm makes it in the same launch.
        let mut pending: Option<View> = None;
        for (li, l) in w.layers.iter().enumerate() {
            if abort() {
                return Err(aborted());
            }
            let swa = p.swa_layers[li];
            let first = match &l.qkv {
                GpuQkv::Split { q: wq, .. } => wq,
                GpuQkv::Fused(wf) => wf,
            };
            let ready = self.norm_in(w, pending.take(), l.attn_norm.view(), first, n, d, p.eps)?;
            match &l.qkv {
                GpuQkv::Split {
                    q: wq,
                    k: wk,
                    v: wv,
                } => {
                    self.matmul(w, &[(wq, q), (wk, kk), (wv, v)], h, n, ready)?;
                }
                GpuQkv::Fused(wf) => {
                    self.matmul(w, &[(wf, fused)], h, n, ready)?;
                    let total = q_dim + kd + vd;
                    let s = self.stream.as_mut();
                    k.copy_cols(s, fused, total, 0, n, q, q_dim)?;
                    k.copy_cols(s, fused, total, q_dim, n, kk, kd)?;
                    k.copy_cols(s, fused, total, q_dim + kd, n, v, vd)?;
                }
            }
            let s = self.stream.as_mut();
            for ((b, dst), width) in l.bias.iter().zip([q, kk, v]).zip([q_dim, kd, vd]) {
                if let Some(b) = b {
                    k.add_bias(s, dst, b.view(), n, width)?;
                }
            }
            if let Some(nw) = &l.q_norm {
                k.rms_norm(s, q, hd, nw.view(), q, hd, n * p.n_head, hd, p.eps, false)?;
            }
            if let Some(nw) = &l.k_norm {
                k.rms_norm(
                    s,
                    kk,
                    hd,
                    nw.view(),
                    kk,
                    hd,
                    n * p.n_head_kv,
                    hd,
                    p.eps,
                    false,
                )?;
            }
            let cs = words(
                if swa { tb.rope_swa } else { tb.rope },
                n * n_pairs_rope * 2,
            )?;
            let neox = t.spec.rope == RopeStyle::Neox;
            let heads = (p.n_head, p.n_head_kv);
            let (kc, vc) = (self.kc[li].view(), self.vc[li].view());
            let pairs = words(tb.pairs, 2 * tb.n_pairs)?;
            // One cell a row (pairs in row order, build_tables): RoPE stores the keys and
            // values itself. Otherwise (a row in several sequences) kv_store does.
            if tb.one_cell_each && kd == p.n_head_kv * hd {
                let store = RopeStore {
                    v,
                    pairs,
                    kc,
                    vc,
                    n_cells: self.n_cells,
                    vd,
                };
                k.fused.rope_qk(
                    s,
                    q,
                    kk,
                    cs,
                    n,
                    heads,
                    hd,
                    p.n_rot,
                    neox,
                    q_scale,
                    Some(&store),
                )?;
            } else {
                k.fused
                    .rope_qk(s, q, kk, cs, n, heads, hd, p.n_rot, neox, q_scale, None)?;
                k.kv_store(s, kk, v, n, pairs, tb.n_pairs, kc, vc, self.n_cells, kd, vd)?;
            }
            let shape = AttnShape {
                n_rows: n,
                n_head: p.n_head,
                n_head_kv: p.n_head_kv,
                head_dim: hd,
                v_head_dim: p.v_head_dim,
                scale: attn_scale,
                softcap: p.attn_softcap.unwrap_or(0.0),
                n_entries: tb.n_entries,
                n_cells: self.n_cells,
                n_lists: tb.n_lists,
            };
            let io = AttnIo {
                q,
                kc,
                vc,
                out: attn,
                meta: words(
                    if swa && p.n_swa.is_some() {
                        tb.meta_swa
                    } else {
                        tb.meta
                    },
                    4 * n,
                )?,
                entries: words(tb.entries, 2 * tb.n_entries)?,
                split: Some((self.acts.split_part.view(), self.acts.split_tickets.view())),
            };
            // The output projection's Q8 or f16 input, made by the attention kernel where it
            // can.
            let prep = self.prepare(w, &l.wo, n, p.n_head * p.v_head_dim);
            let q8 = self.q8_target(prep);
            let h16 = self.f16_target(prep)?;
            let made = k.attend(self.stream.as_mut(), shape, &io, q8, h16)?;
            self.matmul(w, &[(&l.wo, o)], attn, n, made)?;
            let s = self.stream.as_mut();
            match &l.post_attn_norm {
                Some(nw) => k.rms_norm(s, o, d, nw.view(), x, d, n, d, p.eps, true)?,
                None => pending = Some(o),
            }
            let (first, down) = match &l.ffn {
                GpuFfn::Split { gate, down, .. } => (gate, Some(down)),
                GpuFfn::Fused { up, down } => (up, Some(down)),
                GpuFfn::Experts(m) => (&m.router, None),
            };
            let ready = self.norm_in(w, pending.take(), l.ffn_norm.view(), first, n, d, p.eps)?;
            match &l.ffn {
                GpuFfn::Split { gate, up, .. } => {
                    self.matmul(w, &[(gate, g), (up, u)], h, n, ready)?;
                }
                GpuFfn::Fused { up, .. } => {
                    self.matmul(w, &[(up, fused)], h, n, ready)?;
                    let s = self.stream.as_mut();
                    k.copy_cols(s, fused, 2 * p.n_ff, 0, n, g, p.n_ff)?;
                    k.copy_cols(s, fused, 2 * p.n_ff, p.n_ff, n, u, p.n_ff)?;
                }
                GpuFfn::Experts(m) => {
                    let logits = moe_bufs(&self.moe)?.logits.view();
                    self.matmul(w, &[(&m.router, logits)], h, n, ready)?;
                    let b = moe_bufs(&self.moe)?;
                    moe::experts(k, self.stream.as_mut(), m, h, n, d, b, o)?;
                }
            }
            if let Some(down) = down {
                let gelu = t.spec.act == FfnAct::GeluTanh;
                let count = bytes_of(n, p.n_ff)?;
                let prep = self.prepare(w, down, n, p.n_ff);
                let q8 = self.q8_target(prep);
                let h16 = self.f16_target(prep)?;
                let s = self.stream.as_mut();
                if prep != Prepared::Nothing {
                    k.fused.glu_q8(s, gelu, g, u, act, q8, h16, count, p.n_ff)?;
                } else {
                    k.glu(s, gelu, g, u, act, count)?;
                }
                self.matmul(w, &[(down, o)], act, n, prep)?;
            }
            let s = self.stream.as_mut();
            match &l.post_ffn_norm {
                Some(nw) => k.rms_norm(s, o, d, nw.view(), x, d, n, d, p.eps, true)?,
                None => pending = Some(o),
            }
        }
        if let Some(o) = pending {
            k.add(self.stream.as_mut(), x, o, n * d)?;
        }
        Ok(())
    }

    /// The quantized-activation scratch of the integer-dot products.
    fn q8(&self) -> Q8Act {
        Q8Act {
            codes: self.acts.x8.view(),
            scales: self.acts.x8s.view(),
        }
    }

    /// The Q8 scratch and block kind a fused kernel quantizes into for `prep`.
    fn q8_target(&self, prep: Prepared) -> Option<(Q8Act, ActRound)> {
        match prep {
            Prepared::Q8 => Some((self.q8(), ActRound::Q8_0)),
            Prepared::Q8K => Some((self.q8(), ActRound::Q8K)),
            _ => None,
        }
    }

    /// Whether a product with `m` over `n` rows takes Q8-quantized inputs (`matmul`): the
    /// matrix-vector kernels up to `few_rows`, the tiled ones (`mmq`, where on) above.
    fn wants_q8(&self, w: &GpuWeights, m: &GpuMat, n: usize) -> bool {
        w.kernels.has_mmvq(m.shape.format)
            && (self.few(w, m.shape.format, n) || self.tiled(w, m, n))
    }

    /// Whether `n` rows of a product with `m` take the tiled int8 kernels (`mmq`): more rows
    /// than the matrix-vector kernels' `few_rows`, also where there is no GEMM (HIP).
    fn tiled(&self, w: &GpuWeights, m: &GpuMat, n: usize) -> bool {
        n > few_rows(w, m.shape.format) && w.kernels.mmq.takes(&m.shape, m.view().ptr)
    }

    /// Whether a product with `m` over `n` rows takes Q8_K-quantized inputs (`matmul`): the
    /// Q8_K integer-dot matrix-vector kernels up to `few_rows`, the tiled ones (`mmq`, where
    /// on) above.
    fn wants_q8k(&self, w: &GpuWeights, m: &GpuMat, n: usize) -> bool {
        let sh = &m.shape;
        w.kernels.has_mmvqk(sh.format)
            && (self.few(w, sh.format, n) || self.tiled(w, m, n))
            && sh.heads.is_none()
            && sh.n_in.is_multiple_of(256)
            && mmvqk_fits(sh.format, m.view().ptr, sh.row_bytes)
    }

    /// Whether `n` rows of a product with a matrix of `format` go through the matrix-vector
    /// kernels rather than the GEMM (`few_rows`).
    fn few(&self, w: &GpuWeights, format: usize, n: usize) -> bool {
        self.acts.xh.is_none() || n <= few_rows(w, format)
    }

    /// The most rows of any decode that involves no GEMM (and can be a recorded graph).
    fn graph_rows(&self, w: &GpuWeights) -> usize {
        if self.acts.xh.is_none() {
            MMV_CHUNKS * MMV_MAX
        } else {
            fewest_rows(w)
        }
    }

    /// What a fused kernel making the `n` rows of `d` that go into `next` should also make
    /// of them: the Q8_0 or (K-quant matrices, rows of a multiple of 256) Q8_K quantization
    /// of the integer-dot products, or the f16 rounding of the GEMM (a launch of
    /// `quantize_q8`, `quantize_q8k` or `quantize_act` saved); `Nothing` where the fused
    /// kernels do not fit rows of `d`.
    fn prepare(&self, w: &GpuWeights, next: &GpuMat, n: usize, d: usize) -> Prepared {
        let r = FORMATS[next.shape.format].2;
        if !Fused::fits(d) {
            Prepared::Nothing
        } else if self.wants_q8(w, next, n) {
            Prepared::Q8
        } else if self.wants_q8k(w, next, n) && d.is_multiple_of(256) {
            Prepared::Q8K
        } else if self.wants_q8k(w, next, n)
            || self.few(w, next.shape.format, n)
            || !Fused::rounds_f16(d, r)
        {
            Prepared::Nothing
        } else {
            Prepared::F16(r)
        }
    }

    /// The f16 scratch and rounding a fused kernel writes for `prep`.
    fn f16_target(&self, prep: Prepared) -> Result<Option<(View, ActRound)>> {
        let Prepared::F16(r) = prep else {
            return Ok(None);
        };
        let xh = self.acts.xh.as_ref().map(DevBuf::view);
        let xh = xh.ok_or_else(|| Error::Internal("no f16 scratch".into()))?;
        Ok(Some((xh, r)))
    }

    /// `h = rms_norm(x) * nw` for `n` rows, after `x += residual` when one is given, and
    /// `h` prepared for `next` (the first matrix `h` goes into) as `prepare` says: one
    /// launch where rows allow. Returns what was prepared.
    #[allow(clippy::too_many_arguments)]
    fn norm_in(
        &mut self,
        w: &GpuWeights,
        residual: Option<View>,
        nw: View,
        next: &GpuMat,
        n: usize,
        d: usize,
        eps: f32,
    ) -> Result<Prepared> {
        let k = &w.kernels;
        let (x, h) = (self.acts.x.view(), self.acts.h.view());
        let prep = self.prepare(w, next, n, d);
        let q = self.q8_target(prep);
        let h16 = self.f16_target(prep)?;
        let s = self.stream.as_mut();
        if Fused::fits(d) {
            k.fused
                .add_rms_norm_q8(s, x, residual, nw, h, q, h16, n, d, eps)?;
            return Ok(prep);
        }
        if let Some(o) = residual {
            k.add(s, x, o, n * d)?;
        }
        k.rms_norm(s, x, d, nw, h, d, n, d, eps, false)?;
        Ok(Prepared::Nothing)
    }

    /// Final norm, output matrix and soft-cap of the output rows, into `lv`; with `best`,
    /// each row's greedy token and first non-finite logit there (`argmax_rows`).
    #[allow(clippy::too_many_arguments)]
    fn head(
        &mut self,
        w: &GpuWeights,
        t: &Transformer,
        plan: &Plan,
        tb: &Tables,
        tv: View,
        norm: View,
        out: Option<&GpuMat>,
        lv: View,
        best: Option<View>,
    ) -> Result<()> {
        let p = &t.params;
        let (m, d, nv) = (plan.outputs.len(), p.n_embd, p.n_vocab);
        let mat = out.unwrap_or(&w.token_embd);
        let k = &w.kernels;
        let (x, o, h) = (self.acts.x.view(), self.acts.o.view(), self.acts.h.view());
        let s = self.stream.as_mut();
        k.gather_rows(s, x, plan.len(), tv.sub(tb.outputs * 4, m * 4)?, m, o, d)?;
        k.rms_norm(s, o, d, norm, h, d, m, d, p.eps, false)?;
        self.matmul(w, &[(mat, lv)], h, m, Prepared::Nothing)?;
        if let Some(cap) = p.final_softcap {
            k.softcap(self.stream.as_mut(), lv, m * nv, cap)?;
        }
        if let Some(best) = best {
            k.argmax_rows(self.stream.as_mut(), lv, m, nv, best)?;
        }
        Ok(())
    }

    /// Makes the block copies copy-on-write asked for, in every offloaded layer.
    fn copy_blocks(&mut self, kv: &mut KvCache, kd: usize, vd: usize) -> Result<()> {
        let bs = kv.shape().block_size;
        for (from, to) in kv.take_device_copies() {
            for (bufs, width) in [(&self.kc, kd), (&self.vc, vd)] {
                let block = bytes_of(bytes_of(bs, width)?, 2)?;
                let (src, dst) = (
                    bytes_of(from as usize, block)?,
                    bytes_of(to as usize, block)?,
                );
                for b in bufs {
                    let (s, t) = (b.at(src, block)?, b.at(dst, block)?);
                    // SAFETY: both ranges lie inside the layer's cache buffer (checked by
                    // `at`), and blocks are disjoint (from != to).
                    unsafe { self.stream.copy(t, s, block)? };
                }
            }
        }
        Ok(())
    }
}

/// A context's expert scratch (made for every model with experts on the GPU).
fn moe_bufs(b: &Option<MoeBufs>) -> Result<&MoeBufs> {
    b.as_ref()
        .ok_or_else(|| Error::Internal("no expert scratch".into()))
}

/// Pads the tables to a 16-byte boundary: kernels read them as float2 and int4.
fn align(w: &mut Vec<u32>) {
    while !w.len().is_multiple_of(4) {
        w.push(0);
    }
}

/// The bytes of the tables, uploaded as they lie in memory (the device is little-endian, as
/// every host this builds for): no copy per decode.
fn words_as_bytes(v: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding; the byte view covers exactly the same memory and borrows
    // `v` for its lifetime.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// The bytes of a float buffer (for downloads).
fn as_bytes_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: f32 has no invalid bit patterns and no padding; the byte view covers exactly
    // the same memory and borrows `v` mutably for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
}
