//! Our x86 kernels against llama.cpp's own, bit for bit: the dot products (`ggml_vec_dot_*`)
//! and Q4_K's repacked GEMV/GEMM, called from a `libggml-cpu.so` built from llama.cpp at the
//! reference commit (docs/INFERENCE-NOTES.md says how; never part of this repository).
//!
//! Optional: set `RF_GGML_CPU_LIB` to that library's path; without it the test says so and
//! skips (CI has no llama.cpp build). The tiled and BF16 kernels take AVX-512 or whole
//! batches and are proven against the reference logits instead (tests/zoo_forward.rs).

use std::ffi::{CString, c_void};

use rocmforge::gguf::GgmlType;
use rocmforge::quant::{self, Dot, MatOp, SimdLevel, cpu};

type VecDot = unsafe extern "C" fn(i32, *mut f32, usize, *const u8, usize, *const u8, usize, i32);
type Gemx = unsafe extern "C" fn(i32, *mut f32, usize, *const u8, *const u8, i32, i32);
type QuantMat = unsafe extern "C" fn(*const f32, *mut u8, i64);

struct Ggml(*mut c_void);

impl Ggml {
    fn open() -> Option<Ggml> {
        let Some(path) = std::env::var_os("RF_GGML_CPU_LIB") else {
            eprintln!(
                "SKIPPED: RF_GGML_CPU_LIB is not set (a libggml-cpu.so of llama.cpp 0c1e570)"
            );
            return None;
        };
        let path = CString::new(path.into_encoded_bytes()).unwrap();
        // SAFETY: dlopen with a NUL-terminated path; the handle is checked.
        let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
        assert!(!h.is_null(), "dlopen failed");
        let g = Ggml(h);
        let init: unsafe extern "C" fn() = g.sym("ggml_cpu_init");
        // SAFETY: ggml's initialisation (tables), no arguments.
        unsafe { init() };
        Some(g)
    }

    /// The function `name`, as type `T` (a function pointer of that symbol's C signature).
    fn sym<T: Copy>(&self, name: &str) -> T {
        let n = CString::new(name).unwrap();
        // SAFETY: dlsym on a live handle with a NUL-terminated name; the result is checked.
        let s = unsafe { libc::dlsym(self.0, n.as_ptr()) };
        assert!(!s.is_null(), "{name} not found");
        assert_eq!(size_of::<T>(), size_of::<*mut c_void>());
        // SAFETY: T is a function pointer type matching the symbol's C declaration.
        unsafe { std::mem::transmute_copy(&s) }
    }
}

/// A xorshift stream of `seed`.
fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    std::iter::successors(Some(seed | 1), |&s| {
        let s = s ^ (s << 13);
        let s = s ^ (s >> 7);
        Some(s ^ (s << 17))
    })
    .skip(1)
}

fn randoms(n: usize, seed: u64) -> Vec<f32> {
    xorshift(seed)
        .take(n)
        .map(|s| ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0)
        .collect()
}

/// A weight row of `n` values of `ty`: our quantizer where there is one, else random bytes
/// with modest f16 scales at `scales` (offsets within each block of `block` bytes).
fn weights(ty: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    let mut q = vec![0u8; quant::row_bytes(ty, n).unwrap()];
    if quant::quantize_row(ty, &randoms(n, seed), &mut q).is_ok() {
        return q;
    }
    let (block, scales): (usize, &[usize]) = match ty {
        GgmlType::Q3K => (110, &[108]),
        GgmlType::Q2K => (84, &[80, 82]),
        GgmlType::Iq4Xs => (136, &[0]),
        _ => panic!("no weights for {ty}"),
    };
    for (b, s) in q.iter_mut().zip(xorshift(seed)) {
        *b = (s >> 32) as u8;
    }
    for (i, blk) in q.chunks_exact_mut(block).enumerate() {
        for &at in scales {
            let d = half::f16::from_f32(0.01 + 0.001 * i as f32).to_le_bytes();
            blk[at..at + 2].copy_from_slice(&d);
        }
    }
    q
}

type OneDot = fn(&[u8], &[u8]) -> f32;

fn quant_dot(d: Dot) -> (GgmlType, OneDot) {
    match d {
        Dot::Quant { act, f, .. } => (act, f),
        Dot::Float(_) => panic!("a float kernel"),
    }
}

#[test]
fn vec_dots_equal_ggml() {
    let Some(g) = Ggml::open() else { return };
    if cpu::level() < SimdLevel::Avx2 {
        eprintln!("SKIPPED: the scalar kernels sum in their own order");
        return;
    }
    for (ty, name) in [
        (GgmlType::Q2K, "ggml_vec_dot_q2_K_q8_K"),
        (GgmlType::Q3K, "ggml_vec_dot_q3_K_q8_K"),
        (GgmlType::Q4K, "ggml_vec_dot_q4_K_q8_K"),
        (GgmlType::Q5K, "ggml_vec_dot_q5_K_q8_K"),
        (GgmlType::Q6K, "ggml_vec_dot_q6_K_q8_K"),
        (GgmlType::Iq4Xs, "ggml_vec_dot_iq4_xs_q8_K"),
        (GgmlType::Q4_0, "ggml_vec_dot_q4_0_q8_0"),
        (GgmlType::Q5_0, "ggml_vec_dot_q5_0_q8_0"),
        (GgmlType::Q8_0, "ggml_vec_dot_q8_0_q8_0"),
    ] {
        let theirs: VecDot = g.sym(name);
        let (act, ours) = quant_dot(quant::kernel(ty, cpu::level()).unwrap());
        for (t, blocks) in (0..60).zip([1, 3, 6].into_iter().cycle()) {
            let n = 256 * blocks;
            let w = weights(ty, n, 17 + t);
            let mut a = vec![0u8; quant::row_bytes(act, n).unwrap()];
            quant::activation_quantizer(act).unwrap()(&randoms(n, 1000 + t), &mut a);
            let mut s = f32::NAN;
            // SAFETY: both rows hold n values of their formats; one output, nrc 1.
            unsafe { theirs(n as i32, &mut s, 0, w.as_ptr(), 0, a.as_ptr(), 0, 1) };
            assert_eq!(
                ours(&w, &a).to_bits(),
                s.to_bits(),
                "{name}, {blocks} blocks, row {t}"
            );
        }
    }
}

/// Eight Q4_K rows' super-block `b` interleaved as llama.cpp's `block_q4_Kx8`: the 8 d, the 8
/// dmin, the 6-bit scales and mins regrouped per sub-block (96 bytes), the quants 8 bytes at
/// a time from each row in turn.
fn q4_k_x8(rows: &[Vec<u8>], b: usize) -> Vec<u8> {
    let blk: Vec<&[u8]> = rows.iter().map(|r| &r[b * 144..(b + 1) * 144]).collect();
    let mut out = vec![0u8; 16 + 16 + 96 + 1024];
    for (i, x) in blk.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&x[0..2]);
        out[16 + 2 * i..18 + 2 * i].copy_from_slice(&x[2..4]);
    }
    for i in 0..128 {
        let (src, at) = (i % 8, (i / 8) * 8);
        out[128 + 8 * i..136 + 8 * i].copy_from_slice(&blk[src][16 + at..24 + at]);
    }
    let sc = |j: usize, k: usize| blk[j][4 + k];
    for half in 0..2 {
        for i in 0..4 {
            let (mut s, mut m) = ([0u8; 8], [0u8; 8]);
            for j in 0..8 {
                (s[j], m[j]) = if half == 0 {
                    (sc(j, i) & 63, sc(j, i + 4) & 63)
                } else {
                    (
                        ((sc(j, i) & 192) >> 2) | (sc(j, i + 8) & 15),
                        ((sc(j, i + 4) & 192) >> 2) | ((sc(j, i + 8) & 240) >> 4),
                    )
                };
            }
            let o = 32 + 48 * half + 12 * i;
            for q in 0..4 {
                out[o + q] = (s[q] & 63) + ((s[q + 4] & 48) << 2);
                out[o + 4 + q] = (m[q] & 63) + ((m[q + 4] & 48) << 2);
                out[o + 8 + q] = (s[q + 4] & 15) + ((m[q + 4] & 15) << 4);
            }
        }
    }
    out
}

#[test]
fn q4_k_repacked_kernels_equal_ggml() {
    let Some(g) = Ggml::open() else { return };
    if cpu::level() < SimdLevel::Avx2 {
        eprintln!("SKIPPED: the scalar kernels sum in their own order");
        return;
    }
    let gemv: Gemx = g.sym("ggml_gemv_q4_K_8x8_q8_K");
    let gemm: Gemx = g.sym("ggml_gemm_q4_K_8x8_q8_K");
    let quant4: QuantMat = g.sym("ggml_quantize_mat_q8_K_4x8");
    let k = quant::matmul_kernel(GgmlType::Q4K, 8, 4, MatOp::MulMat, cpu::level()).unwrap();
    let (_, one) = quant_dot(k.dot);
    let (_, four) = quant_dot(k.fours.expect("Q4_K is repacked"));
    for t in 0..20u64 {
        let nb = 1 + (t as usize % 4);
        let n = 256 * nb;
        let rows: Vec<Vec<u8>> = (0..8)
            .map(|r| weights(GgmlType::Q4K, n, 7 + 8 * t + r))
            .collect();
        let packed: Vec<u8> = (0..nb).flat_map(|b| q4_k_x8(&rows, b)).collect();
        let acts: Vec<Vec<f32>> = (0..4).map(|r| randoms(n, 5000 + 4 * t + r)).collect();
        for x in &acts {
            let mut a = vec![0u8; 292 * nb];
            quant::activation_quantizer(GgmlType::Q8K).unwrap()(x, &mut a);
            let mut s = [f32::NAN; 8];
            // SAFETY: 8 interleaved rows of n values, one activation row, 8 outputs.
            unsafe {
                gemv(
                    n as i32,
                    s.as_mut_ptr(),
                    8,
                    packed.as_ptr(),
                    a.as_ptr(),
                    1,
                    8,
                )
            };
            for (c, row) in rows.iter().enumerate() {
                assert_eq!(
                    one(row, &a).to_bits(),
                    s[c].to_bits(),
                    "GEMV, {nb} blocks, column {c}"
                );
            }
        }
        let flat = acts.concat();
        let mut a4 = vec![0u8; 292 * nb * 4];
        // SAFETY: 4 rows of n floats in, 4 interleaved Q8_K rows out.
        unsafe { quant4(flat.as_ptr(), a4.as_mut_ptr(), n as i64) };
        let mut s = [f32::NAN; 32];
        // SAFETY: 8 interleaved rows, 4 interleaved activation rows, 4 x 8 outputs.
        unsafe {
            gemm(
                n as i32,
                s.as_mut_ptr(),
                8,
                packed.as_ptr(),
                a4.as_ptr(),
                4,
                8,
            )
        };
        for (r, x) in acts.iter().enumerate() {
            let mut a = vec![0u8; 292 * nb];
            quant::activation_quantizer_in_fours(GgmlType::Q8K).unwrap()(x, &mut a);
            for (c, row) in rows.iter().enumerate() {
                let got = four(row, &a);
                assert_eq!(
                    got.to_bits(),
                    s[8 * r + c].to_bits(),
                    "GEMM, {nb} blocks, row {r}, column {c}"
                );
            }
        }
    }
}
