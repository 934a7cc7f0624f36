//! What differs between the architectures of the llama family, as data: one `ArchSpec` per
//! `general.architecture` name, and the hyperparameters every forward pass needs
//! (`TransformerParams`), all read from the file's `<arch>.*` keys.
//!
//! An architecture without a spec here cannot run and is a load error that names it.

use super::tensors::{get_pos_f, get_u};
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// How RoPE pairs dimensions within a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// llama.cpp's NORM: adjacent pairs (2i, 2i+1).
    Norm,
    /// NeoX: dimension i pairs with i + n_rot/2.
    Neox,
}

/// The gate activation of the feed-forward network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnAct {
    /// SwiGLU: silu(gate) * up.
    Silu,
    /// GeGLU with the tanh form of GELU, evaluated through f16 as ggml does.
    GeluTanh,
}

/// The features an architecture uses.
#[derive(Debug, Clone, Copy)]
pub struct ArchSpec {
    pub rope: RopeStyle,
    pub act: FfnAct,
    /// Embeddings multiplied by sqrt(n_embd) (Gemma).
    pub embed_scale: bool,
    /// Q scaled by 1/sqrt(head_dim) before attention instead of inside it (Gemma).
    pub q_prescale: bool,
    /// Layers `il` with `il % pattern < pattern - 1` use the sliding window, when the file
    /// has `<arch>.attention.sliding_window` (llama.cpp's defaults: Gemma 2: 2, Gemma 3: 6).
    pub swa_pattern: Option<usize>,
    /// RoPE base of sliding-window layers when the file has no `rope.freq_base_swa`
    /// (llama.cpp's Gemma 3: 10000); `None`: the global base.
    pub rope_base_swa: Option<f32>,
}

const LLAMA: ArchSpec = ArchSpec {
    rope: RopeStyle::Norm,
    act: FfnAct::Silu,
    embed_scale: false,
    q_prescale: false,
    swa_pattern: None,
    rope_base_swa: None,
};

const GEMMA: ArchSpec = ArchSpec {
    rope: RopeStyle::Neox,
    act: FfnAct::GeluTanh,
    embed_scale: true,
    q_prescale: true,
    swa_pattern: None,
    rope_base_swa: None,
};

const NEOX: ArchSpec = ArchSpec {
    rope: RopeStyle::Neox,
    ..LLAMA
};

impl ArchSpec {
    /// The spec of a `general.architecture` name, or `None` when it is not supported yet.
    /// Which optional tensors a layer has (biases, Q/K norms, post-norms, fused QKV or
    /// gate|up, experts) is read from the file itself.
    pub fn of(arch: &str) -> Option<ArchSpec> {
        Some(match arch {
            // Mistral-style models use the llama architecture name too.
            "llama" | "glm4" => LLAMA,
            "qwen2" | "qwen3" | "qwen3moe" => NEOX,
            // Phi-3 scales Q before attention, as Gemma does.
            "phi3" => ArchSpec {
                q_prescale: true,
                ..NEOX
            },
            "gemma" => GEMMA,
            "gemma2" => ArchSpec {
                swa_pattern: Some(2),
                ..GEMMA
            },
            "gemma3" => ArchSpec {
                swa_pattern: Some(6),
                rope_base_swa: Some(10_000.0),
                ..GEMMA
            },
            _ => return None,
        })
    }

    /// The names `of` accepts.
    pub const SUPPORTED: &'static [&'static str] = &[
        "llama", "qwen2", "qwen3", "qwen3moe", "phi3", "glm4", "gemma", "gemma2", "gemma3",
    ];
}

/// RoPE scaling (`<arch>.rope.scaling.*`). Every field always holds a value (the defaults
/// when the file has no scaling), so nothing downstream branches on data that was never set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScaling {
    /// Positions multiplied by this: 1/factor for linear and YaRN scaling, else 1.
    pub freq_scale: f32,
    /// YaRN (`rope.scaling.type = yarn`): linear scaling blended back to the original angles
    /// for the fast pairs, over a range set by the original context and beta_fast/slow.
    pub yarn: bool,
    pub n_ctx_orig: usize,
    pub beta_fast: f32,
    pub beta_slow: f32,
    pub attn_factor: f32,
}

/// Hyperparameters of a forward pass, all from the file.
#[derive(Debug, Clone)]
pub struct TransformerParams {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Width of one head's queries and keys (`key_length`), and of its values (`value_length`).
    pub head_dim: usize,
    pub v_head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_rot: usize,
    pub rope_base: f32,
    /// RoPE base of sliding-window layers (`rope.freq_base_swa`, else `rope_base`).
    pub rope_base_swa: f32,
    pub rope_scaling: RopeScaling,
    pub eps: f32,
    /// Sliding window (keys visible to position p: p - n_swa + 1 ..= p) and which layers use it.
    pub n_swa: Option<usize>,
    pub swa_layers: Vec<bool>,
    /// Attention scores and final logits soft-capped as `cap * tanh(x / cap)` (Gemma 2).
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Mixture of experts: experts per layer, experts used per token, and each expert's
    /// feed-forward width (`expert_feed_forward_length`, else `feed_forward_length`).
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub n_ff_exp: usize,
}

/// The largest head this build's attention handles (its accumulators live on the stack).
pub const MAX_HEAD_DIM: usize = 1024;

fn bad(key: String, reason: String) -> Error {
    Error::BadMetadata { key, reason }
}

impl TransformerParams {
    pub fn from_gguf(file: &GgufFile, hp: &super::Hparams, spec: &ArchSpec) -> Result<Self> {
        let a = &hp.arch;
        let key = |k: &str| format!("{a}.{k}");
        let n_embd = hp.n_embd as usize;
        let (n_head, n_head_kv) = (hp.n_head as usize, hp.n_head_kv as usize);
        let head_dim = match get_u(file, &key("attention.key_length"))? {
            Some(hd) => hd,
            // Without the key, heads split the embedding evenly.
            None if n_embd.is_multiple_of(n_head) => n_embd / n_head,
            None => {
                return Err(bad(
                    key("attention.head_count"),
                    format!(
                        "{n_head} heads do not divide the embedding of {n_embd} (and there is no {})",
                        key("attention.key_length")
                    ),
                ));
            }
        };
        let v_head_dim = get_u(file, &key("attention.value_length"))?.unwrap_or(head_dim);
        for (k, v) in [("key_length", head_dim), ("value_length", v_head_dim)] {
            if v == 0 || v > MAX_HEAD_DIM {
                return Err(bad(
                    key(&format!("attention.{k}")),
                    format!("heads of {v} (1 to {MAX_HEAD_DIM} supported)"),
                ));
            }
        }
        let n_ff = get_u(file, &key("feed_forward_length"))?.ok_or_else(|| Error::MissingKey {
            key: key("feed_forward_length"),
        })?;
        if n_ff == 0 || n_ff > 1 << 20 {
            return Err(bad(
                key("feed_forward_length"),
                format!("{n_ff} is out of range"),
            ));
        }
        let n_rot = get_u(file, &key("rope.dimension_count"))?.unwrap_or(head_dim);
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(bad(
                key("rope.dimension_count"),
                format!("{n_rot} rotary dimensions for heads of {head_dim}"),
            ));
        }
        let rope_base = get_pos_f(file, &key("rope.freq_base"))?.unwrap_or(10_000.0);
        let rope_base_swa = get_pos_f(file, &key("rope.freq_base_swa"))?
            .or(spec.rope_base_swa)
            .unwrap_or(rope_base);
        let rope_scaling = rope_scaling(file, a, hp.n_ctx_train as usize)?;
        let eps = get_pos_f(file, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
        let n_layer = hp.n_layer as usize;
        let n_swa = match (
            spec.swa_pattern,
            get_u(file, &key("attention.sliding_window"))?,
        ) {
            (Some(_), Some(0)) => {
                return Err(bad(key("attention.sliding_window"), "0 positions".into()));
            }
            (Some(_), w) => w,
            (None, _) => None,
        };
        let swa_layers = match (n_swa, spec.swa_pattern) {
            (Some(_), Some(p)) => (0..n_layer).map(|il| il % p < p - 1).collect(),
            _ => vec![false; n_layer],
        };
        let n_expert = get_u(file, &key("expert_count"))?.unwrap_or(0);
        let n_expert_used = get_u(file, &key("expert_used_count"))?.unwrap_or(0);
        if n_expert > 1024 || n_expert_used > n_expert || (n_expert > 0 && n_expert_used == 0) {
            return Err(bad(
                key("expert_used_count"),
                format!("{n_expert_used} of {n_expert} experts"),
            ));
        }
        let n_ff_exp = get_u(file, &key("expert_feed_forward_length"))?.unwrap_or(n_ff);
        if n_ff_exp == 0 || n_ff_exp > 1 << 20 {
            return Err(bad(
                key("expert_feed_forward_length"),
                format!("{n_ff_exp} is out of range"),
            ));
        }
        Ok(TransformerParams {
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            v_head_dim,
            n_ff,
            n_vocab: hp.n_vocab as usize,
            n_rot,
            rope_base,
            rope_base_swa,
            rope_scaling,
            eps,
            n_swa,
            swa_layers,
            attn_softcap: get_pos_f(file, &key("attn_logit_softcapping"))?,
            final_softcap: get_pos_f(file, &key("final_logit_softcapping"))?,
            n_expert,
            n_expert_used,
            n_ff_exp,
        })
    }

    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.v_head_dim
    }
}

fn rope_scaling(file: &GgufFile, a: &str, n_ctx_train: usize) -> Result<RopeScaling> {
    let ty_key = format!("{a}.rope.scaling.type");
    let ty = file.get_str(&ty_key)?;
    let key = |k: &str| format!("{a}.rope.scaling.{k}");
    let factor = get_pos_f(file, &key("factor"))?;
    let mut r = RopeScaling {
        freq_scale: 1.0,
        yarn: false,
        n_ctx_orig: get_u(file, &key("original_context_length"))?.unwrap_or(n_ctx_train),
        beta_fast: get_pos_f(file, &key("yarn_beta_fast"))?.unwrap_or(32.0),
        beta_slow: get_pos_f(file, &key("yarn_beta_slow"))?.unwrap_or(1.0),
        attn_factor: get_pos_f(file, &key("attn_factor"))?.unwrap_or(1.0),
    };
    match (ty, factor) {
        (None | Some("none"), _) | (Some("linear"), None) => {}
        (Some("linear"), Some(f)) => r.freq_scale = 1.0 / f,
        (Some("yarn"), Some(f)) => {
            r.freq_scale = 1.0 / f;
            r.yarn = true;
        }
        (Some("yarn"), None) => return Err(Error::MissingKey { key: key("factor") }),
        (Some(other), _) => {
            return Err(Error::Unsupported(format!(
                "{ty_key} = {other:?} (supported: none, linear, yarn)"
            )));
        }
    }
    Ok(r)
}
