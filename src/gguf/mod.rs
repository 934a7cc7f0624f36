//! GGUF: the file format of llama.cpp models. A hardened reader over a memory map and a writer
//! for tests and tools.
//!
//! The reader accepts versions 2 and 3 (little-endian), every metadata value type, and the
//! ggml tensor types of [`GgmlType`]. It must never panic, read out of bounds or allocate more
//! than the file could describe, whatever the bytes: see `parse` for the checks and
//! docs/GGUF.md for the policy where the spec is silent.

mod error;
mod file;
mod ggml_type;
mod parse;
mod value;
mod writer;

pub use error::GgufError;
pub use file::GgufFile;
pub use ggml_type::{GgmlType, TypeLayout};
pub use parse::{
    DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT, MAX_DIMS, MAX_KEY_LEN, MAX_TENSOR_NAME_LEN, Parsed,
    TensorInfo, parse,
};
pub use value::{Array, Value, ValueType};
pub use writer::{FieldSpan, GgufWriter, Layout};
