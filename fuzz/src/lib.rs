//! What the fuzz targets share: the real models they run on, loaded once per process.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rocmforge::{Backend, Model, ModelParams};

/// The repository's `models/` (scripts/fetch-models.sh), or `$RF_MODELS_DIR`.
fn models_dir() -> PathBuf {
    std::env::var_os("RF_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models")))
}

/// `../shared/reference/zoo` beside the repository, or `$RF_ZOO_DIR`.
fn zoo_dir() -> PathBuf {
    std::env::var_os("RF_ZOO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/reference/zoo"
            ))
        })
}

fn load(path: PathBuf, vocab_only: bool) -> Arc<Model> {
    let params = ModelParams {
        backend: Backend::Cpu,
        vocab_only,
        ..ModelParams::default()
    };
    match Model::load(&path, params) {
        Ok(m) => Arc::new(m),
        Err(e) => panic!("the fuzz targets need {path:?} (scripts/fetch-models.sh): {e}"),
    }
}

/// SmolLM2's vocabulary (GPT-2 style byte-level BPE) and Gemma 3's (SentencePiece).
pub fn vocabularies() -> &'static [Arc<Model>; 2] {
    static V: OnceLock<[Arc<Model>; 2]> = OnceLock::new();
    V.get_or_init(|| {
        let dir = models_dir();
        [
            load(dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"), true),
            load(dir.join("gemma-3-270m-q4_k_m.gguf"), true),
        ]
    })
}

/// The path of a zoo model, as text (for the C API).
pub fn zoo_model_path(name: &str) -> String {
    zoo_dir().join(name).to_string_lossy().into_owned()
}

/// A tiny random-weight llama model of the zoo, for decoding.
pub fn tiny_model() -> &'static Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| load(zoo_dir().join("llama.F32.gguf"), false))
}

/// Reads the input as a little stream of choices.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }

    pub fn i32(&mut self) -> i32 {
        i32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
