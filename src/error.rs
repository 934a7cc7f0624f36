//! The crate's error type and its one mapping to a C status.

use std::ffi::CStr;

use crate::gguf::GgufError;

/// Outcome codes shared by the Rust API and the C API (`rf_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    /// The KV cache has no room; nothing changed.
    KvFull = 1,
    /// A callback asked to stop.
    Aborted = 2,
    /// The engine's queue is full; nothing changed, try again later.
    Busy = 3,
    InvalidArg = -1,
    BufferTooSmall = -2,
    Overflow = -3,
    Io = -4,
    ModelFormat = -5,
    Unsupported = -6,
    Oom = -7,
    Device = -8,
    Internal = -9,
    NotFound = -10,
}

impl Status {
    pub const ALL: [Status; 14] = [
        Status::Ok,
        Status::KvFull,
        Status::Aborted,
        Status::Busy,
        Status::InvalidArg,
        Status::BufferTooSmall,
        Status::Overflow,
        Status::Io,
        Status::ModelFormat,
        Status::Unsupported,
        Status::Oom,
        Status::Device,
        Status::Internal,
        Status::NotFound,
    ];

    pub fn from_code(code: i32) -> Option<Status> {
        Self::ALL.iter().copied().find(|s| *s as i32 == code)
    }

    /// Static description, as `rf_status_str` returns it.
    pub fn describe(self) -> &'static CStr {
        match self {
            Status::Ok => c"ok",
            Status::KvFull => c"the KV cache is full (nothing changed)",
            Status::Aborted => c"aborted by a callback",
            Status::Busy => c"the engine's queue is full (nothing changed)",
            Status::InvalidArg => c"invalid argument",
            Status::BufferTooSmall => c"buffer too small",
            Status::Overflow => c"size overflow",
            Status::Io => c"I/O error",
            Status::ModelFormat => c"malformed or unsupported model file",
            Status::Unsupported => c"unsupported",
            Status::Oom => c"out of memory",
            Status::Device => c"device error",
            Status::Internal => c"internal error",
            Status::NotFound => c"not found",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("missing metadata key {key:?}")]
    MissingKey { key: String },
    #[error("metadata key {key:?}: {reason}")]
    BadMetadata { key: String, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    #[error("buffer too small: {need} needed (in bytes or elements), capacity is {cap}")]
    BufferTooSmall { need: usize, cap: usize },
    #[error("{0} overflows")]
    Overflow(String),
    #[error("{0}")]
    NotFound(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Aborted(String),
    /// The KV cache has no room for a batch; nothing changed.
    #[error("the KV cache is full: {0}")]
    KvFull(String),
    /// The engine's request queue is full; nothing changed.
    #[error("busy: {0}")]
    Busy(String),
    #[error("out of memory: {0}")]
    Oom(String),
    /// A GPU asked for is absent or failed (driver, compiler, launch or copy errors).
    #[error("device error: {0}")]
    Device(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// A decode's logits hold NaN or infinity (the model's weights or activations overflow);
    /// nothing was kept of the decode.
    #[error("non-finite logits: {0}")]
    NonFinite(String),
}

impl Error {
    /// The C status for this error: the only place errors map to statuses.
    pub fn status(&self) -> Status {
        match self {
            Error::Gguf(GgufError::Io { .. }) => Status::Io,
            Error::Gguf(_) | Error::MissingKey { .. } | Error::BadMetadata { .. } => {
                Status::ModelFormat
            }
            // The file loaded, but its numbers do not: a model problem, not the caller's.
            Error::NonFinite(_) => Status::ModelFormat,
            Error::InvalidArg(_) => Status::InvalidArg,
            Error::BufferTooSmall { .. } => Status::BufferTooSmall,
            Error::Overflow(_) => Status::Overflow,
            Error::NotFound(_) => Status::NotFound,
            Error::Unsupported(_) => Status::Unsupported,
            Error::Aborted(_) => Status::Aborted,
            Error::KvFull(_) => Status::KvFull,
            Error::Busy(_) => Status::Busy,
            Error::Oom(_) => Status::Oom,
            Error::Device(_) => Status::Device,
            Error::Internal(_) => Status::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::from_code(s as i32), Some(s));
            assert!(!s.describe().is_empty());
        }
        assert_eq!(Status::from_code(12345), None);
    }
}
