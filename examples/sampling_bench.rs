//! Time to sample one token from a Gemma-3-sized vocabulary (262,144 entries) through common
//! sampler chains; the bar (issue 7) is well under 1 ms for top-k 40 + top-p 0.95 +
//! temperature. Logits are a fixed pseudo-random row shaped like a model's (a few large, a
//! long tail).
//!
//!   cargo run --release --example sampling_bench [-- -n 262144 -r 2000]

use std::time::Instant;

use rocmforge::{Sampler, SamplerChain};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n_vocab = arg(&args, "-n", 262_144);
    let reps = arg(&args, "-r", 2000);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let logits: Vec<f32> = (0..n_vocab)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 40) as f32 / (1u64 << 24) as f32;
            // Mostly around -5, a thin head up to +15.
            -5.0 + 20.0 * u.powi(12) + 2.0 * (u - 0.5)
        })
        .collect();
    let chains: Vec<(&str, Vec<Sampler>)> = vec![
        ("greedy", vec![Sampler::Greedy]),
        (
            "top-k 40, top-p 0.95, temperature 0.8, dist",
            vec![
                Sampler::TopK(40),
                Sampler::TopP {
                    p: 0.95,
                    min_keep: 1,
                },
                Sampler::Temperature(0.8),
                Sampler::Dist,
            ],
        ),
        (
            "penalties 64, top-k 40, top-p 0.95, min-p 0.05, temperature 0.8, dist",
            vec![
                Sampler::Penalties {
                    last_n: 64,
                    repeat: 1.1,
                    frequency: 0.0,
                    presence: 0.0,
                },
                Sampler::TopK(40),
                Sampler::TopP {
                    p: 0.95,
                    min_keep: 1,
                },
                Sampler::MinP {
                    p: 0.05,
                    min_keep: 1,
                },
                Sampler::Temperature(0.8),
                Sampler::Dist,
            ],
        ),
        (
            "DRY (window 256), top-k 40, top-p 0.95, temperature 0.8, dist",
            vec![
                Sampler::Dry {
                    multiplier: 0.8,
                    base: 1.75,
                    allowed_length: 2,
                    last_n: 256,
                    breakers: vec![13, 25],
                },
                Sampler::TopK(40),
                Sampler::TopP {
                    p: 0.95,
                    min_keep: 1,
                },
                Sampler::Temperature(0.8),
                Sampler::Dist,
            ],
        ),
        (
            "top-p 0.95 alone (no top-k), dist",
            vec![
                Sampler::TopP {
                    p: 0.95,
                    min_keep: 1,
                },
                Sampler::Dist,
            ],
        ),
        (
            "min-p 0.05, dist",
            vec![
                Sampler::MinP {
                    p: 0.05,
                    min_keep: 1,
                },
                Sampler::Dist,
            ],
        ),
        (
            "temperature 0.8, dist (full softmax)",
            vec![Sampler::Temperature(0.8), Sampler::Dist],
        ),
    ];
    println!("| chain | vocab | us/token (mean of {reps}) | min |");
    println!("|---|---|---|---|");
    for (name, samplers) in chains {
        let mut c = SamplerChain::new(1);
        for s in samplers {
            c.add(s)?;
        }
        // A history with repeats: 256 tokens cycling through 50.
        for t in 0..256 {
            c.accept(t % 50);
        }
        c.sample(&logits)?; // warm-up
        let mut best = f64::INFINITY;
        let start = Instant::now();
        for _ in 0..reps {
            let t0 = Instant::now();
            std::hint::black_box(c.sample(std::hint::black_box(&logits))?);
            best = best.min(t0.elapsed().as_secs_f64());
        }
        let mean = start.elapsed().as_secs_f64() / reps as f64;
        println!(
            "| {name} | {n_vocab} | {:.1} | {:.1} |",
            mean * 1e6,
            best * 1e6
        );
    }
    Ok(())
}
