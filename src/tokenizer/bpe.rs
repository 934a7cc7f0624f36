//! Byte-level BPE (GPT-2 style): text bytes become printable characters (the GPT-2 byte to
//! unicode map), each pre-tokenized word starts as one symbol per character, and adjacent
//! symbols merge by the rank of their pair in `tokenizer.ggml.merges` (lowest first, leftmost
//! first among equals) until no ranked pair is left.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rustc_hash::FxHashMap;

use super::vocab::{TokenId, Vocab};
use crate::gguf::{Array, GgufFile, Value};
use crate::{Error, Result};

/// The GPT-2 map from bytes to characters: printable Latin-1 bytes stand for themselves, the
/// other 68 take the code points from 256 up, in byte order.
pub(super) fn byte_to_char() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in out.iter_mut().enumerate() {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let cp = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).expect("valid code point");
    }
    out
}

/// Words up to this many symbols merge by linear scans (most words), longer ones by a heap.
const SMALL_WORD: usize = 24;

#[derive(Debug)]
pub struct Bpe {
    /// Token of each byte's character.
    byte_token: [Option<TokenId>; 256],
    /// Byte of each character of the map (for decoding).
    char_byte: HashMap<char, u8>,
    /// (left, right) -> (rank, merged token).
    merges: FxHashMap<(TokenId, TokenId), (u32, TokenId)>,
}

impl Bpe {
    pub fn from_gguf(file: &GgufFile, vocab: &Vocab) -> Result<Bpe> {
        const MERGES: &str = "tokenizer.ggml.merges";
        let list = match file.get(MERGES).and_then(Value::as_array) {
            Some(Array::String(m)) => m,
            Some(_) => {
                return Err(Error::BadMetadata {
                    key: MERGES.into(),
                    reason: "expected an array of strings".into(),
                });
            }
            None => return Err(Error::MissingKey { key: MERGES.into() }),
        };
        let map = byte_to_char();
        let mut byte_token = [None; 256];
        let mut char_byte = HashMap::with_capacity(256);
        for (b, c) in map.iter().enumerate() {
            let mut buf = [0u8; 4];
            byte_token[b] = vocab.token(c.encode_utf8(&mut buf).as_bytes());
            char_byte.insert(*c, b as u8);
        }
        let mut merges = FxHashMap::with_capacity_and_hasher(list.len(), Default::default());
        for (rank, m) in list.iter().enumerate() {
            // "left right"; the split is at the first space after the first byte, as a merge
            // part is never empty.
            let Some(sp) = m.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                return Err(Error::BadMetadata {
                    key: MERGES.into(),
                    reason: format!(
                        "merge {rank} has no space: {:?}",
                        String::from_utf8_lossy(m)
                    ),
                });
            };
            let (left, right) = (&m[..sp], &m[sp + 1..]);
            let merged = [left, right].concat();
            // Both halves and the result must be tokens: a merge naming anything else is a
            // broken vocabulary, not one to guess around.
            let token = |part: &[u8], what: &str| {
                vocab.token(part).ok_or_else(|| Error::BadMetadata {
                    key: MERGES.into(),
                    reason: format!(
                        "merge {rank} ({:?}): its {what} {:?} is not a token",
                        String::from_utf8_lossy(m),
                        String::from_utf8_lossy(part)
                    ),
                })
            };
            let (l, r) = (token(left, "left half")?, token(right, "right half")?);
            let t = token(&merged, "result")?;
            merges.entry((l, r)).or_insert((rank as u32, t));
        }
        Ok(Bpe {
            byte_token,
            char_byte,
            merges,
        })
    }

    /// Appends the tokens of one pre-tokenized word.
    pub fn encode_word(&self, word: &[u8], out: &mut Vec<TokenId>) {
        // Symbols: (token, previous, next); merged-away symbols are None.
        let mut sym: Vec<Option<TokenId>> = Vec::with_capacity(word.len());
        for &b in word {
            // Every byte has a token in a byte-level vocabulary; a vocabulary missing one
            // simply drops that byte, as llama.cpp does.
            if let Some(t) = self.byte_token[usize::from(b)] {
                sym.push(Some(t));
            }
        }
        let n = sym.len();
        if n <= 1 {
            out.extend(sym.into_iter().flatten());
            return;
        }
        if n <= SMALL_WORD {
            self.merge_small(sym.into_iter().flatten().collect(), out);
            return;
        }
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, sym: &[Option<TokenId>], l: usize, r: usize| {
            if let (Some(a), Some(b)) = (sym[l], sym[r])
                && let Some(&(rank, merged)) = self.merges.get(&(a, b))
            {
                heap.push(Reverse((rank, l, r, a, b, merged)));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, &sym, i, i + 1);
        }
        while let Some(Reverse((_, l, r, a, b, merged))) = heap.pop() {
            // Stale entries: either side changed since the pair was queued.
            if sym[l] != Some(a) || sym[r] != Some(b) || next[l] != r {
                continue;
            }
            sym[l] = Some(merged);
            sym[r] = None;
            next[l] = next[r];
            if next[r] < n {
                prev[next[r]] = l;
            }
            if prev[l] < n {
                push(&mut heap, &sym, prev[l], l);
            }
            if next[l] < n {
                push(&mut heap, &sym, l, next[l]);
            }
        }
        out.extend(sym.into_iter().flatten());
    }

    /// The same merges for a short word, by repeated scans for the lowest-ranked adjacent pair
    /// (leftmost among equals): no heap, no allocation beyond the symbol list.
    fn merge_small(&self, mut sym: Vec<TokenId>, out: &mut Vec<TokenId>) {
        loop {
            let mut best: Option<(u32, usize, TokenId)> = None;
            for i in 0..sym.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merges.get(&(sym[i], sym[i + 1]))
                    && best.is_none_or(|(r, _, _)| rank < r)
                {
                    best = Some((rank, i, merged));
                }
            }
            let Some((_, i, merged)) = best else { break };
            sym[i] = merged;
            sym.remove(i + 1);
        }
        out.extend_from_slice(&sym);
    }

    /// The bytes a byte-level token text stands for (characters outside the map are kept as
    /// their UTF-8, which only happens in malformed vocabularies).
    pub fn decode_text(&self, text: &[u8], out: &mut Vec<u8>) {
        for chunk in text.utf8_chunks() {
            for c in chunk.valid().chars() {
                match self.char_byte.get(&c) {
                    Some(&b) => out.push(b),
                    None => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            out.extend_from_slice(chunk.invalid());
        }
    }
}
