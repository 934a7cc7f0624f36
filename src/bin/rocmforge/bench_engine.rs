//! `rocmforge bench-engine`: throughput of the continuous-batching engine. Submits
//! `--requests` requests of exactly `-p` prompt tokens and `-n` generated tokens all at once
//! (at most `--parallel` generating together), then `--serial` of them one at a time, and
//! prints aggregate tokens/s and latency percentiles of both side by side. Prompts differ from
//! their second token on (no prefix-cache hits). Every request generates exactly `-n` tokens
//! with the greedy sampler: an end-of-generation token ends nothing (`ignore_eog`), as
//! llama-batched-bench, which samples nothing, goes on. Greedy steps take their tokens on
//! the GPU (`decode_greedy`); `--ban-eog` instead bans the end tokens with a logit bias,
//! a chain whose tokens are chosen on the host from the downloaded logits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rocmforge::engine::{Prompt, RequestSpec, RequestStats};
use rocmforge::{Engine, EngineParams, Model, Sampler, SamplerChain};

use crate::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    model: PathBuf,
    #[command(flatten)]
    gpu: crate::load::GpuArgs,
    /// Requests submitted together.
    #[arg(long, default_value_t = 64)]
    requests: usize,
    /// Requests then run one at a time, for the baseline.
    #[arg(long, default_value_t = 8)]
    serial: usize,
    /// Prompt tokens per request.
    #[arg(short = 'p', long, default_value_t = 128)]
    n_prompt: usize,
    /// Generated tokens per request.
    #[arg(short = 'n', long, default_value_t = 128)]
    n_gen: usize,
    /// Requests generating at once.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// Tokens per step at most.
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: usize,
    /// Threads (default: every core).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Ban the end-of-generation tokens (logit bias, then greedy: sampled on the host)
    /// instead of generating past them.
    #[arg(long)]
    ban_eog: bool,
}

/// Prompt `i`: BOS (when the model uses one), then in-vocabulary ids that differ per request.
fn prompt(m: &Model, i: usize, n: usize) -> Vec<u32> {
    let v = m.tokenizer().vocab();
    let n_vocab = v.len() as u64;
    let mut t: Vec<u32> = v.bos.filter(|_| v.add_bos).into_iter().collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
    while t.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = (x % n_vocab) as u32;
        if !v.is_eog(id) {
            t.push(id);
        }
    }
    t
}

/// Greedy, after a bias that bans `ban`'s tokens when there are any.
fn sampler(ban: &[u32]) -> Result<SamplerChain> {
    let mut c = SamplerChain::new(0);
    if !ban.is_empty() {
        c.add(Sampler::LogitBias(
            ban.iter().map(|&t| (t, f32::NEG_INFINITY)).collect(),
        ))?;
    }
    c.add(Sampler::Greedy)?;
    Ok(c)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

struct Run {
    wall: f64,
    stats: Vec<RequestStats>,
}

fn run_batch(e: &Engine, specs: Vec<RequestSpec>, serial: bool) -> Result<Run> {
    let t0 = Instant::now();
    let mut stats = Vec::new();
    if serial {
        for s in specs {
            let r = e.submit(s)?;
            r.wait_text()?;
            stats.push(r.stats());
        }
    } else {
        let reqs = specs
            .into_iter()
            .map(|s| e.submit(s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for r in &reqs {
            r.wait_text()?;
            stats.push(r.stats());
        }
    }
    Ok(Run {
        wall: t0.elapsed().as_secs_f64(),
        stats,
    })
}

pub fn run(a: &Args) -> Result<()> {
    if a.requests == 0 || a.n_prompt == 0 || a.n_gen == 0 {
        return Err("--requests, -p and -n must be at least 1".into());
    }
    let model: Arc<Model> = crate::load::model(&a.model, false, &a.gpu)?;
    let threads = match a.threads {
        0 => rocmforge::context::available_threads(),
        t => t,
    };
    let per = a.n_prompt + a.n_gen;
    let engine = Engine::new(
        model.clone(),
        EngineParams {
            n_ctx: (a.parallel * per).max(per),
            n_seq_max: a.parallel,
            n_batch: a.batch.max(a.parallel),
            n_threads: threads,
            max_queued: a.requests.max(1),
            prefix_cache: false,
            ..EngineParams::default()
        },
    )?;
    let v = model.tokenizer().vocab();
    let ban: Vec<u32> = match a.ban_eog {
        true => (0..v.len() as u32).filter(|&t| v.is_eog(t)).collect(),
        false => Vec::new(),
    };
    let specs = |n: usize, offset: usize| -> Result<Vec<RequestSpec>> {
        (0..n)
            .map(|i| {
                Ok(RequestSpec {
                    max_tokens: Some(a.n_gen),
                    ignore_eog: !a.ban_eog,
                    ..RequestSpec::new(
                        Prompt::Tokens(prompt(&model, offset + i, a.n_prompt)),
                        sampler(&ban)?,
                    )
                })
            })
            .collect()
    };
    // Warm-up: one short request (threads, pages of the model).
    run_batch(&engine, specs(1, usize::MAX / 2)?, true)?;
    eprintln!(
        "{} requests together ({} at a time), then {} one at a time; {} prompt + {} generated \
         tokens each, {threads} threads",
        a.requests, a.parallel, a.serial, a.n_prompt, a.n_gen
    );
    let before = engine.stats();
    let together = run_batch(&engine, specs(a.requests, 0)?, false)?;
    let after = engine.stats();
    let serial = if a.serial > 0 {
        Some(run_batch(&engine, specs(a.serial, a.requests)?, true)?)
    } else {
        None
    };
    println!(
        "| mode | requests | gen t/s | total t/s | latency p50 / p90 / p99 s | first token p50 / p90 / p99 s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("together", Some(&together)),
        ("one at a time", serial.as_ref()),
    ] {
        let Some(r) = r else { continue };
        let n = r.stats.len() as f64;
        let made: usize = r.stats.iter().map(|s| s.n_generated_tokens).sum();
        let mut lat: Vec<f64> = r.stats.iter().map(|s| s.total_s).collect();
        let mut ttft: Vec<f64> = r.stats.iter().map(|s| s.first_token_s).collect();
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} |",
            r.stats.len(),
            made as f64 / r.wall,
            n * per as f64 / r.wall,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.9),
            pct(&mut lat, 0.99),
            pct(&mut ttft, 0.5),
            pct(&mut ttft, 0.9),
            pct(&mut ttft, 0.99),
        );
    }
    // The steps of the requests run together (not the warm-up's or the serial ones').
    let steps = after.n_steps - before.n_steps;
    let per_step = |us: u64| us as f64 / 1e3 / steps.max(1) as f64;
    println!(
        "\nengine, requests together: {steps} steps, {} preemptions, per step {:.2} ms \
         decoding, {:.2} ms sampling; peak RSS {:.1} MiB",
        after.n_preemptions - before.n_preemptions,
        per_step(after.decode_us - before.decode_us),
        per_step(after.sample_us - before.sample_us),
        crate::load::peak_rss() as f64 / (1 << 20) as f64,
    );
    let gen_steps = after.gen_steps - before.gen_steps;
    if gen_steps > 0 {
        // The steady rate once every sequence is generating: what llama-batched-bench's
        // S_TG measures (bench-gpu.md), here with sampling included.
        let (tokens, us) = (
            after.gen_step_tokens - before.gen_step_tokens,
            after.gen_step_us - before.gen_step_us,
        );
        println!(
            "generation-only steps: {gen_steps}, {:.1} rows each, {:.2} ms each, {:.1} t/s",
            tokens as f64 / gen_steps as f64,
            us as f64 / 1e3 / gen_steps as f64,
            tokens as f64 / (us.max(1) as f64 / 1e6),
        );
    }
    Ok(())
}
