//! The gemma3 architecture's forward pass on the CPU (Gemma 3 270M): embeddings scaled by
//! sqrt(n_embd) -> per layer [RMS norm -> Q, K, V -> per-head RMS norms of Q and K -> NeoX
//! RoPE (base 1e6 on global layers, 1e4 on sliding-window ones) -> Q scaled by
//! 1/sqrt(head_dim) -> attention (every sixth layer global, the others a sliding window) ->
//! output projection -> post-attention norm -> residual -> RMS norm -> GeGLU FFN ->
//! post-FFN norm -> residual] -> final norm -> tied logits. Like `llama`, one sequence; a
//! first slice of issue 5 (docs/INFERENCE-NOTES.md).

use super::forward::{AttnShape, attend_causal, check_batch, embed, logits, weights};
use super::llama::{SeqKv, f32_vector, get_f, get_u, tensor};
use crate::backend::cpu::{MatmulScratch, ThreadPool, matmul, ops};
use crate::gguf::{GgufFile, TensorInfo};
use crate::{Error, Result};

struct Layer {
    attn_norm: Vec<f32>,
    wq: TensorInfo,
    wk: TensorInfo,
    wv: TensorInfo,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: TensorInfo,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: TensorInfo,
    up: TensorInfo,
    down: TensorInfo,
    post_ffn_norm: Vec<f32>,
}

pub struct Gemma3 {
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub eps: f32,
    pub rope_base: f32,
    pub rope_base_swa: f32,
    pub n_swa: usize,
    /// Layers with index % pattern == pattern - 1 are global (llama.cpp's default pattern 6).
    pub swa_pattern: usize,
    token_embd: TensorInfo,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
}

impl Gemma3 {
    pub fn from_gguf(file: &GgufFile, hp: &super::Hparams) -> Result<Gemma3> {
        let a = &hp.arch;
        let n_embd = hp.n_embd as usize;
        let (n_head, n_head_kv) = (hp.n_head as usize, hp.n_head_kv as usize);
        let head_dim = get_u(file, &format!("{a}.attention.key_length")).unwrap_or(n_embd / n_head);
        let n_ff =
            get_u(file, &format!("{a}.feed_forward_length")).ok_or_else(|| Error::MissingKey {
                key: format!("{a}.feed_forward_length"),
            })?;
        let (e, v) = (n_embd as u64, u64::from(hp.n_vocab));
        let (q_dim, kv_dim, ff) = (
            (n_head * head_dim) as u64,
            (n_head_kv * head_dim) as u64,
            n_ff as u64,
        );
        let layers = (0..hp.n_layer as usize)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: f32_vector(file, &n("attn_norm"), n_embd)?,
                    wq: tensor(file, &n("attn_q"), &[e, q_dim])?.clone(),
                    wk: tensor(file, &n("attn_k"), &[e, kv_dim])?.clone(),
                    wv: tensor(file, &n("attn_v"), &[e, kv_dim])?.clone(),
                    q_norm: f32_vector(file, &n("attn_q_norm"), head_dim)?,
                    k_norm: f32_vector(file, &n("attn_k_norm"), head_dim)?,
                    wo: tensor(file, &n("attn_output"), &[q_dim, e])?.clone(),
                    post_attn_norm: f32_vector(file, &n("post_attention_norm"), n_embd)?,
                    ffn_norm: f32_vector(file, &n("ffn_norm"), n_embd)?,
                    gate: tensor(file, &n("ffn_gate"), &[e, ff])?.clone(),
                    up: tensor(file, &n("ffn_up"), &[e, ff])?.clone(),
                    down: tensor(file, &n("ffn_down"), &[ff, e])?.clone(),
                    post_ffn_norm: f32_vector(file, &n("post_ffw_norm"), n_embd)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gemma3 {
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab: hp.n_vocab as usize,
            eps: get_f(file, &format!("{a}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            rope_base: get_f(file, &format!("{a}.rope.freq_base")).unwrap_or(1e6),
            rope_base_swa: get_f(file, &format!("{a}.rope.freq_base_swa")).unwrap_or(1e4),
            n_swa: get_u(file, &format!("{a}.attention.sliding_window")).unwrap_or(usize::MAX),
            swa_pattern: 6,
            token_embd: tensor(file, "token_embd.weight", &[e, v])?.clone(),
            output_norm: f32_vector(file, "output_norm.weight", n_embd)?,
            layers,
        })
    }

    /// As `Llama::forward`: runs `tokens` at positions `kv.len()..`, returns the logits of the
    /// batch rows in `outputs`; an invalid batch or a failure leaves `kv` as it was.
    pub fn forward(
        &self,
        file: &GgufFile,
        pool: &ThreadPool,
        tokens: &[u32],
        kv: &mut SeqKv,
        outputs: &[usize],
    ) -> Result<Vec<f32>> {
        check_batch(tokens, self.n_vocab, outputs)?;
        kv.ensure_layers(self.layers.len());
        let result = self.run(file, pool, tokens, kv, outputs);
        match &result {
            Ok(_) => kv.advance(tokens.len()),
            Err(_) => kv.rollback(self.n_head_kv * self.head_dim),
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
        let n = tokens.len();
        let (d, hd) = (self.n_embd, self.head_dim);
        let mut scratch = MatmulScratch::default();
        let mut mm = |t: &TensorInfo, x: &[f32], out: &mut Vec<f32>| -> Result<()> {
            let wt = weights(file, t)?;
            out.resize(n * wt.n_out(), 0.0);
            matmul(pool, &wt, x, n, out, &mut scratch)
        };
        let mut x = embed(file, &self.token_embd, tokens, d, (d as f32).sqrt())?;
        let start = kv.len();
        let positions: Vec<i32> = (start..start + n).map(|p| p as i32).collect();
        let (mut h, mut q, mut k, mut v, mut o) = (
            vec![0f32; n * d],
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut normed_heads = Vec::new();
        let mut attn = vec![0f32; n * self.n_head * hd];
        let (mut g, mut u, mut a) = (Vec::new(), Vec::new(), vec![0f32; n * self.n_ff]);
        let mut tmp = vec![0f32; n * d];
        // Q is scaled before its f16 rounding, so attention itself scales by 1.
        let q_scale = 1.0 / (hd as f32).sqrt();
        let r16 = |x: f32| half::f16::from_f32(x).to_f32();
        let mut acc = Vec::new();
        for (li, l) in self.layers.iter().enumerate() {
            let global = li % self.swa_pattern == self.swa_pattern - 1;
            let (base, window) = if global {
                (self.rope_base, None)
            } else {
                (self.rope_base_swa, Some(self.n_swa))
            };
            let shape = AttnShape {
                n_head: self.n_head,
                n_head_kv: self.n_head_kv,
                head_dim: hd,
                scale: 1.0,
                window,
            };
            ops::rms_norm(&x, &l.attn_norm, self.eps, &mut h);
            mm(&l.wq, &h, &mut q)?;
            mm(&l.wk, &h, &mut k)?;
            mm(&l.wv, &h, &mut v)?;
            normed_heads.resize(q.len(), 0.0);
            ops::rms_norm(&q, &l.q_norm, self.eps, &mut normed_heads);
            std::mem::swap(&mut q, &mut normed_heads);
            normed_heads.resize(k.len(), 0.0);
            ops::rms_norm(&k, &l.k_norm, self.eps, &mut normed_heads);
            std::mem::swap(&mut k, &mut normed_heads);
            ops::rope_neox(&mut q, &positions, hd, hd, base);
            ops::rope_neox(&mut k, &positions, hd, hd, base);
            q.iter_mut().for_each(|x| *x = r16(*x * q_scale));
            let kvs = kv.append(li, k.iter().map(|&x| r16(x)), v.iter().map(|&x| r16(x)));
            attend_causal(&shape, &q, kvs, start, &mut acc, &mut attn);
            mm(&l.wo, &attn, &mut o)?;
            ops::rms_norm(&o, &l.post_attn_norm, self.eps, &mut tmp);
            for (x, t) in x.iter_mut().zip(&tmp) {
                *x += t;
            }
            ops::rms_norm(&x, &l.ffn_norm, self.eps, &mut h);
            mm(&l.gate, &h, &mut g)?;
            mm(&l.up, &h, &mut u)?;
            ops::geglu(&g, &u, &mut a);
            mm(&l.down, &a, &mut o)?;
            ops::rms_norm(&o, &l.post_ffn_norm, self.eps, &mut tmp);
            for (x, t) in x.iter_mut().zip(&tmp) {
                *x += t;
            }
        }
        // The output projection is tied to the embedding matrix.
        let norm = (&self.output_norm[..], self.eps);
        logits(
            file,
            pool,
            &x,
            outputs,
            norm,
            &self.token_embd,
            &mut scratch,
        )
    }
}
