//! `rocmforge generate` and `rocmforge chat`: decode a prompt, then sample one token at a time
//! and stream the text as it forms (the streaming decoder holds back a piece that ends inside
//! a UTF-8 character). Chat keeps one sequence for the whole conversation: each turn renders
//! the whole chat with the model's template, and only the tokens after the part already in
//! the KV cache are decoded (the cache is cut back to the common prefix first).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rocmforge::tokenizer::{ChatMessage, StreamDecoder};
use rocmforge::{Batch, Context, Model, Sampler, SamplerChain};

use crate::Result;
use crate::load::NumericsArg;

#[derive(clap::Args, Clone)]
pub struct Sampling {
    /// Temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Keep the K most likely tokens (0: off).
    #[arg(long, default_value_t = 40)]
    top_k: i32,
    /// Keep the most likely tokens holding probability P (1: off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less than P times as likely as the best (0: off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Seed of the sampler (default: random, printed on stderr).
    #[arg(long)]
    seed: Option<u64>,
    /// Threads (default: every core).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Context size in tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    ctx: usize,
    /// Float order: batch-invariant (rocmforge's, the default) or llama-cpp (its bits).
    #[arg(long, value_enum, default_value_t = NumericsArg::BatchInvariant)]
    numerics: NumericsArg,
}

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    model: PathBuf,
    #[command(flatten)]
    gpu: crate::load::GpuArgs,
    /// The prompt.
    #[arg(short, long)]
    prompt: String,
    /// Tokens to generate at most (generation also stops at end-of-generation).
    #[arg(short, long, default_value_t = 128)]
    n_predict: usize,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    #[command(flatten)]
    sampling: Sampling,
}

#[derive(clap::Args)]
pub struct ChatArgs {
    /// The GGUF model file.
    #[arg(short, long)]
    model: PathBuf,
    #[command(flatten)]
    gpu: crate::load::GpuArgs,
    /// A system message to open the chat with.
    #[arg(short, long)]
    system: Option<String>,
    /// Tokens per answer at most.
    #[arg(short, long, default_value_t = 512)]
    n_predict: usize,
    #[command(flatten)]
    sampling: Sampling,
}

fn chain(s: &Sampling) -> Result<SamplerChain> {
    let mut c = SamplerChain::new(s.seed.unwrap_or(rocmforge::sampling::SEED_RANDOM));
    if s.seed.is_none() && s.temp > 0.0 {
        eprintln!("seed {}", c.seed());
    }
    if s.temp <= 0.0 {
        c.add(Sampler::Greedy)?;
        return Ok(c);
    }
    c.add(Sampler::TopK(s.top_k))?;
    c.add(Sampler::TopP {
        p: s.top_p,
        min_keep: 1,
    })?;
    c.add(Sampler::MinP {
        p: s.min_p,
        min_keep: 1,
    })?;
    c.add(Sampler::Temperature(s.temp))?;
    c.add(Sampler::Dist)?;
    Ok(c)
}

/// Decodes `tokens` continuing sequence 0 in batches of the context's n_batch; the last
/// token's logits are the output, or only its greedy token where `greedy` (a greedy chain:
/// on a GPU the logits then stay there, `Context::decode_greedy`).
fn feed(ctx: &mut Context, tokens: &[u32], greedy: bool) -> Result<()> {
    let start = ctx.kv_pos_range(0)?.map_or(0, |(_, hi)| hi + 1);
    let n_batch = ctx.n_batch();
    for (i, chunk) in tokens.chunks(n_batch).enumerate() {
        let pos = start + (i * n_batch) as i32;
        let last = (i + 1) * n_batch >= tokens.len();
        let mut b = Batch::new();
        for (j, &t) in chunk.iter().enumerate() {
            b.add(t as i32, pos + j as i32, &[0], last && j + 1 == chunk.len())?;
        }
        match greedy {
            true => ctx.decode_greedy(&b)?,
            false => ctx.decode(&b)?,
        }
    }
    Ok(())
}

/// Samples and streams up to `n` tokens after what `ctx` holds; returns them.
fn stream(
    m: &Model,
    ctx: &mut Context,
    chain: &mut SamplerChain,
    n: usize,
    out: &mut impl Write,
) -> Result<Vec<u32>> {
    let tok = m.tokenizer();
    let mut dec = StreamDecoder::new();
    let (mut piece, mut text) = (Vec::new(), Vec::new());
    let mut made = Vec::new();
    let greedy = chain.is_greedy();
    for _ in 0..n {
        let t = match greedy {
            true => ctx.greedy_token(-1)?,
            false => chain.sample_context(ctx, -1)?,
        };
        chain.accept(t);
        made.push(t);
        if tok.vocab().is_eog(t) {
            break;
        }
        piece.clear();
        tok.token_to_piece(t, false, &mut piece)?;
        text.clear();
        dec.push(&piece, &mut text);
        out.write_all(&text)?;
        out.flush()?;
        feed(ctx, &[t], greedy)?;
    }
    text.clear();
    dec.finish(&mut text);
    out.write_all(&text)?;
    Ok(made)
}

fn setup(m: &Arc<Model>, s: &Sampling) -> Result<Context> {
    crate::load::context(m, s.ctx, 512, s.threads, s.numerics)
}

pub fn run(a: &Args) -> Result<()> {
    let m = crate::load::model(&a.model, false, &a.gpu)?;
    let mut ctx = setup(&m, &a.sampling)?;
    let mut chain = chain(&a.sampling)?;
    let text = if a.chat {
        let msgs = [ChatMessage {
            role: "user",
            content: &a.prompt,
        }];
        m.apply_chat_template(None, &msgs, true)?
    } else {
        a.prompt.clone()
    };
    let prompt = m.tokenizer().tokenize(text.as_bytes(), true, true);
    if prompt.is_empty() {
        return Err("the prompt has no tokens".into());
    }
    if prompt.len() + a.n_predict > a.sampling.ctx {
        return Err(format!(
            "{} prompt tokens + {} to generate exceed the context of {} (raise -c)",
            prompt.len(),
            a.n_predict,
            a.sampling.ctx
        )
        .into());
    }
    for &t in &prompt {
        chain.accept(t);
    }
    let t0 = Instant::now();
    feed(&mut ctx, &prompt, chain.is_greedy())?;
    let t_prompt = t0.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    if !a.chat {
        out.write_all(a.prompt.as_bytes())?;
    }
    let t1 = Instant::now();
    let made = stream(&m, &mut ctx, &mut chain, a.n_predict, &mut out)?;
    let t_gen = t1.elapsed().as_secs_f64();
    writeln!(out)?;
    eprintln!(
        "prompt {} tokens in {:.2} s ({:.1} t/s), generated {} tokens in {:.2} s ({:.1} t/s), \
         KV cache {} bytes, peak resident memory {} bytes",
        prompt.len(),
        t_prompt,
        prompt.len() as f64 / t_prompt.max(1e-9),
        made.len(),
        t_gen,
        made.len() as f64 / t_gen.max(1e-9),
        ctx.kv_stats().bytes_total,
        crate::load::peak_rss()
    );
    Ok(())
}

pub fn chat(a: &ChatArgs) -> Result<()> {
    let m = crate::load::model(&a.model, false, &a.gpu)?;
    let mut ctx = setup(&m, &a.sampling)?;
    let mut chain = chain(&a.sampling)?;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut turns: Vec<(String, String)> = Vec::new();
    if let Some(s) = &a.system {
        turns.push(("system".into(), s.clone()));
    }
    let mut in_cache: Vec<u32> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if tty {
            print!("\x1b[32m> \x1b[0m");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next().transpose()? else {
            break;
        };
        if line.trim().is_empty() {
            break;
        }
        turns.push(("user".into(), line));
        let msgs: Vec<ChatMessage<'_>> = turns
            .iter()
            .map(|(r, c)| ChatMessage {
                role: r,
                content: c,
            })
            .collect();
        let text = m.apply_chat_template(None, &msgs, true)?;
        let all = m.tokenizer().tokenize(text.as_bytes(), true, true);
        // Keep what the cache already holds of this rendering; decode the rest.
        let same = in_cache
            .iter()
            .zip(&all)
            .take_while(|(a, b)| a == b)
            .count();
        let same = same.min(all.len().saturating_sub(1)); // at least one token to decode
        ctx.kv_seq_remove(0, same as i32, -1)?;
        in_cache.truncate(same);
        if all.len() + a.n_predict > a.sampling.ctx {
            return Err("the conversation no longer fits the context (raise -c)".into());
        }
        feed(&mut ctx, &all[same..], chain.is_greedy())?;
        in_cache.extend_from_slice(&all[same..]);
        chain.reset();
        for &t in &all {
            chain.accept(t);
        }
        let mut out = std::io::stdout().lock();
        let made = stream(&m, &mut ctx, &mut chain, a.n_predict, &mut out)?;
        writeln!(out)?;
        // The tokens fed back are in the cache; an end-of-generation token was not fed.
        let fed = made.len()
            - usize::from(
                made.last()
                    .is_some_and(|&t| m.tokenizer().vocab().is_eog(t)),
            );
        in_cache.extend_from_slice(&made[..fed]);
        let answer = m.tokenizer().detokenize(&made[..fed], false, false)?;
        turns.push((
            "assistant".into(),
            String::from_utf8_lossy(&answer).into_owned(),
        ));
    }
    Ok(())
}
