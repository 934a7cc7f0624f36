//! Loading a model for a subcommand: a progress bar on stderr while it maps and checks the
//! file, only when stderr is a terminal (none when piped or redirected).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use rocmforge::{Context, ContextParams, Model, ModelParams, Numerics};

use crate::Result;

pub fn model(path: &Path, vocab_only: bool) -> Result<Arc<Model>> {
    let tty = std::io::stderr().is_terminal();
    let mut last = -1i32;
    let mut bar = |f: f32| {
        let pct = (f * 100.0) as i32;
        if pct != last {
            last = pct;
            let filled = (pct / 5) as usize;
            eprint!(
                "\r\x1b[2mloading [{}{}] {pct:3}%\x1b[0m",
                "#".repeat(filled),
                " ".repeat(20 - filled.min(20))
            );
            let _ = std::io::stderr().flush();
        }
        true
    };
    let params = ModelParams {
        progress: if tty { Some(&mut bar) } else { None },
        vocab_only,
    };
    let m = Model::load(path, params).map_err(|e| format!("{}: {e}", path.display()));
    if tty {
        eprint!("\r\x1b[2K");
    }
    Ok(Arc::new(m?))
}

/// `--numerics`: how products and attention round (`rocmforge::Numerics`).
#[derive(clap::ValueEnum, Clone, Copy, Default, PartialEq, Eq)]
pub enum NumericsArg {
    /// rocmforge's own float order: a token's logits never depend on its batch (default).
    #[default]
    BatchInvariant,
    /// llama.cpp's CPU backend's float order, bit for bit (and its batch dependence).
    LlamaCpp,
}

impl From<NumericsArg> for Numerics {
    fn from(n: NumericsArg) -> Numerics {
        match n {
            NumericsArg::BatchInvariant => Numerics::BatchInvariant,
            NumericsArg::LlamaCpp => Numerics::LlamaCpp,
        }
    }
}

/// A context for one sequence with `n_ctx` positions and `n_threads` threads (0: all cores).
pub fn context(
    m: &Arc<Model>,
    n_ctx: usize,
    n_batch: usize,
    n_threads: usize,
    numerics: NumericsArg,
) -> Result<Context> {
    let threads = if n_threads == 0 {
        rocmforge::context::available_threads()
    } else {
        n_threads
    };
    Ok(Context::new(
        Arc::clone(m),
        ContextParams {
            n_ctx,
            n_batch,
            n_threads: threads,
            numerics: numerics.into(),
            ..ContextParams::default()
        },
    )?)
}

/// The process's peak resident set (VmHWM), in bytes; 0 where /proc does not say.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
