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
        use crate::quant::dot::Dot;
        use crate::quant::fp::{MXFP4_VALUES, e8m0_to_f32_half};
        use crate::quant::iq4::{IQ4_VALUES, iq4_xs_scale};
        use crate::quant::kquants::{k_scale_min, q3_k_scales, q8_k_d};

        /// Signed byte dot product: |x| * (y with x's sign), so the unsigned-by-signed
        /// instruction applies.
        #[inline]
        #[target_feature(enable = $features)]
        fn dot_i8s(x: __m256i, y: __m256i) -> __m256i {
            $dot_u8s(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }

        /// f16 bits at `at` as f32 (F16C).
        #[inline]
        #[target_feature(enable = $features)]
        fn h2f(b: &[u8], at: usize) -> f32 {
            // Built in a general register and moved with vmovd: an insert from memory would
            // merge into (and wait for) whatever vector register the compiler picks.
            let bits = u32::from(u16::from_le_bytes([b[at], b[at + 1]]));
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
        }

        /// The product of two f16 values (a weight scale and an activation scale).
        #[inline]
        #[target_feature(enable = $features)]
        fn h2f_mul(a: &[u8], ia: usize, b: &[u8], ib: usize) -> f32 {
            let bits = u32::from(u16::from_le_bytes([a[ia], a[ia + 1]]))
                | u32::from(u16::from_le_bytes([b[ib], b[ib + 1]])) << 16;
            let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
            _mm_cvtss_f32(_mm_mul_ss(v, _mm_movehdup_ps(v)))
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

        fn blocks<'a, const W: usize, const A: usize>(
            w: &'a [u8],
            a: &'a [u8],
        ) -> impl Iterator<Item = (&'a [u8; W], &'a [u8; A])> {
            w.as_chunks::<W>().0.iter().zip(a.as_chunks::<A>().0)
        }

        /// One 32-element weight block against one Q8_0 activation block:
        /// `acc += d * sum(q * a)` with signed q.
        #[inline]
        #[target_feature(enable = $features)]
        fn fma_block(acc: __m256, d: f32, q: __m256i, y: &[u8]) -> __m256 {
            let p = dot_i8s(q, load256(y, 2));
            _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc)
        }

        #[target_feature(enable = $features)]
        fn q4_0(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (x, y) in blocks::<18, 34>(w, a) {
                let q = _mm256_sub_epi8(nibbles(load128(x, 2)), _mm256_set1_epi8(8));
                acc = fma_block(acc, h2f_mul(x, 0, y, 0), q, y);
            }
            hsum(acc)
        }

        #[target_feature(enable = $features)]
        fn q5_0(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (x, y) in blocks::<22, 34>(w, a) {
                // q - 16 = nibble | 0xf0 where the fifth bit is clear.
                let high = _mm256_andnot_si256(bit_bytes(qh_u32(x, 2)), _mm256_set1_epi8(-16));
                let q = _mm256_or_si256(nibbles(load128(x, 6)), high);
                acc = fma_block(acc, h2f_mul(x, 0, y, 0), q, y);
            }
            hsum(acc)
        }

        #[target_feature(enable = $features)]
        fn q8_0(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (x, y) in blocks::<34, 34>(w, a) {
                acc = fma_block(acc, h2f_mul(x, 0, y, 0), load256(x, 2), y);
            }
            hsum(acc)
        }

        #[target_feature(enable = $features)]
        fn iq4_nl(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (x, y) in blocks::<18, 34>(w, a) {
                let q = lut16(&IQ4_VALUES, nibbles(load128(x, 2)));
                acc = fma_block(acc, h2f_mul(x, 0, y, 0), q, y);
            }
            hsum(acc)
        }

        #[target_feature(enable = $features)]
        fn mxfp4(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (x, y) in blocks::<17, 34>(w, a) {
                let q = lut16(&MXFP4_VALUES, nibbles(load128(x, 1)));
                acc = fma_block(acc, e8m0_to_f32_half(x[0]) * h2f(y, 0), q, y);
            }
            hsum(acc)
        }

        /// Q4_1 and Q5_1 with Q8_1: unsigned quants, plus the block offset m * s.
        #[target_feature(enable = $features)]
        fn q4_1(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut offset = 0f32;
            for (x, y) in blocks::<20, 36>(w, a) {
                let p = $dot_u8s(nibbles(load128(x, 4)), load256(y, 4));
                let d = _mm256_set1_ps(h2f_mul(x, 0, y, 0));
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
                offset += h2f_mul(x, 2, y, 2);
            }
            hsum(acc) + offset
        }

        #[target_feature(enable = $features)]
        fn q5_1(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut offset = 0f32;
            for (x, y) in blocks::<24, 36>(w, a) {
                let high = _mm256_and_si256(bit_bytes(qh_u32(x, 4)), _mm256_set1_epi8(16));
                let q = _mm256_or_si256(nibbles(load128(x, 8)), high);
                let p = $dot_u8s(q, load256(y, 4));
                let d = _mm256_set1_ps(h2f_mul(x, 0, y, 0));
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
                offset += h2f_mul(x, 2, y, 2);
            }
            hsum(acc) + offset
        }

        /// The 16-value sums of a Q8_K block.
        #[inline]
        #[target_feature(enable = $features)]
        fn bsum(y: &[u8], g: usize) -> i32 {
            i32::from(i16::from_le_bytes([y[260 + 2 * g], y[261 + 2 * g]]))
        }

        /// Per-16 scales of a 32-element chunk as i32 lanes (lanes 0..4 cover elements 0..16).
        #[inline]
        #[target_feature(enable = $features)]
        fn scale_pair(s0: i32, s1: i32) -> __m256i {
            _mm256_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1)
        }

        /// Bits `shift..shift+width` of every byte (width from `mask`), as bytes.
        #[inline]
        #[target_feature(enable = $features)]
        fn bits_at(v: __m256i, shift: u32, mask: i8) -> __m256i {
            let s = _mm256_srl_epi16(v, _mm_cvtsi32_si128(shift as i32));
            _mm256_and_si256(s, _mm256_set1_epi8(mask))
        }

        #[target_feature(enable = $features)]
        fn q2_k(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut mins = 0f32;
            for (x, y) in blocks::<84, 292>(w, a) {
                let scales = &x[0..16];
                let dy = q8_k_d(y);
                let mut sumi = _mm256_setzero_si256();
                let mut msum = 0i32;
                for c in 0..8 {
                    let q = bits_at(load256(x, 16 + (c / 4) * 32), 2 * (c % 4) as u32, 3);
                    let p = $dot_u8s(q, load256(y, 4 + 32 * c));
                    let (s0, s1) = (scales[2 * c], scales[2 * c + 1]);
                    let sv = scale_pair(i32::from(s0 & 0x0f), i32::from(s1 & 0x0f));
                    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, sv));
                    msum += i32::from(s0 >> 4) * bsum(y, 2 * c)
                        + i32::from(s1 >> 4) * bsum(y, 2 * c + 1);
                }
                let d = _mm256_set1_ps(dy * h2f(x, 80));
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
                mins += dy * h2f(x, 82) * msum as f32;
            }
            hsum(acc) - mins
        }

        #[target_feature(enable = $features)]
        fn q3_k(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut offsets = 0f32;
            for (x, y) in blocks::<110, 292>(w, a) {
                let scales = q3_k_scales(&x[96..108]);
                let hmask = load256(x, 0);
                let mut sumi = _mm256_setzero_si256();
                let mut off = 0i32;
                for c in 0..8 {
                    // q + 4 = low two bits | the mask bit as 4 (0..8): unsigned.
                    let low = bits_at(load256(x, 32 + (c / 4) * 32), 2 * (c % 4) as u32, 3);
                    let high = _mm256_slli_epi16::<2>(bits_at(hmask, c as u32, 1));
                    let p = $dot_u8s(_mm256_or_si256(low, high), load256(y, 4 + 32 * c));
                    let (s0, s1) = (i32::from(scales[2 * c]), i32::from(scales[2 * c + 1]));
                    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, scale_pair(s0, s1)));
                    off += s0 * bsum(y, 2 * c) + s1 * bsum(y, 2 * c + 1);
                }
                let d = h2f(x, 108) * q8_k_d(y);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
                offsets += d * (4 * off) as f32;
            }
            hsum(acc) - offsets
        }

        /// Q4_K and Q5_K: `quants(j)` gives the unsigned quants of sub-block j (0..8).
        #[inline]
        #[target_feature(enable = $features)]
        fn k_block(
            x: &[u8],
            y: &[u8],
            acc: __m256,
            quants: impl Fn(usize) -> __m256i,
        ) -> (__m256, f32) {
            let scales = &x[4..16];
            let dy = q8_k_d(y);
            let mut sumi = _mm256_setzero_si256();
            let mut msum = 0i32;
            for j in 0..8 {
                let (sc, m) = k_scale_min(scales, j);
                let p = $dot_u8s(quants(j), load256(y, 4 + 32 * j));
                sumi = _mm256_add_epi32(
                    sumi,
                    _mm256_mullo_epi32(p, _mm256_set1_epi32(i32::from(sc))),
                );
                msum += i32::from(m) * (bsum(y, 2 * j) + bsum(y, 2 * j + 1));
            }
            let d = _mm256_set1_ps(dy * h2f(x, 0));
            let acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
            (acc, dy * h2f(x, 2) * msum as f32)
        }

        #[target_feature(enable = $features)]
        fn q4_k(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut mins = 0f32;
            for (x, y) in blocks::<144, 292>(w, a) {
                let (next, m) = k_block(x, y, acc, |j| {
                    bits_at(load256(x, 16 + (j / 2) * 32), 4 * (j % 2) as u32, 0x0f)
                });
                acc = next;
                mins += m;
            }
            hsum(acc) - mins
        }

        #[target_feature(enable = $features)]
        fn q5_k(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut mins = 0f32;
            for (x, y) in blocks::<176, 292>(w, a) {
                let qh = load256(x, 16);
                let (next, m) = k_block(x, y, acc, |j| {
                    let low = bits_at(load256(x, 48 + (j / 2) * 32), 4 * (j % 2) as u32, 0x0f);
                    let high = _mm256_slli_epi16::<4>(bits_at(qh, j as u32, 1));
                    _mm256_or_si256(low, high)
                });
                acc = next;
                mins += m;
            }
            hsum(acc) - mins
        }

        #[target_feature(enable = $features)]
        fn q6_k(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut offsets = 0f32;
            for (x, y) in blocks::<210, 292>(w, a) {
                let scales = &x[192..208];
                let mut sumi = _mm256_setzero_si256();
                let mut off = 0i32;
                for c in 0..8 {
                    let (half, k) = (c / 4, c % 4);
                    let low = bits_at(
                        load256(x, half * 64 + (k % 2) * 32),
                        4 * (k / 2) as u32,
                        0x0f,
                    );
                    let high = bits_at(load256(x, 128 + half * 32), 2 * k as u32, 3);
                    // q + 32 (0..64): unsigned.
                    let q = _mm256_or_si256(low, _mm256_slli_epi16::<4>(high));
                    let p = $dot_u8s(q, load256(y, 4 + 32 * c));
                    let (s0, s1) = (
                        i32::from(scales[2 * c] as i8),
                        i32::from(scales[2 * c + 1] as i8),
                    );
                    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, scale_pair(s0, s1)));
                    off += s0 * bsum(y, 2 * c) + s1 * bsum(y, 2 * c + 1);
                }
                let d = h2f(x, 208) * q8_k_d(y);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
                offsets += d * (32 * off) as f32;
            }
            hsum(acc) - offsets
        }

        #[target_feature(enable = $features)]
        fn iq4_xs(w: &[u8], a: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (x, y) in blocks::<136, 292>(w, a) {
                let mut sumi = _mm256_setzero_si256();
                for ib in 0..8 {
                    let q = lut16(&IQ4_VALUES, nibbles(load128(x, 8 + 16 * ib)));
                    let p = dot_i8s(q, load256(y, 4 + 32 * ib));
                    let s = _mm256_set1_epi32(i32::from(iq4_xs_scale(x, ib)));
                    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, s));
                }
                let d = _mm256_set1_ps(h2f(x, 0) * q8_k_d(y));
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum(acc)
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

        /// Safe entry points, stored in the dispatch table.
        macro_rules! entry {
            ($name:ident, $kernel:ident, $w:ty, $a:ty) => {
                fn $name(w: $w, a: $a) -> f32 {
                    // SAFETY: these entries are handed out only by `quant::dot::kernel`, and only
                    // when `cpu::detected()` reports every feature this module is compiled for.
                    unsafe { $kernel(w, a) }
                }
            };
        }
        entry!(e_q4_0, q4_0, &[u8], &[u8]);
        entry!(e_q4_1, q4_1, &[u8], &[u8]);
        entry!(e_q5_0, q5_0, &[u8], &[u8]);
        entry!(e_q5_1, q5_1, &[u8], &[u8]);
        entry!(e_q8_0, q8_0, &[u8], &[u8]);
        entry!(e_q2_k, q2_k, &[u8], &[u8]);
        entry!(e_q3_k, q3_k, &[u8], &[u8]);
        entry!(e_q4_k, q4_k, &[u8], &[u8]);
        entry!(e_q5_k, q5_k, &[u8], &[u8]);
        entry!(e_q6_k, q6_k, &[u8], &[u8]);
        entry!(e_iq4_nl, iq4_nl, &[u8], &[u8]);
        entry!(e_iq4_xs, iq4_xs, &[u8], &[u8]);
        entry!(e_mxfp4, mxfp4, &[u8], &[u8]);
        entry!(e_f32, f32_dot, &[u8], &[f32]);
        entry!(e_f16, f16_dot, &[u8], &[f32]);
        entry!(e_bf16, bf16_dot, &[u8], &[f32]);

        /// This level's kernel for weight format `ty` (same activation format as the scalar
        /// reference). Callers must have checked `cpu::detected()` (see `quant::dot::kernel`).
        pub(in crate::quant) fn dot(ty: GgmlType) -> Option<Dot> {
            let q = |act, f| Some(Dot::Quant { act, f });
            match ty {
                GgmlType::F32 => Some(Dot::Float(e_f32)),
                GgmlType::F16 => Some(Dot::Float(e_f16)),
                GgmlType::Bf16 => Some(Dot::Float(e_bf16)),
                GgmlType::Q4_0 => q(GgmlType::Q8_0, e_q4_0 as fn(&[u8], &[u8]) -> f32),
                GgmlType::Q4_1 => q(GgmlType::Q8_1, e_q4_1),
                GgmlType::Q5_0 => q(GgmlType::Q8_0, e_q5_0),
                GgmlType::Q5_1 => q(GgmlType::Q8_1, e_q5_1),
                GgmlType::Q8_0 => q(GgmlType::Q8_0, e_q8_0),
                GgmlType::Q2K => q(GgmlType::Q8K, e_q2_k),
                GgmlType::Q3K => q(GgmlType::Q8K, e_q3_k),
                GgmlType::Q4K => q(GgmlType::Q8K, e_q4_k),
                GgmlType::Q5K => q(GgmlType::Q8K, e_q5_k),
                GgmlType::Q6K => q(GgmlType::Q8K, e_q6_k),
                GgmlType::Iq4Nl => q(GgmlType::Q8_0, e_iq4_nl),
                GgmlType::Iq4Xs => q(GgmlType::Q8K, e_iq4_xs),
                GgmlType::Mxfp4 => q(GgmlType::Q8_0, e_mxfp4),
                _ => None,
            }
        }
    };
}

/// AVX2 + FMA + F16C kernels.
pub mod avx2 {
    kernels!("avx2,fma,f16c", dot_u8s_avx2);
}

/// AVX-512 F/BW/VL/VNNI kernels (256-bit vectors; the gain is `vpdpbusd`).
pub mod avx512 {
    kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        dot_u8s_vnni
    );
}
