//! Loading a model for a subcommand: a progress bar on stderr while it maps and checks the
//! file, only when stderr is a terminal (none when piped or redirected).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use rocmforge::{Backend, Context, ContextParams, Model, ModelParams, Numerics};

use crate::Result;

/// Where a model's layers run (`--backend`, `--n-gpu-layers` / `-ngl`, `--device`).
#[derive(clap::Args, Clone, Default)]
pub struct GpuArgs {
    /// Where layers run: auto (a GPU when one works, else the CPU), cpu, cuda or hip.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Layers on the GPU, from the first (-1: all); the rest run on the CPU.
    #[arg(long = "n-gpu-layers", visible_alias = "ngl", default_value_t = -1, allow_negative_numbers = true)]
    pub n_gpu_layers: i64,
    /// Which GPU (0: the first).
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

#[derive(clap::ValueEnum, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendArg {
    #[default]
    Auto,
    Cpu,
    Cuda,
    Hip,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Cuda => Backend::Cuda,
            BackendArg::Hip => Backend::Hip,
        }
    }
}

impl GpuArgs {
    /// Everything on the CPU (tools that never decode).
    pub fn cpu() -> GpuArgs {
        GpuArgs {
            backend: BackendArg::Cpu,
            n_gpu_layers: -1,
            device: 0,
        }
    }
}

pub fn model(path: &Path, vocab_only: bool, gpu: &GpuArgs) -> Result<Arc<Model>> {
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
        backend: gpu.backend.into(),
        device: gpu.device,
        n_gpu_layers: usize::try_from(gpu.n_gpu_layers).ok(),
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
