//! The llama architecture's forward pass on the CPU (SmolLM2 and llama-style models):
//! embeddings -> per layer [RMS norm -> Q, K, V -> RoPE (normal style) -> store K/V ->
//! causal GQA attention -> output projection -> residual -> RMS norm -> SwiGLU FFN ->
//! residual] -> final norm -> logits for the rows asked for. The whole batch goes through each
//! matrix at once. Weights stay in the memory map (quantized); norms are copied to f32 once.
//!
//! This is the first slice of issue 5: one sequence, whose K/V live in a `SeqKv` of its own.
//! The paged cache, the context and the C API build on it next.
//!
//! Fidelity to llama.cpp (see docs/INFERENCE-NOTES.md): activations are quantized the way
//! llama.cpp's SIMD code does (`quant::activation_quantizer`), and attention follows its
//! default CPU path with an F16 KV cache (K, V and Q rounded to f16; online softmax with the
//! values accumulated in f16, `ops::attend_online_f16`). SmolLM2's residual stream for the
//! first token equals llama.cpp's trace to 4 digits through all 30 layers, and position-0
//! logits match the reference.

use super::forward::{AttnShape, attend_causal, check_batch, embed, logits, weights};
use crate::backend::cpu::{MatmulScratch, ThreadPool, matmul, ops};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant;
use crate::{Error, Result};

/// Hyperparameters the forward pass needs, all from the file.
#[derive(Debug, Clone)]
pub struct LlamaParams {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_rot: usize,
    pub rope_base: f32,
    pub eps: f32,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: TensorInfo,
    wk: TensorInfo,
    wv: TensorInfo,
    wo: TensorInfo,
    ffn_norm: Vec<f32>,
    gate: TensorInfo,
    up: TensorInfo,
    down: TensorInfo,
}

pub struct Llama {
    pub params: LlamaParams,
    token_embd: TensorInfo,
    output_norm: Vec<f32>,
    /// `output.weight`, or the embedding matrix when the model ties them.
    output: TensorInfo,
    layers: Vec<Layer>,
}

/// The keys and values of one sequence, per layer, position after position.
#[derive(Default)]
pub struct SeqKv {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl SeqKv {
    /// Makes room for `n_layer` layers (on first use).
    pub(super) fn ensure_layers(&mut self, n_layer: usize) {
        if self.k.is_empty() {
            self.k = vec![Vec::new(); n_layer];
            self.v = vec![Vec::new(); n_layer];
        }
    }

    /// Appends keys and values to layer `li` and returns all of that layer's.
    pub(super) fn append(
        &mut self,
        li: usize,
        k: impl Iterator<Item = f32>,
        v: impl Iterator<Item = f32>,
    ) -> (&[f32], &[f32]) {
        self.k[li].extend(k);
        self.v[li].extend(v);
        (&self.k[li], &self.v[li])
    }

    /// Counts `n` more positions stored (after every layer appended them).
    pub(super) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Drops what layers appended since the last `advance` (a forward pass that failed);
    /// `kv_dim` is the width of one position's keys (and values).
    pub(super) fn rollback(&mut self, kv_dim: usize) {
        for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
            layer.truncate(self.len * kv_dim);
        }
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub(super) fn tensor<'f>(file: &'f GgufFile, name: &str, dims: &[u64]) -> Result<&'f TensorInfo> {
    let t = file.tensor(name).ok_or_else(|| Error::MissingKey {
        key: format!("tensor {name}"),
    })?;
    if t.shape() != dims {
        return Err(Error::BadMetadata {
            key: format!("tensor {name}"),
            reason: format!("shape {:?}, expected {dims:?}", t.shape()),
        });
    }
    Ok(t)
}

pub(super) fn f32_vector(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = tensor(file, name, &[n as u64])?;
    let mut out = vec![0f32; n];
    let data = file
        .tensor_data(t)
        .ok_or_else(|| Error::Internal(format!("{name}: no data")))?;
    quant::dequantize_row(t.ty, data, &mut out)?;
    Ok(out)
}

pub(super) fn get_u(file: &GgufFile, key: &str) -> Option<usize> {
    file.get(key)
        .and_then(|v| v.as_i128())
        .and_then(|v| usize::try_from(v).ok())
}

pub(super) fn get_f(file: &GgufFile, key: &str) -> Option<f32> {
    match file.get(key)? {
        crate::gguf::Value::F32(v) => Some(*v),
        crate::gguf::Value::F64(v) => Some(*v as f32),
        _ => None,
    }
}

impl Llama {
    pub fn from_gguf(file: &GgufFile, hp: &super::Hparams) -> Result<Llama> {
        let a = &hp.arch;
        let n_embd = hp.n_embd as usize;
        let n_head = hp.n_head as usize;
        let n_head_kv = hp.n_head_kv as usize;
        let head_dim = get_u(file, &format!("{a}.attention.key_length")).unwrap_or(n_embd / n_head);
        let n_ff =
            get_u(file, &format!("{a}.feed_forward_length")).ok_or_else(|| Error::MissingKey {
                key: format!("{a}.feed_forward_length"),
            })?;
        let params = LlamaParams {
            n_embd,
            n_layer: hp.n_layer as usize,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab: hp.n_vocab as usize,
            n_rot: get_u(file, &format!("{a}.rope.dimension_count")).unwrap_or(head_dim),
            rope_base: get_f(file, &format!("{a}.rope.freq_base")).unwrap_or(10_000.0),
            eps: get_f(file, &format!("{a}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        };
        if head_dim == 0 || params.n_rot > head_dim || !params.n_rot.is_multiple_of(2) {
            return Err(Error::BadMetadata {
                key: format!("{a}.rope.dimension_count"),
                reason: format!("{} rotary dimensions for heads of {head_dim}", params.n_rot),
            });
        }
        let (e, v) = (n_embd as u64, params.n_vocab as u64);
        let (q_dim, kv_dim) = ((n_head * head_dim) as u64, (n_head_kv * head_dim) as u64);
        let token_embd = tensor(file, "token_embd.weight", &[e, v])?.clone();
        let output = match file.tensor("output.weight") {
            Some(_) => tensor(file, "output.weight", &[e, v])?.clone(),
            None => token_embd.clone(),
        };
        let ff = n_ff as u64;
        let layers = (0..params.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: f32_vector(file, &n("attn_norm"), n_embd)?,
                    wq: tensor(file, &n("attn_q"), &[e, q_dim])?.clone(),
                    wk: tensor(file, &n("attn_k"), &[e, kv_dim])?.clone(),
                    wv: tensor(file, &n("attn_v"), &[e, kv_dim])?.clone(),
                    wo: tensor(file, &n("attn_output"), &[q_dim, e])?.clone(),
                    ffn_norm: f32_vector(file, &n("ffn_norm"), n_embd)?,
                    gate: tensor(file, &n("ffn_gate"), &[e, ff])?.clone(),
                    up: tensor(file, &n("ffn_up"), &[e, ff])?.clone(),
                    down: tensor(file, &n("ffn_down"), &[ff, e])?.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Llama {
            output_norm: f32_vector(file, "output_norm.weight", n_embd)?,
            params,
            token_embd,
            output,
            layers,
        })
    }

    /// Runs `tokens` (at positions `kv.len()..`) through the model, appending their keys and
    /// values to `kv`, and returns the logits of the rows in `outputs` (batch indices), each
    /// `n_vocab` long, in that order. An invalid batch or a failure leaves `kv` as it was.
    pub fn forward(
        &self,
        file: &GgufFile,
        pool: &ThreadPool,
        tokens: &[u32],
        kv: &mut SeqKv,
        outputs: &[usize],
    ) -> Result<Vec<f32>> {
        let p = &self.params;
        check_batch(tokens, p.n_vocab, outputs)?;
        kv.ensure_layers(p.n_layer);
        let result = self.run(file, pool, tokens, kv, outputs);
        match &result {
            Ok(_) => kv.advance(tokens.len()),
            Err(_) => kv.rollback(p.n_head_kv * p.head_dim),
        }
        result
    }

    fn run(
        &self,
        file: &GgufFile,
        pool: &ThreadPool,
        tokens: &[u32],
        kv: &mut SeqKv,
        outputs: &[usize],
    ) -> Result<Vec<f32>> {
        let p = &self.params;
        let n = tokens.len();
        let hd = p.head_dim;
        let mut scratch = MatmulScratch::default();
        let mut mm = |t: &TensorInfo, x: &[f32], out: &mut Vec<f32>| -> Result<()> {
            let wt = weights(file, t)?;
            out.resize(n * wt.n_out(), 0.0);
            matmul(pool, &wt, x, n, out, &mut scratch)
        };
        let mut x = embed(file, &self.token_embd, tokens, p.n_embd, 1.0)?;
        let start = kv.len();
        let positions: Vec<i32> = (start..start + n).map(|p| p as i32).collect();
        let shape = AttnShape {
            n_head: p.n_head,
            n_head_kv: p.n_head_kv,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window: None,
        };
        let (mut h, mut q, mut k, mut v, mut o) = (
            vec![0f32; n * p.n_embd],
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut attn = vec![0f32; n * p.n_head * hd];
        let (mut g, mut u, mut a) = (Vec::new(), Vec::new(), vec![0f32; n * p.n_ff]);
        let mut acc = Vec::new();
        // The cache holds f16 values (llama.cpp's default cache type); Q is rounded to f16 for
        // its products with K, as ggml's f16 kernels do.
        let r16 = |x: f32| half::f16::from_f32(x).to_f32();
        for (li, l) in self.layers.iter().enumerate() {
            ops::rms_norm(&x, &l.attn_norm, p.eps, &mut h);
            mm(&l.wq, &h, &mut q)?;
            mm(&l.wk, &h, &mut k)?;
            mm(&l.wv, &h, &mut v)?;
            ops::rope_norm(&mut q, &positions, hd, p.n_rot, p.rope_base);
            ops::rope_norm(&mut k, &positions, hd, p.n_rot, p.rope_base);
            q.iter_mut().for_each(|x| *x = r16(*x));
            let kvs = kv.append(li, k.iter().map(|&x| r16(x)), v.iter().map(|&x| r16(x)));
            attend_causal(&shape, &q, kvs, start, &mut acc, &mut attn);
            mm(&l.wo, &attn, &mut o)?;
            for (x, o) in x.iter_mut().zip(&o) {
                *x += o;
            }
            ops::rms_norm(&x, &l.ffn_norm, p.eps, &mut h);
            mm(&l.gate, &h, &mut g)?;
            mm(&l.up, &h, &mut u)?;
            ops::swiglu(&g, &u, &mut a);
            mm(&l.down, &a, &mut o)?;
            for (x, o) in x.iter_mut().zip(&o) {
                *x += o;
            }
        }
        let norm = (&self.output_norm[..], p.eps);
        logits(file, pool, &x, outputs, norm, &self.output, &mut scratch)
    }
}
