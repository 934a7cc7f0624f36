//! rocmforge: an embeddable LLM inference engine with a C ABI.
//!
//! Layers, bottom to top (see docs/ARCHITECTURE.md): `gguf` (file format), `model` (a loaded
//! model and its hyperparameters), `capi` (the C boundary, a thin client of the safe API).

pub mod backend;
pub mod capi;
pub mod error;
pub mod gguf;
pub mod log;
pub mod model;
pub mod quant;
pub mod tokenizer;

pub use error::{Error, Result};
pub use model::{Model, ModelDesc, ModelParams};
