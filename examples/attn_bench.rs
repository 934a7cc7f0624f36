//! Attention kernel benchmark on one thread: one query head against `n` keys (a prompt's
//! last row) in llama.cpp's online softmax (`ops::attend_online`), and blocks of `--block`
//! queries over the same keys in the two-pass order (`two_pass::attend`, the default).
//!
//!     cargo run --release --example attn_bench [-- --dims 64,256] [--keys 512] [--f32-acc]
//!                                              [--block 8]
//!
//! Prints nanoseconds per (query, key) pair for each. A causal prompt of p tokens over h query heads
//! and l layers costs about l * h * p * (p + 1) / 2 pairs.

use std::time::Instant;

use rocmforge::backend::cpu::ops::{AttnMath, AttnOrder, attend_online};
use rocmforge::backend::cpu::two_pass::{self, BlockScratch, KvRows, Query};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let dims: Vec<usize> = arg("--dims")
        .unwrap_or_else(|| "64,256".into())
        .split(',')
        .map(|d| d.parse().expect("--dims: numbers"))
        .collect();
    let n: usize = arg("--keys").map_or(512, |k| k.parse().expect("--keys: a number"));
    let f16_acc = !std::env::args().any(|a| a == "--f32-acc");
    let block: usize = arg("--block").map_or(8, |k| k.parse().expect("--block: a number"));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for &hd in &dims {
        let q: Vec<f32> = (0..hd).map(|_| rnd()).collect();
        let ks: Vec<f32> = (0..n * hd).map(|_| rnd()).collect();
        let vs: Vec<f32> = (0..n * hd).map(|_| rnd()).collect();
        let m = AttnMath {
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: None,
            f16_acc,
            order: AttnOrder::Online,
        };
        let (mut acc, mut out) = (vec![0f32; hd], vec![0f32; hd]);
        let rows = || (0..n).map(|i| (&ks[i * hd..][..hd], &vs[i * hd..][..hd]));
        let mut reps = 0usize;
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < 1.0 || reps < 10 {
            attend_online(&q, rows(), &m, &mut acc, &mut out);
            reps += 1;
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / (reps * n) as f64;
        println!(
            "head_dim {hd:4}  keys {n}  online, {} acc: {ns:6.2} ns per (query, key)  (out[0] {:.6})",
            if f16_acc { "f16" } else { "f32" },
            out[0]
        );
        let kv = KvRows {
            ks: &ks,
            vs: &vs,
            k_stride: hd,
            v_stride: hd,
            k_off: 0,
            v_off: 0,
            k_dim: hd,
            v_dim: hd,
        };
        let m = AttnMath {
            order: AttnOrder::TwoPass,
            ..m
        };
        let qs: Vec<Query<'_>> = (0..block).map(|_| Query { q: &q, keys: 0..n }).collect();
        let mut outs = vec![vec![0f32; hd]; block];
        let mut scratch = BlockScratch::default();
        let (mut reps, start) = (0usize, Instant::now());
        while start.elapsed().as_secs_f64() < 1.0 || reps < 10 {
            let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
            two_pass::attend(&qs, &kv, &m, &mut refs, &mut scratch);
            reps += 1;
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / (reps * n * block) as f64;
        println!(
            "head_dim {hd:4}  keys {n}  two-pass, blocks of {block}: {ns:6.2} ns per (query, key)  (out[0] {:.6})",
            outs[0][0]
        );
    }
}
