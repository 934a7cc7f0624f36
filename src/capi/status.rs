//! Statuses, the last error message and the library version.

use std::ffi::c_char;

use crate::error::Status;

/// The outcome of a call. `RF_OK` (0) is success; positive values are outcomes the caller
/// handles (nothing went wrong); negative values are errors, each with a message from
/// `rf_last_error_message()`.
pub type rf_status = i32;

/// Success.
pub const RF_OK: rf_status = 0;
/// The KV cache has no room for the batch; nothing changed. Retry with fewer tokens.
pub const RF_KV_FULL: rf_status = 1;
/// A callback returned 0 and the work stopped; nothing is left half-done.
pub const RF_ABORTED: rf_status = 2;
/// The engine's request queue is full; nothing changed. Retry later.
pub const RF_BUSY: rf_status = 3;
/// A NULL handle or pointer, an out-of-range index or value, a bad struct_size.
pub const RF_ERR_INVALID_ARG: rf_status = -1;
/// An output buffer is too small; the needed length was written to the length out-parameter.
pub const RF_ERR_BUFFER_TOO_SMALL: rf_status = -2;
/// A size computed from the arguments overflows.
pub const RF_ERR_OVERFLOW: rf_status = -3;
/// A file could not be opened or read.
pub const RF_ERR_IO: rf_status = -4;
/// A model file is malformed or describes something inconsistent.
pub const RF_ERR_MODEL_FORMAT: rf_status = -5;
/// Valid, but not supported by this build or this model.
pub const RF_ERR_UNSUPPORTED: rf_status = -6;
/// Memory could not be allocated.
pub const RF_ERR_OOM: rf_status = -7;
/// A GPU device or driver failed or is absent.
pub const RF_ERR_DEVICE: rf_status = -8;
/// A bug in rocmforge (a caught panic); the message says where.
pub const RF_ERR_INTERNAL: rf_status = -9;
/// A named item (metadata key, tensor) does not exist.
pub const RF_ERR_NOT_FOUND: rf_status = -10;

/// Major version of the header; compare with `rf_version()` at run time.
pub const RF_VERSION_MAJOR: u32 = 0;
/// Minor version of the header. While the major version is 0, a minor release may change
/// the ABI.
pub const RF_VERSION_MINOR: u32 = 1;
/// Patch version of the header.
pub const RF_VERSION_PATCH: u32 = 0;

/// A static, human-readable description of a status. Unknown values give "unknown status".
/// The string is owned by the library and never freed. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn rf_status_str(status: rf_status) -> *const c_char {
    Status::from_code(status)
        .map_or(c"unknown status", Status::describe)
        .as_ptr()
}

/// The message of the last failed call on this thread ("" when the last call succeeded).
/// Every `rf_*` call except this one, `rf_status_str` and `rf_version` clears it first. The
/// string is owned by the library and valid until the next `rf_*` call on this thread; copy it
/// to keep it. Thread-safe (each thread has its own).
#[unsafe(no_mangle)]
pub extern "C" fn rf_last_error_message() -> *const c_char {
    super::last_error_ptr()
}

/// The version of the loaded library, "MAJOR.MINOR.PATCH". Static; never freed. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn rf_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn c_constants_match_rust_statuses() {
        let pairs = [
            (RF_OK, Status::Ok),
            (RF_KV_FULL, Status::KvFull),
            (RF_ABORTED, Status::Aborted),
            (RF_BUSY, Status::Busy),
            (RF_ERR_INVALID_ARG, Status::InvalidArg),
            (RF_ERR_BUFFER_TOO_SMALL, Status::BufferTooSmall),
            (RF_ERR_OVERFLOW, Status::Overflow),
            (RF_ERR_IO, Status::Io),
            (RF_ERR_MODEL_FORMAT, Status::ModelFormat),
            (RF_ERR_UNSUPPORTED, Status::Unsupported),
            (RF_ERR_OOM, Status::Oom),
            (RF_ERR_DEVICE, Status::Device),
            (RF_ERR_INTERNAL, Status::Internal),
            (RF_ERR_NOT_FOUND, Status::NotFound),
        ];
        assert_eq!(pairs.len(), Status::ALL.len());
        for (c, s) in pairs {
            assert_eq!(c, s as i32);
            // SAFETY: rf_status_str returns a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(rf_status_str(c)) };
            assert_eq!(text, s.describe());
        }
    }

    #[test]
    fn version_macros_match_the_crate_version() {
        let v = format!("{RF_VERSION_MAJOR}.{RF_VERSION_MINOR}.{RF_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        // SAFETY: rf_version returns a static NUL-terminated string.
        assert_eq!(unsafe { CStr::from_ptr(rf_version()) }.to_str().unwrap(), v);
    }
}
