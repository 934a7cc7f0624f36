//! `rocmforge perplexity`: llama.cpp's perplexity (chunks of `-c` tokens, second halves
//! scored), printing the running value after each chunk and `PPL = <value>` last.

use std::io::Write;
use std::path::PathBuf;

use crate::Result;
use crate::load::NumericsArg;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    model: PathBuf,
    #[command(flatten)]
    gpu: crate::load::GpuArgs,
    /// The text file.
    #[arg(short, long)]
    file: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx: usize,
    /// Tokens per decode.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    batch: usize,
    /// Threads (default: every core).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Float order: batch-invariant (rocmforge's, the default) or llama-cpp (its bits).
    #[arg(long, value_enum, default_value_t = NumericsArg::BatchInvariant)]
    numerics: NumericsArg,
}

pub fn run(a: &Args) -> Result<()> {
    let text = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let m = crate::load::model(&a.model, false, &a.gpu)?;
    let mut ctx = crate::load::context(&m, a.ctx, a.batch.min(a.ctx), a.threads, a.numerics)?;
    let tokens = m.tokenizer().tokenize(&text, true, false);
    let vocab = m.tokenizer().vocab();
    let bos = if vocab.add_bos { vocab.bos } else { None };
    eprintln!(
        "{} tokens, {} chunks of {}",
        tokens.len(),
        tokens.len() / a.ctx.max(1),
        a.ctx
    );
    let mut out = std::io::stdout().lock();
    let r = rocmforge::perplexity::perplexity(&mut ctx, &tokens, a.ctx, bos, |i, p| {
        let _ = write!(out, "[{}]{p:.4} ", i + 1);
        let _ = out.flush();
    })?;
    writeln!(out)?;
    writeln!(out, "PPL = {:.4} ({} tokens scored)", r.ppl, r.n_scored)?;
    Ok(())
}
