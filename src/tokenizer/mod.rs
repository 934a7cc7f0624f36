//! Tokenizers built from a GGUF vocabulary, tokenizing exactly like llama.cpp: byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`, with the pre-tokenizer `tokenizer.ggml.pre` names) and
//! SentencePiece BPE (`"llama"`), with special tokens matched in raw text first.
//!
//! Text is bytes: invalid UTF-8 is tokenized byte by byte (byte tokens), never rejected or
//! replaced, so detokenizing gives back the input. The one exception follows llama.cpp: a
//! byte-level BPE vocabulary may lack the symbols of bytes that never occur in UTF-8 (SmolLM2
//! lacks 21), and such bytes are dropped.

mod bpe;
mod chat;
mod pretok;
mod spm;
mod stream;
mod vocab;

use aho_corasick::AhoCorasick;
use rustc_hash::FxHashMap;

pub use chat::{ChatMessage, apply_template};
pub use stream::StreamDecoder;
pub use vocab::{TokenId, TokenType, Vocab};

use crate::gguf::GgufFile;
use crate::{Error, Result};

#[derive(Debug)]
enum Kind {
    Bpe {
        bpe: bpe::Bpe,
        pre: pretok::PreTokenizer,
        /// llama3-style vocabularies use a whole word directly when it is a token.
        ignore_merges: bool,
    },
    Spm(spm::Spm),
}

/// A model's tokenizer. Immutable and thread-safe.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    kind: Kind,
    /// All special token texts, to find which occur in a text before splitting on them.
    special_finder: Option<AhoCorasick>,
}

/// Words already merged during one `tokenize` call, with where their tokens are in the output:
/// prose repeats words, and each distinct word is merged once.
pub(crate) type WordCache = FxHashMap<Box<[u8]>, (usize, usize)>;

/// A piece of input after special tokens are cut out.
enum Fragment<'t> {
    Text(&'t [u8]),
    Token(TokenId),
}

impl Tokenizer {
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        const MODEL: &str = "tokenizer.ggml.model";
        let model = file
            .get_str(MODEL)?
            .ok_or_else(|| Error::MissingKey { key: MODEL.into() })?;
        let (vocab, kind) = match model {
            "gpt2" => {
                let vocab = Vocab::from_gguf(file, false)?;
                let pre_name = file.get_str("tokenizer.ggml.pre")?.unwrap_or("default");
                let pre = pretok::PreTokenizer::new(pre_name)?;
                let bpe = bpe::Bpe::from_gguf(file, &vocab)?;
                let ignore_merges = matches!(pre_name, "llama3" | "llama-bpe" | "llama-v3");
                (
                    vocab,
                    Kind::Bpe {
                        bpe,
                        pre,
                        ignore_merges,
                    },
                )
            }
            "llama" => {
                let vocab = Vocab::from_gguf(file, true)?;
                let spm = spm::Spm::new(&vocab);
                (vocab, Kind::Spm(spm))
            }
            other => {
                return Err(Error::BadMetadata {
                    key: MODEL.into(),
                    reason: format!(
                        "unsupported tokenizer model {other:?} (supported: \"gpt2\", \"llama\")"
                    ),
                });
            }
        };
        let texts: Vec<&[u8]> = vocab
            .specials
            .iter()
            .map(|&t| &*vocab.texts[t as usize])
            .collect();
        let special_finder = if texts.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::new(&texts)
                    .map_err(|e| Error::Internal(format!("special token matcher: {e}")))?,
            )
        };
        Ok(Tokenizer {
            vocab,
            kind,
            special_finder,
        })
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Cuts the special tokens out of `text`: every control, unknown (both only with
    /// `parse_special`) and user-defined token text, longest first, each splitting every
    /// remaining piece of text where it occurs (llama.cpp's order, so overlapping candidates
    /// resolve the same way).
    fn partition<'t>(&self, text: &'t [u8], parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        let Some(finder) = &self.special_finder else {
            return fragments;
        };
        // Only the specials that occur at all need the (quadratic) splitting pass.
        let mut present = vec![false; self.vocab.specials.len()];
        for m in finder.find_overlapping_iter(text) {
            present[m.pattern().as_usize()] = true;
        }
        for (k, &tok) in self.vocab.specials.iter().enumerate() {
            if !present[k] {
                continue;
            }
            let ty = self.vocab.types[tok as usize];
            if !parse_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
                continue;
            }
            let needle = &*self.vocab.texts[tok as usize];
            let mut next = Vec::with_capacity(fragments.len());
            for f in fragments {
                let Fragment::Text(mut rest) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(pos) = find(rest, needle) {
                    if pos > 0 {
                        next.push(Fragment::Text(&rest[..pos]));
                    }
                    next.push(Fragment::Token(tok));
                    rest = &rest[pos + needle.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// Tokenizes `text`. `add_special` adds BOS/EOS as the vocabulary asks; `parse_special`
    /// turns control-token texts such as `<|im_start|>` into their tokens (without it they are
    /// plain text; user-defined tokens are always matched).
    pub fn tokenize(&self, text: &[u8], add_special: bool, parse_special: bool) -> Vec<TokenId> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.vocab.add_bos {
            out.extend(self.vocab.bos);
        }
        let mut prev_special = true;
        let mut cache = WordCache::default();
        for f in self.partition(text, parse_special) {
            match f {
                Fragment::Token(t) => {
                    out.push(t);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    self.encode_text(t, prev_special, &mut cache, &mut out);
                    prev_special = false;
                }
            }
        }
        if add_special && self.vocab.add_eos {
            out.extend(self.vocab.eos);
        }
        out
    }

    fn encode_text(
        &self,
        text: &[u8],
        after_special: bool,
        cache: &mut WordCache,
        out: &mut Vec<TokenId>,
    ) {
        match &self.kind {
            Kind::Spm(spm) => {
                let mut escaped = Vec::with_capacity(text.len() + 8);
                if self.vocab.add_space_prefix && after_special {
                    escaped.extend_from_slice(spm::SPACE.as_bytes());
                }
                for &b in text {
                    if b == b' ' {
                        escaped.extend_from_slice(spm::SPACE.as_bytes());
                    } else {
                        escaped.push(b);
                    }
                }
                spm.encode(&self.vocab, &escaped, cache, out);
            }
            Kind::Bpe {
                bpe,
                pre,
                ignore_merges,
            } => {
                // Valid UTF-8 runs go through the pre-tokenizer; an invalid byte is a word of
                // its own (its byte token), so no input byte is lost or replaced.
                for chunk in text.utf8_chunks() {
                    for word in pre.split(chunk.valid()) {
                        let w = word.as_bytes();
                        if let Some(&(start, len)) = cache.get(w) {
                            out.extend_from_within(start..start + len);
                            continue;
                        }
                        let start = out.len();
                        let whole = if *ignore_merges {
                            self.vocab.token(&byte_level(w))
                        } else {
                            None
                        };
                        match whole {
                            Some(t) => out.push(t),
                            None => bpe.encode_word(w, out),
                        }
                        cache.insert(w.into(), (start, out.len() - start));
                    }
                    for &b in chunk.invalid() {
                        bpe.encode_word(&[b], out);
                    }
                }
            }
        }
    }

    /// The bytes of one token. Control tokens (and unknown/unused ones) give their text only
    /// when `special` is set; user-defined tokens always give their text.
    pub fn token_to_piece(&self, token: TokenId, special: bool, out: &mut Vec<u8>) -> Result<()> {
        let text = self.vocab.text(token).ok_or_else(|| {
            Error::InvalidArg(format!(
                "token {token} is out of range (vocabulary of {})",
                self.vocab.len()
            ))
        })?;
        match (self.vocab.types[token as usize], &self.kind) {
            (TokenType::UserDefined, _) => out.extend_from_slice(text),
            (TokenType::Normal, Kind::Bpe { bpe, .. }) => bpe.decode_text(text, out),
            (TokenType::Normal, Kind::Spm(_)) => out.extend_from_slice(&unescape_spaces(text)),
            (TokenType::Byte, Kind::Spm(_)) => match spm::Spm::byte_of(text) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(text),
            },
            _ if special => out.extend_from_slice(text),
            _ => {}
        }
        Ok(())
    }

    /// Detokenizes `tokens`. `remove_special` drops a leading BOS and a trailing EOS that the
    /// vocabulary adds; `unparse_special` renders control tokens as their text.
    pub fn detokenize(
        &self,
        tokens: &[TokenId],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>> {
        let mut toks = tokens;
        if remove_special {
            if self.vocab.add_bos
                && toks.first().copied() == self.vocab.bos
                && self.vocab.bos.is_some()
            {
                toks = &toks[1..];
            }
            if self.vocab.add_eos
                && toks.last().copied() == self.vocab.eos
                && self.vocab.eos.is_some()
            {
                toks = &toks[..toks.len() - 1];
            }
        }
        let mut out = Vec::new();
        for &t in toks {
            let start = out.len();
            self.token_to_piece(t, unparse_special, &mut out)?;
            // SentencePiece vocabularies that add a space prefix take it off the first piece.
            if remove_special
                && start == 0
                && self.vocab.add_space_prefix
                && matches!(self.kind, Kind::Spm(_))
                && out.first() == Some(&b' ')
            {
                out.remove(0);
            }
        }
        Ok(out)
    }
}

/// First occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

/// A word's text in the byte-level alphabet (for whole-word vocabulary lookups).
fn byte_level(word: &[u8]) -> Vec<u8> {
    static MAP: std::sync::OnceLock<[char; 256]> = std::sync::OnceLock::new();
    let map = MAP.get_or_init(bpe::byte_to_char);
    let mut s = String::with_capacity(word.len() * 2);
    for &b in word {
        s.push(map[usize::from(b)]);
    }
    s.into_bytes()
}

fn unescape_spaces(text: &[u8]) -> Vec<u8> {
    let sp = spm::SPACE.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(sp) {
            out.push(b' ');
            i += sp.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}
