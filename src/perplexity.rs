//! Perplexity as llama.cpp's `llama-perplexity` computes it, so the numbers compare: the
//! tokens are cut into chunks of `n_ctx`; each chunk is decoded from an empty cache as one
//! causal sequence (its first token replaced by BOS when the model adds one), and only the
//! second half is scored: for positions j = n_ctx/2 .. n_ctx-2, -log softmax(logits_j) of
//! token j+1, in double precision. PPL = exp(mean of those).

use crate::{Batch, Context, Error, Result};

/// The result over all complete chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// Running perplexity after each chunk.
    pub per_chunk: Vec<f64>,
    pub ppl: f64,
    pub n_scored: usize,
}

/// `-log softmax(logits)[target]`, in f64.
fn nll(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    -(logits[target] as f64 - max - sum.ln())
}

/// Perplexity of `tokens` with chunks of `n_ctx` tokens, decoded in batches of at most the
/// context's n_batch. `bos`: the token that replaces each chunk's first, when the model adds
/// BOS. Uses sequence 0 of `ctx` and leaves the cache empty. `on_chunk` gets the running value
/// after each chunk.
pub fn perplexity(
    ctx: &mut Context,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    if n_ctx < 4 {
        return Err(Error::InvalidArg(format!(
            "n_ctx {n_ctx} is too small to score"
        )));
    }
    let n_chunks = tokens.len() / n_ctx;
    if n_chunks == 0 {
        return Err(Error::InvalidArg(format!(
            "{} tokens make no chunk of {n_ctx}",
            tokens.len()
        )));
    }
    let first_scored = n_ctx / 2;
    let (mut total, mut n_scored) = (0f64, 0usize);
    let mut per_chunk = Vec::with_capacity(n_chunks);
    let n_batch = ctx.n_batch();
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        ctx.kv_clear();
        for start in (0..n_ctx).step_by(n_batch) {
            let end = (start + n_batch).min(n_ctx);
            let mut batch = Batch::new();
            for (j, &t) in chunk.iter().enumerate().take(end).skip(start) {
                let t = i32::try_from(t).map_err(|_| Error::InvalidArg(format!("token {t}")))?;
                let scored = j >= first_scored && j + 1 < n_ctx;
                batch.add(t, j as i32, &[0], scored)?;
            }
            ctx.decode(&batch)?;
            for (row, j) in (start.max(first_scored)..end.min(n_ctx - 1)).enumerate() {
                let row = i32::try_from(row).map_err(|_| Error::Overflow("a row".into()))?;
                total += nll(ctx.logits(row)?, chunk[j + 1] as usize);
                n_scored += 1;
            }
        }
        let running = (total / n_scored as f64).exp();
        per_chunk.push(running);
        on_chunk(c, running);
    }
    ctx.kv_clear();
    Ok(Perplexity {
        ppl: (total / n_scored as f64).exp(),
        per_chunk,
        n_scored,
    })
}

#[cfg(test)]
mod tests {
    use super::nll;

    #[test]
    fn nll_is_minus_log_softmax() {
        let l = [0.0f32, (2.0f32).ln(), f32::NEG_INFINITY];
        assert!((nll(&l, 1) - (1.5f64).ln()).abs() < 1e-6);
        assert!((nll(&l, 0) - 3f64.ln()).abs() < 1e-6);
    }
}
