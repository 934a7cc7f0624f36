//! Pieces every architecture's forward pass shares: weights straight from the map, checked
//! embedding lookup, causal attention over one sequence's K/V, and the final norm + output
//! projection for the requested rows only.

use crate::backend::cpu::{MatmulScratch, ThreadPool, Weights, matmul, ops};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant;
use crate::{Error, Result};

/// A weight matrix viewed in the memory map (`dims[0]` inputs, `dims[1]` outputs).
pub(super) fn weights<'f>(file: &'f GgufFile, t: &TensorInfo) -> Result<Weights<'f>> {
    let data = file
        .tensor_data(t)
        .ok_or_else(|| Error::Internal(format!("{}: no data", t.name)))?;
    Weights::new(t.ty, data, t.dims[1] as usize, t.dims[0] as usize)
}

/// Rejects a batch before any work: no tokens, a token outside the vocabulary, or an output
/// row outside the batch. A rejected batch changes nothing.
pub(super) fn check_batch(tokens: &[u32], n_vocab: usize, outputs: &[usize]) -> Result<()> {
    if tokens.is_empty() {
        return Err(Error::InvalidArg("a batch needs at least one token".into()));
    }
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(Error::InvalidArg(format!(
            "token {t} is out of range (vocabulary of {n_vocab})"
        )));
    }
    if let Some(&r) = outputs.iter().find(|&&r| r >= tokens.len()) {
        return Err(Error::InvalidArg(format!(
            "output row {r} of a batch of {}",
            tokens.len()
        )));
    }
    Ok(())
}

/// The embedding rows of `tokens` (checked by `check_batch`), each `d` wide, times `scale`.
pub(super) fn embed(
    file: &GgufFile,
    token_embd: &TensorInfo,
    tokens: &[u32],
    d: usize,
    scale: f32,
) -> Result<Vec<f32>> {
    let ty = weights(file, token_embd)?.ty();
    let row_bytes = quant::row_bytes(ty, d)?;
    let data = file
        .tensor_data(token_embd)
        .ok_or_else(|| Error::Internal("token_embd: no data".into()))?;
    let mut x = vec![0f32; tokens.len() * d];
    for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
        let src = data
            .get(t as usize * row_bytes..(t as usize + 1) * row_bytes)
            .ok_or_else(|| Error::Internal(format!("token {t}: no embedding row")))?;
        quant::dequantize_row(ty, src, row)?;
        if scale != 1.0 {
            row.iter_mut().for_each(|v| *v *= scale);
        }
    }
    Ok(x)
}

/// Shapes of one layer's attention.
pub(super) struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Softmax scale applied to Q·K.
    pub scale: f32,
    /// Keys visible to a query at position p: `p + 1 - window ..= p` (None: all of `0..=p`).
    pub window: Option<usize>,
}

/// Causal attention of `q` (the batch's rows, positions `start..`) over the sequence's keys
/// and values `ks`/`vs` (all positions, f16-rounded), written to `out`. `acc` is scratch.
pub(super) fn attend_causal(
    s: &AttnShape,
    q: &[f32],
    (ks, vs): (&[f32], &[f32]),
    start: usize,
    acc: &mut Vec<half::f16>,
    out: &mut [f32],
) {
    let hd = s.head_dim;
    let (q_dim, kv_dim) = (s.n_head * hd, s.n_head_kv * hd);
    let group = s.n_head / s.n_head_kv;
    acc.resize(hd, half::f16::ZERO);
    for (i, (qi, oi)) in q
        .chunks_exact(q_dim)
        .zip(out.chunks_exact_mut(q_dim))
        .enumerate()
    {
        let pos = start + i;
        let first = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for (head, (qv, ov)) in qi.chunks_exact(hd).zip(oi.chunks_exact_mut(hd)).enumerate() {
            let kvh = head / group;
            let rows = (first..=pos).map(|j| {
                let at = j * kv_dim + kvh * hd;
                (&ks[at..at + hd], &vs[at..at + hd])
            });
            ops::attend_online_f16(qv, rows, s.scale, acc, ov);
        }
    }
}

/// Final RMS norm and output projection of the batch rows in `outputs` of `x` (rows as wide
/// as `norm`): `outputs.len()` rows of logits, each as long as `output` has outputs.
pub(super) fn logits(
    file: &GgufFile,
    pool: &ThreadPool,
    x: &[f32],
    outputs: &[usize],
    (norm, eps): (&[f32], f32),
    output: &TensorInfo,
    scratch: &mut MatmulScratch,
) -> Result<Vec<f32>> {
    let d = norm.len();
    let mut sel = Vec::with_capacity(outputs.len() * d);
    for &r in outputs {
        sel.extend_from_slice(&x[r * d..(r + 1) * d]);
    }
    let mut normed = vec![0f32; sel.len()];
    ops::rms_norm(&sel, norm, eps, &mut normed);
    let w = weights(file, output)?;
    let mut logits = vec![0f32; outputs.len() * w.n_out()];
    matmul(pool, &w, &normed, outputs.len(), &mut logits, scratch)?;
    Ok(logits)
}
