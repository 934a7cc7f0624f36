//! Element-wise and row-wise operations of the forward pass on the CPU, in f32.

/// RMS normalization of each row of `x` (rows of `w.len()` values), scaled by `w`:
/// `y = x / sqrt(mean(x^2) + eps) * w`, as ggml computes it: the squares (each rounded to
/// f32) summed in f64, the mean rounded to f32, then `(x * scale) * w`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let n = w.len();
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let ss: f64 = xr.iter().map(|v| f64::from(v * v)).sum();
        let mean = (ss / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((y, &x), &w) in yr.iter_mut().zip(xr).zip(w) {
            *y = x * scale * w;
        }
    }
}

/// RoPE frequencies: pair i of `n_rot` rotary dimensions turns by
/// `theta_i = pos * base^(-2i / n_rot) / factors[i]` (factors: llama3-style per-frequency
/// divisors from `rope_freqs.weight`, `n_rot / 2` of them, or none), interpolated to
/// `freq_scale * theta_i` (linear scaling) and, with YaRN, blended back towards `theta_i` for
/// the fast-turning pairs.
#[derive(Debug, Clone, Copy)]
pub struct Rope<'a> {
    pub n_rot: usize,
    pub base: f32,
    pub freq_scale: f32,
    pub factors: Option<&'a [f32]>,
    /// `Yarn::OFF` unless the model uses YaRN.
    pub yarn: Yarn,
}

/// YaRN's parameters, as llama.cpp derives them from `rope.scaling.*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// How much of the extrapolated angle the ramp mixes in (llama.cpp: 1 for YaRN).
    pub ext_factor: f32,
    /// Magnitude scale of cos and sin (`rope.scaling.attn_factor`, default 1).
    pub attn_factor: f32,
    /// Pairs below `corr_dims.0` keep the extrapolated angle, above `corr_dims.1` the
    /// interpolated one, with a linear ramp between (`Yarn::corr_dims`).
    pub corr_dims: (f32, f32),
}

impl Yarn {
    /// No YaRN: the ramp mixes nothing in and cos, sin keep their magnitude.
    pub const OFF: Yarn = Yarn {
        ext_factor: 0.0,
        attn_factor: 1.0,
        corr_dims: (0.0, 0.0),
    };

    /// ggml's correction range: the pair index at which a rotation makes `beta` turns over
    /// the original context, for beta_fast (floored) and beta_slow (ceiled), clamped to the
    /// rotary dimensions.
    pub fn corr_dims(
        n_rot: usize,
        n_ctx_orig: usize,
        base: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> (f32, f32) {
        let dim = |beta: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let start = dim(beta_fast).floor().max(0.0);
        let end = dim(beta_slow).ceil().min(n_rot as f32 - 1.0);
        (start, end)
    }

    /// 1 below the range, 0 above it, linear between: how much pair `i` extrapolates.
    fn ramp(&self, i: usize) -> f32 {
        let (low, high) = self.corr_dims;
        let y = (i as f32 - low) / (high - low).max(0.001);
        1.0 - y.clamp(0.0, 1.0)
    }
}

impl Rope<'_> {
    /// Appends (cos, sin) of every pair's angle at `pos` to `out`: the angle computed as
    /// ggml's rope cache does, `theta *= base^(-2/n_rot)` pair after pair in f32 (not a power
    /// per pair), then divided by the frequency factor and scaled (`rope_yarn`).
    fn angles(&self, pos: i32, out: &mut Vec<(f32, f32)>) {
        let theta_scale = self.base.powf(-2.0 / self.n_rot as f32);
        let y = &self.yarn;
        let mscale = if y.ext_factor != 0.0 {
            // Contracted as GCC compiles ggml's `mscale *= 1 + 0.1 * logf(1 / freq_scale)`.
            y.attn_factor * 0.1f32.mul_add((1.0 / self.freq_scale).ln(), 1.0)
        } else {
            y.attn_factor
        };
        let mut theta = pos as f32;
        for i in 0..self.n_rot / 2 {
            let extrap = match self.factors {
                Some(f) => theta / f[i],
                None => theta,
            };
            let interp = self.freq_scale * extrap;
            let angle = if y.ext_factor != 0.0 {
                let mix = y.ramp(i) * y.ext_factor;
                // The first product fused, as GCC contracts ggml's blend.
                interp.mul_add(1.0 - mix, extrap * mix)
            } else {
                interp
            };
            let (sin, cos) = angle.sin_cos();
            out.push((cos * mscale, sin * mscale));
            theta *= theta_scale;
        }
    }
}

/// (cos, sin) of every pair's angle at each position of a batch: computed once per decode
/// and RoPE setting, then applied to Q and K of every layer that uses that setting.
#[derive(Debug, Default)]
pub struct RopeCache {
    n_pairs: usize,
    /// `n_pairs` entries per position, position after position.
    angles: Vec<(f32, f32)>,
}

impl RopeCache {
    /// Recomputes the angles of `r` at `positions` (reusing the allocation).
    pub fn fill(&mut self, r: &Rope<'_>, positions: &[i32]) {
        self.n_pairs = r.n_rot / 2;
        self.angles.clear();
        for &pos in positions {
            r.angles(pos, &mut self.angles);
        }
    }

    fn rows(&self) -> usize {
        self.angles.len().checked_div(self.n_pairs).unwrap_or(0)
    }

    /// (cos, sin) of every pair, `n_rot / 2` per position, position after position.
    pub fn angles(&self) -> &[(f32, f32)] {
        &self.angles
    }
}

/// Rotates the pairs `(head[a(i)], head[b(i)])` of every head of every row by the angles of
/// that row's position.
fn rope_pairs(
    x: &mut [f32],
    head_dim: usize,
    c: &RopeCache,
    pair: impl Fn(usize) -> (usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA (checked just above).
        return unsafe { rope_pairs_fma(x, head_dim, c, pair) };
    }
    rope_pairs_body(x, head_dim, c, pair);
}

/// `rope_pairs` compiled with FMA instructions (as `swiglu_fma`: one instruction instead of
/// a libm `fmaf` call per `mul_add`, the same exactly rounded result).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn rope_pairs_fma(
    x: &mut [f32],
    head_dim: usize,
    c: &RopeCache,
    pair: impl Fn(usize) -> (usize, usize),
) {
    rope_pairs_body(x, head_dim, c, pair);
}

#[inline(always)]
fn rope_pairs_body(
    x: &mut [f32],
    head_dim: usize,
    c: &RopeCache,
    pair: impl Fn(usize) -> (usize, usize),
) {
    let n_rows = c.rows();
    if n_rows == 0 {
        return;
    }
    let row_len = x.len() / n_rows;
    for (row, angles) in x
        .chunks_exact_mut(row_len)
        .zip(c.angles.chunks_exact(c.n_pairs))
    {
        for head in row.chunks_exact_mut(head_dim) {
            for (i, &(cos, sin)) in angles.iter().enumerate() {
                let (ia, ib) = pair(i);
                let (a, b) = (head[ia], head[ib]);
                head[ia] = a.mul_add(cos, -(b * sin));
                head[ib] = a.mul_add(sin, b * cos);
            }
        }
    }
}

/// Rotary position embedding in place, llama.cpp's "normal" style: within each head of
/// `head_dim` values, the pairs (2i, 2i+1) of the first `n_rot` dimensions rotate.
/// `x` holds one row per position of `c`, each `n_heads * head_dim` long.
pub fn rope_norm(x: &mut [f32], head_dim: usize, c: &RopeCache) {
    rope_pairs(x, head_dim, c, |i| (2 * i, 2 * i + 1));
}

/// Rotary position embedding in place, NeoX style: within each head, dimension i of the first
/// `n_rot / 2` pairs with dimension `i + n_rot / 2`.
pub fn rope_neox(x: &mut [f32], head_dim: usize, c: &RopeCache) {
    let half = c.n_pairs;
    rope_pairs(x, head_dim, c, |i| (i, i + half));
}

/// `a = gelu(g) * u` (GeGLU) with the tanh form of GELU, evaluated as ggml's CPU code does:
/// through f16 (the input rounded to f16, the result taken from a table of f16 values) for
/// |g| < 10. (Without the f16 steps Gemma 3's residual stream leaves llama.cpp's at layer 2.)
/// An f16 input has 65,536 values, so the table holds GELU of each, computed once: the same
/// values as evaluating it per element, without a libm `tanhf` call per element.
pub fn geglu(g: &[f32], u: &[f32], a: &mut [f32]) {
    let table = gelu_f16_table();
    #[cfg(target_arch = "x86_64")]
    if crate::quant::cpu::detected() == crate::quant::SimdLevel::Avx512 {
        // SAFETY: the CPU has every feature `geglu_avx512` enables (`cpu::detected()`).
        return unsafe { geglu_avx512(g, u, a, table) };
    }
    geglu_scalar(g, u, a, table);
}

fn geglu_scalar(g: &[f32], u: &[f32], a: &mut [f32], table: &[u16]) {
    use half::f16;
    for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
        *a = if g <= -10.0 {
            0.0
        } else if g >= 10.0 {
            g * u
        } else {
            let x = f16::from_f32(g).to_bits();
            f16::from_bits(table[usize::from(x)]).to_f32() * u
        };
    }
}

/// `geglu` sixteen values at a time: the f16 rounding by `vcvtps2ph` (round to nearest
/// even, as `half`), the table by a gather, the same values as `geglu_scalar`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn geglu_avx512(g: &[f32], u: &[f32], a: &mut [f32], table: &[u16]) {
    use std::arch::x86_64::*;
    assert!(
        table.len() > usize::from(u16::MAX) + 1,
        "the table's padding entry"
    );
    let n = a.len().min(g.len()).min(u.len());
    let (gv, g_rest) = g[..n].as_chunks::<16>();
    let (uv, u_rest) = u[..n].as_chunks::<16>();
    let (av, a_rest) = a[..n].as_chunks_mut::<16>();
    let (lo, hi) = (_mm512_set1_ps(-10.0), _mm512_set1_ps(10.0));
    for ((g, u), a) in gv.iter().zip(uv).zip(av.iter_mut()) {
        // SAFETY: each chunk is 16 f32; loadu/storeu have no alignment requirement. The
        // gather reads 4 bytes at 2 * bits for bits <= 65535: inside the table of 65537 u16.
        unsafe {
            let gx = _mm512_loadu_ps(g.as_ptr());
            let ux = _mm512_loadu_ps(u.as_ptr());
            let bits = _mm512_cvtepu16_epi32(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(gx));
            let t = _mm512_i32gather_epi32::<2>(bits, table.as_ptr().cast());
            let gelu = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(t));
            let mut r = _mm512_mul_ps(gelu, ux);
            // g >= 10: g * u; g <= -10: 0 (NaN compares false both ways, as in the scalar).
            r = _mm512_mask_mov_ps(
                r,
                _mm512_cmp_ps_mask::<_CMP_GE_OQ>(gx, hi),
                _mm512_mul_ps(gx, ux),
            );
            r = _mm512_mask_mov_ps(
                r,
                _mm512_cmp_ps_mask::<_CMP_LE_OQ>(gx, lo),
                _mm512_setzero_ps(),
            );
            _mm512_storeu_ps(a.as_mut_ptr(), r);
        }
    }
    geglu_scalar(g_rest, u_rest, a_rest, table);
}

/// GELU (tanh form) of every f16 value, rounded to f16, indexed by the input's bits; one
/// entry of padding after them (the vector path gathers 4 bytes per entry).
fn gelu_f16_table() -> &'static [u16] {
    use half::f16;
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu_tanh(f16::from_bits(bits).to_f32())).to_bits())
            .chain([0])
            .collect()
    })
}

/// GELU, tanh form: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), as ggml writes it.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// `a = silu(g) * u`, element-wise (SwiGLU), with silu(x) = x / (1 + e^-x) and e^x from
/// `expf_ggml`, as ggml's vectorized SwiGLU evaluates it (its results differ from libm's
/// expf in the last bit, which SmolLM2 amplifies).
pub fn swiglu(g: &[f32], u: &[f32], a: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA (checked just above).
        return unsafe { swiglu_fma(g, u, a) };
    }
    swiglu_body(g, u, a);
}

/// `swiglu` compiled with FMA instructions: `mul_add` becomes one instruction instead of a
/// call to libm's `fmaf` (the same exactly rounded result).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn swiglu_fma(g: &[f32], u: &[f32], a: &mut [f32]) {
    swiglu_body(g, u, a);
}

#[inline(always)]
fn swiglu_body(g: &[f32], u: &[f32], a: &mut [f32]) {
    for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
        *a = g / (1.0 + expf_ggml(-g)) * u;
    }
}

/// 2^k exactly, for k in -126..=127 (a normal float: just its exponent bits; other k give
/// some float).
#[inline(always)]
fn pow2(k: i32) -> f32 {
    f32::from_bits((k.wrapping_add(127) as u32) << 23)
}

/// e^x computed as ggml's AVX-512 code computes it (`ggml_v_expf`, the build the reference
/// data comes from; the polynomial is Arm's optimized-routines expf): n = round(x / ln 2) by
/// the 1.5 * 2^23 shift, the remainder b = x - n ln 2 in two steps, 2^b ~ 1 + b + ... as a
/// polynomial evaluated with fused multiply-adds (the 1 added inside the last one), then an
/// exact scale by 2^n. Within 2 ulps of e^x; what matters is that SwiGLU then has ggml's bits
/// (SmolLM2's logits move by tenths with libm's expf instead).
#[inline(always)]
pub fn expf_ggml(x: f32) -> f32 {
    let shift = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), shift); // 0x1.715476p+0 = 1/ln 2
    let n = z - shift;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),                  // 0x1.7f7d1cp-20
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    let u = b * b;
    let p = f32::from_bits(0x3c07_2010) // 0x1.0e4020p-7
        .mul_add(b, f32::from_bits(0x3d2b_9f17)) // 0x1.573e2ep-5
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)), // 0x1.555e66p-3, 0x1.fffdb6p-2
        );
    let j = p.mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0)); // 0x1.ffffecp-1
    // j * 2^n, exactly (vscalefps); two steps keep 2^n representable for |n| up to 192
    // (each factor is then 2^-96 to 2^96, a normal float, and j * 2^(n >> 1) stays normal, so
    // only the second product rounds). n is read from z's low bits (z = n + 1.5 * 2^23) and
    // the range is checked by selects, not branches, so that loops over this vectorize.
    let k = (z.to_bits() as i32).wrapping_sub(0x4b40_0000);
    let half = k >> 1;
    let r = j * pow2(half) * pow2(k.wrapping_sub(half));
    let out = if n <= 0.0 { 0.0 } else { f32::INFINITY };
    if n.abs() > 192.0 { out } else { r }
}

/// Softmax in place.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// How one query's attention scores and sums are computed.
#[derive(Debug, Clone, Copy)]
pub struct AttnMath {
    /// Multiplies Q·K.
    pub scale: f32,
    /// Scores become `cap * tanh(score / cap)` (Gemma 2).
    pub softcap: Option<f32>,
    /// The weighted sum of values kept in f16, as llama.cpp's CPU kernel does with an f16
    /// cache (its default); in f32 otherwise. `AttnOrder::Online` only.
    pub f16_acc: bool,
    pub order: AttnOrder,
}

/// The float order of attention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttnOrder {
    /// rocmforge's own (`two_pass`): scores, then weights, then the weighted sum in f32.
    /// Batch-invariant, and several times faster than `Online` for prompts.
    #[default]
    TwoPass,
    /// llama.cpp's online softmax, key by key (`online_attention`): its bits.
    Online,
}

/// The two inner loops of `attend_online`, per instruction set. Every implementation gives
/// the same bits: they only differ in speed.
pub(super) trait AttnKernels {
    /// Q·K in the summation order of ggml's `ggml_vec_dot_f16` as built for AVX-512 (see
    /// `dot_ggml_order`).
    fn dot(q: &[f32], k: &[f32]) -> f32;
    /// `acc = round(v * scale + acc)` (one fused multiply-add) or, without `v`,
    /// `acc = round(acc * scale)`; `round` is to f16 when `f16`, else nothing.
    fn update(acc: &mut [f32], v: Option<&[f32]>, scale: f32, f16: bool);
    /// `dot(q, ks[j])` for the first `n` keys (the rest 0).
    fn dots(q: &[f32], ks: &[&[f32]; KEYS_PER_STEP], n: usize) -> [f32; KEYS_PER_STEP] {
        let mut out = [0f32; KEYS_PER_STEP];
        for (o, k) in out.iter_mut().zip(&ks[..n]) {
            *o = Self::dot(q, k);
        }
        out
    }
    /// `expf` of each value, bit for bit the C library's (`exps_libm`).
    fn exps(x: &[f32; KEYS_PER_STEP]) -> [f32; KEYS_PER_STEP] {
        exps_libm(x)
    }
    /// The value updates of one step of keys, in order: for key j, where `s.new_max[j]`,
    /// `update(acc, None, s.e[j])`, then `update(acc, Some(s.vs[j]), s.weight(j))`.
    /// Implementations may hold parts of `acc` in registers through the step: every element
    /// sees the same operations in the same order.
    fn step(acc: &mut [f32], s: &Step<'_>, f16: bool) {
        for j in 0..s.n {
            if s.new_max[j] {
                Self::update(acc, None, s.e[j], f16);
            }
            Self::update(acc, Some(s.vs[j]), s.weight(j), f16);
        }
    }
    /// The weighted sum of `AttnOrder::TwoPass`: for each key j in order and each query i,
    /// `acc[i] = fma(ws[i][j], v_j, acc[i])` elementwise (`two_pass::mix_portable`).
    fn mix(acc: &mut [f32], ws: &[&[f32]], vs: &[f32], stride: usize) {
        super::two_pass::mix_portable(acc, ws, vs, stride)
    }
}

/// One step of `online_attention`: up to `KEYS_PER_STEP` keys' values and their weights.
pub(super) struct Step<'a> {
    /// Keys in the step.
    pub n: usize,
    pub vs: [&'a [f32]; KEYS_PER_STEP],
    /// Whether key j set a new maximum (the accumulator is first scaled by `e[j]`).
    pub new_max: [bool; KEYS_PER_STEP],
    pub e: [f32; KEYS_PER_STEP],
}

impl Step<'_> {
    /// The weight of key j's value: `e[j]`, or 1 where it set a new maximum.
    #[inline(always)]
    pub fn weight(&self, j: usize) -> f32 {
        if self.new_max[j] { 1.0 } else { self.e[j] }
    }
}

/// Q·K as ggml's AVX-512 `ggml_vec_dot_f16` sums it: four accumulators of 16 lanes, each lane
/// a chain of fused multiply-adds over steps of 64 elements; reduced x0+x2, x1+x3, x0+x1,
/// then halves 16 -> 8 -> 4 lanes and (l0+l2)+(l1+l3) (GCC's `_mm512_reduce_add_ps`); the
/// elements past the last multiple of 64 added in f64. SmolLM2's logits move by tenths when
/// only this order changes.
pub(super) fn dot_ggml_order(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let np = n & !63;
    let mut acc = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, lanes) in acc.iter_mut().enumerate() {
            for (l, s) in lanes.iter_mut().enumerate() {
                let at = i + 16 * j + l;
                *s = a[at].mul_add(b[at], *s);
            }
        }
    }
    let mut sum = 0f64;
    if np > 0 {
        let x: [f32; 16] =
            std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
        sum = f64::from(crate::quant::dot::reduce16(&x));
    }
    for k in np..n {
        sum += f64::from(a[k] * b[k]);
    }
    sum as f32
}

/// Portable kernels (any CPU; slow where fused multiply-add is emulated).
pub(super) struct Portable;

impl AttnKernels for Portable {
    fn dot(q: &[f32], k: &[f32]) -> f32 {
        dot_ggml_order(q, k)
    }

    fn update(acc: &mut [f32], v: Option<&[f32]>, scale: f32, f16: bool) {
        let round = |x: f32| {
            if f16 {
                half::f16::from_f32(x).to_f32()
            } else {
                x
            }
        };
        match v {
            Some(v) => acc
                .iter_mut()
                .zip(v)
                .for_each(|(a, &x)| *a = round(x.mul_add(scale, *a))),
            None => acc.iter_mut().for_each(|a| *a = round(*a * scale)),
        }
    }
}

/// Keys taken per step of `online_attention`: their scores first, then one `exps` call.
pub(super) const KEYS_PER_STEP: usize = 16;

/// `expf` of each value, as the C library computes it (`f32::exp`): the reference.
pub(super) fn exps_libm(x: &[f32; KEYS_PER_STEP]) -> [f32; KEYS_PER_STEP] {
    x.map(f32::exp)
}

/// The online softmax of llama.cpp's CPU flash-attention kernel for batches under 64 rows
/// (`flash_attn_ext_f16_one_chunk`), over the kernels `K`. Keys go `KEYS_PER_STEP` at a time:
/// the scores of a step are independent of the running maximum, and the exponent arguments
/// only depend on the scores and the maximum before them, so they are all known before the
/// step's first value update, and `K::exps` takes them together. Every update, and the sum,
/// then follows the one-key-at-a-time order exactly.
#[inline(always)]
pub(super) fn online_attention<'a, K: AttnKernels>(
    q: &[f32],
    rows: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    m: &AttnMath,
    acc: &mut [f32],
    out: &mut [f32],
) {
    acc.fill(0.0);
    let (mut sum, mut max) = (0f32, f32::NEG_INFINITY);
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        let mut ks: [&[f32]; KEYS_PER_STEP] = [&[]; KEYS_PER_STEP];
        let mut vs: [&[f32]; KEYS_PER_STEP] = [&[]; KEYS_PER_STEP];
        let mut arg = [0f32; KEYS_PER_STEP];
        let mut new_max = [false; KEYS_PER_STEP];
        let mut n = 0;
        for (j, (k, v)) in rows.by_ref().take(KEYS_PER_STEP).enumerate() {
            (ks[j], vs[j], n) = (k, v, j + 1);
        }
        let dots = K::dots(q, &ks, n);
        for (j, &dot) in dots[..n].iter().enumerate() {
            let mut s = dot * m.scale;
            if let Some(cap) = m.softcap {
                s = cap * (s / cap).tanh();
            }
            if s > max {
                // A new maximum: what was accumulated is rescaled by exp(max - s).
                (arg[j], new_max[j]) = (max - s, true);
                max = s;
            } else {
                arg[j] = s - max;
            }
        }
        let step = Step {
            n,
            vs,
            new_max,
            e: K::exps(&arg),
        };
        for (j, (&new, &e)) in new_max.iter().zip(&step.e).take(n).enumerate() {
            let ms = if new { e } else { 1.0 };
            // GCC contracts ggml's `S = S*ms + vs`.
            sum = sum.mul_add(ms, step.weight(j));
        }
        K::step(acc, &step, m.f16_acc);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = a * inv;
    }
}

/// Attention of one query over `rows` of (key, value), in order, with an online softmax: the
/// arithmetic of llama.cpp's CPU flash-attention kernel, which the reference logits were made
/// with. `acc` is scratch of the head's size; the result goes to `out`. AVX-512 or AVX2 where
/// the CPU has it, the portable kernels otherwise: the same bits either way.
pub fn attend_online<'a>(
    q: &[f32],
    rows: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    m: &AttnMath,
    acc: &mut [f32],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::quant::SimdLevel;
        let level = crate::quant::cpu::level();
        if level >= SimdLevel::Avx512 {
            // SAFETY: level() never exceeds what the CPU supports, and Avx512 implies AVX2,
            // FMA, F16C and AVX-512 F and VL.
            return unsafe { super::attn_x86::attend_online_avx512(q, rows, m, acc, out) };
        }
        if level >= SimdLevel::Avx2 {
            // SAFETY: level() never exceeds what the CPU supports, and Avx2 implies AVX2, FMA
            // and F16C.
            return unsafe { super::attn_x86::attend_online(q, rows, m, acc, out) };
        }
    }
    online_attention::<Portable>(q, rows, m, acc, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table form of GeGLU gives what evaluating GELU per element through f16 gives.
    #[test]
    fn geglu_table_equals_gelu_through_f16() {
        use half::f16;
        let g: Vec<f32> = (-1300..1300).map(|i| i as f32 / 128.0 + 0.003).collect();
        let u: Vec<f32> = g.iter().map(|v| 1.0 - v / 16.0).collect();
        let mut a = vec![0f32; g.len()];
        geglu(&g, &u, &mut a);
        for ((&a, &g), &u) in a.iter().zip(&g).zip(&u) {
            let want = if g <= -10.0 {
                0.0
            } else if g >= 10.0 {
                g * u
            } else {
                f16::from_f32(gelu_tanh(f16::from_f32(g).to_f32())).to_f32() * u
            };
            assert_eq!(a.to_bits(), want.to_bits(), "g = {g}");
        }
    }

    /// Whatever path `geglu` takes gives the scalar path's bits on every f16 input, the
    /// limits, infinities and NaN (as NaN), at a length with a tail.
    #[test]
    fn geglu_paths_agree_on_every_f16_input() {
        let mut g: Vec<f32> = (0..=u16::MAX)
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect();
        g.extend([
            10.0,
            -10.0,
            9.999,
            -9.999,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-9,
            3.3,
        ]);
        let u: Vec<f32> = (0..g.len()).map(|i| 0.5 + (i % 7) as f32).collect();
        let (mut a, mut want) = (vec![0f32; g.len()], vec![0f32; g.len()]);
        geglu(&g, &u, &mut a);
        geglu_scalar(&g, &u, &mut want, gelu_f16_table());
        for (i, (a, w)) in a.iter().zip(&want).enumerate() {
            assert!(
                a.to_bits() == w.to_bits() || (a.is_nan() && w.is_nan()),
                "g = {}",
                g[i]
            );
        }
    }

    fn cache(r: &Rope<'_>, positions: &[i32]) -> RopeCache {
        let mut c = RopeCache::default();
        c.fill(r, positions);
        c
    }

    fn rope(n_rot: usize) -> Rope<'static> {
        Rope {
            n_rot,
            base: 10000.0,
            freq_scale: 1.0,
            factors: None,
            yarn: Yarn::OFF,
        }
    }

    #[test]
    fn yarn_blends_extrapolated_and_interpolated_angles() {
        let (pos, n_rot) = (37, 64);
        let angles = |r: &Rope<'_>| {
            let mut c = RopeCache::default();
            c.fill(r, &[pos]);
            c.angles
        };
        let linear = Rope {
            freq_scale: 0.25,
            ..rope(n_rot)
        };
        let (lo, hi) = Yarn::corr_dims(n_rot, 4096, 10000.0, 32.0, 1.0);

        // 64 ln(4096 / (32 * 2 pi)) / (2 ln 10000) = 10.47 and, for beta 1, 22.51.
        assert_eq!((lo, hi), (10.0, 23.0));
        let yarn = |ext_factor| Rope {
            yarn: Yarn {
                ext_factor,
                attn_factor: 1.0,
                corr_dims: (lo, hi),
            },
            ..linear
        };
        // Without the ramp YaRN is linear scaling.
        assert_eq!(angles(&yarn(0.0)), angles(&linear));
        let (y, l, plain) = (angles(&yarn(1.0)), angles(&linear), angles(&rope(n_rot)));
        let mscale = 1.0 + 0.1 * 4f32.ln();
        for i in 0..n_rot / 2 {
            let want = if i <= lo as usize {
                plain[i] // fast pairs keep their angle
            } else if i >= hi as usize {
                l[i] // slow pairs are interpolated
            } else {
                continue;
            };
            assert!((y[i].0 - want.0 * mscale).abs() < 1e-5, "pair {i}");
            assert!((y[i].1 - want.1 * mscale).abs() < 1e-5, "pair {i}");
        }
    }

    #[test]
    fn rms_norm_and_softmax_by_definition() {
        let mut y = [0.0; 4];
        rms_norm(&[1.0, -1.0, 2.0, -2.0], &[1.0, 1.0, 0.5, 2.0], 0.0, &mut y);
        let s = (2.5f32).sqrt();
        assert_eq!(y, [1.0 / s, -1.0 / s, 1.0 / s, -4.0 / s]);
        let mut p = [0.0, (2.0f32).ln()];
        softmax(&mut p);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6 && (p[1] - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn online_attention_equals_softmax_attention_within_rounding() {
        let q = [0.5, -1.0, 0.25, 2.0];
        let keys: Vec<[f32; 4]> = (0..6)
            .map(|j| [j as f32 * 0.5 - 1.0, 0.25, -0.5, j as f32 * 0.125])
            .collect();
        let vals: Vec<[f32; 4]> = (0..6)
            .map(|j| [1.0, -(j as f32), 0.5 * j as f32, 2.0])
            .collect();
        let mut scores: Vec<f32> = keys
            .iter()
            .map(|k| q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * 0.5)
            .collect();
        softmax(&mut scores);
        let mut want = [0f32; 4];
        for (s, v) in scores.iter().zip(&vals) {
            for (w, x) in want.iter_mut().zip(v) {
                *w += s * x;
            }
        }
        for (f16_acc, tol) in [(true, 2e-3), (false, 1e-6)] {
            let mut acc = [0f32; 4];
            let mut out = [0f32; 4];
            let m = AttnMath {
                scale: 0.5,
                softcap: None,
                f16_acc,
                order: AttnOrder::Online,
            };
            let rows = keys.iter().zip(&vals).map(|(k, v)| (&k[..], &v[..]));
            attend_online(&q, rows, &m, &mut acc, &mut out);
            for (o, w) in out.iter().zip(&want) {
                assert!(
                    (o - w).abs() < tol * w.abs().max(1.0),
                    "{out:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn ggml_expf_is_within_two_ulps_of_exp_everywhere() {
        let mut x = -104.0f32;
        while x < 88.7 {
            let (got, want) = (expf_ggml(x), (x as f64).exp());
            let rel = ((got as f64 - want) / want).abs();
            assert!(
                rel < 2.5e-7 || (want < 1e-37 && (got as f64 - want).abs() < 1e-44),
                "{x}: {got} vs {want}"
            );
            x += 0.0137;
        }
        assert_eq!(expf_ggml(0.0), 1.0);
        assert_eq!(expf_ggml(-200.0), 0.0);
        assert_eq!(expf_ggml(200.0), f32::INFINITY);
        for k in -126..=127 {
            assert_eq!(pow2(k), 2f32.powi(k), "2^{k}");
        }
        // The FMA build of SwiGLU gives the portable build's bits.
        let g: Vec<f32> = (0..999).map(|i| (i as f32 - 500.0) / 37.0).collect();
        let u: Vec<f32> = (0..999).map(|i| (i as f32 * 0.37).sin()).collect();
        let (mut a, mut b) = (vec![0f32; 999], vec![0f32; 999]);
        swiglu(&g, &u, &mut a);
        swiglu_body(&g, &u, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn simd_attention_equals_portable_attention_bit_for_bit() {
        // Heads of 136 (two steps of 64 and a tail) and of the sizes with kernels of their own
        // (64, 128, 192, 256: queries in registers, sixteen keys reduced together), 50 keys
        // with scores that rise and fall so the running maximum moves, both accumulator
        // precisions, soft-capping: bit for bit.
        for hd in [136, 64, 128, 192, 256, 16, 8] {
            simd_attention_case(hd);
        }
    }

    fn simd_attention_case(hd: usize) {
        let val = |i: usize, j: usize| ((i * 7 + j * 13) % 29) as f32 / 7.0 - 2.0;
        let q: Vec<f32> = (0..hd).map(|j| val(1, j) * 0.3).collect();
        let ks: Vec<Vec<f32>> = (0..50)
            .map(|i| (0..hd).map(|j| val(i, j)).collect())
            .collect();
        let vs: Vec<Vec<f32>> = (0..50)
            .map(|i| (0..hd).map(|j| val(i + 3, j)).collect())
            .collect();
        for (f16_acc, softcap) in [(true, None), (false, None), (true, Some(4.0))] {
            let m = AttnMath {
                scale: 0.2,
                softcap,
                f16_acc,
                order: AttnOrder::Online,
            };
            let rows = || ks.iter().zip(&vs).map(|(k, v)| (&k[..], &v[..]));
            let (mut acc, mut a, mut b) = (vec![0f32; hd], vec![0f32; hd], vec![0f32; hd]);
            attend_online(&q, rows(), &m, &mut acc, &mut a);
            online_attention::<Portable>(&q, rows(), &m, &mut acc, &mut b);
            assert_eq!(a, b, "{hd} {f16_acc} {softcap:?}");
            // The AVX2 kernels too where the dispatch above took the AVX-512 ones.
            #[cfg(target_arch = "x86_64")]
            if crate::quant::cpu::detected() >= crate::quant::SimdLevel::Avx2 {
                // SAFETY: the CPU has AVX2, which implies FMA and F16C here.
                unsafe {
                    crate::backend::cpu::attn_x86::attend_online(&q, rows(), &m, &mut acc, &mut a)
                };
                assert_eq!(a, b, "AVX2: {hd} {f16_acc} {softcap:?}");
            }
        }
    }

    #[test]
    fn neox_rope_pairs_halves_and_geglu_follows_the_tanh_formula() {
        let mut x = [1.0, 0.0, 0.0, 0.0];
        rope_neox(&mut x, 4, &cache(&rope(4), &[1]));
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        let mut a = [0.0; 3];
        geglu(&[1.0, -20.0, 20.0], &[2.0, 1.0, 0.5], &mut a);
        // gelu(1) = 0.8412 (tanh form), through f16.
        assert!((a[0] - 2.0 * 0.841_192).abs() < 2e-3, "{a:?}");
        assert_eq!(a[1], 0.0);
        assert_eq!(a[2], 10.0);
    }

    #[test]
    fn rope_rotates_pairs_and_keeps_position_zero() {
        let mut x = [1.0, 0.0, 0.0, 1.0];
        rope_norm(&mut x, 4, &cache(&rope(4), &[0]));
        assert_eq!(x, [1.0, 0.0, 0.0, 1.0]);
        let mut x = [1.0, 0.0];
        rope_norm(&mut x, 2, &cache(&rope(2), &[1]));
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
    }
}
