//! Quantized matrix multiply: weights `W` [n_out x n_in] (any weight format, rows as stored in
//! GGUF) times activations `X` [n_tokens x n_in] (f32) gives `Y` [n_tokens x n_out] (f32).
//!
//! Activations are quantized once per call to the format the weights pair with. The work is
//! cut into tiles of weight rows x tokens: a thread keeps one weight row in L1 while it runs
//! through a tile of tokens, so a 512-token prompt reads each weight block from cache rather
//! than streaming the matrix from memory 512 times. Tiles go to the pool's threads
//! dynamically.

use std::ops::Range;

use super::ThreadPool;
use super::disjoint::Disjoint;
use crate::gguf::GgmlType;
use crate::quant::{self, Dot, MatOp, cpu};
use crate::{Error, Result};

/// A weight matrix: `n_out` rows of `n_in` values of type `ty`, row after row.
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    ty: GgmlType,
    data: &'a [u8],
    n_out: usize,
    n_in: usize,
    row_bytes: usize,
    /// Which of llama.cpp's operations this product stands for (kernels differ).
    op: MatOp,
}

impl<'a> Weights<'a> {
    /// Checks that `data` holds exactly `n_out` rows of `n_in` values of `ty`.
    pub fn new(ty: GgmlType, data: &'a [u8], n_out: usize, n_in: usize) -> Result<Weights<'a>> {
        let row_bytes = quant::row_bytes(ty, n_in)?;
        let need = row_bytes
            .checked_mul(n_out)
            .ok_or_else(|| Error::Overflow(format!("a {n_out} x {n_in} {ty} matrix")))?;
        if data.len() != need {
            return Err(Error::InvalidArg(format!(
                "a {n_out} x {n_in} {ty} matrix takes {need} bytes, not {}",
                data.len()
            )));
        }
        Ok(Weights {
            ty,
            data,
            n_out,
            n_in,
            row_bytes,
            op: MatOp::MulMat,
        })
    }

    /// The same matrix as one expert of a mixture (llama.cpp's `MUL_MAT_ID`).
    pub fn expert(self) -> Weights<'a> {
        Weights {
            op: MatOp::Expert,
            ..self
        }
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    pub fn n_out(&self) -> usize {
        self.n_out
    }

    pub fn n_in(&self) -> usize {
        self.n_in
    }

    fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// How matrix products round. The integer sums are the same either way; the float order of
/// their scaling and accumulation is not, and llama.cpp's CPU backend picks that order by the
/// shape of the product (docs/INFERENCE-NOTES.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Numerics {
    /// Every activation row goes through the kernel llama.cpp uses for one row (its
    /// `vec_dot` or repacked GEMV order), whatever the batch: a token's logits do not depend
    /// on what else is in its batch or how a prompt is cut into decodes.
    #[default]
    BatchInvariant,
    /// The kernels llama.cpp's CPU backend picks for each product's shape on x86-64 (repacked
    /// GEMM for rows in groups of four, the tiled K-quant kernel for 8 rows or more): logits
    /// equal llama.cpp's bit for bit, and depend on the batch as llama.cpp's do.
    LlamaCpp,
}

/// Buffers a matmul reuses between calls (quantized activations), so steady-state decoding
/// allocates nothing, and the rounding mode its products follow.
#[derive(Default)]
pub struct MatmulScratch {
    pub numerics: Numerics,
    act: Vec<u8>,
    /// Activations rounded to f16/bf16 for half-precision weights.
    rounded: Vec<f32>,
    /// Quantized activations packed for the 512-bit prompt kernels (`quant::dot::Wide`).
    panels: Vec<u8>,
}

thread_local! {
    /// Four weight rows decoded for the 512-bit prompt kernels (`quant::dot::Wide::rows`),
    /// one buffer per thread, reused.
    static DECODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Tile sizes: enough row tiles for every thread to get several, rows capped so a tile's
/// weights stay in L2, tokens capped so a tile's activations do.
fn tiles(n_out: usize, n_tokens: usize, n_threads: usize) -> (usize, usize) {
    let rows = (n_out / (4 * n_threads)).clamp(1, 16);
    let tokens = n_tokens.clamp(1, 64);
    (rows, tokens)
}

/// `y = x * w^T`: `x` is `n_tokens` rows of `w.n_in()` values, `y` receives `n_tokens` rows of
/// `w.n_out()` values. Sizes are checked; the SIMD level is `cpu::level()`.
pub fn matmul(
    pool: &ThreadPool,
    w: &Weights<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let (n_in, n_out) = (w.n_in, w.n_out);
    let size = |n: usize, what: &str| {
        n_tokens
            .checked_mul(n)
            .ok_or_else(|| Error::Overflow(format!("{n_tokens} tokens x {n} {what}")))
    };
    if x.len() != size(n_in, "inputs")? || y.len() != size(n_out, "outputs")? {
        return Err(Error::InvalidArg(format!(
            "matmul of {n_tokens} tokens through {n_out} x {n_in}: x has {} values, y {}",
            x.len(),
            y.len()
        )));
    }
    // Batch-invariant: the same kernels for every row, whatever the batch.
    let kernel = match scratch.numerics {
        Numerics::LlamaCpp => quant::matmul_kernel(w.ty, n_out, n_tokens, w.op, cpu::level()),
        Numerics::BatchInvariant => quant::invariant_kernel(w.ty, n_out, w.op, cpu::level()),
    }
    .ok_or_else(|| Error::Unsupported(format!("{} weights have no dot product", w.ty)))?;
    let (tile_rows, tile_tokens) = tiles(n_out, n_tokens, pool.n_threads());
    let row_tiles = n_out.div_ceil(tile_rows);
    let token_tiles = n_tokens.div_ceil(tile_tokens);
    let out = Disjoint::new(y);

    // Runs `tile(rows, tokens, out)` over every tile; tiles cover each (t, r) exactly once and
    // `tile` writes only its own elements.
    let run_tiles = |tile: &(dyn Fn(Range<usize>, Range<usize>) + Sync)| {
        pool.run(row_tiles * token_tiles, &|task| {
            let (tt, rt) = (task / row_tiles, task % row_tiles);
            let rows = rt * tile_rows..((rt + 1) * tile_rows).min(n_out);
            let tokens = tt * tile_tokens..((tt + 1) * tile_tokens).min(n_tokens);
            tile(rows, tokens);
        });
    };
    // SAFETY (for every `out.set` below): element (t, r) belongs to the tile that holds row r
    // and token t, and only that tile's task writes it.
    match kernel.dot {
        Dot::Float(f) => {
            // Half-precision weights meet activations rounded to the same precision, as in
            // llama.cpp (whose f16/bf16 products convert the activations first).
            let round: Option<fn(f32) -> f32> = match w.ty {
                GgmlType::F16 => Some(|v| half::f16::from_f32(v).to_f32()),
                GgmlType::Bf16 => Some(|v| quant::bf16_to_f32(quant::f32_to_bf16(v))),
                _ => None,
            };
            let x: &[f32] = match round {
                Some(r) => {
                    scratch.rounded.clear();
                    scratch.rounded.extend(x.iter().map(|&v| r(v)));
                    &scratch.rounded
                }
                None => x,
            };
            run_tiles(&|rows, tokens| {
                for r in rows {
                    for t in tokens.clone() {
                        let v = f(w.row(r), &x[t * n_in..(t + 1) * n_in]);
                        // SAFETY: see above: (t, r) is this tile's.
                        unsafe { out.set(t * n_out + r, v) };
                    }
                }
            })
        }
        Dot::Quant { act, f, f4, tiles } => {
            let act_row = quant::row_bytes(act, n_in)?;
            let total = size(act_row, "activation bytes")?;
            scratch.act.resize(total, 0);
            let missing = || Error::Internal(format!("no quantizer for {act}"));
            let quantize = quant::activation_quantizer(act).ok_or_else(missing)?;
            // Where llama.cpp repacks the matrix, the rows it takes four at a time are
            // quantized and multiplied by kernels of their own (`MatmulKernel::fours`).
            let (in_fours, grouped) = match kernel.fours {
                Some(_) => (
                    quant::activation_quantizer_in_fours(act).ok_or_else(missing)?,
                    n_tokens - n_tokens % 4,
                ),
                None => (quantize, 0),
            };
            {
                let acts = Disjoint::new(&mut scratch.act);
                pool.run(n_tokens, &|t| {
                    // SAFETY: token t's activation row is written by this task only.
                    let dst = unsafe { acts.slice(t * act_row, act_row) };
                    let q = if t < grouped { in_fours } else { quantize };
                    q(&x[t * n_in..(t + 1) * n_in], dst);
                });
            }
            let acts = &scratch.act;
            let a = |t: usize| &acts[t * act_row..(t + 1) * act_row];
            let (g, g4) = match kernel.fours {
                Some(Dot::Quant { f, f4, .. }) => (f, f4),
                _ => (f, f4),
            };
            let kernels = |t: usize| if t < grouped { (g, g4) } else { (f, f4) };
            // One weight row at a time, four tokens per call where the kernel can (each
            // weight block is decoded once for the four) and the four take the same kernel.
            let by_row = |rows: Range<usize>, tokens: Range<usize>| {
                for r in rows {
                    let wr = w.row(r);
                    let mut t = tokens.start;
                    while t < tokens.end {
                        let (f, f4) = kernels(t);
                        match f4 {
                            Some(f4)
                                if t + 4 <= tokens.end && (t + 4 <= grouped || t >= grouped) =>
                            {
                                let v = f4(wr, &[a(t), a(t + 1), a(t + 2), a(t + 3)]);
                                for (k, v) in v.into_iter().enumerate() {
                                    // SAFETY: see above: (t + k, r) is this tile's.
                                    unsafe { out.set((t + k) * n_out + r, v) };
                                }
                                t += 4;
                            }
                            _ => {
                                // SAFETY: see above: (t, r) is this tile's.
                                unsafe { out.set(t * n_out + r, f(wr, a(t))) };
                                t += 1;
                            }
                        }
                    }
                }
            };
            // Several weight rows per call where the format has such kernels (the same values
            // as one row at a time): for prompts four rows by panels of 8 or 16 tokens (512-bit
            // kernels), then two rows by four tokens; four rows by one token for decoding; the
            // rows left over go one at a time.
            let tiles = tiles.filter(|_| kernel.fours.is_none());
            // Prompts on 512-bit kernels: the activations packed once, in panels.
            let wide = tiles
                .and_then(|tl| tl.wide)
                .filter(|wd| n_tokens >= wd.tokens);
            let panel_of = |bytes: usize| {
                (n_in / 32)
                    .checked_mul(bytes)
                    .ok_or_else(|| Error::Overflow(format!("a panel of {n_in} values")))
            };
            let (mut panel_bytes, mut rows_bytes, mut width) = (0, 0, 1);
            if let Some(wd) = wide {
                (panel_bytes, rows_bytes, width) = (
                    panel_of(wd.panel_block_bytes)?,
                    panel_of(wd.rows_block_bytes)?,
                    wd.tokens,
                );
                let n_panels = n_tokens / width;
                let total = n_panels
                    .checked_mul(panel_bytes)
                    .ok_or_else(|| Error::Overflow(format!("{n_panels} panels")))?;
                scratch.panels.resize(total, 0);
                let panels = Disjoint::new(&mut scratch.panels);
                pool.run(n_panels, &|g| {
                    // SAFETY: panel g is written by this task only.
                    let dst = unsafe { panels.slice(g * panel_bytes, panel_bytes) };
                    let t = width * g;
                    let rows: [&[u8]; quant::dot::MAX_PANEL_TOKENS] =
                        std::array::from_fn(|k| if k < width { a(t + k) } else { &[] });
                    (wd.pack)(&rows[..width], dst);
                });
            }
            let panels = &scratch.panels;
            match tiles {
                Some(tl) => run_tiles(&|rows, tokens| {
                    let mut tokens = tokens;
                    // Whole panels (token tiles start at multiples of 64, or at 0), four rows
                    // at a time; the rows left over one at a time.
                    if let Some(wd) = wide {
                        let end = tokens.start + tokens.len() / width * width;
                        let mut r = rows.start;
                        DECODED.with_borrow_mut(|decoded| {
                            decoded.resize(rows_bytes, 0);
                            while r + 4 <= rows.end {
                                let wr = [w.row(r), w.row(r + 1), w.row(r + 2), w.row(r + 3)];
                                (wd.rows)(&wr, decoded);
                                for t in (tokens.start..end).step_by(width) {
                                    let g = t / width;
                                    let panel = &panels[g * panel_bytes..(g + 1) * panel_bytes];
                                    let v = (wd.kernel)(decoded, panel);
                                    for (i, v) in v.iter().enumerate() {
                                        for (k, &v) in v[..width].iter().enumerate() {
                                            // SAFETY: see above: (t + k, r + i) is this tile's.
                                            unsafe { out.set((t + k) * n_out + r + i, v) };
                                        }
                                    }
                                }
                                r += 4;
                            }
                        });
                        by_row(r..rows.end, tokens.start..end);
                        tokens = end..tokens.end;
                    }
                    let mut r = rows.start;
                    if tokens.len() >= 4 {
                        while r + 2 <= rows.end {
                            let wr = [w.row(r), w.row(r + 1)];
                            let mut t = tokens.start;
                            while t + 4 <= tokens.end {
                                let v = (tl.r2x4)(&wr, &[a(t), a(t + 1), a(t + 2), a(t + 3)]);
                                for (i, v) in v.iter().enumerate() {
                                    for (k, &v) in v.iter().enumerate() {
                                        // SAFETY: see above: (t + k, r + i) is this tile's.
                                        unsafe { out.set((t + k) * n_out + r + i, v) };
                                    }
                                }
                                t += 4;
                            }
                            by_row(r..r + 2, t..tokens.end);
                            r += 2;
                        }
                    } else {
                        if let Some(rows16) = tl.rows16 {
                            while r + 16 <= rows.end {
                                let wr: [&[u8]; 16] = std::array::from_fn(|i| w.row(r + i));
                                for t in tokens.clone() {
                                    let v = rows16(&wr, a(t));
                                    for (i, v) in v.into_iter().enumerate() {
                                        // SAFETY: see above: (t, r + i) is this tile's.
                                        unsafe { out.set(t * n_out + r + i, v) };
                                    }
                                }
                                r += 16;
                            }
                        }
                        while r + 4 <= rows.end {
                            let wr = [w.row(r), w.row(r + 1), w.row(r + 2), w.row(r + 3)];
                            for t in tokens.clone() {
                                let v = (tl.rows4)(&wr, a(t));
                                for (i, v) in v.into_iter().enumerate() {
                                    // SAFETY: see above: (t, r + i) is this tile's.
                                    unsafe { out.set(t * n_out + r + i, v) };
                                }
                            }
                            r += 4;
                        }
                    }
                    by_row(r..rows.end, tokens);
                }),
                None => run_tiles(&by_row),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randoms(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn matmul_equals_row_by_row_dots() {
        let pool = ThreadPool::new(3).unwrap();
        let mut scratch = MatmulScratch::default();
        for ty in [
            GgmlType::F32,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
            GgmlType::Iq4Nl,
        ] {
            // Row and token counts that leave rows and tokens over after the multi-row
            // kernels' groups (four rows for one token, two rows by four tokens, four rows by
            // panels of eight or sixteen tokens).
            for (n_out, n_in, n_tokens) in [
                (70, 256, 21),
                (200, 64, 77),
                (1, 32, 1),
                (37, 64, 1),
                (70, 256, 5),
                (16, 512, 130),
                (67, 96, 3),
                (35, 160, 7),
            ] {
                let wf = randoms(n_out * n_in, 7);
                let mut wq = vec![0u8; quant::row_bytes(ty, n_in).unwrap() * n_out];
                if ty == GgmlType::Iq4Nl {
                    // No quantizer: random nibbles under a small f16 scale per 18-byte block.
                    for (i, b) in wq.iter_mut().enumerate() {
                        *b = match i % 18 {
                            0 | 1 => half::f16::from_f32(0.01).to_le_bytes()[i % 18],
                            _ => (wf[i % wf.len()].to_bits() >> 7) as u8,
                        };
                    }
                } else {
                    quant::quantize_row(ty, &wf, &mut wq).unwrap();
                }
                let w = Weights::new(ty, &wq, n_out, n_in).unwrap();
                let x = randoms(n_tokens * n_in, 9);
                let mut y = vec![f32::NAN; n_tokens * n_out];
                matmul(&pool, &w, &x, n_tokens, &mut y, &mut scratch).unwrap();
                // The batch-invariant one-row kernel on activations quantized as the matmul does.
                let dot = quant::invariant_kernel(ty, n_out, MatOp::MulMat, cpu::level())
                    .unwrap()
                    .dot;
                for t in 0..n_tokens {
                    let xt = &x[t * n_in..(t + 1) * n_in];
                    for r in 0..n_out {
                        let expect = match dot {
                            Dot::Float(f) => f(w.row(r), xt),
                            Dot::Quant { act, f, .. } => {
                                let mut q = vec![0u8; quant::row_bytes(act, n_in).unwrap()];
                                quant::activation_quantizer(act).unwrap()(xt, &mut q);
                                f(w.row(r), &q)
                            }
                        };
                        assert_eq!(y[t * n_out + r], expect, "{ty} {n_out}x{n_in} t{t} r{r}");
                    }
                }
            }
        }
    }

    /// llama.cpp's numerics on a repacked Q4_K matrix: the rows in groups of four through the
    /// GEMM kernel on activations quantized four at a time, the rest through the GEMV, and
    /// every other row of the batch-invariant mode through the GEMV.
    #[test]
    fn llama_cpp_numerics_split_rows_between_gemm_and_gemv() {
        let pool = ThreadPool::new(2).unwrap();
        let (n_out, n_in, n_tokens) = (16, 512, 6);
        let ty = GgmlType::Q4K;
        let mut wq = vec![0u8; quant::row_bytes(ty, n_in).unwrap() * n_out];
        quant::quantize_row(ty, &randoms(n_out * n_in, 3), &mut wq).unwrap();
        let w = Weights::new(ty, &wq, n_out, n_in).unwrap();
        let x = randoms(n_tokens * n_in, 5);
        let k = quant::matmul_kernel(ty, n_out, n_tokens, MatOp::MulMat, cpu::level()).unwrap();
        let one = |dot: Dot, q: quant::QuantizeFn, xt: &[f32], r: usize| {
            let Dot::Quant { act, f, .. } = dot else {
                panic!("Q4_K is quantized")
            };
            let mut a = vec![0u8; quant::row_bytes(act, n_in).unwrap()];
            q(xt, &mut a);
            f(w.row(r), &a)
        };
        let q8k = quant::activation_quantizer(GgmlType::Q8K).unwrap();
        if let Some(g) = k.fours {
            // The two orders must differ somewhere here, or the checks below prove nothing.
            let differs =
                (0..n_out).any(|r| one(g, q8k, &x[..n_in], r) != one(k.dot, q8k, &x[..n_in], r));
            assert!(differs, "GEMM and GEMV agree on every row");
        }
        for numerics in [Numerics::LlamaCpp, Numerics::BatchInvariant] {
            let mut scratch = MatmulScratch {
                numerics,
                ..MatmulScratch::default()
            };
            let mut y = vec![f32::NAN; n_tokens * n_out];
            matmul(&pool, &w, &x, n_tokens, &mut y, &mut scratch).unwrap();
            for t in 0..n_tokens {
                let xt = &x[t * n_in..(t + 1) * n_in];
                let grouped = numerics == Numerics::LlamaCpp && t < 4;
                let (dot, q) = match (grouped, k.fours) {
                    (true, Some(g)) => (g, quant::activation_quantizer_in_fours(GgmlType::Q8K)),
                    _ => (k.dot, quant::activation_quantizer(GgmlType::Q8K)),
                };
                for r in 0..n_out {
                    let want = one(dot, q.unwrap(), xt, r);
                    assert_eq!(y[t * n_out + r], want, "{numerics:?} t{t} r{r}");
                }
            }
        }
    }

    #[test]
    fn sizes_are_checked() {
        let pool = ThreadPool::new(1).unwrap();
        let data = vec![0u8; 18 * 4];
        assert!(Weights::new(GgmlType::Q4_0, &data, 4, 64).is_err());
        let w = Weights::new(GgmlType::Q4_0, &data, 4, 32).unwrap();
        let mut s = MatmulScratch::default();
        let mut y = vec![0f32; 8];
        assert!(matmul(&pool, &w, &[0.0; 63], 2, &mut y, &mut s).is_err());
        assert!(matmul(&pool, &w, &[0.0; 64], 2, &mut y[..7], &mut s).is_err());
        assert!(matmul(&pool, &w, &[0.0; 64], 2, &mut y, &mut s).is_ok());
    }
}
