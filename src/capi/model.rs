//! Models through the C API: load, free, describe, metadata.

use std::ffi::{c_char, c_void};
use std::mem::size_of;
use std::path::PathBuf;
use std::sync::Arc;

use super::args::{Versioned, fill_fixed, non_null, read_params, write_text, write_versioned};
use super::{c_str, guard, guard_void, rf_status};
use crate::{Backend, Error, Model, ModelParams};

/// Where a model's layers run (`rf_model_params.backend`).
pub type rf_backend = i32;
/// A GPU when one works (CUDA, then HIP, in builds with them), else the CPU (the default).
pub const RF_BACKEND_AUTO: rf_backend = 0;
/// Every layer on the CPU.
pub const RF_BACKEND_CPU: rf_backend = 1;
/// NVIDIA, through CUDA: `rf_model_load` fails with `RF_ERR_DEVICE` when the build has no
/// CUDA backend, the driver or GPU is missing, or the kernels cannot be built.
pub const RF_BACKEND_CUDA: rf_backend = 2;
/// AMD, through HIP (builds with the `hip` feature; compiled and compile-tested, not yet run on
/// AMD hardware): `RF_ERR_DEVICE` when the build has no HIP backend, the runtime or GPU is
/// missing, or the kernels cannot be built.
pub const RF_BACKEND_HIP: rf_backend = 3;

/// Load progress: `progress` goes from 0.0 to 1.0. Return 1 to continue, 0 to cancel the load
/// (which then returns `RF_ABORTED`). Called on the loading thread.
pub type rf_progress_callback =
    Option<unsafe extern "C" fn(progress: f32, user_data: *mut c_void) -> u8>;

/// Options for `rf_model_load`. Initialise with `rf_model_params_default()`, then change
/// fields: `struct_size` lets later versions of the library append fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_model_params {
    /// `sizeof(rf_model_params)` as the caller was compiled; set by the default function.
    pub struct_size: u32,
    /// Optional progress callback (NULL: none).
    pub progress_callback: rf_progress_callback,
    /// Passed to `progress_callback`.
    pub progress_callback_user_data: *mut c_void,
    /// 1: load the metadata and tokenizer only (any architecture; no context can be made).
    pub vocab_only: u8,
    /// `RF_BACKEND_AUTO` (default), `RF_BACKEND_CPU`, `RF_BACKEND_CUDA` or `RF_BACKEND_HIP`.
    pub backend: rf_backend,
    /// Which GPU of the backend, from 0 (default 0).
    pub device: i32,
    /// Layers on the GPU, from the first; the rest and the output layer run on the CPU.
    /// -1 (default): all; 0: none.
    pub n_gpu_layers: i32,
}

// SAFETY: repr(C), starts with struct_size, and every field accepts any byte pattern (an
// integer, an Option of a function pointer, a raw pointer).
unsafe impl Versioned for rf_model_params {
    // The first version ended before vocab_only.
    const MIN_SIZE: usize = std::mem::offset_of!(rf_model_params, vocab_only);
    const NAME: &'static str = "rf_model_params";
}

/// A summary of a loaded model. Set `struct_size = sizeof(rf_model_desc)` before calling
/// `rf_model_describe`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_model_desc {
    /// `sizeof(rf_model_desc)` as the caller was compiled; set by the caller.
    pub struct_size: u32,
    /// Tokens in the vocabulary.
    pub n_vocab: u32,
    /// Context length the model was trained with.
    pub n_ctx_train: u32,
    /// Embedding (hidden) size.
    pub n_embd: u32,
    /// Transformer blocks.
    pub n_layer: u32,
    /// Attention heads (the largest, where it varies by layer).
    pub n_head: u32,
    /// Key/value heads (equal to n_head without grouped-query attention).
    pub n_head_kv: u32,
    /// `general.file_type` (llama.cpp's ftype), or -1 when the file does not say.
    pub file_type: i32,
    /// Number of weights (elements of all tensors).
    pub n_params: u64,
    /// File size in bytes.
    pub file_size: u64,
    /// Number of tensors in the file.
    pub n_tensors: u64,
    /// `general.architecture`, NUL-terminated (e.g. "llama", "gemma3").
    pub architecture: [c_char; 64],
    /// The file type's name, NUL-terminated (e.g. "Q4_K - Medium", "unknown").
    pub file_type_name: [c_char; 32],
}

// SAFETY: repr(C), starts with struct_size, integers and char arrays only.
unsafe impl Versioned for rf_model_desc {
    const MIN_SIZE: usize = size_of::<rf_model_desc>();
    const NAME: &'static str = "rf_model_desc";
}

/// A loaded model. Immutable and thread-safe: any number of threads may use one model at once.
/// Everything that uses it keeps it alive, so `rf_model_free` only drops the caller's reference.
pub struct rf_model_t {
    pub(crate) model: Arc<Model>,
}

/// Default load options: no progress callback.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_model_params_default() -> rf_model_params {
    super::clear_last_error();
    rf_model_params {
        struct_size: size_of::<rf_model_params>() as u32,
        progress_callback: None,
        progress_callback_user_data: std::ptr::null_mut(),
        vocab_only: 0,
        backend: RF_BACKEND_AUTO,
        device: 0,
        n_gpu_layers: -1,
    }
}

fn backend_of(b: rf_backend) -> Result<Backend, Error> {
    Ok(match b {
        RF_BACKEND_AUTO => Backend::Auto,
        RF_BACKEND_CPU => Backend::Cpu,
        RF_BACKEND_CUDA => Backend::Cuda,
        RF_BACKEND_HIP => Backend::Hip,
        b => {
            return Err(Error::InvalidArg(format!(
                "backend {b} is not a rf_backend"
            )));
        }
    })
}

#[cfg(unix)]
fn path_from(bytes: &[u8]) -> Result<PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    Ok(std::ffi::OsStr::from_bytes(bytes).into())
}

#[cfg(not(unix))]
fn path_from(bytes: &[u8]) -> Result<PathBuf, Error> {
    std::str::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| Error::InvalidArg("path is not valid UTF-8".into()))
}

/// Loads a GGUF model from `path` (NUL-terminated, a file system path).
///
/// `params` may be NULL for defaults. On success `*out` receives a new model, freed with
/// `rf_model_free`; on failure `*out` is left untouched. Statuses: `RF_OK`; `RF_ABORTED` when
/// the progress callback returned 0; `RF_ERR_IO` when the file cannot be read;
/// `RF_ERR_MODEL_FORMAT` when it is malformed (the last error message names the key, tensor
/// and offset); `RF_ERR_INVALID_ARG` for NULL `path`/`out`, a bad `struct_size`, backend,
/// device or n_gpu_layers; `RF_ERR_DEVICE` when the GPU asked for cannot be used (the message
/// says why); `RF_ERR_UNSUPPORTED` when it cannot run this model (a format or layer kind
/// without GPU kernels; `RF_BACKEND_AUTO` then uses the CPU instead).
/// Thread-safe: models may be loaded on several threads at once.
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `params` NULL or a valid `rf_model_params`; `out`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_model_load(
    path: *const c_char,
    params: *const rf_model_params,
    out: *mut *mut rf_model_t,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let path = path_from(unsafe { c_str(path, "path") }?.to_bytes())?;
        // SAFETY: contract of this function.
        let p = unsafe { read_params(params, rf_model_params_default()) }?;
        let out = non_null(out, "out")?;
        let backend = backend_of(p.backend)?;
        let device = usize::try_from(p.device)
            .map_err(|_| Error::InvalidArg(format!("device {} is negative", p.device)))?;
        let n_gpu_layers = match p.n_gpu_layers {
            -1 => None,
            n => Some(usize::try_from(n).map_err(|_| {
                Error::InvalidArg(format!("n_gpu_layers {n}: use -1 (all) or a count"))
            })?),
        };
        let mut progress = |f: f32| match p.progress_callback {
            // SAFETY: the caller's callback with its own user_data, as documented.
            Some(cb) => (unsafe { cb(f, p.progress_callback_user_data) }) != 0,
            None => true,
        };
        let model = Model::load(
            &path,
            ModelParams {
                progress: Some(&mut progress),
                vocab_only: p.vocab_only != 0,
                backend,
                device,
                n_gpu_layers,
            },
        )?;
        let handle = Box::new(rf_model_t {
            model: Arc::new(model),
        });
        // SAFETY: out is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Releases the caller's reference to a model; the model itself is freed when nothing else
/// (a context, an engine) uses it. NULL is a no-op. The handle must not be used afterwards.
/// Thread-safe: contexts and engines on other threads keep the model alive.
///
/// # Safety
/// `model` must be NULL or a handle from `rf_model_load` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_model_free(model: *mut rf_model_t) {
    guard_void(|| {
        if !model.is_null() {
            // SAFETY: a live handle made by Box::into_raw in rf_model_load, freed once.
            drop(unsafe { Box::from_raw(model) });
        }
    })
}

/// Borrows the model behind a handle.
///
/// # Safety
/// `model` must be NULL or a live handle.
pub(super) unsafe fn model_ref<'a>(model: *const rf_model_t) -> Result<&'a Arc<Model>, Error> {
    if model.is_null() {
        return Err(Error::InvalidArg("model is NULL".into()));
    }
    // SAFETY: non-NULL and live by contract.
    Ok(unsafe { &(*model).model })
}

/// Fills `*out` with a summary of the model. The caller sets `out->struct_size` first; only
/// that many bytes are written. Statuses: `RF_OK`, `RF_ERR_INVALID_ARG` (NULL, bad
/// struct_size). Thread-safe.
///
/// # Safety
/// `model` must be NULL or a live handle; `out` NULL or a writable `rf_model_desc` of at least
/// `out->struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_model_describe(
    model: *const rf_model_t,
    out: *mut rf_model_desc,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let d = unsafe { model_ref(model) }?.describe();
        let mut desc = rf_model_desc {
            struct_size: size_of::<rf_model_desc>() as u32,
            n_vocab: d.n_vocab,
            n_ctx_train: d.n_ctx_train,
            n_embd: d.n_embd,
            n_layer: d.n_layer,
            n_head: d.n_head,
            n_head_kv: d.n_head_kv,
            file_type: d
                .file_type
                .and_then(|t| i32::try_from(t).ok())
                .unwrap_or(-1),
            n_params: d.n_params,
            file_size: d.file_size,
            n_tensors: d.n_tensors,
            architecture: [0; 64],
            file_type_name: [0; 32],
        };
        // The architecture is at most MAX_ARCH_LEN (63) bytes, checked at load; file type
        // names are short constants.
        if !fill_fixed(&mut desc.architecture, d.arch.as_bytes())
            || !fill_fixed(&mut desc.file_type_name, d.file_type_name.as_bytes())
        {
            return Err(Error::Internal(
                "a model description field does not fit".into(),
            ));
        }
        // SAFETY: contract of this function.
        unsafe { write_versioned(out, &desc) }
    })
}

/// Number of metadata entries (key/value pairs) in the model file. Thread-safe.
/// Statuses: `RF_OK`, `RF_ERR_INVALID_ARG` (NULL).
///
/// # Safety
/// `model` must be NULL or a live handle; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_model_meta_count(
    model: *const rf_model_t,
    out: *mut usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let n = unsafe { model_ref(model) }?.gguf().metadata().len();
        let out = non_null(out, "out")?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { out.write(n) };
        Ok(())
    })
}

/// Copies the key of metadata entry `i` (0-based, in file order) into `buf` as NUL-terminated
/// UTF-8. `*out_len` receives the key's length without the NUL; when `cap <= *out_len` nothing
/// is written to `buf` and the call returns `RF_ERR_BUFFER_TOO_SMALL` (call again with
/// `cap >= *out_len + 1`). `buf` may be NULL with `cap` 0 to ask for the length.
/// Statuses: `RF_OK`; `RF_ERR_BUFFER_TOO_SMALL`; `RF_ERR_INVALID_ARG` (NULL model or out_len,
/// `i >= rf_model_meta_count`). Thread-safe.
///
/// # Safety
/// `model` must be NULL or a live handle; `buf` NULL or `cap` writable bytes; `out_len` NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_model_meta_key(
    model: *const rf_model_t,
    i: usize,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let meta = unsafe { model_ref(model) }?.gguf().metadata();
        let (key, _) = meta.get(i).ok_or_else(|| {
            Error::InvalidArg(format!(
                "metadata index {i} is out of range (the model has {})",
                meta.len()
            ))
        })?;
        // SAFETY: contract of this function.
        unsafe { write_text(key.as_bytes(), buf, cap, out_len) }
    })
}

/// Copies the value of metadata key `key` (NUL-terminated) into `buf` as text: strings as
/// stored (bytes, usually UTF-8), numbers in decimal, booleans as `true`/`false`, arrays as
/// `[a, b, ...]` with quoted strings. Same buffer protocol as `rf_model_meta_key`.
/// Statuses: `RF_OK`; `RF_ERR_BUFFER_TOO_SMALL`; `RF_ERR_NOT_FOUND` (no such key);
/// `RF_ERR_INVALID_ARG` (NULL model, key or out_len). Thread-safe.
///
/// # Safety
/// `model` must be NULL or a live handle; `key` NULL or NUL-terminated; `buf` NULL or `cap`
/// writable bytes; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_model_meta_str(
    model: *const rf_model_t,
    key: *const c_char,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let model = unsafe { model_ref(model) }?;
        // SAFETY: contract of this function.
        let key = unsafe { c_str(key, "key") }?;
        let key = key
            .to_str()
            .map_err(|_| Error::NotFound(format!("no metadata key {key:?}")))?;
        let value = model
            .gguf()
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("no metadata key {key:?}")))?;
        // SAFETY: contract of this function.
        unsafe { write_text(&value.render(), buf, cap, out_len) }
    })
}
