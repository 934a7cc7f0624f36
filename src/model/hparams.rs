//! Hyperparameters read from a model's metadata. Nothing is hard-coded: every value comes from
//! the file's `<arch>.*` keys (or, for the vocabulary size, the tokenizer or the embedding
//! tensor), and every value is checked before anything is sized by it.

use crate::gguf::{Array, GgufFile, Value};
use crate::{Error, Result};

/// The longest architecture name accepted (real ones are short ASCII words like `llama`).
pub const MAX_ARCH_LEN: usize = 63;
/// Sanity bound on counts read from the file (layers, heads): far above any real model,
/// far below what could overflow the sizes computed from them.
pub const MAX_COUNT: u32 = 1 << 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hparams {
    /// `general.architecture`, e.g. `llama`, `gemma3`.
    pub arch: String,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
}

fn bad(key: &str, reason: impl Into<String>) -> Error {
    Error::BadMetadata {
        key: key.into(),
        reason: reason.into(),
    }
}

fn to_u32(key: &str, v: &Value) -> Result<u32> {
    let i = v.as_i128().ok_or_else(|| {
        bad(
            key,
            format!("expected an integer, found {}", v.value_type()),
        )
    })?;
    u32::try_from(i).map_err(|_| bad(key, format!("{i} is out of range (0 to {})", u32::MAX)))
}

/// An unsigned integer key of any integer type, `None` when absent.
fn opt_u32(file: &GgufFile, key: &str) -> Result<Option<u32>> {
    file.get(key).map(|v| to_u32(key, v)).transpose()
}

fn req_u32(file: &GgufFile, key: &str) -> Result<u32> {
    opt_u32(file, key)?.ok_or_else(|| Error::MissingKey { key: key.into() })
}

/// A count in `1..=max`.
fn check_count(key: &str, v: u32, max: u32) -> Result<u32> {
    if v == 0 || v > max {
        return Err(bad(key, format!("{v} is out of range (1 to {max})")));
    }
    Ok(v)
}

/// A per-layer value stored either as one integer or as an array with one integer per layer
/// (some architectures vary head counts by layer). Returns the largest.
fn per_layer_max(file: &GgufFile, key: &str, n_layer: u32) -> Result<Option<u32>> {
    let Some(v) = file.get(key) else {
        return Ok(None);
    };
    let Some(a) = v.as_array() else {
        return to_u32(key, v).map(Some);
    };
    if a.len() != n_layer as usize {
        return Err(bad(
            key,
            format!(
                "array has {} entries, expected one per layer ({n_layer})",
                a.len()
            ),
        ));
    }
    let mut max = 0;
    for i in 0..a.len() {
        let e = a.get(i).ok_or_else(|| bad(key, "unreadable entry"))?;
        max = max.max(to_u32(key, &e)?);
    }
    Ok(Some(max))
}

fn architecture(file: &GgufFile) -> Result<String> {
    const KEY: &str = "general.architecture";
    let arch = file
        .get_str(KEY)?
        .ok_or_else(|| Error::MissingKey { key: KEY.into() })?;
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    if arch.is_empty() || arch.len() > MAX_ARCH_LEN || !arch.chars().all(ok_char) {
        return Err(bad(
            KEY,
            format!(
                "{arch:?} is not an architecture name (1 to {MAX_ARCH_LEN} ASCII letters, digits, '_', '-', '.')"
            ),
        ));
    }
    Ok(arch.to_string())
}

fn vocab_size(file: &GgufFile, arch: &str) -> Result<u32> {
    const TOKENS: &str = "tokenizer.ggml.tokens";
    let (key, n) = if let Some(v) = file.get(TOKENS) {
        match v.as_array() {
            Some(Array::String(t)) => (TOKENS.to_string(), t.len() as u64),
            _ => return Err(bad(TOKENS, "expected an array of strings")),
        }
    } else if let Some(n) = opt_u32(file, &format!("{arch}.vocab_size"))? {
        (format!("{arch}.vocab_size"), n.into())
    } else if let Some(t) = file.tensor("token_embd.weight") {
        ("token_embd.weight".to_string(), t.dims[1])
    } else {
        return Err(Error::MissingKey { key: TOKENS.into() });
    };
    if n == 0 || n > i32::MAX as u64 {
        return Err(bad(
            &key,
            format!("vocabulary size {n} is out of range (1 to {})", i32::MAX),
        ));
    }
    // A vocabulary size key, where the tokens gave the size, must agree with them (the
    // embedding rows are checked against the size with the tensor shapes).
    let size_key = format!("{arch}.vocab_size");
    if key != size_key
        && let Some(k) = opt_u32(file, &size_key)?
        && u64::from(k) != n
    {
        return Err(bad(
            &size_key,
            format!("{k} differs from the vocabulary's {n} tokens"),
        ));
    }
    Ok(n as u32)
}

impl Hparams {
    pub fn from_gguf(file: &GgufFile) -> Result<Hparams> {
        let arch = architecture(file)?;
        let key = |k: &str| format!("{arch}.{k}");
        let n_layer_key = key("block_count");
        let n_layer = check_count(&n_layer_key, req_u32(file, &n_layer_key)?, MAX_COUNT)?;
        let n_ctx_key = key("context_length");
        let n_ctx_train = check_count(&n_ctx_key, req_u32(file, &n_ctx_key)?, u32::MAX)?;
        let n_embd_key = key("embedding_length");
        let n_embd = check_count(&n_embd_key, req_u32(file, &n_embd_key)?, u32::MAX)?;
        let n_head_key = key("attention.head_count");
        let n_head = per_layer_max(file, &n_head_key, n_layer)?.ok_or(Error::MissingKey {
            key: n_head_key.clone(),
        })?;
        let n_head = check_count(&n_head_key, n_head, MAX_COUNT)?;
        let n_head_kv_key = key("attention.head_count_kv");
        let n_head_kv = per_layer_max(file, &n_head_kv_key, n_layer)?.unwrap_or(n_head);
        let n_head_kv = check_count(&n_head_kv_key, n_head_kv, n_head)?;
        if n_head % n_head_kv != 0 {
            return Err(bad(
                &n_head_kv_key,
                format!("{n_head_kv} KV heads do not divide {n_head} attention heads"),
            ));
        }
        let n_vocab = vocab_size(file, &arch)?;
        Ok(Hparams {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
        })
    }
}
