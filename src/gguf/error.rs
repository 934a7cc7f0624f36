//! Errors of the GGUF reader. Each names what was wrong, with the key or tensor involved and
//! the file offset where the reader found it. Names and keys that come from the file are shown
//! with `{:?}` so control characters in a hostile file cannot forge log lines.

use std::path::PathBuf;

use super::ValueType;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file: the first bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: Vec<u8> },
    #[error("big-endian GGUF files are not supported (version field reads {raw:#010x})")]
    BigEndian { raw: u32 },
    #[error("unsupported GGUF version {version} (supported: 2 and 3)")]
    UnsupportedVersion { version: u32 },
    #[error("truncated file: {what} at offset {offset} needs {need} bytes, {have} remain")]
    Truncated {
        what: String,
        offset: u64,
        need: u64,
        have: u64,
    },
    #[error(
        "{what} at offset {offset} claims {count} entries; the {have} remaining bytes hold at most {max}"
    )]
    CountTooLarge {
        what: String,
        offset: u64,
        count: u64,
        have: u64,
        max: u64,
    },
    #[error("metadata key at offset {offset}: {reason}")]
    BadKey { offset: u64, reason: String },
    #[error("duplicate metadata key {key:?} at offset {offset}")]
    DuplicateKey { key: String, offset: u64 },
    #[error("metadata key {key:?} at offset {offset}: unknown value type {id}")]
    UnknownValueType { key: String, offset: u64, id: u32 },
    #[error("metadata key {key:?} at offset {offset}: an array of arrays (not accepted)")]
    NestedArray { key: String, offset: u64 },
    #[error("metadata key {key:?} at offset {offset}: bool byte {byte} is neither 0 nor 1")]
    BadBool { key: String, offset: u64, byte: u8 },
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        found: ValueType,
        expected: &'static str,
    },
    #[error("general.alignment is {value}: it must be a power of two from 1 to {max}")]
    BadAlignment { value: u64, max: u64 },
    #[error("tensor name at offset {offset}: {reason}")]
    BadTensorName { offset: u64, reason: String },
    #[error("duplicate tensor name {tensor:?} at offset {offset}")]
    DuplicateTensor { tensor: String, offset: u64 },
    #[error("tensor {tensor:?} at offset {offset}: {n_dims} dimensions (1 to 4 are allowed)")]
    BadDimCount {
        tensor: String,
        offset: u64,
        n_dims: u32,
    },
    #[error("tensor {tensor:?} at offset {offset}: dimension {index} is {value} ({reason})")]
    BadDim {
        tensor: String,
        offset: u64,
        index: usize,
        value: u64,
        reason: &'static str,
    },
    #[error("tensor {tensor:?} at offset {offset}: unknown ggml type {id}")]
    UnknownTensorType {
        tensor: String,
        offset: u64,
        id: u32,
    },
    #[error("tensor {tensor:?} at offset {offset}: {what} overflows")]
    Overflow {
        tensor: String,
        offset: u64,
        what: &'static str,
    },
    #[error(
        "tensor {tensor:?} at offset {offset}: first dimension {ne0} is not a multiple of the {ty} block size {block}"
    )]
    NotBlockMultiple {
        tensor: String,
        offset: u64,
        ne0: u64,
        ty: super::GgmlType,
        block: u64,
    },
    #[error(
        "tensor {tensor:?}: data offset {data_offset} is not a multiple of the alignment {alignment}"
    )]
    Misaligned {
        tensor: String,
        data_offset: u64,
        alignment: u64,
    },
    #[error("tensor {tensor:?}: data [{start}, {end}) lies outside the file ({file_len} bytes)")]
    OutOfFile {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error(
        "tensors {first:?} and {second:?} overlap: {second:?} starts at offset {offset}, inside {first:?}"
    )]
    Overlap {
        first: String,
        second: String,
        offset: u64,
    },
    #[error("the data section starts at offset {offset}, which overflows")]
    DataOffsetOverflow { offset: u64 },
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;
