//! A loaded model: the validated GGUF file, its hyperparameters, its tokenizer, its weights
//! bound for the forward pass (`Transformer`) and a description.
//!
//! A `Model` is immutable after load, `Send + Sync`, and shared by reference counting by
//! everything that uses it. Loading never panics on a bad file: every problem is an `Error`
//! that names it. An architecture without a forward pass is a load error unless the caller
//! asks for the vocabulary only.

pub mod arch;
pub(crate) mod attention;
mod file_type;
mod hparams;
pub(crate) mod moe;
mod tensors;
pub mod transformer;

use std::path::Path;

pub use file_type::file_type_name;
pub use hparams::{Hparams, MAX_ARCH_LEN, MAX_COUNT};
pub use transformer::Transformer;

use crate::backend::gpu::{self, Backend, GpuWeights};
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// What a caller may ask of a load.
#[derive(Default)]
pub struct ModelParams<'a> {
    /// Called with the fraction done (0.0 to 1.0); returning `false` cancels the load, which
    /// then fails with `Error::Aborted`.
    pub progress: Option<&'a mut dyn FnMut(f32) -> bool>,
    /// Load the metadata and tokenizer only (llama.cpp's `vocab_only`): any architecture
    /// loads, and no context can be made from the model.
    pub vocab_only: bool,
    /// Where the forward pass runs (default `Auto`: a GPU when one works, else the CPU).
    pub backend: Backend,
    /// Which GPU of the backend (0: the first).
    pub device: usize,
    /// Layers on the GPU, from the first (`None`: all). The rest, and then the output
    /// layer, run on the CPU (partial offload); 0 keeps everything on the CPU.
    pub n_gpu_layers: Option<usize>,
}

/// A summary of a model, as `rf_model_describe` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDesc {
    pub arch: String,
    /// Total number of weights (elements of all tensors).
    pub n_params: u64,
    pub file_size: u64,
    /// `general.file_type`, when the file says.
    pub file_type: Option<u32>,
    /// Its display name: "Q4_K - Medium", or "unknown".
    pub file_type_name: &'static str,
    pub n_tensors: u64,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
}

pub struct Model {
    file: GgufFile,
    hparams: Hparams,
    tokenizer: Tokenizer,
    /// `None` for a vocabulary-only load.
    transformer: Option<Transformer>,
    /// The weights of the offloaded layers, when a GPU runs them.
    gpu: Option<GpuWeights>,
    desc: ModelDesc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("desc", &self.desc).finish()
    }
}

/// Reports progress and turns a cancel into `Error::Aborted`.
struct Progress<'p, 'a> {
    callback: &'p mut Option<&'a mut dyn FnMut(f32) -> bool>,
}

impl Progress<'_, '_> {
    fn report(&mut self, fraction: f32) -> Result<()> {
        let go_on = match self.callback {
            Some(cb) => cb(fraction.clamp(0.0, 1.0)),
            None => true,
        };
        if go_on {
            Ok(())
        } else {
            Err(Error::Aborted(
                "model load cancelled by the progress callback".into(),
            ))
        }
    }
}

/// Where a load puts the layers (`ModelParams::backend`, `device`, `n_gpu_layers`).
#[derive(Clone, Copy)]
struct Placement {
    backend: Backend,
    device: usize,
    n_gpu_layers: Option<usize>,
}

impl Placement {
    fn of(p: &ModelParams<'_>) -> Placement {
        Placement {
            backend: p.backend,
            device: p.device,
            n_gpu_layers: p.n_gpu_layers,
        }
    }

    /// Opens the GPU and uploads the offloaded layers; `None` for the CPU. Under `Auto` a
    /// GPU that cannot take this model (a format or layer kind without kernels, too little
    /// memory) leaves it on the CPU with a warning; a GPU asked for by name fails the load.
    fn upload(self, t: &Transformer, file: &GgufFile) -> Result<Option<GpuWeights>> {
        let n = self.n_gpu_layers.unwrap_or(usize::MAX).min(t.layers.len());
        if n == 0 || self.backend == Backend::Cpu {
            return Ok(None);
        }
        let Some(dev) = gpu::open(self.backend, self.device)? else {
            return Ok(None);
        };
        match GpuWeights::upload(dev, t, file, n) {
            Ok(w) => {
                crate::log::info(&format!(
                    "{} layers of {} on {} ({} MiB of weights)",
                    w.n_layers(),
                    t.layers.len(),
                    w.dev.describe(),
                    w.bytes >> 20
                ));
                Ok(Some(w))
            }
            Err(e) if self.backend == Backend::Auto => {
                crate::log::warn(&format!(
                    "running on the CPU: the GPU cannot take this model: {e}"
                ));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

impl Model {
    /// Maps and validates the GGUF file at `path` and reads its hyperparameters.
    pub fn load(path: &Path, mut params: ModelParams<'_>) -> Result<Model> {
        let placement = Placement::of(&params);
        let mut progress = Progress {
            callback: &mut params.progress,
        };
        progress.report(0.0)?;
        let file = GgufFile::open(path)?;
        let model = Self::bind(file, params.vocab_only, placement, &mut progress)?;
        crate::log::info(&format!(
            "loaded {path:?}: {} {}, {} tensors, {} parameters",
            model.desc.arch, model.desc.file_type_name, model.desc.n_tensors, model.desc.n_params
        ));
        Ok(model)
    }

    /// Builds a model from a GGUF file already in memory (tests, tools).
    pub fn from_gguf(file: GgufFile, mut params: ModelParams<'_>) -> Result<Model> {
        let vocab_only = params.vocab_only;
        let placement = Placement::of(&params);
        let mut progress = Progress {
            callback: &mut params.progress,
        };
        progress.report(0.0)?;
        Self::bind(file, vocab_only, placement, &mut progress)
    }

    /// Reads the hyperparameters and walks the tensor table, reporting progress by bytes: the
    /// header counts as done once parsed, then each tensor as it is bound. (On the CPU a
    /// tensor is bound as a view into the map; GPU backends upload here.)
    fn bind(
        file: GgufFile,
        vocab_only: bool,
        placement: Placement,
        progress: &mut Progress<'_, '_>,
    ) -> Result<Model> {
        let total = file.len().max(1) as f64;
        progress.report((file.data_offset() as f64 / total) as f32)?;
        let hparams = Hparams::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let mut n_params = 0u64;
        let mut done = file.data_offset();
        for t in file.tensors() {
            n_params = n_params
                .checked_add(t.n_elements)
                .ok_or_else(|| Error::Overflow("the total parameter count".into()))?;
            done = done.saturating_add(t.n_bytes);
            progress.report((done as f64 / total) as f32)?;
        }
        let file_type =
            match file.get("general.file_type") {
                None => None,
                Some(v) => Some(v.as_i128().and_then(|i| u32::try_from(i).ok()).ok_or_else(
                    || Error::BadMetadata {
                        key: "general.file_type".into(),
                        reason: format!(
                            "expected a small unsigned integer, found {}",
                            v.value_type()
                        ),
                    },
                )?),
            };
        let desc = ModelDesc {
            arch: hparams.arch.clone(),
            n_params,
            file_size: file.len(),
            file_type,
            file_type_name: file_type.and_then(file_type_name).unwrap_or("unknown"),
            n_tensors: file.tensors().len() as u64,
            n_vocab: hparams.n_vocab,
            n_ctx_train: hparams.n_ctx_train,
            n_embd: hparams.n_embd,
            n_layer: hparams.n_layer,
            n_head: hparams.n_head,
            n_head_kv: hparams.n_head_kv,
        };
        let transformer = if vocab_only {
            None
        } else {
            let spec = arch::ArchSpec::of(&hparams.arch).ok_or_else(|| {
                Error::Unsupported(format!(
                    "architecture {:?} cannot run yet (supported: {}); load with vocab_only for its tokenizer",
                    hparams.arch,
                    arch::ArchSpec::SUPPORTED.join(", ")
                ))
            })?;
            Some(Transformer::from_gguf(&file, &hparams, spec)?)
        };
        let gpu = match &transformer {
            Some(t) => placement.upload(t, &file)?,
            None => None,
        };
        progress.report(1.0)?;
        Ok(Model {
            file,
            hparams,
            tokenizer,
            transformer,
            gpu,
            desc,
        })
    }

    /// The GPU weights, when layers run on a GPU.
    pub(crate) fn gpu(&self) -> Option<&GpuWeights> {
        self.gpu.as_ref()
    }

    /// "cpu", or the GPU and how many layers it runs: "CUDA 0: NVIDIA H100 (sm_90), 30/30
    /// layers".
    pub fn backend_name(&self) -> String {
        match (&self.gpu, &self.transformer) {
            (Some(g), Some(t)) => format!(
                "{}, {}/{} layers",
                g.dev.describe(),
                g.n_layers(),
                t.layers.len()
            ),
            _ => "cpu".into(),
        }
    }

    pub fn describe(&self) -> &ModelDesc {
        &self.desc
    }

    pub fn hparams(&self) -> &Hparams {
        &self.hparams
    }

    /// The forward pass, or `Unsupported` for a vocabulary-only load.
    pub fn transformer(&self) -> Result<&Transformer> {
        self.transformer.as_ref().ok_or_else(|| {
            Error::Unsupported("the model was loaded with vocab_only: it cannot decode".into())
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's own chat template (`tokenizer.chat_template`), if it has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.file
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
    }

    /// Renders a chat with `template`, or with the model's own when `None`. A model without a
    /// template is `NotFound`: the caller must supply one.
    pub fn apply_chat_template(
        &self,
        template: Option<&str>,
        messages: &[crate::tokenizer::ChatMessage<'_>],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = match template {
            Some(t) => t,
            None => self.chat_template().ok_or_else(|| {
                Error::NotFound(
                    "the model has no chat template (tokenizer.chat_template); supply one".into(),
                )
            })?,
        };
        let vocab = self.tokenizer.vocab();
        let text = |t: Option<u32>| {
            t.and_then(|t| vocab.text(t))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        crate::tokenizer::apply_template(
            template,
            messages,
            add_generation_prompt,
            &text(vocab.bos),
            &text(vocab.eos),
        )
    }

    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }
}
