//! `rocmforge bench`: speed measured as llama-bench measures it, so the numbers compare.
//! pp<p>: clear the cache, decode p tokens as one batch; tg<n>: clear the cache, decode n
//! tokens one at a time. With `-d D` (llama-bench's `-n-depth`) each run first fills the
//! cache with D tokens, untimed, and its tokens follow them ("tg128 @ d512"): decode speed
//! at a context's depth, where attention reads D more entries a token. One warm-up run of
//! each test, then `-r` timed runs; the mean and
//! standard deviation of t/s. Tokens are arbitrary in-vocabulary ids (llama-bench uses random
//! ones). The peak resident memory of the process is reported too.

use std::path::PathBuf;
use std::time::Instant;

use rocmforge::{Batch, Context};

use crate::Result;
use crate::load::NumericsArg;

#[derive(clap::Args)]
pub struct Args {
    /// Model files, comma separated.
    #[arg(short, long, value_delimiter = ',', required = true)]
    model: Vec<PathBuf>,
    #[command(flatten)]
    gpu: crate::load::GpuArgs,
    /// Prompt tokens (0: no pp test).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Generated tokens (0: no tg test).
    #[arg(short = 'n', long = "n-tg", default_value_t = 128)]
    n_gen: usize,
    /// Tokens in the cache before each test's tokens (untimed).
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    depth: usize,
    /// Timed repetitions.
    #[arg(short, long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repetitions: u32,
    /// Threads (default: every core).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Float order: batch-invariant (rocmforge's, the default) or llama-cpp (its bits).
    #[arg(long, value_enum, default_value_t = NumericsArg::BatchInvariant)]
    numerics: NumericsArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Md)]
    output: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    Md,
    Json,
}

struct Row {
    file: String,
    n_prompt: usize,
    n_gen: usize,
    depth: usize,
    threads: usize,
    backend: String,
    avg: f64,
    stddev: f64,
    rss: u64,
}

fn stats(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One test's t/s: pp when `tg` is false, tg otherwise, after `depth` untimed tokens
/// decoded in batches of at most `n_batch`.
fn once(ctx: &mut Context, n: usize, tg: bool, depth: usize, n_batch: usize) -> Result<f64> {
    let n_vocab = ctx.n_vocab() as u32;
    let token = |i: usize| (i as u32).wrapping_mul(7919).wrapping_add(13) % n_vocab;
    ctx.kv_clear();
    for at in (0..depth).step_by(n_batch.max(1)) {
        let tokens: Vec<u32> = (at..depth.min(at + n_batch)).map(token).collect();
        ctx.decode(&Batch::from_tokens(&tokens, at as i32, 0)?)?;
    }
    let t = Instant::now();
    if tg {
        for i in depth..depth + n {
            ctx.decode(&Batch::from_tokens(&[token(i)], i as i32, 0)?)?;
        }
    } else {
        let tokens: Vec<u32> = (depth..depth + n).map(token).collect();
        ctx.decode(&Batch::from_tokens(&tokens, depth as i32, 0)?)?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

pub fn run(a: &Args) -> Result<()> {
    let mut rows = Vec::new();
    let threads = if a.threads == 0 {
        rocmforge::context::available_threads()
    } else {
        a.threads
    };
    if a.output == Format::Md {
        println!("| model | size | backend | test | threads | t/s |");
        println!("|---|---|---|---|---|---|");
    }
    for path in &a.model {
        let m = crate::load::model(path, false, &a.gpu)?;
        let n_batch = a.n_prompt.max(a.depth.min(512)).max(1);
        let n_ctx = a
            .n_prompt
            .max(a.n_gen)
            .checked_add(a.depth)
            .and_then(|n| n.checked_add(16))
            .ok_or("-p/-n plus -d is too large")?;
        let mut ctx = crate::load::context(&m, n_ctx, n_batch, threads, a.numerics)?;
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        for (n, tg) in [(a.n_prompt, false), (a.n_gen, true)] {
            if n == 0 {
                continue;
            }
            once(&mut ctx, n, tg, a.depth, n_batch)?; // warm-up
            let v: Vec<f64> = (0..a.repetitions)
                .map(|_| once(&mut ctx, n, tg, a.depth, n_batch))
                .collect::<Result<_>>()?;
            let (avg, stddev) = stats(&v);
            let row = Row {
                file: file.clone(),
                n_prompt: if tg { 0 } else { n },
                n_gen: if tg { n } else { 0 },
                depth: a.depth,
                threads,
                backend: m.backend_name(),
                avg,
                stddev,
                rss: crate::load::peak_rss(),
            };
            if a.output == Format::Md {
                println!(
                    "| {} | {:.1} MiB | {} | {}{}{} | {} | {:.2} ± {:.2} |",
                    row.file,
                    m.describe().file_size as f64 / 1048576.0,
                    row.backend,
                    if tg { "tg" } else { "pp" },
                    n,
                    match a.depth {
                        0 => String::new(),
                        d => format!(" @ d{d}"),
                    },
                    threads,
                    avg,
                    stddev
                );
            }
            rows.push(row);
        }
    }
    match a.output {
        Format::Md => println!(
            "\npeak resident memory {:.1} MiB",
            crate::load::peak_rss() as f64 / 1048576.0
        ),
        Format::Json => {
            let items: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "  {{\"model_filename\": {}, \"n_prompt\": {}, \"n_gen\": {}, \"n_depth\": {}, \"n_threads\": {}, \"backend\": {}, \"avg_ts\": {:.4}, \"stddev_ts\": {:.4}, \"peak_rss_bytes\": {}}}",
                        json_str(&r.file),
                        r.n_prompt,
                        r.n_gen,
                        r.depth,
                        r.threads,
                        json_str(&r.backend),
                        r.avg,
                        r.stddev,
                        r.rss
                    )
                })
                .collect();
            println!("[\n{}\n]", items.join(",\n"));
        }
    }
    Ok(())
}
