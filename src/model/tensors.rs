//! Reading an architecture's tensors and keys from the file: every tensor's shape is checked
//! against the hyperparameters before the forward pass may use it, and weight matrices stay
//! views into the memory map.

use crate::backend::cpu::Weights;
use crate::gguf::{GgufFile, TensorInfo, Value};
use crate::quant;
use crate::{Error, Result};

/// The tensor `name`, which must have exactly the shape `dims` (ggml order: inputs first).
pub(super) fn tensor(file: &GgufFile, name: &str, dims: &[u64]) -> Result<TensorInfo> {
    let t = file.tensor(name).ok_or_else(|| Error::MissingKey {
        key: format!("tensor {name}"),
    })?;
    if t.shape() != dims {
        return Err(Error::BadMetadata {
            key: format!("tensor {name}"),
            reason: format!("shape {:?}, expected {dims:?}", t.shape()),
        });
    }
    quant::lookup(t.ty).ok_or_else(|| {
        Error::Unsupported(format!(
            "tensor {name}: the {} format is not supported",
            t.ty
        ))
    })?;
    Ok(t.clone())
}

/// Like `tensor`, `None` when the file has no tensor of that name.
pub(super) fn opt_tensor(file: &GgufFile, name: &str, dims: &[u64]) -> Result<Option<TensorInfo>> {
    match file.tensor(name) {
        None => Ok(None),
        Some(_) => tensor(file, name, dims).map(Some),
    }
}

/// A vector tensor (norm weights, biases) of `n` values, converted to f32 once at load.
pub(super) fn f32_vector(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = tensor(file, name, &[n as u64])?;
    let mut out = vec![0f32; n];
    let data = file
        .tensor_data(&t)
        .ok_or_else(|| Error::Internal(format!("{name}: no data")))?;
    quant::dequantize_row(t.ty, data, &mut out)?;
    Ok(out)
}

/// Like `f32_vector`, `None` when absent.
pub(super) fn opt_f32_vector(file: &GgufFile, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
    match file.tensor(name) {
        None => Ok(None),
        Some(_) => f32_vector(file, name, n).map(Some),
    }
}

/// A weight matrix viewed in the memory map (`dims[0]` inputs, `dims[1]` outputs).
pub(super) fn weights<'f>(file: &'f GgufFile, t: &TensorInfo) -> Result<Weights<'f>> {
    let data = file
        .tensor_data(t)
        .ok_or_else(|| Error::Internal(format!("{}: no data", t.name)))?;
    Weights::new(t.ty, data, t.dims[1] as usize, t.dims[0] as usize)
}

fn bad(key: &str, reason: String) -> Error {
    Error::BadMetadata {
        key: key.into(),
        reason,
    }
}

/// An unsigned integer key; `None` when absent, an error when it is not one.
pub(super) fn get_u(file: &GgufFile, key: &str) -> Result<Option<usize>> {
    let Some(v) = file.get(key) else {
        return Ok(None);
    };
    v.as_i128()
        .and_then(|i| usize::try_from(i).ok())
        .map(Some)
        .ok_or_else(|| {
            bad(
                key,
                format!("expected an unsigned integer, found {}", v.value_type()),
            )
        })
}

/// A float key; `None` when absent, an error when it is not a finite number.
pub(super) fn get_f(file: &GgufFile, key: &str) -> Result<Option<f32>> {
    let v = match file.get(key) {
        None => return Ok(None),
        Some(Value::F32(v)) => *v,
        Some(Value::F64(v)) => *v as f32,
        Some(v) => {
            return Err(bad(
                key,
                format!("expected a float, found {}", v.value_type()),
            ));
        }
    };
    if !v.is_finite() {
        return Err(bad(key, format!("{v} is not finite")));
    }
    Ok(Some(v))
}

/// A float key that must be finite and positive.
pub(super) fn get_pos_f(file: &GgufFile, key: &str) -> Result<Option<f32>> {
    match get_f(file, key)? {
        Some(v) if v <= 0.0 => Err(bad(key, format!("{v} must be positive"))),
        v => Ok(v),
    }
}
