//! x86-64 kernels, written once and compiled twice by `kernels!`: for AVX2 (+FMA, F16C), whose
//! byte dot products use `vpmaddubsw` + `vpmaddwd`, and for AVX-512 (F, BW, VL, VNNI), whose
//! byte dot products use `vpdpbusd`.
//!
//! Byte products stay exact: weights are unsigned 0..=63 or signed with |q| <= 128, activations
//! |a| <= 127 (our Q8 quantizers never produce -128), so `vpmaddubsw`'s pairwise i16 sums stay
//! below 2 * 128 * 127 = 32,512 and never saturate.

use std::arch::x86_64::*;

/// Loads 32 bytes at `at` (bounds-checked slice, then an unaligned load).
#[inline(always)]
fn load256(b: &[u8], at: usize) -> __m256i {
    let s: &[u8; 32] = b[at..at + 32].try_into().expect("32 bytes");
    // SAFETY: `s` is exactly 32 readable bytes; loadu has no alignment requirement. The
    // intrinsic needs AVX, present at every level that calls this (AVX2 and above).
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Loads 16 bytes at `at`.
#[inline(always)]
fn load128(b: &[u8], at: usize) -> __m128i {
    let s: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    // SAFETY: `s` is exactly 16 readable bytes; loadu has no alignment requirement (SSE2).
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

/// Byte dot products with `vpmaddubsw` + `vpmaddwd` (AVX2): lane k of the result is the sum of
/// products of bytes 4k..4k+3, `x` unsigned, `y` signed.
#[inline]
#[target_feature(enable = "avx2")]
fn dot_u8s_avx2(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// The same with one `vpdpbusd` (AVX-512 VNNI on 256-bit vectors).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn dot_u8s_vnni(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
}

macro_rules! kernels {
    ($features:literal, $dot_u8s:ident) => {
        use std::arch::x86_64::*;

        use super::{load128, load256, $dot_u8s};
        use crate::gguf::GgmlType;
        use crate::quant::dot::{Dot, Tiles};
        use crate::quant::fp::{MXFP4_VALUES, e8m0_to_f32_half};
        use crate::quant::iq4::{IQ4_VALUES, iq4_xs_scale};
        use crate::quant::kquants::q8_k_d;

        #[inline]
        #[target_feature(enable = $features)]
        fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }

        /// The exact sum of the eight i32 lanes (integer: any order gives the same).
        #[inline]
        #[target_feature(enable = $features)]
        fn hsum_i32(v: __m256i) -> i32 {
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
            _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s)))
        }

        /// f16 bits at `at` as f32 (F16C).
        ///
        /// Written in assembly on purpose: from intrinsics LLVM emits a 16-bit `vpinsrw` load
        /// that merges into an undefined source register, which is often an accumulator, so
        /// every block waited for the previous block's FMA (measured 3x slower). `vmovd` from a
        /// general register writes the whole vector register and carries no such dependency.
        #[inline]
        #[target_feature(enable = $features)]
        fn h2f(b: &[u8], at: usize) -> f32 {
            let bits = u32::from(u16::from_le_bytes([b[at], b[at + 1]]));
            let out: __m128;
            // SAFETY: register-only instructions (no memory, stack or flags touched); F16C and
            // AVX are enabled for this function by `$features`.
            unsafe {
                std::arch::asm!(
                    "vmovd {t}, {b:e}",
                    "vcvtph2ps {o}, {t}",
                    b = in(reg) bits,
                    t = out(xmm_reg) _,
                    o = out(xmm_reg) out,
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
            _mm_cvtss_f32(out)
        }

        /// The two f16 values at `at` and `at + 2` (a scale pair such as d and m), converted
        /// together (see `h2f`).
        #[inline]
        #[target_feature(enable = $features)]
        fn h2f2(b: &[u8], at: usize) -> (f32, f32) {
            let bits = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let out: __m128;
            // SAFETY: as in `h2f`.
            unsafe {
                std::arch::asm!(
                    "vmovd {t}, {b:e}",
                    "vcvtph2ps {o}, {t}",
                    b = in(reg) bits,
                    t = out(xmm_reg) _,
                    o = out(xmm_reg) out,
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
            (_mm_cvtss_f32(out), _mm_cvtss_f32(_mm_movehdup_ps(out)))
        }

        /// 16 bytes of nibbles as 32 bytes: low nibbles (elements 0..16), then high ones.
        #[inline]
        #[target_feature(enable = $features)]
        fn nibbles(v: __m128i) -> __m256i {
            let m = _mm_set1_epi8(0x0f);
            let lo = _mm_and_si128(v, m);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
            _mm256_set_m128i(hi, lo)
        }

        /// The 32 bits of `bits` as 32 bytes: 0xff where the bit is set.
        #[inline]
        #[target_feature(enable = $features)]
        fn bit_bytes(bits: u32) -> __m256i {
            let v = _mm256_set1_epi32(bits as i32);
            let idx = _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
            );
            let mask = _mm256_set1_epi64x(i64::from_le_bytes([1, 2, 4, 8, 16, 32, 64, 128]));
            let b = _mm256_and_si256(_mm256_shuffle_epi8(v, idx), mask);
            _mm256_cmpeq_epi8(b, mask)
        }

        /// Looks up each byte (0..16) of `q` in a 16-entry table of i8 values.
        #[inline]
        #[target_feature(enable = $features)]
        fn lut16(table: &[i8; 16], q: __m256i) -> __m256i {
            let t = _mm_setr_epi8(
                table[0], table[1], table[2], table[3], table[4], table[5], table[6], table[7],
                table[8], table[9], table[10], table[11], table[12], table[13], table[14],
                table[15],
            );
            _mm256_shuffle_epi8(_mm256_set_m128i(t, t), q)
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn qh_u32(x: &[u8], at: usize) -> u32 {
            u32::from_le_bytes([x[at], x[at + 1], x[at + 2], x[at + 3]])
        }

        /// The blocks of a weight row and of each of `N` activation rows, cut to a common count.
        #[inline(always)]
        fn rows_of<'a, const W: usize, const A: usize, const N: usize>(
            w: &'a [u8],
            a: &[&'a [u8]; N],
        ) -> (&'a [[u8; W]], [&'a [[u8; A]]; N]) {
            let ([wb], ab) = tile_of::<W, A, 1, N>(&[w], a);
            (wb, ab)
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn finish<const N: usize>(acc: [__m256; N], minus: [f32; N]) -> [f32; N] {
            let mut out = [0f32; N];
            for n in 0..N {
                out[n] = hsum(acc[n]) - minus[n];
            }
            out
        }

        /// The eight i32 lanes of one block's products: lane k sums values 4k..4k+3 of the
        /// weights' signed values `q` and the Q8_0 activation block `y`.
        #[inline]
        #[target_feature(enable = $features)]
        fn q8_0_lanes(q: __m256i, abs_q: __m256i, y: &[u8; 34]) -> __m256i {
            $dot_u8s(abs_q, _mm256_sign_epi8(load256(y, 2), q))
        }

        /// The blocks of `R` weight rows and of `N` activation rows, cut to a common count.
        #[inline(always)]
        fn tile_of<'a, const W: usize, const A: usize, const R: usize, const N: usize>(
            w: &[&'a [u8]; R],
            a: &[&'a [u8]; N],
        ) -> ([&'a [[u8; W]]; R], [&'a [[u8; A]]; N]) {
            let n = w.iter().fold(usize::MAX, |m, r| m.min(r.len() / W));
            let n = a.iter().fold(n, |m, r| m.min(r.len() / A));
            (w.map(|r| &r.as_chunks::<W>().0[..n]), a.map(|r| &r.as_chunks::<A>().0[..n]))
        }

        /// Asks for the cache line that holds block `i` of the row `ahead` bytes on. Callers
        /// pass four groups of their rows (`4 * R` rows): the same block of a row read four
        /// calls later, far enough ahead to cover memory latency. With several rows in
        /// flight the hardware prefetcher stops keeping up with memory (measured on a
        /// 262,144 x 640 Q8_0 matrix: 7 instead of 13 GB/s on one thread); a hint per block
        /// restores the streaming rate.
        #[inline(always)]
        fn prefetch_ahead<const W: usize>(row: &[[u8; W]], i: usize, ahead: usize) {
            let p = row.as_ptr().cast::<u8>().wrapping_add(i * W).wrapping_add(ahead);
            // SAFETY: a prefetch is only a hint: it never faults, whatever the address (past
            // the matrix's end it touches something else or nothing), and reads no value.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
        }

        /// `prefetch_ahead` for every cache line of a block (K-quant blocks span several).
        #[inline(always)]
        fn prefetch_block<const W: usize>(row: &[[u8; W]], i: usize, ahead: usize) {
            for line in (0..W).step_by(64) {
                prefetch_ahead(row, i, ahead + line);
            }
        }

        /// Weights with Q8_0 activations (Q4_0, Q5_0, Q8_0, IQ4_NL, MXFP4), `R` weight rows
        /// against `N` activation rows: `decode` turns a weight block into its 32 signed
        /// values and its scale, once for all `N` tokens; an activation block is loaded once
        /// for all `R` rows. ggml's `vec_dot` kernels keep one accumulator of eight lanes
        /// (Q4_0, Q5_0, Q8_0) or, with `two`, two that alternate block by block (IQ4_NL,
        /// MXFP4), summed at the end, a last odd block then added by one scalar fused
        /// multiply-add. Every (row, token) pair follows exactly that sequence, so each output
        /// equals the one-row kernel's bit for bit; the `R * N` accumulator chains run side by
        /// side, which hides the fused multiply-add latency one row alone waits on.
        #[inline]
        #[target_feature(enable = $features)]
        fn q8_0_family<const W: usize, const R: usize, const N: usize>(
            w: &[&[u8]; R],
            a: &[&[u8]; N],
            two: bool,
            decode: impl Fn(&[u8; W]) -> (__m256i, f32),
        ) -> [[f32; N]; R] {
            let (wb, ab) = tile_of::<W, 34, R, N>(w, a);
            let nb = wb[0].len();
            let ahead = 4 * R * w[0].len();
            let mut acc = [[[_mm256_setzero_ps(); 2]; N]; R];
            let paired = if two { nb & !1 } else { nb };
            for i in 0..paired {
                let k = if two { i & 1 } else { 0 };
                // Plain loops, not `array::from_fn`: its closure does not inherit this
                // function's target features, so it was called out of line, spilling every
                // accumulator around the call.
                let mut x = [(_mm256_setzero_si256(), 0f32); R];
                let mut abs = [_mm256_setzero_si256(); R];
                for r in 0..R {
                    prefetch_ahead(wb[r], i, ahead);
                    x[r] = decode(&wb[r][i]);
                    abs[r] = _mm256_sign_epi8(x[r].0, x[r].0);
                }
                for n in 0..N {
                    let y = &ab[n][i];
                    let dy = h2f(y, 0);
                    for r in 0..R {
                        let p = q8_0_lanes(x[r].0, abs[r], y);
                        let d = _mm256_set1_ps(x[r].1 * dy);
                        acc[r][n][k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r][n][k]);
                    }
                }
            }
            let mut out = [[0f32; N]; R];
            for r in 0..R {
                for n in 0..N {
                    out[r][n] = hsum(_mm256_add_ps(acc[r][n][0], acc[r][n][1]));
                }
            }
            if paired < nb {
                for r in 0..R {
                    let (q, dx) = decode(&wb[r][paired]);
                    let abs_q = _mm256_sign_epi8(q, q);
                    for n in 0..N {
                        let y = &ab[n][paired];
                        let p = hsum_i32(q8_0_lanes(q, abs_q, y));
                        out[r][n] = (h2f(y, 0) * dx).mul_add(p as f32, out[r][n]);
                    }
                }
            }
            out
        }

        /// The same products in the order of llama.cpp's repacked x86 kernels
        /// (`gemm/gemv_q4_0_8x8_q8_0` and the IQ4_NL twin), which llama.cpp uses for these
        /// formats whenever a matrix has a multiple of 8 rows: each block's integer sum whole,
        /// then one fused multiply-add per block with `dw * da`. The batch-invariant order
        /// of Q5_0 and Q8_0 too (`invariant`). `R` rows by `N` tokens; every output is the
        /// one-row kernel's (the integer sums are exact whatever their lanes).
        #[inline]
        #[target_feature(enable = $features)]
        fn q8_0_blockwise<const W: usize, const R: usize, const N: usize>(
            w: &[&[u8]; R],
            a: &[&[u8]; N],
            decode: impl Fn(&[u8; W]) -> (__m256i, f32),
        ) -> [[f32; N]; R] {
            let (wb, ab) = tile_of::<W, 34, R, N>(w, a);
            let ahead = 4 * R * w[0].len();
            let mut acc = [[0f32; N]; R];
            for i in 0..wb[0].len() {
                // Plain loops, not `array::from_fn` (see `q8_0_family`).
                let mut x = [(_mm256_setzero_si256(), 0f32); R];
                let mut abs = [_mm256_setzero_si256(); R];
                for r in 0..R {
                    prefetch_ahead(wb[r], i, ahead);
                    x[r] = decode(&wb[r][i]);
                    abs[r] = _mm256_sign_epi8(x[r].0, x[r].0);
                }
                for n in 0..N {
                    let y = &ab[n][i];
                    let dy = h2f(y, 0);
                    for r in 0..R {
                        let p = hsum_i32(q8_0_lanes(x[r].0, abs[r], y));
                        acc[r][n] = (p as f32).mul_add(x[r].1 * dy, acc[r][n]);
                    }
                }
            }
            acc
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn decode_q4_0(x: &[u8; 18]) -> (__m256i, f32) {
            let q = _mm256_sub_epi8(nibbles(load128(x, 2)), _mm256_set1_epi8(8));
            (q, h2f(x, 0))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn decode_q5_0(x: &[u8; 22]) -> (__m256i, f32) {
            // q - 16 = nibble | 0xf0 where the fifth bit is clear.
            let high = _mm256_andnot_si256(bit_bytes(qh_u32(x, 2)), _mm256_set1_epi8(-16));
            (_mm256_or_si256(nibbles(load128(x, 6)), high), h2f(x, 0))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn decode_q8_0(x: &[u8; 34]) -> (__m256i, f32) {
            (load256(x, 2), h2f(x, 0))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn decode_iq4_nl(x: &[u8; 18]) -> (__m256i, f32) {
            (lut16(&IQ4_VALUES, nibbles(load128(x, 2))), h2f(x, 0))
        }

        #[target_feature(enable = $features)]
        fn q4_0_blockwise<const R: usize, const N: usize>(
            w: &[&[u8]; R],
            a: &[&[u8]; N],
        ) -> [[f32; N]; R] {
            q8_0_blockwise::<18, R, N>(w, a, |x| decode_q4_0(x))
        }

        #[target_feature(enable = $features)]
        fn q5_0_blockwise<const R: usize, const N: usize>(
            w: &[&[u8]; R],
            a: &[&[u8]; N],
        ) -> [[f32; N]; R] {
            q8_0_blockwise::<22, R, N>(w, a, |x| decode_q5_0(x))
        }

        #[target_feature(enable = $features)]
        fn q8_0_bw<const R: usize, const N: usize>(
            w: &[&[u8]; R],
            a: &[&[u8]; N],
        ) -> [[f32; N]; R] {
            q8_0_blockwise::<34, R, N>(w, a, |x| decode_q8_0(x))
        }

        #[target_feature(enable = $features)]
        fn iq4_nl_blockwise<const R: usize, const N: usize>(
            w: &[&[u8]; R],
            a: &[&[u8]; N],
        ) -> [[f32; N]; R] {
            q8_0_blockwise::<18, R, N>(w, a, |x| decode_iq4_nl(x))
        }

        #[target_feature(enable = $features)]
        fn q4_0<const R: usize, const N: usize>(w: &[&[u8]; R], a: &[&[u8]; N]) -> [[f32; N]; R] {
            q8_0_family::<18, R, N>(w, a, false, |x| decode_q4_0(x))
        }

        #[target_feature(enable = $features)]
        fn q5_0<const R: usize, const N: usize>(w: &[&[u8]; R], a: &[&[u8]; N]) -> [[f32; N]; R] {
            q8_0_family::<22, R, N>(w, a, false, |x| decode_q5_0(x))
        }

        #[target_feature(enable = $features)]
        fn q8_0<const R: usize, const N: usize>(w: &[&[u8]; R], a: &[&[u8]; N]) -> [[f32; N]; R] {
            q8_0_family::<34, R, N>(w, a, false, |x| decode_q8_0(x))
        }

        #[target_feature(enable = $features)]
        fn iq4_nl<const R: usize, const N: usize>(w: &[&[u8]; R], a: &[&[u8]; N]) -> [[f32; N]; R] {
            q8_0_family::<18, R, N>(w, a, true, |x| decode_iq4_nl(x))
        }

        #[target_feature(enable = $features)]
        fn mxfp4<const R: usize, const N: usize>(w: &[&[u8]; R], a: &[&[u8]; N]) -> [[f32; N]; R] {
            q8_0_family::<17, R, N>(w, a, true, |x| {
                (lut16(&MXFP4_VALUES, nibbles(load128(x, 1))), e8m0_to_f32_half(x[0]))
            })
        }

        /// Weights with Q8_1 activations (Q4_1, Q5_1): unsigned quants plus the block offset
        /// m * s, `R` weight rows against `N` activation rows (as `q8_0_family`: each output
        /// in the one-row order). `decode` gives the quants.
        #[inline]
        #[target_feature(enable = $features)]
        fn q8_1_family<const W: usize, const R: usize, const N: usize>(
            w: &[&[u8]; R],
            a: &[&[u8]; N],
            decode: impl Fn(&[u8; W]) -> __m256i,
        ) -> [[f32; N]; R] {
            let (wb, ab) = tile_of::<W, 36, R, N>(w, a);
            let ahead = 4 * R * w[0].len();
            let mut acc = [[_mm256_setzero_ps(); N]; R];
            let mut offset = [[0f32; N]; R];
            for i in 0..wb[0].len() {
                // Plain loops, not `array::from_fn` (see `q8_0_family`).
                let mut q = [_mm256_setzero_si256(); R];
                let mut dm = [(0f32, 0f32); R];
                for r in 0..R {
                    prefetch_ahead(wb[r], i, ahead);
                    q[r] = decode(&wb[r][i]);
                    dm[r] = h2f2(&wb[r][i], 0);
                }
                for n in 0..N {
                    let y = &ab[n][i];
                    let yq = load256(y, 4);
                    let (dy, sy) = h2f2(y, 0);
                    for r in 0..R {
                        let p = $dot_u8s(q[r], yq);
                        let d = _mm256_set1_ps(dm[r].0 * dy);
                        acc[r][n] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r][n]);
                        offset[r][n] += dm[r].1 * sy;
                    }
                }
            }
            let mut out = [[0f32; N]; R];
            for r in 0..R {
                out[r] = finish(acc[r], offset[r].map(|o| -o));
            }
            out
        }

        /// Q4_1 in the batch-invariant order (`invariant`): per (row, token), each block's
        /// integer sum of `q * y` whole (q the unsigned nibbles), then
        /// `acc = fma(sum, dw * dy, acc)` and, in a second chain, `off = fma(mw, sy, off)`;
        /// the result `acc + off`. Decoding (`gemv.rs`) and prompt (`lanes.rs`) kernels put
        /// rows or tokens in the vector lanes and compute the same values.
        #[target_feature(enable = $features)]
        fn q4_1_blockwise<const R: usize, const N: usize>(
            w: &[&[u8]; R],
            a: &[&[u8]; N],
        ) -> [[f32; N]; R] {
            let (wb, ab) = tile_of::<20, 36, R, N>(w, a);
            let ahead = 4 * R * w[0].len();
            let (mut acc, mut off) = ([[0f32; N]; R], [[0f32; N]; R]);
            for i in 0..wb[0].len() {
                // Plain loops, not `array::from_fn` (see `q8_0_family`).
                let mut q = [_mm256_setzero_si256(); R];
                let mut dm = [(0f32, 0f32); R];
                for r in 0..R {
                    prefetch_ahead(wb[r], i, ahead);
                    q[r] = nibbles(load128(&wb[r][i], 4));
                    dm[r] = h2f2(&wb[r][i], 0);
                }
                for n in 0..N {
                    let y = &ab[n][i];
                    let yq = load256(y, 4);
                    let (dy, sy) = h2f2(y, 0);
                    for r in 0..R {
                        let p = hsum_i32($dot_u8s(q[r], yq));
                        acc[r][n] = (p as f32).mul_add(dm[r].0 * dy, acc[r][n]);
                        off[r][n] = dm[r].1.mul_add(sy, off[r][n]);
                    }
                }
            }
            let mut out = [[0f32; N]; R];
            for r in 0..R {
                for n in 0..N {
                    out[r][n] = acc[r][n] + off[r][n];
                }
            }
            out
        }

        #[target_feature(enable = $features)]
        fn q4_1<const R: usize, const N: usize>(w: &[&[u8]; R], a: &[&[u8]; N]) -> [[f32; N]; R] {
            q8_1_family::<20, R, N>(w, a, |x| nibbles(load128(x, 4)))
        }

        #[target_feature(enable = $features)]
        fn q5_1<const R: usize, const N: usize>(w: &[&[u8]; R], a: &[&[u8]; N]) -> [[f32; N]; R] {
            q8_1_family::<24, R, N>(w, a, |x| {
                let high = _mm256_and_si256(bit_bytes(qh_u32(x, 4)), _mm256_set1_epi8(16));
                _mm256_or_si256(nibbles(load128(x, 8)), high)
            })
        }

        /// Bits `shift..shift+width` of every byte (width from `mask`), as bytes.
        #[inline]
        #[target_feature(enable = $features)]
        fn bits_at(v: __m256i, shift: u32, mask: i8) -> __m256i {
            let s = _mm256_srl_epi16(v, _mm_cvtsi32_si128(shift as i32));
            _mm256_and_si256(s, _mm256_set1_epi8(mask))
        }

        /// 16 bytes as 16 i16 lanes, signed or not.
        #[inline]
        #[target_feature(enable = $features)]
        fn widen_i8(v: __m128i) -> __m256i {
            _mm256_cvtepi8_epi16(v)
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn widen_u8(v: __m128i) -> __m256i {
            _mm256_cvtepu8_epi16(v)
        }

        /// From 16 i16 group scales, the vector for chunk c: lanes 0..8 scale 2c, 8..16 2c+1.
        #[inline]
        #[target_feature(enable = $features)]
        fn chunk_scales(scales: __m256i, c: usize) -> __m256i {
            let pair = _mm256_permutevar8x32_epi32(scales, _mm256_set1_epi32(c as i32));
            let ctrl = _mm256_setr_epi8(
                0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, //
                2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
            );
            _mm256_shuffle_epi8(pair, ctrl)
        }

        /// The eight i32 lanes ggml's AVX2 K-quant kernels hold for one super-block, for each
        /// of `N` activation blocks: lane k sums, over the eight 32-value chunks c, the group
        /// scale times the products of values 32c+4k .. 32c+4k+3. `chunk(c)` gives chunk c's
        /// quants as unsigned bytes and `bias` what each stands above its signed value (Q3_K 4,
        /// Q6_K 32, else 0), taken off inside the lane as ggml does (`maddubs(q, y) -
        /// maddubs(bias, y)`) so every lane holds ggml's integer. `scales` are the 16 group
        /// scales as i16. Unsigned quants are at most 63 and |y| <= 127: no i16 saturates.
        #[inline]
        #[target_feature(enable = $features)]
        fn k_lanes<const N: usize>(
            ys: [&[u8; 292]; N],
            scales: __m256i,
            bias: i8,
            chunks: std::ops::Range<usize>,
            chunk: impl Fn(usize) -> __m256i,
        ) -> [__m256i; N] {
            let mut sumi = [_mm256_setzero_si256(); N];
            let b = _mm256_set1_epi8(bias);
            for c in chunks {
                let q = chunk(c);
                let sv = chunk_scales(scales, c);
                for n in 0..N {
                    let y = load256(ys[n], 4 + 32 * c);
                    let mut p = _mm256_maddubs_epi16(q, y);
                    if bias != 0 {
                        p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(b, y));
                    }
                    sumi[n] = _mm256_add_epi32(sumi[n], _mm256_madd_epi16(p, sv));
                }
            }
            sumi
        }

        /// The activation blocks of super-block i of each row.
        #[inline(always)]
        fn col<'a, const N: usize>(ab: &[&'a [[u8; 292]]; N], i: usize) -> [&'a [u8; 292]; N] {
            std::array::from_fn(|n| &ab[n][i])
        }

        /// Q2_K: 16 scales and mins of 4 bits (low and high nibbles of bytes 0..16).
        #[inline]
        #[target_feature(enable = $features)]
        fn q2_k_scales(x: &[u8; 84]) -> (__m256i, __m256i) {
            let s = load128(x, 0);
            let m = _mm_set1_epi8(0x0f);
            (widen_u8(_mm_and_si128(s, m)), widen_u8(_mm_and_si128(_mm_srli_epi16::<4>(s), m)))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn q2_k_chunk(x: &[u8; 84], c: usize) -> __m256i {
            bits_at(load256(x, 16 + (c / 4) * 32), 2 * (c % 4) as u32, 3)
        }

        /// Q2_K as ggml's AVX2 `vec_dot`: per super-block, first the mins (`madd` of the 16
        /// mins with the 16 sums, times -dy * dmin) and then the scaled sums, both fused into
        /// one accumulator of eight lanes.
        #[target_feature(enable = $features)]
        fn q2_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            let (wb, ab) = rows_of::<84, 292, N>(w, a);
            let mut acc = [_mm256_setzero_ps(); N];
            for (i, x) in wb.iter().enumerate() {
                let (scales, mins) = q2_k_scales(x);
                let ys = col(&ab, i);
                let sumi = k_lanes(ys, scales, 0, 0..8, |c| q2_k_chunk(x, c));
                let (d, dmin) = h2f2(x, 80);
                for n in 0..N {
                    let dy = q8_k_d(ys[n]);
                    let prod = _mm256_madd_epi16(mins, load256(ys[n], 260));
                    let vmin = _mm256_set1_ps(-dy * dmin);
                    acc[n] = _mm256_fmadd_ps(vmin, _mm256_cvtepi32_ps(prod), acc[n]);
                    acc[n] = _mm256_fmadd_ps(_mm256_set1_ps(dy * d), _mm256_cvtepi32_ps(sumi[n]), acc[n]);
                }
            }
            finish(acc, [0.0; N])
        }

        /// Q2_K's exact integer sums of one super-block per token: the scaled products and
        /// the mins times the sums of 16.
        #[inline]
        #[target_feature(enable = $features)]
        fn q2_k_ints<const N: usize>(x: &[u8; 84], ys: [&[u8; 292]; N]) -> [(i32, i32); N] {
            let (scales, mins) = q2_k_scales(x);
            let sumi = k_lanes(ys, scales, 0, 0..8, |c| q2_k_chunk(x, c));
            let mut out = [(0, 0); N];
            for n in 0..N {
                out[n] = (hsum_i32(sumi[n]), hsum_i32(_mm256_madd_epi16(mins, load256(ys[n], 260))));
            }
            out
        }

        /// Super-block sums in the order of llama.cpp's repacked x86 GEMV (`q2_K_8x8_q8_K`,
        /// `q4_K_8x8_q8_K`): `ints` gives each super-block's integer sums whole (products,
        /// mins), fused into a sum and a mins sum with `d * dy` and `dmin * dy` (f16 pair at
        /// `d_at`), subtracted at the end.
        #[inline]
        #[target_feature(enable = $features)]
        fn k_blockwise<const W: usize, const N: usize>(
            w: &[u8],
            a: &[&[u8]; N],
            d_at: usize,
            ints: impl Fn(&[u8; W], [&[u8; 292]; N]) -> [(i32, i32); N],
        ) -> [f32; N] {
            let (wb, ab) = rows_of::<W, 292, N>(w, a);
            let (mut acc, mut acc_min) = ([0f32; N], [0f32; N]);
            for (i, x) in wb.iter().enumerate() {
                prefetch_block(wb, i, 4 * w.len());
                let ys = col(&ab, i);
                let s = ints(x, ys);
                let (d, dmin) = h2f2(x, d_at);
                for n in 0..N {
                    let dy = q8_k_d(ys[n]);
                    acc[n] = (s[n].0 as f32).mul_add(d * dy, acc[n]);
                    acc_min[n] = (s[n].1 as f32).mul_add(dmin * dy, acc_min[n]);
                }
            }
            std::array::from_fn(|n| acc[n] - acc_min[n])
        }

        /// Q2_K as llama.cpp's repacked kernel (AVX-512 builds) sums it.
        #[target_feature(enable = $features)]
        fn q2_k_blockwise<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            k_blockwise::<84, N>(w, a, 80, |x, ys| q2_k_ints(x, ys))
        }

        /// Q3_K's sixteen 6-bit scales as i16: low nibbles from bytes 96..104 (both halves),
        /// two high bits from bytes 104..108, all minus 32.
        #[inline]
        #[target_feature(enable = $features)]
        fn q3_k_scales(x: &[u8; 110]) -> __m256i {
            let low8 = _mm_srli_si128::<2>(load128(x, 94));
            let low = _mm_unpacklo_epi64(
                _mm_and_si128(low8, _mm_set1_epi8(0x0f)),
                _mm_and_si128(_mm_srli_epi16::<4>(low8), _mm_set1_epi8(0x0f)),
            );
            let h = u32::from_le_bytes([x[104], x[105], x[106], x[107]]);
            let m = 0x0303_0303;
            let high = _mm_setr_epi32(
                (h & m) as i32,
                ((h >> 2) & m) as i32,
                ((h >> 4) & m) as i32,
                ((h >> 6) & m) as i32,
            );
            widen_i8(_mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16::<4>(high)), _mm_set1_epi8(32)))
        }

        /// Q3_K chunk c as q + 4 = low two bits | the mask bit as 4 (0..8): unsigned.
        #[inline]
        #[target_feature(enable = $features)]
        fn q3_k_chunk(x: &[u8; 110], c: usize) -> __m256i {
            let low = bits_at(load256(x, 32 + (c / 4) * 32), 2 * (c % 4) as u32, 3);
            let high = _mm256_slli_epi16::<2>(bits_at(load256(x, 0), c as u32, 1));
            _mm256_or_si256(low, high)
        }

        /// Q3_K as ggml's AVX2 `vec_dot`: signed quants (the 4 taken off inside each lane),
        /// one fused multiply-add of `dy * d` per super-block and lane.
        #[target_feature(enable = $features)]
        fn q3_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            let (wb, ab) = rows_of::<110, 292, N>(w, a);
            let mut acc = [_mm256_setzero_ps(); N];
            for (i, x) in wb.iter().enumerate() {
                let ys = col(&ab, i);
                let sumi = k_lanes(ys, q3_k_scales(x), 4, 0..8, |c| q3_k_chunk(x, c));
                let d = h2f(x, 108);
                for n in 0..N {
                    let vd = _mm256_set1_ps(q8_k_d(ys[n]) * d);
                    acc[n] = _mm256_fmadd_ps(vd, _mm256_cvtepi32_ps(sumi[n]), acc[n]);
                }
            }
            finish(acc, [0.0; N])
        }

        /// Q4_K/Q5_K scales and mins (6 bits each, packed in 12 bytes as `k_scale_min`
        /// reads them): the 16 group scales as i16 (each sub-block's twice) and the 8 mins.
        #[inline]
        #[target_feature(enable = $features)]
        fn k_scale_min_block(x: &[u8]) -> (__m256i, __m128i) {
            let word = |i: usize| u32::from_le_bytes([x[4 + i], x[5 + i], x[6 + i], x[7 + i]]);
            let (a, b, c) = (word(0), word(4), word(8));
            let sc_lo = a & 0x3f3f_3f3f;
            let m_lo = b & 0x3f3f_3f3f;
            let sc_hi = (c & 0x0f0f_0f0f) | ((a >> 2) & 0x3030_3030);
            let m_hi = ((c >> 4) & 0x0f0f_0f0f) | ((b >> 2) & 0x3030_3030);
            let v = _mm_setr_epi32(sc_lo as i32, sc_hi as i32, m_lo as i32, m_hi as i32);
            // Bytes 0..8 are the scales, 8..16 the mins.
            (widen_u8(_mm_unpacklo_epi8(v, v)), _mm_cvtepu8_epi16(_mm_srli_si128::<8>(v)))
        }

        /// Q4_K/Q5_K mins: lane k of `mins8 . (sums of 32 activations)`, as ggml pairs them
        /// (`hadd` of the 16 sums of 16, then `madd`): four i32 lanes.
        #[inline]
        #[target_feature(enable = $features)]
        fn k_mins(mins8: __m128i, y: &[u8; 292]) -> __m128i {
            let q8s = _mm_hadd_epi16(load128(y, 260), load128(y, 276));
            _mm_madd_epi16(mins8, q8s)
        }

        /// Q4_K and Q5_K as ggml's AVX2 `vec_dot`: eight lanes of `dy * d` times the lane
        /// sums; the mins go to four lanes of `-dy * dmin` (Q4_K, added at the end as
        /// (l0 + l2) + (l1 + l3)) or, for Q5_K, to one scalar per super-block, fused.
        #[inline]
        #[target_feature(enable = $features)]
        fn k_scale_min_family<const W: usize, const N: usize>(
            w: &[u8],
            a: &[&[u8]; N],
            scalar_mins: bool,
            chunk: impl Fn(&[u8; W], usize) -> __m256i,
        ) -> [f32; N] {
            let (wb, ab) = rows_of::<W, 292, N>(w, a);
            let mut acc = [_mm256_setzero_ps(); N];
            let mut acc_m = [_mm_setzero_ps(); N];
            let mut summs = [0f32; N];
            for (i, x) in wb.iter().enumerate() {
                let (scales, mins8) = k_scale_min_block(x);
                let ys = col(&ab, i);
                let sumi = k_lanes(ys, scales, 0, 0..8, |c| chunk(x, c));
                let (d, dmin) = h2f2(x, 0);
                for n in 0..N {
                    let dy = q8_k_d(ys[n]);
                    let prod = k_mins(mins8, ys[n]);
                    if scalar_mins {
                        summs[n] = (-dy * dmin).mul_add(hsum_i32(_mm256_zextsi128_si256(prod)) as f32, summs[n]);
                    } else {
                        acc_m[n] = _mm_fmadd_ps(_mm_set1_ps(-dy * dmin), _mm_cvtepi32_ps(prod), acc_m[n]);
                    }
                    acc[n] = _mm256_fmadd_ps(_mm256_set1_ps(dy * d), _mm256_cvtepi32_ps(sumi[n]), acc[n]);
                }
            }
            let mut out = [0f32; N];
            for n in 0..N {
                let m = _mm_add_ps(acc_m[n], _mm_movehl_ps(acc_m[n], acc_m[n]));
                let m = _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
                out[n] = hsum(acc[n]) + if scalar_mins { summs[n] } else { m };
            }
            out
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn q4_k_chunk(x: &[u8; 144], c: usize) -> __m256i {
            bits_at(load256(x, 16 + (c / 2) * 32), 4 * (c % 2) as u32, 0x0f)
        }

        #[target_feature(enable = $features)]
        fn q4_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            k_scale_min_family::<144, N>(w, a, false, |x, c| q4_k_chunk(x, c))
        }

        /// Each token's lanes summed, with no mins sum (formats without mins).
        #[inline]
        #[target_feature(enable = $features)]
        fn sums_only<const N: usize>(sumi: [__m256i; N]) -> [(i32, i32); N] {
            let mut out = [(0, 0); N];
            for n in 0..N {
                out[n] = (hsum_i32(sumi[n]), 0);
            }
            out
        }

        /// Q4_K/Q5_K's exact integer sums of one super-block per token: the scaled products
        /// and the mins times the sums of 32.
        #[inline]
        #[target_feature(enable = $features)]
        fn k_scale_min_ints<const W: usize, const N: usize>(
            x: &[u8; W],
            ys: [&[u8; 292]; N],
            chunk: impl Fn(&[u8; W], usize) -> __m256i,
        ) -> [(i32, i32); N] {
            let (scales, mins8) = k_scale_min_block(x);
            let sumi = k_lanes(ys, scales, 0, 0..8, |c| chunk(x, c));
            // Plain loops, not `array::from_fn` (see `q8_0_family`).
            let mut out = [(0, 0); N];
            for n in 0..N {
                let m = hsum_i32(_mm256_zextsi128_si256(k_mins(mins8, ys[n])));
                out[n] = (hsum_i32(sumi[n]), m);
            }
            out
        }

        /// Q4_K as llama.cpp's repacked x86 GEMV sums it (used whenever a matrix has a
        /// multiple of 8 rows).
        #[target_feature(enable = $features)]
        fn q4_k_blockwise<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            k_blockwise::<144, N>(w, a, 0, |x, ys| k_scale_min_ints(x, ys, |x, c| q4_k_chunk(x, c)))
        }

        /// Q4_K as llama.cpp's repacked GEMM (`ggml_gemm_q4_K_8x8_q8_K`, rows in groups of
        /// four) sums it: like the GEMV but fused every two sub-blocks (64 values) instead of
        /// every super-block.
        #[target_feature(enable = $features)]
        fn q4_k_gemm<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            let (wb, ab) = rows_of::<144, 292, N>(w, a);
            let (mut acc, mut acc_min) = ([0f32; N], [0f32; N]);
            for (i, x) in wb.iter().enumerate() {
                let (scales, mins8) = k_scale_min_block(x);
                let ys = col(&ab, i);
                let (d, dmin) = h2f2(x, 0);
                let mut imin = [[0i32; 4]; N];
                for n in 0..N {
                    // SAFETY: a 16-byte store into a 16-byte array.
                    unsafe { _mm_storeu_si128(imin[n].as_mut_ptr().cast(), k_mins(mins8, ys[n])) };
                }
                for sb in 0..4 {
                    let sumi = k_lanes(ys, scales, 0, 2 * sb..2 * sb + 2, |c| q4_k_chunk(x, c));
                    for n in 0..N {
                        let dy = q8_k_d(ys[n]);
                        acc[n] = (hsum_i32(sumi[n]) as f32).mul_add(d * dy, acc[n]);
                        acc_min[n] = (imin[n][sb] as f32).mul_add(dmin * dy, acc_min[n]);
                    }
                }
            }
            std::array::from_fn(|n| acc[n] - acc_min[n])
        }

        #[target_feature(enable = $features)]
        fn q5_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            k_scale_min_family::<176, N>(w, a, true, |x, c| q5_k_chunk(x, c))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn q5_k_chunk(x: &[u8; 176], c: usize) -> __m256i {
            let low = bits_at(load256(x, 48 + (c / 2) * 32), 4 * (c % 2) as u32, 0x0f);
            let high = _mm256_slli_epi16::<4>(bits_at(load256(x, 16), c as u32, 1));
            _mm256_or_si256(low, high)
        }

        /// Q6_K chunk c (elements 32c..32c+31) as q + 32 (0..64), unsigned.
        #[inline]
        #[target_feature(enable = $features)]
        fn q6_k_chunk(x: &[u8; 210], c: usize) -> __m256i {
            let (half, k) = (c / 4, c % 4);
            let low = bits_at(load256(x, half * 64 + (k % 2) * 32), 4 * (k / 2) as u32, 0x0f);
            let high = bits_at(load256(x, 128 + half * 32), 2 * k as u32, 3);
            _mm256_or_si256(low, _mm256_slli_epi16::<4>(high))
        }

        /// Q6_K as ggml's AVX2 kernel sums it: unsigned quants (q + 32) in the lanes, and
        /// the offset as its own lanes, `32 * madd(bsums, scales)`, subtracted from them in
        /// integers; one fused multiply-add per super-block and lane.
        #[target_feature(enable = $features)]
        fn q6_k<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            let (wb, ab) = rows_of::<210, 292, N>(w, a);
            let mut acc = [_mm256_setzero_ps(); N];
            for (i, x) in wb.iter().enumerate() {
                prefetch_block(wb, i, 4 * w.len());
                let ys = col(&ab, i);
                let scales = widen_i8(load128(x, 192));
                let sumi = k_lanes(ys, scales, 0, 0..8, |c| q6_k_chunk(x, c));
                let dx = h2f(x, 208);
                for n in 0..N {
                    let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(load256(ys[n], 260), scales));
                    let lanes = _mm256_sub_epi32(sumi[n], offset);
                    let d = _mm256_set1_ps(q8_k_d(ys[n]) * dx);
                    acc[n] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc[n]);
                }
            }
            finish(acc, [0.0; N])
        }

        /// Q6_K in the batch-invariant order (`invariant`): per (row, token) and super-block
        /// the exact integer sum of `scale * (q - 32) * y`, then one fused multiply-add with
        /// `dx * dy`. The prompt panels (`lanes.rs`) put tokens in the vector lanes and
        /// compute the same values.
        #[target_feature(enable = $features)]
        fn q6_k_blockwise<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            let (wb, ab) = rows_of::<210, 292, N>(w, a);
            let mut acc = [0f32; N];
            for (i, x) in wb.iter().enumerate() {
                prefetch_block(wb, i, 4 * w.len());
                let ys = col(&ab, i);
                let scales = widen_i8(load128(x, 192));
                let sumi = k_lanes(ys, scales, 0, 0..8, |c| q6_k_chunk(x, c));
                let dx = h2f(x, 208);
                for n in 0..N {
                    let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(load256(ys[n], 260), scales));
                    let s = hsum_i32(_mm256_sub_epi32(sumi[n], offset));
                    acc[n] = (s as f32).mul_add(dx * q8_k_d(ys[n]), acc[n]);
                }
            }
            acc
        }

        /// IQ4_XS lanes of one super-block: lane k of each 32-value sub-block's products,
        /// times its scale, summed over the sub-blocks (ggml's lane layout).
        #[inline]
        #[target_feature(enable = $features)]
        fn iq4_xs_lanes<const N: usize>(x: &[u8; 136], ys: [&[u8; 292]; N]) -> [__m256i; N] {
            let mut sumi = [_mm256_setzero_si256(); N];
            for ib in 0..8 {
                let q = lut16(&IQ4_VALUES, nibbles(load128(x, 8 + 16 * ib)));
                let abs_q = _mm256_sign_epi8(q, q);
                let s = _mm256_set1_epi32(i32::from(iq4_xs_scale(x, ib)));
                for n in 0..N {
                    let y = _mm256_sign_epi8(load256(ys[n], 4 + 32 * ib), q);
                    sumi[n] = _mm256_add_epi32(sumi[n], _mm256_mullo_epi32($dot_u8s(abs_q, y), s));
                }
            }
            sumi
        }

        #[target_feature(enable = $features)]
        fn iq4_xs<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            let (wb, ab) = rows_of::<136, 292, N>(w, a);
            let mut acc = [_mm256_setzero_ps(); N];
            for (i, x) in wb.iter().enumerate() {
                let ys = col(&ab, i);
                let sumi = iq4_xs_lanes(x, ys);
                let dx = h2f(x, 0);
                for n in 0..N {
                    let d = _mm256_set1_ps(dx * q8_k_d(ys[n]));
                    acc[n] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[n]), acc[n]);
                }
            }
            finish(acc, [0.0; N])
        }

        /// llama.cpp's tiled K-quant matrix product (`ggml-cpu/tiled`, taken for batches of 8
        /// rows or more of matrices it does not repack), as its AVX2 microkernel rounds (the
        /// reference data's build took that one, not the AVX-512 VNNI variant, which adds
        /// without fusing: measured on Gemma 3's multi-block Q6_K rows): per super-block the
        /// exact integer sums `s1` (scales times products) and `s2` (mins times sums), then
        /// `r = s1 * d`, `r = r - dmin * s2` fused, and the output gains `r * dy` fused,
        /// super-block after super-block. `ints` gives (s1, s2) per token.
        #[inline]
        #[target_feature(enable = $features)]
        fn tiled<const W: usize, const N: usize>(
            w: &[u8],
            a: &[&[u8]; N],
            d_at: usize,
            has_min: bool,
            ints: impl Fn(&[u8; W], [&[u8; 292]; N]) -> [(i32, i32); N],
        ) -> [f32; N] {
            let (wb, ab) = rows_of::<W, 292, N>(w, a);
            let mut acc = [0f32; N];
            for (i, x) in wb.iter().enumerate() {
                let ys = col(&ab, i);
                let s = ints(x, ys);
                let (d, dmin) = if has_min { h2f2(x, d_at) } else { (h2f(x, d_at), 0.0) };
                for n in 0..N {
                    let mut r = s[n].0 as f32 * d;
                    if has_min {
                        r = (-dmin).mul_add(s[n].1 as f32, r);
                    }
                    acc[n] = r.mul_add(q8_k_d(ys[n]), acc[n]);
                }
            }
            acc
        }

        #[target_feature(enable = $features)]
        fn q2_k_tiled<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            tiled::<84, N>(w, a, 80, true, |x, ys| q2_k_ints(x, ys))
        }

        #[target_feature(enable = $features)]
        fn q3_k_tiled<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            tiled::<110, N>(w, a, 108, false, |x, ys| {
                let sumi = k_lanes(ys, q3_k_scales(x), 4, 0..8, |c| q3_k_chunk(x, c));
                sums_only(sumi)
            })
        }

        #[target_feature(enable = $features)]
        fn q4_k_tiled<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            tiled::<144, N>(w, a, 0, true, |x, ys| k_scale_min_ints(x, ys, |x, c| q4_k_chunk(x, c)))
        }

        #[target_feature(enable = $features)]
        fn q5_k_tiled<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            tiled::<176, N>(w, a, 0, true, |x, ys| k_scale_min_ints(x, ys, |x, c| q5_k_chunk(x, c)))
        }

        #[target_feature(enable = $features)]
        fn q6_k_tiled<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            tiled::<210, N>(w, a, 208, false, |x, ys| {
                let sumi = k_lanes(ys, widen_i8(load128(x, 192)), 32, 0..8, |c| q6_k_chunk(x, c));
                sums_only(sumi)
            })
        }

        #[target_feature(enable = $features)]
        fn iq4_xs_tiled<const N: usize>(w: &[u8], a: &[&[u8]; N]) -> [f32; N] {
            tiled::<136, N>(w, a, 0, false, |x, ys| {
                let sumi = iq4_xs_lanes(x, ys);
                sums_only(sumi)
            })
        }

        /// Float weights: 8 values at a time, `load(i)` giving weights 8i..8i+8 as f32.
        #[inline]
        #[target_feature(enable = $features)]
        fn float_dot(
            a: &[f32],
            n: usize,
            load: impl Fn(usize) -> __m256,
            tail: impl Fn(usize) -> f32,
        ) -> f32 {
            let (chunks, _) = a.as_chunks::<8>();
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut i = 0;
            while i + 1 < chunks.len() {
                // SAFETY: chunks[i] and chunks[i + 1] are 8 readable f32 each.
                let (a0, a1) = unsafe {
                    (
                        _mm256_loadu_ps(chunks[i].as_ptr()),
                        _mm256_loadu_ps(chunks[i + 1].as_ptr()),
                    )
                };
                acc0 = _mm256_fmadd_ps(load(i), a0, acc0);
                acc1 = _mm256_fmadd_ps(load(i + 1), a1, acc1);
                i += 2;
            }
            if i < chunks.len() {
                // SAFETY: chunks[i] is 8 readable f32.
                let a0 = unsafe { _mm256_loadu_ps(chunks[i].as_ptr()) };
                acc0 = _mm256_fmadd_ps(load(i), a0, acc0);
            }
            let mut sum = hsum(_mm256_add_ps(acc0, acc1));
            for j in chunks.len() * 8..n {
                sum += tail(j) * a[j];
            }
            sum
        }

        #[target_feature(enable = $features)]
        fn f32_dot(w: &[u8], a: &[f32]) -> f32 {
            let load = |i: usize| {
                let s: &[u8; 32] = w[32 * i..32 * i + 32].try_into().expect("32 bytes");
                // SAFETY: 32 readable bytes = 8 f32; loadu has no alignment requirement.
                unsafe { _mm256_loadu_ps(s.as_ptr().cast()) }
            };
            let tail =
                |j: usize| f32::from_le_bytes([w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]]);
            float_dot(a, a.len(), load, tail)
        }

        #[target_feature(enable = $features)]
        fn f16_dot(w: &[u8], a: &[f32]) -> f32 {
            let load = |i: usize| _mm256_cvtph_ps(load128(w, 16 * i));
            let tail = |j: usize| half::f16::from_le_bytes([w[2 * j], w[2 * j + 1]]).to_f32();
            float_dot(a, a.len(), load, tail)
        }

        #[target_feature(enable = $features)]
        fn bf16_dot(w: &[u8], a: &[f32]) -> f32 {
            let load = |i: usize| {
                let v = _mm256_cvtepu16_epi32(load128(w, 16 * i));
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v))
            };
            let tail = |j: usize| {
                crate::quant::fp::bf16_to_f32(u16::from_le_bytes([w[2 * j], w[2 * j + 1]]))
            };
            float_dot(a, a.len(), load, tail)
        }

        /// Safe entry points, stored in the dispatch table: one token (`Dot::Quant::f`) and
        /// four tokens at once (`Dot::Quant::f4`).
        macro_rules! entry {
            ($one:ident, $four:ident, $kernel:ident) => {
                fn $one(w: &[u8], a: &[u8]) -> f32 {
                    // SAFETY: these entries are handed out only by `quant::dot::kernel`, and only
                    // when `cpu::detected()` reports every feature this module is compiled for.
                    unsafe { $kernel::<1>(w, &[a])[0] }
                }

                fn $four(w: &[u8], a: &[&[u8]; 4]) -> [f32; 4] {
                    // SAFETY: as above.
                    unsafe { $kernel::<4>(w, a) }
                }
            };
        }
        /// Entry points of a kernel over `R` weight rows: one row and one or four tokens (as
        /// `entry!`), four rows and one token (`Tiles::rows4`), two rows and four tokens
        /// (`Tiles::r2x4`).
        macro_rules! tiled_entry {
            ($one:ident, $four:ident, $tiles:ident, $kernel:ident, $wide:expr, $rows16:expr) => {
                fn $one(w: &[u8], a: &[u8]) -> f32 {
                    // SAFETY: as in `entry!`.
                    unsafe { $kernel::<1, 1>(&[w], &[a])[0][0] }
                }

                fn $four(w: &[u8], a: &[&[u8]; 4]) -> [f32; 4] {
                    // SAFETY: as in `entry!`.
                    unsafe { $kernel::<1, 4>(&[w], a)[0] }
                }

                const $tiles: Tiles = {
                    fn rows4(w: &[&[u8]; 4], a: &[u8]) -> [f32; 4] {
                        // SAFETY: as in `entry!`.
                        unsafe { $kernel::<4, 1>(w, &[a]).map(|v| v[0]) }
                    }
                    fn r2x4(w: &[&[u8]; 2], a: &[&[u8]; 4]) -> [[f32; 4]; 2] {
                        // SAFETY: as in `entry!`.
                        unsafe { $kernel::<2, 4>(w, a) }
                    }
                    Tiles { rows4, rows16: $rows16, r2x4, wide: $wide }
                };
            };
        }
        tiled_entry!(e_q4_0, e4_q4_0, T_Q4_0, q4_0, WIDE_Q4_0, None);
        tiled_entry!(e_q4_1, e4_q4_1, T_Q4_1, q4_1, WIDE_Q4_1, None);
        tiled_entry!(e_q5_0, e4_q5_0, T_Q5_0, q5_0, WIDE_Q5_0, None);
        tiled_entry!(e_q5_1, e4_q5_1, T_Q5_1, q5_1, WIDE_Q5_1, None);
        tiled_entry!(e_q8_0, e4_q8_0, T_Q8_0, q8_0, WIDE_Q8_0, None);
        entry!(e_q2_k, e4_q2_k, q2_k);
        entry!(e_q3_k, e4_q3_k, q3_k);
        entry!(e_q4_k, e4_q4_k, q4_k);
        entry!(e_q5_k, e4_q5_k, q5_k);
        entry!(e_q6_k, e4_q6_k, q6_k);
        tiled_entry!(e_iq4_nl, e4_iq4_nl, T_IQ4_NL, iq4_nl, None, None);
        entry!(e_iq4_xs, e4_iq4_xs, iq4_xs);
        tiled_entry!(e_mxfp4, e4_mxfp4, T_MXFP4, mxfp4, None, None);
        tiled_entry!(e_q4_0_bw, e4_q4_0_bw, T_Q4_0_BW, q4_0_blockwise, WIDE_Q4_0_BW, GEMV_Q4_0_BW);
        tiled_entry!(e_q5_0_bw, e4_q5_0_bw, T_Q5_0_BW, q5_0_blockwise, WIDE_Q5_0_BW, GEMV_Q5_0_BW);
        tiled_entry!(e_q8_0_bw, e4_q8_0_bw, T_Q8_0_BW, q8_0_bw, WIDE_Q8_0_BW, GEMV_Q8_0_BW);
        tiled_entry!(e_q4_1_bw, e4_q4_1_bw, T_Q4_1_BW, q4_1_blockwise, WIDE_Q4_1_BW, GEMV_Q4_1_BW);
        tiled_entry!(e_iq4_nl_bw, e4_iq4_nl_bw, T_IQ4_NL_BW, iq4_nl_blockwise, WIDE_IQ4_NL_BW, GEMV_IQ4_NL_BW);
        entry!(e_q4_k_bw, e4_q4_k_bw, q4_k_blockwise);
        /// Q4_K's repacked order has no multi-row kernels of its own: `rows4` and `r2x4`
        /// take the rows one at a time (the same values); what it has is the 512-bit panels.
        const T_Q4_K_BW: Tiles = {
            fn rows4(w: &[&[u8]; 4], a: &[u8]) -> [f32; 4] {
                [e_q4_k_bw(w[0], a), e_q4_k_bw(w[1], a), e_q4_k_bw(w[2], a), e_q4_k_bw(w[3], a)]
            }
            fn r2x4(w: &[&[u8]; 2], a: &[&[u8]; 4]) -> [[f32; 4]; 2] {
                [e4_q4_k_bw(w[0], a), e4_q4_k_bw(w[1], a)]
            }
            Tiles { rows4, rows16: None, r2x4, wide: WIDE_Q4_K_BW }
        };
        entry!(e_q6_k_bw, e4_q6_k_bw, q6_k_blockwise);
        /// Q6_K's batch-invariant order, like Q4_K's repacked one: rows one at a time, and
        /// the 512-bit panels.
        const T_Q6_K_BW: Tiles = {
            fn rows4(w: &[&[u8]; 4], a: &[u8]) -> [f32; 4] {
                [e_q6_k_bw(w[0], a), e_q6_k_bw(w[1], a), e_q6_k_bw(w[2], a), e_q6_k_bw(w[3], a)]
            }
            fn r2x4(w: &[&[u8]; 2], a: &[&[u8]; 4]) -> [[f32; 4]; 2] {
                [e4_q6_k_bw(w[0], a), e4_q6_k_bw(w[1], a)]
            }
            Tiles { rows4, rows16: None, r2x4, wide: WIDE_Q6_K_BW }
        };
        entry!(e_q2_k_bw, e4_q2_k_bw, q2_k_blockwise);
        entry!(e_q4_k_gemm, e4_q4_k_gemm, q4_k_gemm);
        entry!(e_q2_k_tiled, e4_q2_k_tiled, q2_k_tiled);
        entry!(e_q3_k_tiled, e4_q3_k_tiled, q3_k_tiled);
        entry!(e_q4_k_tiled, e4_q4_k_tiled, q4_k_tiled);
        entry!(e_q5_k_tiled, e4_q5_k_tiled, q5_k_tiled);
        entry!(e_q6_k_tiled, e4_q6_k_tiled, q6_k_tiled);
        entry!(e_iq4_xs_tiled, e4_iq4_xs_tiled, iq4_xs_tiled);

        macro_rules! float_entry {
            ($name:ident, $kernel:ident) => {
                fn $name(w: &[u8], a: &[f32]) -> f32 {
                    // SAFETY: as above.
                    unsafe { $kernel(w, a) }
                }
            };
        }
        float_entry!(e_f32, f32_dot);
        float_entry!(e_f16, f16_dot);
        float_entry!(e_bf16, bf16_dot);

        /// This level's kernel for weight format `ty` (same activation format as the scalar
        /// reference). Callers must have checked `cpu::detected()` (see `quant::dot::kernel`).
        pub(in crate::quant) fn dot(ty: GgmlType) -> Option<Dot> {
            let q = |act, f, f4| Some(Dot::Quant { act, f, f4: Some(f4), tiles: None });
            let t = |act, f, f4, tiles| Some(Dot::Quant { act, f, f4: Some(f4), tiles: Some(tiles) });
            type One = fn(&[u8], &[u8]) -> f32;
            type Four = fn(&[u8], &[&[u8]; 4]) -> [f32; 4];
            match ty {
                GgmlType::F32 => Some(Dot::Float(e_f32)),
                GgmlType::F16 => Some(Dot::Float(e_f16)),
                GgmlType::Bf16 => Some(Dot::Float(e_bf16)),
                GgmlType::Q4_0 => t(GgmlType::Q8_0, e_q4_0 as One, e4_q4_0 as Four, T_Q4_0),
                GgmlType::Q4_1 => t(GgmlType::Q8_1, e_q4_1, e4_q4_1, T_Q4_1),
                GgmlType::Q5_0 => t(GgmlType::Q8_0, e_q5_0, e4_q5_0, T_Q5_0),
                GgmlType::Q5_1 => t(GgmlType::Q8_1, e_q5_1, e4_q5_1, T_Q5_1),
                GgmlType::Q8_0 => t(GgmlType::Q8_0, e_q8_0, e4_q8_0, T_Q8_0),
                GgmlType::Q2K => q(GgmlType::Q8K, e_q2_k, e4_q2_k),
                GgmlType::Q3K => q(GgmlType::Q8K, e_q3_k, e4_q3_k),
                GgmlType::Q4K => q(GgmlType::Q8K, e_q4_k, e4_q4_k),
                GgmlType::Q5K => q(GgmlType::Q8K, e_q5_k, e4_q5_k),
                GgmlType::Q6K => q(GgmlType::Q8K, e_q6_k, e4_q6_k),
                GgmlType::Iq4Nl => t(GgmlType::Q8_0, e_iq4_nl, e4_iq4_nl, T_IQ4_NL),
                GgmlType::Iq4Xs => q(GgmlType::Q8K, e_iq4_xs, e4_iq4_xs),
                GgmlType::Mxfp4 => t(GgmlType::Q8_0, e_mxfp4, e4_mxfp4, T_MXFP4),
                _ => None,
            }
        }

        /// The kernel in the float order of llama.cpp's repacked ("CPU_REPACK") x86 matrix
        /// kernels, for the formats it repacks: what llama.cpp computes for a matrix of one of
        /// these formats whose row count is a multiple of 8 (see `quant::dot::matmul_kernel`).
        pub(in crate::quant) fn blockwise(ty: GgmlType) -> Option<Dot> {
            let q = |act, f, f4| Some(Dot::Quant { act, f, f4: Some(f4), tiles: None });
            let t = |act, f, f4, tiles| Some(Dot::Quant { act, f, f4: Some(f4), tiles: Some(tiles) });
            type One = fn(&[u8], &[u8]) -> f32;
            type Four = fn(&[u8], &[&[u8]; 4]) -> [f32; 4];
            match ty {
                GgmlType::Q4_0 => t(GgmlType::Q8_0, e_q4_0_bw as One, e4_q4_0_bw as Four, T_Q4_0_BW),
                GgmlType::Iq4Nl => t(GgmlType::Q8_0, e_iq4_nl_bw, e4_iq4_nl_bw, T_IQ4_NL_BW),
                GgmlType::Q4K => t(GgmlType::Q8K, e_q4_k_bw, e4_q4_k_bw, T_Q4_K_BW),
                GgmlType::Q2K => q(GgmlType::Q8K, e_q2_k_bw, e4_q2_k_bw),
                _ => None,
            }
        }

        /// The kernel of llama.cpp's tiled K-quant matrix product (see `tiled`).
        pub(in crate::quant) fn tiled_k(ty: GgmlType) -> Option<Dot> {
            let q = |f, f4| Some(Dot::Quant { act: GgmlType::Q8K, f, f4: Some(f4), tiles: None });
            type One = fn(&[u8], &[u8]) -> f32;
            type Four = fn(&[u8], &[&[u8]; 4]) -> [f32; 4];
            match ty {
                GgmlType::Q2K => q(e_q2_k_tiled as One, e4_q2_k_tiled as Four),
                GgmlType::Q3K => q(e_q3_k_tiled, e4_q3_k_tiled),
                GgmlType::Q4K => q(e_q4_k_tiled, e4_q4_k_tiled),
                GgmlType::Q5K => q(e_q5_k_tiled, e4_q5_k_tiled),
                GgmlType::Q6K => q(e_q6_k_tiled, e4_q6_k_tiled),
                GgmlType::Iq4Xs => q(e_iq4_xs_tiled, e4_iq4_xs_tiled),
                _ => None,
            }
        }

        /// The kernel of llama.cpp's repacked GEMM for rows that it takes in groups of four,
        /// where it sums in another order than its GEMV (`blockwise`).
        pub(in crate::quant) fn blockwise_gemm(ty: GgmlType) -> Option<Dot> {
            let q = |act, f, f4| Some(Dot::Quant { act, f, f4: Some(f4), tiles: None });
            type One = fn(&[u8], &[u8]) -> f32;
            type Four = fn(&[u8], &[&[u8]; 4]) -> [f32; 4];
            match ty {
                GgmlType::Q4K => q(GgmlType::Q8K, e_q4_k_gemm as One, e4_q4_k_gemm as Four),
                _ => blockwise(ty),
            }
        }

        /// The batch-invariant order's kernel where it is not llama.cpp's one-row order
        /// (`quant::dot::invariant_kernel`): Q5_0 and Q8_0 summed block by block as the
        /// repacked formats are (`q8_0_blockwise`), Q4_1 likewise (`q4_1_blockwise`), Q6_K
        /// per super-block (`q6_k_blockwise`), which
        /// lets their prompt kernels put tokens in the vector lanes and their decoding
        /// kernels rows.
        pub(in crate::quant) fn invariant(ty: GgmlType) -> Option<Dot> {
            let t = |act, f, f4, tiles| Some(Dot::Quant { act, f, f4: Some(f4), tiles: Some(tiles) });
            type One = fn(&[u8], &[u8]) -> f32;
            type Four = fn(&[u8], &[&[u8]; 4]) -> [f32; 4];
            match ty {
                GgmlType::Q4_1 => t(GgmlType::Q8_1, e_q4_1_bw as One, e4_q4_1_bw as Four, T_Q4_1_BW),
                GgmlType::Q5_0 => t(GgmlType::Q8_0, e_q5_0_bw, e4_q5_0_bw, T_Q5_0_BW),
                GgmlType::Q8_0 => t(GgmlType::Q8_0, e_q8_0_bw, e4_q8_0_bw, T_Q8_0_BW),
                GgmlType::Q6K => t(GgmlType::Q8K, e_q6_k_bw, e4_q6_k_bw, T_Q6_K_BW),
                _ => None,
            }
        }
    };
}

/// AVX2 + FMA + F16C kernels.
pub mod avx2 {
    kernels!("avx2,fma,f16c", dot_u8s_avx2);

    // 256-bit vectors only: no panel kernels (`quant::dot::Wide`) yet.
    const WIDE_Q4_0: Option<Wide> = None;
    const WIDE_Q4_1: Option<Wide> = None;
    const WIDE_Q5_0: Option<Wide> = None;
    const WIDE_Q5_1: Option<Wide> = None;
    const WIDE_Q8_0: Option<Wide> = None;
    const WIDE_Q4_0_BW: Option<Wide> = None;
    const WIDE_Q5_0_BW: Option<Wide> = None;
    const WIDE_Q8_0_BW: Option<Wide> = None;
    const WIDE_IQ4_NL_BW: Option<Wide> = None;
    const WIDE_Q4_K_BW: Option<Wide> = None;
    const WIDE_Q4_1_BW: Option<Wide> = None;
    const WIDE_Q6_K_BW: Option<Wide> = None;
    const GEMV_Q4_1_BW: Option<DotRows16> = None;
    const GEMV_Q4_0_BW: Option<DotRows16> = None;
    const GEMV_Q5_0_BW: Option<DotRows16> = None;
    const GEMV_Q8_0_BW: Option<DotRows16> = None;
    const GEMV_IQ4_NL_BW: Option<DotRows16> = None;
    use crate::quant::dot::{DotRows16, Wide};
}

/// AVX-512 F/BW/VL/VNNI kernels (256-bit vectors; the gain is `vpdpbusd`), and the prompt
/// kernels on 512-bit vectors over packed panels (`wide`: four rows by eight tokens).
pub mod avx512 {
    kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        dot_u8s_vnni
    );

    mod gemv;
    mod lanes;
    pub(in crate::quant) mod quantize;
    mod wide;
    use gemv::{GEMV_IQ4_NL_BW, GEMV_Q4_0_BW, GEMV_Q4_1_BW, GEMV_Q5_0_BW, GEMV_Q8_0_BW};
    use lanes::{
        WIDE_IQ4_NL_BW, WIDE_Q4_0_BW, WIDE_Q4_1_BW, WIDE_Q4_K_BW, WIDE_Q5_0_BW, WIDE_Q6_K_BW,
        WIDE_Q8_0_BW,
    };
    use wide::{WIDE_Q4_0, WIDE_Q4_1, WIDE_Q5_0, WIDE_Q5_1, WIDE_Q8_0};
}
