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
use crate::quant::dot::{Tiles, Wide};
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

/// The most products `matmul_group` runs as one job (a layer's Q, K and V).
pub const MAX_GROUP: usize = 3;

/// Buffers a matmul reuses between calls (quantized activations), so steady-state decoding
/// allocates nothing, and the rounding mode its products follow. One set per product of a
/// group.
#[derive(Default)]
pub struct MatmulScratch {
    pub numerics: Numerics,
    act: [Vec<u8>; MAX_GROUP],
    /// Activations rounded to f16/bf16 for half-precision weights.
    rounded: [Vec<f32>; MAX_GROUP],
    /// Quantized activations packed for the 512-bit prompt kernels (`quant::dot::Wide`).
    panels: [Vec<u8>; MAX_GROUP],
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
    matmul_group(pool, &mut [(*w, y)], x, n_tokens, scratch)
}

/// `y_i = x * w_i^T` for each `(w_i, y_i)` of `products` (at most `MAX_GROUP`), all of one
/// input: the products that take the input in one form (one activation format) share one
/// quantization of it, and all their tiles go to the pool as one job. For decoding that
/// is one wait for the threads instead of one per matrix, the same values as separate
/// `matmul` calls.
pub fn matmul_group(
    pool: &ThreadPool,
    products: &mut [(Weights<'_>, &mut [f32])],
    x: &[f32],
    n_tokens: usize,
    scratch: &mut MatmulScratch,
) -> Result<()> {
    if products.len() > MAX_GROUP {
        return Err(Error::InvalidArg(format!(
            "{} products in one group (at most {MAX_GROUP})",
            products.len()
        )));
    }
    let mut inputs: [Option<(Input, usize)>; MAX_GROUP] = [None; MAX_GROUP];
    let mut kernels: [Option<quant::MatmulKernel>; MAX_GROUP] = [None; MAX_GROUP];
    for (i, (w, y)) in products.iter().enumerate() {
        let kernel = check(w, x, n_tokens, y, scratch.numerics)?;
        let input = Input::of(w, &kernel, n_tokens);
        // A product whose input form an earlier one has prepared takes that one's buffers.
        let source = (0..i)
            .find(|&j| inputs[j].is_some_and(|(inp, _)| inp == input))
            .unwrap_or(i);
        if source == i {
            prepare(pool, input, x, w.n_in, n_tokens, scratch, i)?;
        }
        inputs[i] = Some((input, source));
        kernels[i] = Some(kernel);
    }
    let MatmulScratch {
        act,
        rounded,
        panels,
        ..
    } = scratch;
    // Panels for the 512-bit prompt kernels, per product (their layouts differ by format).
    for (i, (w, _)) in products.iter().enumerate() {
        if let (Some((input, src)), Some(k)) = (inputs[i], kernels[i])
            && let Some(wd) = wide_of(&k, input, n_tokens, scratch.numerics)
        {
            let n = n_panels(&wd, n_tokens, scratch.numerics);
            pack_panels(pool, &wd, &act[src], w.n_in, n_tokens, n, &mut panels[i])?;
        }
    }
    let mut plans: [Option<Plan<'_>>; MAX_GROUP] = std::array::from_fn(|_| None);
    // Task t is product i's where ends[i - 1] <= t < ends[i] (unused entries never match).
    let mut ends = [usize::MAX; MAX_GROUP];
    let mut total = 0usize;
    for (i, (w, y)) in products.iter_mut().enumerate() {
        let (Some((input, src)), Some(k)) = (inputs[i], kernels[i]) else {
            continue;
        };
        let plan = Plan::new(
            *w,
            y,
            &k,
            input,
            x,
            &rounded[src],
            &act[src],
            &panels[i],
            n_tokens,
            pool.n_threads(),
            scratch.numerics,
        )?;
        total += plan.n_tasks();
        ends[i] = total;
        plans[i] = Some(plan);
    }
    pool.run(total, &|task| {
        let i = ends.partition_point(|&e| e <= task);
        if let Some(plan) = &plans[i] {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            plan.task(task - start);
        }
    });
    Ok(())
}

/// Checks the sizes of one product and picks its kernels.
fn check(
    w: &Weights<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &[f32],
    numerics: Numerics,
) -> Result<quant::MatmulKernel> {
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
    match numerics {
        Numerics::LlamaCpp => quant::matmul_kernel(w.ty, n_out, n_tokens, w.op, cpu::level()),
        Numerics::BatchInvariant => quant::invariant_kernel(w.ty, n_out, w.op, cpu::level()),
    }
    .ok_or_else(|| Error::Unsupported(format!("{} weights have no dot product", w.ty)))
}

/// The form a product takes its input in: two products of one form share it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    /// f32 as given.
    Plain,
    /// Rounded to the precision of half weights (F16 or BF16), as llama.cpp's f16/bf16
    /// products convert their activations first.
    Rounded(GgmlType),
    /// Quantized to `act`; the first `grouped` rows by the quantizer of rows taken four at
    /// a time (`MatmulKernel::fours`).
    Quant { act: GgmlType, grouped: usize },
}

impl Input {
    fn of(w: &Weights<'_>, k: &quant::MatmulKernel, n_tokens: usize) -> Input {
        match k.dot {
            Dot::Float(_) => match w.ty {
                GgmlType::F16 | GgmlType::Bf16 => Input::Rounded(w.ty),
                _ => Input::Plain,
            },
            Dot::Quant { act, .. } => Input::Quant {
                act,
                grouped: if k.fours.is_some() {
                    n_tokens - n_tokens % 4
                } else {
                    0
                },
            },
        }
    }
}

/// Writes the input in form `input` into product `i`'s buffers.
fn prepare(
    pool: &ThreadPool,
    input: Input,
    x: &[f32],
    n_in: usize,
    n_tokens: usize,
    scratch: &mut MatmulScratch,
    i: usize,
) -> Result<()> {
    match input {
        Input::Plain => {}
        Input::Rounded(ty) => {
            let round: fn(f32) -> f32 = match ty {
                GgmlType::F16 => |v| half::f16::from_f32(v).to_f32(),
                _ => |v| quant::bf16_to_f32(quant::f32_to_bf16(v)),
            };
            let r = &mut scratch.rounded[i];
            r.clear();
            r.extend(x.iter().map(|&v| round(v)));
        }
        Input::Quant { act, grouped } => {
            let act_row = quant::row_bytes(act, n_in)?;
            let total = n_tokens
                .checked_mul(act_row)
                .ok_or_else(|| Error::Overflow(format!("{n_tokens} x {act_row} bytes")))?;
            scratch.act[i].resize(total, 0);
            let missing = || Error::Internal(format!("no quantizer for {act}"));
            let quantize = quant::activation_quantizer(act).ok_or_else(missing)?;
            let in_fours = if grouped > 0 {
                quant::activation_quantizer_in_fours(act).ok_or_else(missing)?
            } else {
                quantize
            };
            let acts = Disjoint::new(&mut scratch.act[i]);
            pool.run(n_tokens, &|t| {
                // SAFETY: token t's activation row is written by this task only.
                let dst = unsafe { acts.slice(t * act_row, act_row) };
                let q = if t < grouped { in_fours } else { quantize };
                q(&x[t * n_in..(t + 1) * n_in], dst);
            });
        }
    }
    Ok(())
}

/// Panels a product's tokens fill: the whole ones, plus, under batch-invariant numerics, one
/// zero-padded panel for a remainder of at least half a panel. Each token's lane is its own
/// there, so the padding changes no value, and one panel costs less than that many one-token
/// products (SmolLM2's 1536 x 576 Q4_1, 2 threads: 15 tokens 0.42 ms one by one, 16 in a
/// panel 0.20 ms). llama.cpp's order keeps its own shape rule.
fn n_panels(wd: &Wide, n_tokens: usize, numerics: Numerics) -> usize {
    let rest = n_tokens % wd.tokens;
    n_tokens / wd.tokens
        + usize::from(numerics == Numerics::BatchInvariant && 2 * rest >= wd.tokens)
}

/// The 512-bit prompt kernels a product takes, if any: formats with tiles, not repacked
/// (`fours`), with at least one panel of tokens.
fn wide_of(
    k: &quant::MatmulKernel,
    input: Input,
    n_tokens: usize,
    numerics: Numerics,
) -> Option<Wide> {
    match (k.dot, k.fours, input) {
        (
            Dot::Quant {
                tiles: Some(tl), ..
            },
            None,
            Input::Quant { .. },
        ) => tl.wide.filter(|wd| n_panels(wd, n_tokens, numerics) > 0),
        _ => None,
    }
}

/// Bytes of a panel (or of four decoded rows) of `n_in` values at `per_block` bytes a block.
fn panel_bytes(n_in: usize, per_block: usize) -> Result<usize> {
    (n_in / 32)
        .checked_mul(per_block)
        .ok_or_else(|| Error::Overflow(format!("a panel of {n_in} values")))
}

/// Packs `n_panels` panels of `wd.tokens` activation rows of `acts` into `panels`; rows past
/// the last token are zeros (a padded last panel).
fn pack_panels(
    pool: &ThreadPool,
    wd: &Wide,
    acts: &[u8],
    n_in: usize,
    n_tokens: usize,
    n_panels: usize,
    panels: &mut Vec<u8>,
) -> Result<()> {
    let bytes = panel_bytes(n_in, wd.panel_block_bytes)?;
    let act_row = acts.len() / n_tokens.max(1);
    let width = wd.tokens;
    let zero = vec![0u8; act_row];
    let total = n_panels
        .checked_mul(bytes)
        .ok_or_else(|| Error::Overflow(format!("{n_panels} panels")))?;
    panels.resize(total, 0);
    let dst = Disjoint::new(panels);
    pool.run(n_panels, &|g| {
        // SAFETY: panel g is written by this task only.
        let dst = unsafe { dst.slice(g * bytes, bytes) };
        let t = width * g;
        let rows: [&[u8]; quant::dot::MAX_PANEL_TOKENS] = std::array::from_fn(|k| {
            if k >= width {
                &[]
            } else if t + k < n_tokens {
                &acts[(t + k) * act_row..(t + k + 1) * act_row]
            } else {
                &zero[..]
            }
        });
        (wd.pack)(&rows[..width], dst);
    });
    Ok(())
}

/// One product's tiles of weight rows x tokens, ready for the pool's threads.
struct Plan<'a> {
    w: Weights<'a>,
    out: Disjoint<'a, f32>,
    tile_rows: usize,
    tile_tokens: usize,
    row_tiles: usize,
    token_tiles: usize,
    n_tokens: usize,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Float {
        f: fn(&[u8], &[f32]) -> f32,
        x: &'a [f32],
    },
    Quant(QuantPlan<'a>),
}

/// A quantized product's kernels and inputs.
struct QuantPlan<'a> {
    acts: &'a [u8],
    act_row: usize,
    /// Rows below this take the `fours` kernels `g`, `g4`; the others `f`, `f4`.
    grouped: usize,
    f: fn(&[u8], &[u8]) -> f32,
    f4: Option<quant::dot::DotX4>,
    g: fn(&[u8], &[u8]) -> f32,
    g4: Option<quant::dot::DotX4>,
    tiles: Option<Tiles>,
    /// The 512-bit prompt kernels with their panels, panel bytes, decoded-rows bytes and
    /// number of panels.
    wide: Option<(Wide, &'a [u8], usize, usize, usize)>,
}

impl<'a> Plan<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        w: Weights<'a>,
        y: &'a mut [f32],
        k: &quant::MatmulKernel,
        input: Input,
        x: &'a [f32],
        rounded: &'a [f32],
        acts: &'a [u8],
        panels: &'a [u8],
        n_tokens: usize,
        n_threads: usize,
        numerics: Numerics,
    ) -> Result<Plan<'a>> {
        let (tile_rows, tile_tokens) = tiles(w.n_out, n_tokens, n_threads);
        let kind = match k.dot {
            Dot::Float(f) => Kind::Float {
                f,
                x: if matches!(input, Input::Rounded(_)) {
                    rounded
                } else {
                    x
                },
            },
            Dot::Quant { act, f, f4, tiles } => {
                let (g, g4) = match k.fours {
                    Some(Dot::Quant { f, f4, .. }) => (f, f4),
                    _ => (f, f4),
                };
                let wide = match wide_of(k, input, n_tokens, numerics) {
                    Some(wd) => Some((
                        wd,
                        panels,
                        panel_bytes(w.n_in, wd.panel_block_bytes)?,
                        panel_bytes(w.n_in, wd.rows_block_bytes)?,
                        n_panels(&wd, n_tokens, numerics),
                    )),
                    None => None,
                };
                Kind::Quant(QuantPlan {
                    acts,
                    act_row: quant::row_bytes(act, w.n_in)?,
                    grouped: match input {
                        Input::Quant { grouped, .. } => grouped,
                        _ => 0,
                    },
                    f,
                    f4,
                    g,
                    g4,
                    tiles: tiles.filter(|_| k.fours.is_none()),
                    wide,
                })
            }
        };
        Ok(Plan {
            w,
            out: Disjoint::new(y),
            tile_rows,
            tile_tokens,
            row_tiles: w.n_out.div_ceil(tile_rows),
            token_tiles: n_tokens.div_ceil(tile_tokens),
            n_tokens,
            kind,
        })
    }

    fn n_tasks(&self) -> usize {
        self.row_tiles * self.token_tiles
    }

    /// Computes tile `task`; tiles cover each (token, row) exactly once and a tile writes
    /// only its own elements of the output.
    fn task(&self, task: usize) {
        let (tt, rt) = (task / self.row_tiles, task % self.row_tiles);
        let n_out = self.w.n_out;
        let rows = rt * self.tile_rows..((rt + 1) * self.tile_rows).min(n_out);
        let tokens = tt * self.tile_tokens..((tt + 1) * self.tile_tokens).min(self.n_tokens);
        match &self.kind {
            Kind::Float { f, x } => {
                let n_in = self.w.n_in;
                for r in rows {
                    for t in tokens.clone() {
                        let v = f(self.w.row(r), &x[t * n_in..(t + 1) * n_in]);
                        // SAFETY: (t, r) is this tile's (see `task`).
                        unsafe { self.out.set(t * n_out + r, v) };
                    }
                }
            }
            Kind::Quant(q) => self.quant_tile(q, rows, tokens),
        }
    }

    /// Token `t`'s quantized activations.
    fn a<'s>(q: &'s QuantPlan<'_>, t: usize) -> &'s [u8] {
        &q.acts[t * q.act_row..(t + 1) * q.act_row]
    }

    /// One weight row at a time, four tokens per call where the kernel can (each weight
    /// block is decoded once for the four) and the four take the same kernel.
    fn by_row(&self, q: &QuantPlan<'_>, rows: Range<usize>, tokens: Range<usize>) {
        let n_out = self.w.n_out;
        let a = |t| Self::a(q, t);
        for r in rows {
            let wr = self.w.row(r);
            let mut t = tokens.start;
            while t < tokens.end {
                let (f, f4) = if t < q.grouped {
                    (q.g, q.g4)
                } else {
                    (q.f, q.f4)
                };
                match f4 {
                    Some(f4) if t + 4 <= tokens.end && (t + 4 <= q.grouped || t >= q.grouped) => {
                        let v = f4(wr, &[a(t), a(t + 1), a(t + 2), a(t + 3)]);
                        for (k, v) in v.into_iter().enumerate() {
                            // SAFETY: (t + k, r) is this tile's (see `task`).
                            unsafe { self.out.set((t + k) * n_out + r, v) };
                        }
                        t += 4;
                    }
                    _ => {
                        // SAFETY: (t, r) is this tile's (see `task`).
                        unsafe { self.out.set(t * n_out + r, f(wr, a(t))) };
                        t += 1;
                    }
                }
            }
        }
    }

    /// Several weight rows per call where the format has such kernels (the same values as
    /// one row at a time): for prompts four rows by panels of 8 or 16 tokens (512-bit
    /// kernels); the tokens after the panels sixteen rows by one token where the format has
    /// such a kernel, else two rows by four tokens; four rows by one token otherwise; the
    /// rows left over one at a time.
    fn quant_tile(&self, q: &QuantPlan<'_>, rows: Range<usize>, tokens: Range<usize>) {
        let Some(tl) = q.tiles else {
            return self.by_row(q, rows, tokens);
        };
        let w = &self.w;
        let n_out = w.n_out;
        let a = |t| Self::a(q, t);
        let mut tokens = tokens;
        // Panels (token tiles start at multiples of 64, or at 0; the last panel may be
        // padded), four rows at a time; the rows left over one at a time.
        if let Some((wd, panels, panel_bytes, rows_bytes, n_panels)) = q.wide {
            let width = wd.tokens;
            let first = tokens.start / width;
            let last = n_panels.min(tokens.end.div_ceil(width));
            let end = (last * width).clamp(tokens.start, tokens.end);
            let mut r = rows.start;
            DECODED.with_borrow_mut(|decoded| {
                decoded.resize(rows_bytes, 0);
                while r + 4 <= rows.end {
                    let wr = [w.row(r), w.row(r + 1), w.row(r + 2), w.row(r + 3)];
                    (wd.rows)(&wr, decoded);
                    for g in first..last {
                        let t = g * width;
                        let panel = &panels[g * panel_bytes..(g + 1) * panel_bytes];
                        let v = (wd.kernel)(decoded, panel);
                        let n = width.min(tokens.end - t);
                        for (i, v) in v.iter().enumerate() {
                            for (k, &v) in v[..n].iter().enumerate() {
                                // SAFETY: (t + k, r + i) is this tile's (see `task`).
                                unsafe { self.out.set((t + k) * n_out + r + i, v) };
                            }
                        }
                    }
                    r += 4;
                }
            });
            self.by_row(q, r..rows.end, tokens.start..end);
            tokens = end..tokens.end;
        }
        let mut r = rows.start;
        // Below a panel, a sixteen-row kernel token by token beats two rows by four tokens
        // (it streams the weights once per token but needs no transposition; measured 1.5-2x
        // at 4 and 8 tokens on the formats that have one); without one, two by four.
        if tokens.len() >= 4 && tl.rows16.is_none() {
            while r + 2 <= rows.end {
                let wr = [w.row(r), w.row(r + 1)];
                let mut t = tokens.start;
                while t + 4 <= tokens.end {
                    let v = (tl.r2x4)(&wr, &[a(t), a(t + 1), a(t + 2), a(t + 3)]);
                    for (i, v) in v.iter().enumerate() {
                        for (k, &v) in v.iter().enumerate() {
                            // SAFETY: (t + k, r + i) is this tile's (see `task`).
                            unsafe { self.out.set((t + k) * n_out + r + i, v) };
                        }
                    }
                    t += 4;
                }
                self.by_row(q, r..r + 2, t..tokens.end);
                r += 2;
            }
        } else {
            if let Some(rows16) = tl.rows16 {
                while r + 16 <= rows.end {
                    let wr: [&[u8]; 16] = std::array::from_fn(|i| w.row(r + i));
                    for t in tokens.clone() {
                        let v = rows16(&wr, a(t));
                        for (i, v) in v.into_iter().enumerate() {
                            // SAFETY: (t, r + i) is this tile's (see `task`).
                            unsafe { self.out.set(t * n_out + r + i, v) };
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
                        // SAFETY: (t, r + i) is this tile's (see `task`).
                        unsafe { self.out.set(t * n_out + r + i, v) };
                    }
                }
                r += 4;
            }
        }
        self.by_row(q, r..rows.end, tokens);
    }
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
            // panels of eight or sixteen tokens), and remainders of half a panel or more that
            // take a zero-padded panel (12, 9, 8; the last tile of 77).
            for (n_out, n_in, n_tokens) in [
                (70, 256, 21),
                (70, 256, 12),
                (48, 128, 9),
                (35, 160, 8),
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

    /// A group equals its products run one by one, whether its members share an input form
    /// (two Q4_1 matrices) or not (Q8_0, F16), for decoding and for prompts.
    #[test]
    fn a_group_equals_its_products_one_by_one() {
        let pool = ThreadPool::new(2).unwrap();
        let n_in = 256;
        let mats: Vec<(GgmlType, usize, Vec<u8>)> = [
            (GgmlType::Q4_1, 70),
            (GgmlType::Q4_1, 33),
            (GgmlType::Q8_0, 48),
            (GgmlType::F16, 20),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (ty, n_out))| {
            let mut wq = vec![0u8; quant::row_bytes(ty, n_in).unwrap() * n_out];
            quant::quantize_row(ty, &randoms(n_out * n_in, 11 + i as u64), &mut wq).unwrap();
            (ty, n_out, wq)
        })
        .collect();
        let ws: Vec<Weights<'_>> = mats
            .iter()
            .map(|(ty, n_out, wq)| Weights::new(*ty, wq, *n_out, n_in).unwrap())
            .collect();
        for n_tokens in [1, 3, 40] {
            let x = randoms(n_tokens * n_in, 13);
            let mut scratch = MatmulScratch::default();
            for group in [&ws[..3], &ws[1..], &ws[..2]] {
                let mut alone: Vec<Vec<f32>> = Vec::new();
                for w in group {
                    let mut y = vec![f32::NAN; n_tokens * w.n_out()];
                    matmul(&pool, w, &x, n_tokens, &mut y, &mut scratch).unwrap();
                    alone.push(y);
                }
                let mut ys: Vec<Vec<f32>> = group
                    .iter()
                    .map(|w| vec![f32::NAN; n_tokens * w.n_out()])
                    .collect();
                let mut products: Vec<(Weights<'_>, &mut [f32])> = group
                    .iter()
                    .copied()
                    .zip(ys.iter_mut().map(|y| &mut y[..]))
                    .collect();
                matmul_group(&pool, &mut products, &x, n_tokens, &mut scratch).unwrap();
                assert_eq!(ys, alone, "{n_tokens} tokens");
            }
            let mut ys: Vec<Vec<f32>> =
                ws.iter().map(|w| vec![0.0; n_tokens * w.n_out()]).collect();
            let mut too_many: Vec<(Weights<'_>, &mut [f32])> = ws
                .iter()
                .copied()
                .zip(ys.iter_mut().map(|y| &mut y[..]))
                .collect();
            assert!(matmul_group(&pool, &mut too_many, &x, n_tokens, &mut scratch).is_err());
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
