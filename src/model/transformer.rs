//! The forward pass of the llama family on the CPU, one implementation for every supported
//! architecture (llama, qwen2, qwen3, qwen3moe, phi3, glm4, gemma, gemma2, gemma3). `ArchSpec`
//! says what the architecture name implies (RoPE style, activation, embedding scale, sliding
//! window pattern); what a layer has is read from the file (biases, Q/K norms, post-norms,
//! fused QKV or gate|up, experts):
//!
//! embeddings (x sqrt(n_embd) for Gemma) -> per layer [RMS norm -> Q, K, V (+ biases) ->
//! per-head Q/K norms -> RoPE (normal or NeoX, linear scaling, llama3 frequency factors,
//! per-layer base) -> store K/V in the paged cache -> causal attention with GQA, sliding
//! windows and soft-capping -> output projection -> post-attention norm -> residual -> RMS
//! norm -> SwiGLU, GeGLU or mixture of experts -> post-FFN norm -> residual] -> final norm ->
//! logits (soft-capped for Gemma 2) for the rows asked for.
//!
//! The whole batch goes through each matrix at once. Weights stay in the memory map
//! (quantized); norm vectors are converted to f32 at load.
//!
//! Fidelity to llama.cpp (docs/INFERENCE-NOTES.md): activations are quantized the way its SIMD
//! code does, and with an F16 cache attention rounds as its CPU flash-attention kernel does
//! (K, V and Q rounded to f16, values accumulated in f16).

use super::arch::{ArchSpec, FfnAct, RopeStyle, TransformerParams};
use super::attention::{AttnLayer, AttnScratch, attend};
use super::moe::{Moe, MoeScratch};
use super::tensors::{f32_vector, opt_f32_vector, opt_tensor, tensor, weights};
use crate::backend::cpu::disjoint::Disjoint;
use crate::backend::cpu::ops::{self, AttnMath, AttnOrder, Rope, RopeCache, Yarn};
use crate::backend::cpu::pool::{MAX_PREFETCH_JOBS, MAX_PREFETCH_RANGES};
use crate::backend::cpu::{MatmulScratch, Numerics, ThreadPool, matmul, matmul_group};
use crate::batch::Plan;
use crate::gguf::{GgufFile, TensorInfo};
use crate::kv::{KvCache, KvType};
use crate::quant;
use crate::{Error, Result};

/// Q, K and V projections: three matrices, or one fused `attn_qkv` (Phi-3) whose outputs
/// are Q, then K, then V. (One per layer: the size difference of the variants is immaterial.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Qkv {
    Split {
        q: TensorInfo,
        k: TensorInfo,
        v: TensorInfo,
    },
    Fused(TensorInfo),
}

/// The feed-forward network: gate and up matrices, one fused `ffn_up` whose first half is the
/// gate (Phi-3, GLM-4), or experts.
pub(crate) enum Ffn {
    Split {
        gate: TensorInfo,
        up: TensorInfo,
        down: TensorInfo,
    },
    Fused {
        up: TensorInfo,
        down: TensorInfo,
    },
    Experts(Moe),
}

pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) qkv: Qkv,
    /// Biases of Q, K, V (Qwen 2, GLM-4).
    pub(crate) bias: [Option<Vec<f32>>; 3],
    pub(crate) q_norm: Option<Vec<f32>>,
    pub(crate) k_norm: Option<Vec<f32>>,
    pub(crate) wo: TensorInfo,
    pub(crate) post_attn_norm: Option<Vec<f32>>,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) ffn: Ffn,
    pub(crate) post_ffn_norm: Option<Vec<f32>>,
}

/// A model's weights bound for the forward pass, built once at load.
pub struct Transformer {
    pub spec: ArchSpec,
    pub params: TransformerParams,
    pub(crate) token_embd: TensorInfo,
    pub(crate) output_norm: Vec<f32>,
    /// `output.weight`, or the embedding matrix when the model ties them.
    pub(crate) output: TensorInfo,
    /// llama3-style RoPE frequency divisors (`rope_freqs.weight`), n_rot / 2 of them.
    pub(crate) rope_freqs: Option<Vec<f32>>,
    pub(crate) layers: Vec<Layer>,
}

/// Activations of one decode, reused from one decode to the next so that steady-state
/// decoding allocates (almost) nothing.
#[derive(Default)]
pub struct ForwardScratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    tmp: Vec<f32>,
    /// Per-head norms of Q and K.
    normed: Vec<f32>,
    attn: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    a: Vec<f32>,
    /// Fused projections' outputs before they are split.
    fused: Vec<f32>,
    mm: MatmulScratch,
    moe: MoeScratch,
    /// RoPE angles of the batch for global layers, and for sliding-window layers when their
    /// base differs.
    rope: RopeCache,
    rope_swa: RopeCache,
    attn_kv: AttnScratch,
}

impl ForwardScratch {
    /// Scratch for decodes whose products round as `numerics` says.
    pub fn new(numerics: Numerics) -> ForwardScratch {
        let mut s = ForwardScratch::default();
        s.mm.numerics = numerics;
        s.moe.mm.numerics = numerics;
        s
    }
}

impl Transformer {
    pub fn from_gguf(file: &GgufFile, hp: &super::Hparams, spec: ArchSpec) -> Result<Transformer> {
        let p = TransformerParams::from_gguf(file, hp, &spec)?;
        let (e, v) = (p.n_embd as u64, p.n_vocab as u64);
        let token_embd = tensor(file, "token_embd.weight", &[e, v])?;
        let output =
            opt_tensor(file, "output.weight", &[e, v])?.unwrap_or_else(|| token_embd.clone());
        let rope_freqs = opt_f32_vector(file, "rope_freqs.weight", p.n_rot / 2)?;
        let layers = (0..p.n_layer)
            .map(|i| bind_layer(file, i, &p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Transformer {
            spec,
            output_norm: f32_vector(file, "output_norm.weight", p.n_embd)?,
            params: p,
            token_embd,
            output,
            rope_freqs,
            layers,
        })
    }

    /// Runs a checked batch whose K/V positions are reserved in `kv`: writes every row's keys
    /// and values, and returns the logits of `plan.outputs`, `n_vocab` each, in that order.
    /// `abort` is asked between layers; when it says stop the pass ends with `Aborted`.
    /// On any error the caller rolls the reservation back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        file: &GgufFile,
        pool: &ThreadPool,
        plan: &Plan,
        kv: &mut KvCache,
        abort: &mut dyn FnMut() -> bool,
        s: &mut ForwardScratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let d = self.params.n_embd;
        let scale = if self.spec.embed_scale {
            (d as f32).sqrt()
        } else {
            1.0
        };
        embed(file, &self.token_embd, &plan.tokens, d, scale, &mut s.x)?;
        self.forward_layers(file, pool, plan, kv, abort, s, 0, logits)
    }

    /// `forward` from layer `first` on, with the hidden states entering it in `x` (n_embd
    /// per row): the CPU's part of a partially offloaded model.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_from(
        &self,
        file: &GgufFile,
        pool: &ThreadPool,
        plan: &Plan,
        kv: &mut KvCache,
        abort: &mut dyn FnMut() -> bool,
        s: &mut ForwardScratch,
        first: usize,
        x: &[f32],
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        if x.len() != plan.len() * self.params.n_embd {
            return Err(Error::Internal("hidden states of the wrong size".into()));
        }
        s.x.clear();
        s.x.extend_from_slice(x);
        self.forward_layers(file, pool, plan, kv, abort, s, first, logits)
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_layers(
        &self,
        file: &GgufFile,
        pool: &ThreadPool,
        plan: &Plan,
        kv: &mut KvCache,
        abort: &mut dyn FnMut() -> bool,
        s: &mut ForwardScratch,
        first: usize,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let p = &self.params;
        let n = plan.len();
        let (d, hd) = (p.n_embd, p.head_dim);
        let f16_kv = kv.shape().ty == KvType::F16;
        // The RoPE angles of this batch, once per distinct base (global and sliding-window
        // layers may differ), shared by Q and K of every layer.
        let same_rope = p.rope_base_swa == p.rope_base || !p.swa_layers.contains(&true);
        s.rope.fill(&self.rope(p.rope_base), &plan.positions);
        if !same_rope {
            s.rope_swa
                .fill(&self.rope(p.rope_base_swa), &plan.positions);
        }
        // Gemma scales Q before attention (and before its f16 rounding); llama inside.
        let (q_scale, attn_scale) = if self.spec.q_prescale {
            (1.0 / (hd as f32).sqrt(), 1.0)
        } else {
            (1.0, 1.0 / (hd as f32).sqrt())
        };
        s.h.resize(n * d, 0.0);
        s.attn.resize(n * p.n_head * p.v_head_dim, 0.0);
        for (li, l) in self.layers.iter().enumerate().skip(first) {
            if abort() {
                return Err(Error::Aborted(
                    "decode aborted by the abort callback".into(),
                ));
            }
            let swa = p.swa_layers[li];
            let rope = if swa && !same_rope {
                &s.rope_swa
            } else {
                &s.rope
            };
            ops::rms_norm(&s.x, &l.attn_norm, p.eps, &mut s.h);
            let q_dim = p.n_head * hd;
            match &l.qkv {
                Qkv::Split { q, k, v } => {
                    let outs = [&mut s.q, &mut s.k, &mut s.v];
                    mm_group(file, pool, [q, k, v], &s.h, n, outs, &mut s.mm)?;
                }
                Qkv::Fused(w) => {
                    mm(file, pool, w, &s.h, n, &mut s.fused, &mut s.mm)?;
                    let widths = [q_dim, p.k_dim(), p.v_dim()];
                    split(&s.fused, n, &widths, [&mut s.q, &mut s.k, &mut s.v]);
                }
            }
            self.prefetch(file, pool, li, Job::Out);
            for (b, x) in l.bias.iter().zip([&mut s.q, &mut s.k, &mut s.v]) {
                if let Some(b) = b {
                    add_rows(x, b);
                }
            }
            if let Some(w) = &l.q_norm {
                norm_in_place(&mut s.q, w, p.eps, &mut s.normed);
            }
            if let Some(w) = &l.k_norm {
                norm_in_place(&mut s.k, w, p.eps, &mut s.normed);
            }
            let rope_fn = match self.spec.rope {
                RopeStyle::Norm => ops::rope_norm,
                RopeStyle::Neox => ops::rope_neox,
            };
            rope_fn(&mut s.q, hd, rope);
            rope_fn(&mut s.k, hd, rope);
            if q_scale != 1.0 {
                s.q.iter_mut().for_each(|x| *x *= q_scale);
            }
            if f16_kv {
                quant::round_to_f16(&mut s.q);
            }
            let (kd, vd) = (p.k_dim(), p.v_dim());
            for r in 0..n {
                for &seq in plan.row_seqs(r) {
                    let pos = plan.positions[r];
                    let (k, v) = (&s.k[r * kd..][..kd], &s.v[r * vd..][..vd]);
                    kv.write(li, seq, pos, k, v)?;
                }
            }
            let shape = AttnLayer {
                n_head: p.n_head,
                n_head_kv: p.n_head_kv,
                head_dim: hd,
                v_head_dim: p.v_head_dim,
                math: AttnMath {
                    scale: attn_scale,
                    softcap: p.attn_softcap,
                    f16_acc: f16_kv,
                    order: match s.mm.numerics {
                        Numerics::BatchInvariant => AttnOrder::TwoPass,
                        Numerics::LlamaCpp => AttnOrder::Online,
                    },
                },
                window: if swa { p.n_swa } else { None },
            };
            attend(
                pool,
                kv,
                li,
                plan,
                &shape,
                &s.q,
                &mut s.attn,
                &mut s.attn_kv,
            )?;
            mm(file, pool, &l.wo, &s.attn, n, &mut s.o, &mut s.mm)?;
            self.prefetch(file, pool, li, Job::Up);
            residual(
                &mut s.x,
                &s.o,
                l.post_attn_norm.as_deref(),
                p.eps,
                &mut s.tmp,
            );
            ops::rms_norm(&s.x, &l.ffn_norm, p.eps, &mut s.h);
            let down = match &l.ffn {
                Ffn::Experts(moe) => {
                    moe.forward(file, pool, &s.h, n, &mut s.o, &mut s.moe)?;
                    None
                }
                Ffn::Split { gate, up, down } => {
                    let outs = [&mut s.g, &mut s.u];
                    mm_group(file, pool, [gate, up], &s.h, n, outs, &mut s.mm)?;
                    Some(down)
                }
                Ffn::Fused { up, down } => {
                    mm(file, pool, up, &s.h, n, &mut s.fused, &mut s.mm)?;
                    let (g, u) = (&mut s.g, &mut s.u);
                    split(&s.fused, n, &[p.n_ff, p.n_ff], [g, u]);
                    Some(down)
                }
            };
            if let Some(down) = down {
                self.prefetch(file, pool, li, Job::Down);
                s.a.resize(n * p.n_ff, 0.0);
                let act: fn(&[f32], &[f32], &mut [f32]) = match self.spec.act {
                    FfnAct::Silu => ops::swiglu,
                    FfnAct::GeluTanh => ops::geglu,
                };
                elementwise(pool, act, &s.g, &s.u, &mut s.a);
                mm(file, pool, down, &s.a, n, &mut s.o, &mut s.mm)?;
            }
            self.prefetch(file, pool, li + 1, Job::Qkv);
            residual(
                &mut s.x,
                &s.o,
                l.post_ffn_norm.as_deref(),
                p.eps,
                &mut s.tmp,
            );
        }
        self.logits(file, pool, plan, s, logits)
    }

    /// Names the weights of the next jobs, from job `job` of layer `li` on (past the last
    /// layer: the output matrix), for the pool's idle workers to prefetch while this thread
    /// works alone (`ThreadPool::prefetch`).
    fn prefetch(&self, file: &GgufFile, pool: &ThreadPool, li: usize, job: Job) {
        if pool.n_threads() < 2 {
            return;
        }
        let bytes = |t: &TensorInfo| file.tensor_data(t).unwrap_or_default();
        let mut jobs: [[&[u8]; MAX_PREFETCH_RANGES]; MAX_PREFETCH_JOBS] = Default::default();
        let mut at = (li, job as usize);
        for slot in &mut jobs {
            let Some(l) = self.layers.get(at.0) else {
                slot[0] = bytes(&self.output);
                break;
            };
            *slot = match (at.1, &l.qkv, &l.ffn) {
                (0, Qkv::Split { q, k, v }, _) => [bytes(q), bytes(k), bytes(v)],
                (0, Qkv::Fused(w), _) => [bytes(w), &[], &[]],
                (1, ..) => [bytes(&l.wo), &[], &[]],
                (2, _, Ffn::Split { gate, up, .. }) => [bytes(gate), bytes(up), &[]],
                (2, _, Ffn::Fused { up, .. }) => [bytes(up), &[], &[]],
                (3, _, Ffn::Split { down, .. } | Ffn::Fused { down, .. }) => {
                    [bytes(down), &[], &[]]
                }
                // Experts: which run is not known yet.
                _ => [&[], &[], &[]],
            };
            at = if at.1 == 3 {
                (at.0 + 1, 0)
            } else {
                (at.0, at.1 + 1)
            };
        }
        pool.prefetch(&jobs.each_ref().map(|j| &j[..]));
    }

    /// RoPE with `base` (and the model's scaling and frequency factors).
    pub(crate) fn rope(&self, base: f32) -> Rope<'_> {
        let p = &self.params;
        let rs = &p.rope_scaling;
        let yarn = if rs.yarn {
            Yarn {
                ext_factor: 1.0,
                attn_factor: rs.attn_factor,
                corr_dims: Yarn::corr_dims(
                    p.n_rot,
                    rs.n_ctx_orig,
                    base,
                    rs.beta_fast,
                    rs.beta_slow,
                ),
            }
        } else {
            Yarn::OFF
        };
        Rope {
            n_rot: p.n_rot,
            base,
            freq_scale: rs.freq_scale,
            factors: self.rope_freqs.as_deref(),
            yarn,
        }
    }

    /// Final RMS norm and output projection of the rows in `plan.outputs`.
    fn logits(
        &self,
        file: &GgufFile,
        pool: &ThreadPool,
        plan: &Plan,
        s: &mut ForwardScratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let d = self.params.n_embd;
        let m = plan.outputs.len();
        if m == 0 {
            logits.clear();
            return Ok(());
        }
        s.tmp.clear();
        for &r in &plan.outputs {
            s.tmp.extend_from_slice(&s.x[r * d..(r + 1) * d]);
        }
        s.h.resize(m * d, 0.0);
        ops::rms_norm(&s.tmp, &self.output_norm, self.params.eps, &mut s.h);
        let w = weights(file, &self.output)?;
        resize_logits(logits, m, w.n_out())?;
        matmul(pool, &w, &s.h, m, logits, &mut s.mm)?;
        if let Some(cap) = self.params.final_softcap {
            logits.iter_mut().for_each(|x| *x = cap * (*x / cap).tanh());
        }
        Ok(())
    }
}

/// Makes `logits` hold `m` rows of `n_vocab`, keeping its memory from the last decode: it
/// grows (and zero-fills) only when there are more rows than before, and its contents are
/// left for the caller to overwrite.
pub(crate) fn resize_logits(logits: &mut Vec<f32>, m: usize, n_vocab: usize) -> Result<()> {
    let count = m
        .checked_mul(n_vocab)
        .ok_or_else(|| Error::Overflow(format!("logits for {m} rows")))?;
    if logits.len() != count {
        logits.truncate(count);
        logits
            .try_reserve_exact(count - logits.len())
            .map_err(|_| Error::Oom(format!("logits for {m} rows")))?;
        logits.resize(count, 0.0);
    }
    Ok(())
}

/// Binds layer `i`'s tensors, each checked against the hyperparameters.
fn bind_layer(file: &GgufFile, i: usize, p: &TransformerParams) -> Result<Layer> {
    let n = |s: &str| format!("blk.{i}.{s}.weight");
    let b = |s: &str| format!("blk.{i}.{s}.bias");
    let e = p.n_embd as u64;
    let q_dim = p.n_head * p.head_dim;
    let (k_dim, v_dim) = (p.k_dim(), p.v_dim());
    let o_dim = (p.n_head * p.v_head_dim) as u64;
    let ff = p.n_ff as u64;
    let qkv = match opt_tensor(file, &n("attn_qkv"), &[e, (q_dim + k_dim + v_dim) as u64])? {
        Some(fused) => Qkv::Fused(fused),
        None => Qkv::Split {
            q: tensor(file, &n("attn_q"), &[e, q_dim as u64])?,
            k: tensor(file, &n("attn_k"), &[e, k_dim as u64])?,
            v: tensor(file, &n("attn_v"), &[e, v_dim as u64])?,
        },
    };
    let ffn = if let Some(moe) =
        Moe::bind(file, i, p.n_embd, p.n_ff_exp, (p.n_expert, p.n_expert_used))?
    {
        Ffn::Experts(moe)
    } else if file.tensor(&n("ffn_gate")).is_some() {
        Ffn::Split {
            gate: tensor(file, &n("ffn_gate"), &[e, ff])?,
            up: tensor(file, &n("ffn_up"), &[e, ff])?,
            down: tensor(file, &n("ffn_down"), &[ff, e])?,
        }
    } else {
        Ffn::Fused {
            up: tensor(file, &n("ffn_up"), &[e, 2 * ff])?,
            down: tensor(file, &n("ffn_down"), &[ff, e])?,
        }
    };
    Ok(Layer {
        attn_norm: f32_vector(file, &n("attn_norm"), p.n_embd)?,
        qkv,
        bias: [
            opt_f32_vector(file, &b("attn_q"), q_dim)?,
            opt_f32_vector(file, &b("attn_k"), k_dim)?,
            opt_f32_vector(file, &b("attn_v"), v_dim)?,
        ],
        q_norm: opt_f32_vector(file, &n("attn_q_norm"), p.head_dim)?,
        k_norm: opt_f32_vector(file, &n("attn_k_norm"), p.head_dim)?,
        wo: tensor(file, &n("attn_output"), &[o_dim, e])?,
        post_attn_norm: opt_f32_vector(file, &n("post_attention_norm"), p.n_embd)?,
        ffn_norm: f32_vector(file, &n("ffn_norm"), p.n_embd)?,
        ffn,
        post_ffn_norm: opt_f32_vector(file, &n("post_ffw_norm"), p.n_embd)?,
    })
}

/// A layer's matrix jobs in the order a decode runs them (`Transformer::prefetch`).
#[derive(Clone, Copy)]
enum Job {
    Qkv = 0,
    Out = 1,
    Up = 2,
    Down = 3,
}

/// Splits `n` rows of `fused` (each the widths side by side) into one buffer per width.
fn split<const K: usize>(fused: &[f32], n: usize, widths: &[usize; K], outs: [&mut Vec<f32>; K]) {
    let total: usize = widths.iter().sum();
    for (out, (w, at)) in outs.into_iter().zip(widths.iter().scan(0, |at, &w| {
        let here = *at;
        *at += w;
        Some((w, here))
    })) {
        out.clear();
        for r in 0..n {
            out.extend_from_slice(&fused[r * total + at..][..w]);
        }
    }
}

/// Adds `bias` to every row of `x`.
fn add_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// `out = x W^T` for `n` rows.
fn mm(
    file: &GgufFile,
    pool: &ThreadPool,
    t: &TensorInfo,
    x: &[f32],
    n: usize,
    out: &mut Vec<f32>,
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let w = weights(file, t)?;
    out.resize(n * w.n_out(), 0.0);
    matmul(pool, &w, x, n, out, scratch)
}

/// Values per task below which an element-wise step stays on the calling thread.
const ELEMENTWISE_MIN: usize = 8192;

/// `f(g, u, a)` cut into pieces across the pool when large (a prompt's gated activations):
/// `f` is element-wise, so the pieces give the same values.
fn elementwise(
    pool: &ThreadPool,
    f: fn(&[f32], &[f32], &mut [f32]),
    g: &[f32],
    u: &[f32],
    a: &mut [f32],
) {
    let n = a.len().min(g.len()).min(u.len());
    let per_task = n
        .div_ceil(2 * pool.n_threads())
        .next_multiple_of(64)
        .max(ELEMENTWISE_MIN);
    let out = Disjoint::new(&mut a[..n]);
    pool.run(n.div_ceil(per_task), &|t| {
        let r = t * per_task..((t + 1) * per_task).min(n);
        // SAFETY: task t alone writes the elements `r`.
        let a = unsafe { out.slice(r.start, r.len()) };
        f(&g[r.clone()], &u[r], a);
    });
}

/// `outs[i] = x W_i^T` for `n` rows, as one job (`matmul_group`).
fn mm_group<const K: usize>(
    file: &GgufFile,
    pool: &ThreadPool,
    ts: [&TensorInfo; K],
    x: &[f32],
    n: usize,
    outs: [&mut Vec<f32>; K],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    // A few bytes a layer; the weights' checks return errors that an array map could not.
    let mut products = Vec::with_capacity(K);
    for (t, out) in ts.into_iter().zip(outs) {
        let w = weights(file, t)?;
        out.resize(n * w.n_out(), 0.0);
        products.push((w, &mut out[..]));
    }
    matmul_group(pool, &mut products, x, n, scratch)
}

/// RMS-normalizes each `w.len()`-wide piece of `x` (per-head norms) in place.
fn norm_in_place(x: &mut Vec<f32>, w: &[f32], eps: f32, tmp: &mut Vec<f32>) {
    tmp.resize(x.len(), 0.0);
    ops::rms_norm(x, w, eps, tmp);
    std::mem::swap(x, tmp);
}

/// `x += o`, with `o` RMS-normalized first when the layer has a post-norm.
fn residual(x: &mut [f32], o: &[f32], post_norm: Option<&[f32]>, eps: f32, tmp: &mut Vec<f32>) {
    let add = match post_norm {
        Some(w) => {
            tmp.resize(o.len(), 0.0);
            ops::rms_norm(o, w, eps, tmp);
            &tmp[..o.len()]
        }
        None => o,
    };
    for (x, a) in x.iter_mut().zip(add) {
        *x += a;
    }
}

/// The embedding rows of `tokens` (checked to be in the vocabulary), each `d` wide, times
/// `scale`, into `x`.
fn embed(
    file: &GgufFile,
    token_embd: &TensorInfo,
    tokens: &[u32],
    d: usize,
    scale: f32,
    x: &mut Vec<f32>,
) -> Result<()> {
    let ty = token_embd.ty;
    let row_bytes = quant::row_bytes(ty, d)?;
    let data = file
        .tensor_data(token_embd)
        .ok_or_else(|| Error::Internal("token_embd: no data".into()))?;
    x.resize(tokens.len() * d, 0.0);
    for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
        let src = data
            .get(t as usize * row_bytes..(t as usize + 1) * row_bytes)
            .ok_or_else(|| Error::Internal(format!("token {t}: no embedding row")))?;
        quant::dequantize_row(ty, src, row)?;
        if scale != 1.0 {
            row.iter_mut().for_each(|v| *v *= scale);
        }
    }
    Ok(())
}
