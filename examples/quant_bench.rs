//! Matrix-multiply benchmark of every weight format on the CPU.
//!
//!     cargo run --release --example quant_bench [-- --quick] [--formats Q4_0,Q4_K] [--threads 1,2]
//!         [--shapes 262144x640,576x576] [--tokens 1,512]
//!     cargo run --release --example quant_bench -- --pool     (thread-pool wake-up cost)
//!     cargo run --release --example quant_bench -- --bandwidth  (memory read roofline)
//!
//! For each format, shape [n_out x n_in], token count (1 = decode matvec, 512 = prompt) and
//! thread count it prints the time per call, the weight bandwidth (GB/s of weight bytes read
//! once per call) and the arithmetic rate (GFLOP/s, 2 * n_out * n_in * tokens per call).
//! `RF_SIMD=scalar|avx2|avx512` lowers the SIMD level.

use std::time::{Duration, Instant};

use rocmforge::backend::cpu::{MatmulScratch, ThreadPool, Weights, matmul};
use rocmforge::gguf::GgmlType;
use rocmforge::quant::{self, cpu};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// Byte offsets of the f16 scales in one block of the formats without a quantizer (random
/// bytes elsewhere make realistic kernels' work; NaN or subnormal scales would not).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        GgmlType::Iq4Nl | GgmlType::Iq4Xs => &[0],
        _ => &[],
    }
}

fn weights(ty: GgmlType, n_out: usize, n_in: usize, rng: &mut Rng) -> Vec<u8> {
    let f = quant::lookup(ty).expect("format");
    let bytes = quant::row_bytes(ty, n_in).expect("row") * n_out;
    if let Some(q) = f.quantize {
        let x: Vec<f32> = (0..n_out * n_in).map(|_| rng.f32()).collect();
        let mut out = vec![0u8; bytes];
        q(&x, &mut out);
        return out;
    }
    let mut out: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
    for block in out.chunks_mut(f.block_bytes) {
        for &off in f16_fields(ty) {
            let d = half::f16::from_f32(0.01 + rng.f32().abs() * 0.01);
            block[off..off + 2].copy_from_slice(&d.to_le_bytes());
        }
    }
    out
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// A decode step of a SmolLM2-135M-shaped model (30 layers of q, k, v, o, gate, up, down
/// matvecs in Q4_1), run back to back: what the thread pool's wake-up cost matters for.
fn pool_bench() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let shapes = [
        (576, 576),
        (192, 576),
        (192, 576),
        (576, 576),
        (1536, 576),
        (1536, 576),
        (576, 1536),
    ];
    let mats: Vec<(Vec<u8>, usize, usize)> = shapes
        .iter()
        .map(|&(o, i)| (weights(GgmlType::Q4_1, o, i, &mut rng), o, i))
        .collect();
    let x: Vec<f32> = (0..1536).map(|_| rng.f32()).collect();
    let mut y = vec![0f32; 1536];
    println!("| pool | threads | spin polls | matvecs/step | us/step | us/matvec |");
    println!("|---|---:|---:|---:|---:|---:|");
    let configs: [(&str, usize, u32); 4] = [
        ("single thread", 1, 0),
        ("persistent, sleep at once", 2, 0),
        (
            "persistent, spin then sleep",
            2,
            rocmforge::backend::cpu::pool::SPIN_ROUNDS,
        ),
        (
            "persistent, spin 8x longer",
            2,
            rocmforge::backend::cpu::pool::SPIN_ROUNDS * 8,
        ),
    ];
    for (name, threads, spin) in configs {
        let pool = ThreadPool::with_spin(threads, spin).expect("pool");
        let mut scratch = MatmulScratch::default();
        let step = |scratch: &mut MatmulScratch, y: &mut Vec<f32>| {
            for _ in 0..30 {
                for (data, o, i) in &mats {
                    let w = Weights::new(GgmlType::Q4_1, data, *o, *i).expect("weights");
                    matmul(&pool, &w, &x[..*i], 1, &mut y[..*o], scratch).expect("matmul");
                }
            }
        };
        step(&mut scratch, &mut y);
        let start = Instant::now();
        let mut steps = 0u32;
        while steps < 3 || start.elapsed() < Duration::from_millis(500) {
            step(&mut scratch, &mut y);
            steps += 1;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(steps);
        println!(
            "| {name} | {threads} | {spin} | 210 | {us:.0} | {:.1} |",
            us / 210.0
        );
    }
}

/// The memory read roofline: GB/s of one and of two threads summing a 512 MiB buffer (far
/// beyond any cache), best of five. Decoding reads every weight once per token, so
/// tokens/s can not exceed this divided by the model's bytes.
fn bandwidth_bench() {
    let n = 512usize << 20;
    let buf: Vec<u64> = (0..n / 8).map(|i| i as u64).collect();
    let sum = |part: &[u64]| {
        // Eight independent sums: the loop is bound by loads, not by one add chain.
        let mut acc = [0u64; 8];
        for c in part.as_chunks::<8>().0 {
            for (a, v) in acc.iter_mut().zip(c) {
                *a = a.wrapping_add(*v);
            }
        }
        std::hint::black_box(acc);
    };
    for threads in [1usize, 2] {
        let mut best = 0f64;
        for _ in 0..5 {
            let t = Instant::now();
            let per = buf.len() / threads;
            std::thread::scope(|s| {
                for part in buf.chunks(per).take(threads) {
                    s.spawn(move || sum(part));
                }
            });
            let bytes = (per * threads * 8) as f64;
            best = best.max(bytes / t.elapsed().as_secs_f64() / 1e9);
        }
        println!("memory read, {threads} thread(s): {best:.1} GB/s (best of 5, 512 MiB)");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bandwidth") {
        bandwidth_bench();
        return;
    }
    if args.iter().any(|a| a == "--pool") {
        pool_bench();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let formats: Vec<GgmlType> = match arg(&args, "--formats") {
        Some(list) => list
            .split(',')
            .map(|n| {
                *GgmlType::ALL
                    .iter()
                    .find(|t| t.name() == n)
                    .unwrap_or_else(|| panic!("unknown format {n}"))
            })
            .collect(),
        None => quant::FORMATS
            .iter()
            .filter(|f| f.dot.is_some())
            .map(|f| f.ty)
            .collect(),
    };
    let threads: Vec<usize> = arg(&args, "--threads")
        .unwrap_or("1,2")
        .split(',')
        .map(|t| t.parse().expect("thread count"))
        .collect();
    let given: Option<Vec<(usize, usize)>> = arg(&args, "--shapes").map(|list| {
        list.split(',')
            .map(|s| {
                let (o, i) = s.split_once('x').expect("shape as N_OUTxN_IN");
                (o.parse().expect("n_out"), i.parse().expect("n_in"))
            })
            .collect()
    });
    let shapes: &[(usize, usize)] = match &given {
        Some(s) => s,
        None if quick => &[(576, 1536), (1536, 576)],
        None => &[(4096, 4096), (576, 1536), (1536, 576)],
    };
    let token_counts: Vec<usize> = arg(&args, "--tokens")
        .unwrap_or("1,512")
        .split(',')
        .map(|t| t.parse().expect("token count"))
        .collect();
    let budget = Duration::from_millis(if quick { 100 } else { 300 });

    println!(
        "rocmforge {} matmul benchmark, SIMD level {} (detected {})",
        env!("CARGO_PKG_VERSION"),
        cpu::level().name(),
        cpu::detected().name()
    );
    println!();
    println!(
        "| format | kernel | n_out x n_in | tokens | threads | best ms/call | weight GB/s | GFLOP/s |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let pools: Vec<ThreadPool> = threads
        .iter()
        .map(|&n| ThreadPool::new(n).expect("threads"))
        .collect();
    for &ty in &formats {
        let level = quant::kernel_level(ty, cpu::level());
        for &(n_out, n_in) in shapes {
            if quant::row_bytes(ty, n_in).is_err() {
                println!(
                    "| {} | {} | {n_out} x {n_in} | - | - | rows of {n_in} are not whole {} blocks | | |",
                    ty.name(),
                    level.name(),
                    ty.name()
                );
                continue;
            }
            // Scalar-only formats take minutes on the big prompt case; their speed shows on
            // the model-shaped matrices.
            if level == quant::SimdLevel::Scalar && n_out * n_in > 1 << 22 {
                println!(
                    "| {} | scalar | {n_out} x {n_in} | - | - | skipped (scalar kernel) | | |",
                    ty.name()
                );
                continue;
            }
            let data = weights(ty, n_out, n_in, &mut rng);
            let w = Weights::new(ty, &data, n_out, n_in).expect("weights");
            for &n_tokens in &token_counts {
                let x: Vec<f32> = (0..n_tokens * n_in).map(|_| rng.f32()).collect();
                let mut y = vec![0f32; n_tokens * n_out];
                for pool in &pools {
                    let mut scratch = MatmulScratch::default();
                    matmul(pool, &w, &x, n_tokens, &mut y, &mut scratch).expect("warm-up");
                    // The fastest call: on a shared machine, time taken by other tenants
                    // only ever adds, so the minimum is the steadiest figure.
                    let start = Instant::now();
                    let mut calls = 0u32;
                    let mut secs = f64::INFINITY;
                    while calls < 2 || start.elapsed() < budget {
                        let t = Instant::now();
                        matmul(pool, &w, &x, n_tokens, &mut y, &mut scratch).expect("matmul");
                        secs = secs.min(t.elapsed().as_secs_f64());
                        calls += 1;
                    }
                    // Bandwidth means something for the matvec only: a prompt reuses each weight.
                    let gbs = if n_tokens == 1 {
                        format!("{:.1}", data.len() as f64 / secs / 1e9)
                    } else {
                        "-".to_string()
                    };
                    let gflops = 2.0 * (n_out * n_in * n_tokens) as f64 / secs / 1e9;
                    println!(
                        "| {} | {} | {n_out} x {n_in} | {n_tokens} | {} | {:.3} | {gbs} | {gflops:.1} |",
                        ty.name(),
                        level.name(),
                        pool.n_threads(),
                        secs * 1e3
                    );
                }
            }
        }
    }
}
