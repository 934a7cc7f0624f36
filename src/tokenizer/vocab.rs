//! The vocabulary of a GGUF model: token texts, scores and types, the special token ids, the
//! flags that steer tokenization, and the end-of-generation set. Everything is read from
//! `tokenizer.ggml.*` and checked: ids in range, arrays of matching lengths.

use std::collections::HashSet;

use rustc_hash::FxHashMap;

use crate::gguf::{Array, GgufFile, Value};
use crate::{Error, Result};

/// A token id.
pub type TokenId = u32;

/// `tokenizer.ggml.token_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i128(v: i128) -> Option<TokenType> {
        Some(match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// Texts of tokens that end generation wherever a vocabulary has them (besides its declared
/// eos/eot/eom ids). Like llama.cpp, a token found here that is not typed as control is
/// treated as control.
const EOG_TEXTS: [&str; 12] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<|return|>",
    "</s>",
];

#[derive(Debug)]
pub struct Vocab {
    pub texts: Vec<Box<[u8]>>,
    pub scores: Vec<f32>,
    pub types: Vec<TokenType>,
    /// Text to id (FxHash: token texts are short, and SipHash dominated tokenizer profiles).
    pub index: FxHashMap<Box<[u8]>, TokenId>,
    pub bos: Option<TokenId>,
    pub eos: Option<TokenId>,
    pub eot: Option<TokenId>,
    pub eom: Option<TokenId>,
    pub unk: Option<TokenId>,
    pub pad: Option<TokenId>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub eog: HashSet<TokenId>,
    /// Control, user-defined and unknown tokens, longest text first: the tokens matched in
    /// raw text before tokenization.
    pub specials: Vec<TokenId>,
}

fn bad(key: &str, reason: impl Into<String>) -> Error {
    Error::BadMetadata {
        key: key.into(),
        reason: reason.into(),
    }
}

fn opt_bool(file: &GgufFile, key: &str) -> Result<Option<bool>> {
    match file.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(
            key,
            format!("expected a bool, found {}", v.value_type()),
        )),
    }
}

impl Vocab {
    /// Reads the vocabulary; `spm` selects the defaults of SentencePiece models (add BOS, add
    /// a space prefix) over those of byte-level BPE models.
    pub fn from_gguf(file: &GgufFile, spm: bool) -> Result<Vocab> {
        const TOKENS: &str = "tokenizer.ggml.tokens";
        let texts = match file.get(TOKENS).and_then(Value::as_array) {
            Some(Array::String(t)) => t.clone(),
            Some(_) => return Err(bad(TOKENS, "expected an array of strings")),
            None => return Err(Error::MissingKey { key: TOKENS.into() }),
        };
        let n = texts.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(bad(TOKENS, format!("{n} tokens is out of range")));
        }
        let scores = match file.get("tokenizer.ggml.scores").and_then(Value::as_array) {
            None => vec![0.0; n],
            Some(Array::F32(s)) if s.len() == n => s.clone(),
            Some(a) => {
                return Err(bad(
                    "tokenizer.ggml.scores",
                    format!(
                        "expected {n} f32 values, found {} of {}",
                        a.len(),
                        a.elem_type()
                    ),
                ));
            }
        };
        let types = match file
            .get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
        {
            None => vec![TokenType::Normal; n],
            Some(a) if a.len() == n => (0..n)
                .map(|i| {
                    a.get(i)
                        .and_then(|v| v.as_i128())
                        .and_then(TokenType::from_i128)
                        .ok_or_else(|| {
                            bad(
                                "tokenizer.ggml.token_type",
                                format!("entry {i} is not a token type (1 to 6)"),
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?,
            Some(a) => {
                return Err(bad(
                    "tokenizer.ggml.token_type",
                    format!("{} entries for {n} tokens", a.len()),
                ));
            }
        };
        if spm {
            // A SentencePiece byte token stands for the byte its text names: exactly `<0xHH>`.
            if let Some(i) = (0..n).find(|&i| {
                types[i] == TokenType::Byte && super::spm::Spm::byte_of(&texts[i]).is_none()
            }) {
                return Err(bad(
                    "tokenizer.ggml.tokens",
                    format!(
                        "byte token {i} is {:?}, not <0xHH> (two hex digits)",
                        String::from_utf8_lossy(&texts[i])
                    ),
                ));
            }
        }
        let mut index = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for (i, t) in texts.iter().enumerate() {
            // Duplicates keep the first id, as llama.cpp's map does.
            index.entry(t.clone()).or_insert(i as TokenId);
        }
        let id = |key: &str| -> Result<Option<TokenId>> {
            let full = format!("tokenizer.ggml.{key}");
            match file.get(&full) {
                None => Ok(None),
                Some(v) => {
                    let i = v
                        .as_i128()
                        .ok_or_else(|| bad(&full, "expected an integer"))?;
                    // -1 (as some converters write) means "none".
                    if i < 0 || i == i128::from(u32::MAX) {
                        return Ok(None);
                    }
                    if i >= n as i128 {
                        return Err(bad(
                            &full,
                            format!("token id {i} is out of range (vocabulary of {n})"),
                        ));
                    }
                    Ok(Some(i as TokenId))
                }
            }
        };
        let mut v = Vocab {
            bos: id("bos_token_id")?,
            eos: id("eos_token_id")?,
            eot: id("eot_token_id")?,
            eom: id("eom_token_id")?,
            unk: id("unknown_token_id")?,
            pad: id("padding_token_id")?,
            add_bos: opt_bool(file, "tokenizer.ggml.add_bos_token")?.unwrap_or(spm),
            add_eos: opt_bool(file, "tokenizer.ggml.add_eos_token")?.unwrap_or(false),
            add_space_prefix: opt_bool(file, "tokenizer.ggml.add_space_prefix")?.unwrap_or(spm),
            texts,
            scores,
            types,
            index,
            eog: HashSet::new(),
            specials: Vec::new(),
        };
        for t in [v.eos, v.eot, v.eom].into_iter().flatten() {
            v.eog.insert(t);
        }
        for text in EOG_TEXTS {
            if let Some(&t) = v.index.get(text.as_bytes()) {
                v.eog.insert(t);
                if v.types[t as usize] != TokenType::Control {
                    v.types[t as usize] = TokenType::Control;
                }
            }
        }
        if v.add_bos && v.bos.is_none() {
            return Err(bad(
                "tokenizer.ggml.add_bos_token",
                "set, but the vocabulary has no BOS token",
            ));
        }
        if v.add_eos && v.eos.is_none() {
            return Err(bad(
                "tokenizer.ggml.add_eos_token",
                "set, but the vocabulary has no EOS token",
            ));
        }
        let mut specials: Vec<TokenId> = (0..n as TokenId)
            .filter(|&t| {
                matches!(
                    v.types[t as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !v.texts[t as usize].is_empty()
            })
            .collect();
        specials.sort_by(|&a, &b| v.texts[b as usize].len().cmp(&v.texts[a as usize].len()));
        v.specials = specials;
        Ok(v)
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    pub fn text(&self, t: TokenId) -> Option<&[u8]> {
        self.texts.get(t as usize).map(|b| &**b)
    }

    pub fn token(&self, text: &[u8]) -> Option<TokenId> {
        self.index.get(text).copied()
    }

    pub fn token_type(&self, t: TokenId) -> Option<TokenType> {
        self.types.get(t as usize).copied()
    }

    pub fn is_eog(&self, t: TokenId) -> bool {
        self.eog.contains(&t)
    }
}
