//! rocmforge: an embeddable LLM inference engine with a C ABI.
//!
//! Layers, bottom to top (see docs/ARCHITECTURE.md): `gguf` (file format), `quant` (block
//! formats), `backend` (CPU threads and kernels), `tokenizer`, `kv` (the paged KV cache),
//! `model` (a loaded model, its hyperparameters and forward pass), `batch` and `context`
//! (decoding), `sampling` (sampler chains), `capi` (the C boundary, a thin client of the safe API).

pub mod backend;
pub mod batch;
pub mod capi;
pub mod context;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod kv;
pub mod log;
pub mod model;
pub mod perplexity;
pub mod quant;
pub mod sampling;
pub mod tokenizer;

pub use backend::cpu::Numerics;
pub use backend::gpu::Backend;
pub use batch::Batch;
pub use context::{Context, ContextParams};
pub use engine::{Engine, EngineParams};
pub use error::{Error, Result};
pub use kv::{KvStats, KvType};
pub use model::{Model, ModelDesc, ModelParams};
pub use sampling::{Sampler, SamplerChain};
