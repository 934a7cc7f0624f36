//! `rocmforge`: the command-line tool, built on the library's safe Rust API.
//!
//!   rocmforge info       -m MODEL
//!   rocmforge tokenize   -m MODEL (-p TEXT | -f FILE) [--no-special] [--json]
//!   rocmforge generate   -m MODEL -p PROMPT [-n 128] [--temp T] [--top-k K] [--top-p P]
//!                        [--min-p P] [--seed S] [--chat] [-t THREADS] [-c CTX]
//!   rocmforge chat       -m MODEL [sampling options]
//!   rocmforge perplexity -m MODEL -f FILE [-c 512] [-b 512] [-t THREADS]
//!   rocmforge bench      -m MODEL[,MODEL...] [-p 512] [-n 128] [-r 5] [-t THREADS] [-o md|json]
//!   rocmforge bench-engine -m MODEL [--requests 64] [-p 128] [-n 128] [--parallel 16]
//!   rocmforge serve      -m MODEL [--host 127.0.0.1] [--port 8080] [--api-key KEY]
//!                        [-c CTX] [--parallel N] [--max-queued N] [-t THREADS]
//!
//! generate, chat, perplexity and bench take `--numerics batch-invariant|llama-cpp`: the
//! default float order (a token's logits independent of its batch) or llama.cpp's, bit for bit.
//!
//! Errors go to stderr with exit status 1 (2 for a usage error, from clap). A progress bar
//! shows while a model loads when stderr is a terminal.

mod bench;
mod bench_engine;
mod generate;
mod info;
mod load;
mod perplexity;
mod serve;
mod tokenize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rocmforge",
    version,
    about = "Run GGUF language models on the CPU: inspect, tokenize, generate, chat, measure"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Describe a model: architecture, sizes, metadata, tensor types.
    Info(info::Args),
    /// Print the tokens of a text.
    Tokenize(tokenize::Args),
    /// Generate text from a prompt, streamed as it is decoded.
    Generate(generate::Args),
    /// Talk to a model with its chat template (one line per turn; an empty line or EOF ends).
    Chat(generate::ChatArgs),
    /// Perplexity of a text file, as llama.cpp's llama-perplexity computes it.
    Perplexity(perplexity::Args),
    /// Prompt-processing and generation speed, measured as llama-bench measures.
    Bench(bench::Args),
    /// Throughput of the continuous-batching engine: many requests together vs one at a time.
    BenchEngine(bench_engine::Args),
    /// An OpenAI-compatible HTTP server (completions, chat, streaming) over the engine.
    Serve(serve::Args),
}

fn main() -> ExitCode {
    // SAFETY: restoring the default action of SIGPIPE, before any thread starts, so that
    // `rocmforge info | head` ends quietly like any Unix tool instead of failing to print
    // (Rust ignores SIGPIPE by default, which turns a closed pipe into a panic in print!).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // llama.cpp's tools spell the offload flag `-ngl`; clap's short flags are one letter.
    let cli =
        Cli::parse_from(std::env::args_os().map(|a| if a == "-ngl" { "--ngl".into() } else { a }));
    let result = match cli.cmd {
        Cmd::Info(a) => info::run(&a),
        Cmd::Tokenize(a) => tokenize::run(&a),
        Cmd::Generate(a) => generate::run(&a),
        Cmd::Chat(a) => generate::chat(&a),
        Cmd::Perplexity(a) => perplexity::run(&a),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::BenchEngine(a) => bench_engine::run(&a),
        Cmd::Serve(a) => serve::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every subcommand returns: a message for stderr on failure.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
