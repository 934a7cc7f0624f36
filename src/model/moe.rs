//! Mixture-of-experts feed-forward (Mixtral-style `llama`, `qwen3moe`): a router picks, per
//! token, the `n_used` experts with the highest softmax probability, their weights are
//! renormalized to sum to 1, and the token's output is the weighted sum of those experts'
//! SwiGLU networks. Each expert runs once per batch over the rows routed to it, as a matrix
//! product on its slice of the stacked expert tensors (weights stay in the map).

use super::tensors::{tensor, weights};
use crate::backend::cpu::{MatmulScratch, ThreadPool, Weights, matmul, ops};
use crate::gguf::{GgufFile, TensorInfo};
use crate::{Error, Result};

/// One layer's experts.
pub(crate) struct Moe {
    pub(crate) router: TensorInfo,
    /// `[n_embd, n_ff_exp, n_expert]` (gate, up) and `[n_ff_exp, n_embd, n_expert]` (down).
    pub(crate) gate: TensorInfo,
    pub(crate) up: TensorInfo,
    pub(crate) down: TensorInfo,
    pub(crate) n_expert: usize,
    pub(crate) n_used: usize,
    pub(crate) n_ff: usize,
}

/// Buffers reused between layers.
#[derive(Default)]
pub(super) struct MoeScratch {
    probs: Vec<f32>,
    x: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    a: Vec<f32>,
    y: Vec<f32>,
    pub(super) mm: MatmulScratch,
}

/// Expert `i`'s matrix within a stacked expert tensor.
fn expert<'f>(file: &'f GgufFile, t: &TensorInfo, i: usize) -> Result<Weights<'f>> {
    let (n_in, n_out) = (t.dims[0] as usize, t.dims[1] as usize);
    let per = crate::quant::row_bytes(t.ty, n_in)?
        .checked_mul(n_out)
        .ok_or_else(|| Error::Overflow(format!("{}: an expert's size", t.name)))?;
    // i < n_expert and the tensor holds n_expert experts (its size was checked at load), so
    // these products fit; checked anyway, as every size from a file is.
    let range = i
        .checked_mul(per)
        .and_then(|start| Some(start..start.checked_add(per)?));
    let data = file
        .tensor_data(t)
        .zip(range)
        .and_then(|(d, r)| d.get(r))
        .ok_or_else(|| Error::Internal(format!("{}: no expert {i}", t.name)))?;
    Ok(Weights::new(t.ty, data, n_out, n_in)?.expert())
}

impl Moe {
    /// The experts of layer `i`, or `None` when the layer has a dense feed-forward network.
    pub(super) fn bind(
        file: &GgufFile,
        i: usize,
        n_embd: usize,
        n_ff: usize,
        (n_expert, n_used): (usize, usize),
    ) -> Result<Option<Moe>> {
        let name = |s: &str| format!("blk.{i}.{s}.weight");
        if file.tensor(&name("ffn_gate_inp")).is_none() {
            return Ok(None);
        }
        if n_expert == 0 {
            return Err(Error::MissingKey {
                key: "<arch>.expert_count (the file has expert tensors)".into(),
            });
        }
        let (e, f, x) = (n_embd as u64, n_ff as u64, n_expert as u64);
        Ok(Some(Moe {
            router: tensor(file, &name("ffn_gate_inp"), &[e, x])?,
            gate: tensor(file, &name("ffn_gate_exps"), &[e, f, x])?,
            up: tensor(file, &name("ffn_up_exps"), &[e, f, x])?,
            down: tensor(file, &name("ffn_down_exps"), &[f, e, x])?,
            n_expert,
            n_used,
            n_ff,
        }))
    }

    /// `out = MoE(h)` for `n` rows of `h` (each `n_embd` wide).
    pub(super) fn forward(
        &self,
        file: &GgufFile,
        pool: &ThreadPool,
        h: &[f32],
        n: usize,
        out: &mut Vec<f32>,
        s: &mut MoeScratch,
    ) -> Result<()> {
        let d = h.len() / n.max(1);
        let ne = self.n_expert;
        s.probs.resize(n * ne, 0.0);
        matmul(
            pool,
            &weights(file, &self.router)?,
            h,
            n,
            &mut s.probs,
            &mut s.mm,
        )?;
        // Per expert: (row, weight) of the tokens routed to it.
        let mut routed: Vec<Vec<(usize, f32)>> = vec![Vec::new(); ne];
        let mut order: Vec<usize> = Vec::with_capacity(ne);
        for (r, p) in s.probs.chunks_exact_mut(ne).enumerate() {
            ops::softmax(p);
            order.clear();
            order.extend(0..ne);
            // Highest probability first; ties to the lower expert id.
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let kept = &order[..self.n_used];
            let sum: f32 = kept.iter().map(|&x| p[x]).sum();
            for &x in kept {
                routed[x].push((r, if sum > 0.0 { p[x] / sum } else { 0.0 }));
            }
        }
        out.clear();
        out.resize(n * d, 0.0);
        for (x, rows) in routed.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let m = rows.len();
            s.x.clear();
            for &(r, _) in rows {
                s.x.extend_from_slice(&h[r * d..(r + 1) * d]);
            }
            s.g.resize(m * self.n_ff, 0.0);
            s.u.resize(m * self.n_ff, 0.0);
            s.a.resize(m * self.n_ff, 0.0);
            s.y.resize(m * d, 0.0);
            matmul(
                pool,
                &expert(file, &self.gate, x)?,
                &s.x,
                m,
                &mut s.g,
                &mut s.mm,
            )?;
            matmul(
                pool,
                &expert(file, &self.up, x)?,
                &s.x,
                m,
                &mut s.u,
                &mut s.mm,
            )?;
            ops::swiglu(&s.g, &s.u, &mut s.a);
            matmul(
                pool,
                &expert(file, &self.down, x)?,
                &s.a,
                m,
                &mut s.y,
                &mut s.mm,
            )?;
            for (i, &(r, w)) in rows.iter().enumerate() {
                for (o, y) in out[r * d..(r + 1) * d]
                    .iter_mut()
                    .zip(&s.y[i * d..(i + 1) * d])
                {
                    *o += w * y;
                }
            }
        }
        Ok(())
    }
}
