//! Prompt-processing and generation speed through `Context::decode`, measured the way
//! llama-bench measures (pp: clear the cache, decode N tokens as one batch; tg: clear the
//! cache, decode N tokens one at a time), one warm-up run then `-r` timed runs.
//!
//!   cargo run --release --example decode_bench -- MODEL.gguf [-p 512] [-n 128] [-r 3] [-t 2]
//!
//! Compare with ../shared/reference/bench-cpu.md (llama.cpp on the same machines), or better
//! with llama-bench run alternately in the same sitting.

use std::sync::Arc;
use std::time::Instant;

use rocmforge::{Batch, Context, ContextParams, Model, ModelParams};

fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn stats(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (mean, var.sqrt())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: decode_bench MODEL.gguf [-p N] [-n N] [-r N] [-t N]")?;
    let (pp, tg, reps) = (
        arg(&args, "-p", 512),
        arg(&args, "-n", 128),
        arg(&args, "-r", 3),
    );
    let threads = arg(&args, "-t", rocmforge::context::available_threads());
    let model = Arc::new(Model::load(path.as_ref(), ModelParams::default())?);
    let mut ctx = Context::new(
        Arc::clone(&model),
        ContextParams {
            n_ctx: pp.max(tg) + 16,
            n_batch: pp.max(1),
            n_threads: threads,
            ..ContextParams::default()
        },
    )?;
    let n_vocab = ctx.n_vocab() as u32;
    // Arbitrary in-vocabulary tokens, as llama-bench uses random ones.
    let token = |i: usize| (i as u32 * 7919 + 13) % n_vocab;
    let run_pp = |ctx: &mut Context| -> Result<f64, rocmforge::Error> {
        ctx.kv_clear();
        let tokens: Vec<u32> = (0..pp).map(token).collect();
        let b = Batch::from_tokens(&tokens, 0, 0)?;
        let t = Instant::now();
        ctx.decode(&b)?;
        Ok(pp as f64 / t.elapsed().as_secs_f64())
    };
    let run_tg = |ctx: &mut Context| -> Result<f64, rocmforge::Error> {
        ctx.kv_clear();
        let t = Instant::now();
        for i in 0..tg {
            ctx.decode(&Batch::from_tokens(&[token(i)], i as i32, 0)?)?;
        }
        Ok(tg as f64 / t.elapsed().as_secs_f64())
    };
    println!("| model | test | t/s |");
    println!("|---|---|---|");
    let name = std::path::Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy();
    if pp > 0 {
        run_pp(&mut ctx)?;
        let v: Vec<f64> = (0..reps)
            .map(|_| run_pp(&mut ctx))
            .collect::<Result<_, _>>()?;
        let (m, s) = stats(&v);
        println!("| {name} | pp{pp} | {m:.1} ± {s:.1} |");
    }
    if tg > 0 {
        run_tg(&mut ctx)?;
        let v: Vec<f64> = (0..reps)
            .map(|_| run_tg(&mut ctx))
            .collect::<Result<_, _>>()?;
        let (m, s) = stats(&v);
        println!("| {name} | tg{tg} | {m:.1} ± {s:.1} |");
    }
    Ok(())
}
