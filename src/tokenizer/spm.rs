//! SentencePiece BPE (`tokenizer.ggml.model = "llama"`): spaces become U+2581, the text starts
//! as one symbol per UTF-8 character, and the adjacent pair whose concatenation is the token
//! with the highest score merges first (leftmost first among equals). A symbol that is not a
//! token at the end falls back to its bytes as `<0xXX>` tokens (or the unknown token).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rustc_hash::FxHashSet;

use super::WordCache;
use super::vocab::{TokenId, Vocab};

/// U+2581, SentencePiece's visible space.
pub const SPACE: &str = "\u{2581}";

#[derive(Debug)]
pub struct Spm {
    /// The `<0xXX>` token of each byte.
    byte_tokens: [Option<TokenId>; 256],
    /// Characters X such that some token contains X followed by U+2581 (X itself not U+2581).
    /// Before any other U+2581 that follows a non-space, no merge can reach across (every
    /// merged symbol is a token), so the text is cut there and each word merges on its own:
    /// the same result as one pass over the whole text, with small heaps.
    joins_space: FxHashSet<char>,
}

#[derive(PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Spm {
    pub fn new(vocab: &Vocab) -> Spm {
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = vocab.token(format!("<0x{b:02X}>").as_bytes());
        }
        let space = SPACE.chars().next().expect("one character");
        let mut joins_space = FxHashSet::default();
        for text in &vocab.texts {
            let Ok(t) = std::str::from_utf8(text) else {
                continue;
            };
            let mut prev: Option<char> = None;
            for c in t.chars() {
                if c == space
                    && let Some(p) = prev.filter(|&p| p != space)
                {
                    joins_space.insert(p);
                }
                prev = Some(c);
            }
        }
        Spm {
            byte_tokens,
            joins_space,
        }
    }

    /// Appends the tokens of `text` (spaces escaped to U+2581), word by word where no merge
    /// can cross (see `joins_space`).
    /// `cache` maps words already merged in this call to their tokens' place in `out`.
    pub fn encode(
        &self,
        vocab: &Vocab,
        text: &[u8],
        cache: &mut WordCache,
        out: &mut Vec<TokenId>,
    ) {
        let mut word = |w: &[u8], out: &mut Vec<TokenId>| {
            if let Some(&(at, len)) = cache.get(w) {
                out.extend_from_within(at..at + len);
                return;
            }
            let at = out.len();
            self.encode_word(vocab, w, out);
            cache.insert(w.into(), (at, out.len() - at));
        };
        let sp = SPACE.as_bytes();
        let mut start = 0;
        let mut prev: Option<char> = None;
        let mut i = 0;
        while i < text.len() {
            let n = char_len(text, i);
            if text[i..].starts_with(sp) {
                if let Some(p) = prev
                    && p != '\u{2581}'
                    && !self.joins_space.contains(&p)
                    && i > start
                {
                    word(&text[start..i], out);
                    start = i;
                }
                prev = Some('\u{2581}');
            } else {
                prev = std::str::from_utf8(&text[i..i + n])
                    .ok()
                    .and_then(|c| c.chars().next());
                // An invalid byte could join anything: treat it as a character tokens contain.
                if prev.is_none() {
                    prev = Some('\u{2581}');
                }
            }
            i += n;
        }
        if start < text.len() {
            word(&text[start..], out);
        }
    }

    /// The byte a `<0xXX>` token stands for.
    /// Strictly two hex digits (`from_str_radix` alone would take "+F").
    pub fn byte_of(text: &[u8]) -> Option<u8> {
        let hex = text.strip_prefix(b"<0x")?.strip_suffix(b">")?;
        if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    }

    /// The merges over one piece of text.
    fn encode_word(&self, vocab: &Vocab, text: &[u8], out: &mut Vec<TokenId>) {
        // Symbols as byte ranges (start, len) of `text`; len 0 = merged away.
        let mut start = Vec::new();
        let mut len = Vec::new();
        let mut i = 0;
        while i < text.len() {
            let n = char_len(text, i);
            start.push(i);
            len.push(n);
            i += n;
        }
        let n = start.len();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut heap = BinaryHeap::new();
        let push =
            |heap: &mut BinaryHeap<_>, start: &[usize], len: &[usize], l: usize, r: usize| {
                let joined = &text[start[l]..start[r] + len[r]];
                if let Some(t) = vocab.token(joined) {
                    heap.push((Score(vocab.scores[t as usize]), Reverse(l), r, joined.len()));
                }
            };
        for i in 1..n {
            push(&mut heap, &start, &len, i - 1, i);
        }
        while let Some((_, Reverse(l), r, size)) = heap.pop() {
            if len[l] == 0 || len[r] == 0 || len[l] + len[r] != size || next[l] != r {
                continue;
            }
            len[l] += len[r];
            len[r] = 0;
            next[l] = next[r];
            if next[r] < n {
                prev[next[r]] = l;
            }
            if prev[l] < n {
                push(&mut heap, &start, &len, prev[l], l);
            }
            if next[l] < n {
                push(&mut heap, &start, &len, l, next[l]);
            }
        }
        let mut s = 0;
        while s < n {
            let piece = &text[start[s]..start[s] + len[s]];
            match vocab.token(piece) {
                Some(t) => out.push(t),
                None => {
                    for &b in piece {
                        if let Some(t) = self.byte_tokens[usize::from(b)].or(vocab.unk) {
                            out.push(t);
                        }
                    }
                }
            }
            s = next[s];
        }
    }
}

/// Length of the UTF-8 character at `i`, or 1 for a byte that does not start a complete one.
/// (llama.cpp trusts the lead byte alone, so an invalid lead byte swallows the next bytes; we
/// keep every invalid byte a symbol of its own, which changes nothing for valid UTF-8 and
/// keeps the following characters intact.)
fn char_len(text: &[u8], i: usize) -> usize {
    let n = match text[i] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return 1,
    };
    match text.get(i + 1..i + n) {
        Some(rest) if rest.iter().all(|&b| (0x80..=0xbf).contains(&b)) => n,
        _ => 1,
    }
}
