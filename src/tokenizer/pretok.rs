//! Pre-tokenizers of byte-level BPE vocabularies: the regular expressions that cut text into
//! words before merges, selected by `tokenizer.ggml.pre` (the same patterns the models'
//! tokenizer.json files define, as llama.cpp applies them).
//!
//! A pre-tokenizer is a sequence of patterns; each cuts every piece left by the previous one
//! into its matches and the text between them. The `regex` crate has no look-around, so
//! `\s+(?!\S)` (whitespace not followed by a non-space) is written as a group named `ws`
//! matching `\s+`, and a match of it that is followed by a non-space gives its last character
//! back. That is the same split: the original pattern backtracks exactly one character there,
//! and where it cannot match (a single whitespace character before a word) the character
//! forms a piece of its own either way. Class intersections replace the `(?=\p{L})[^a-z]`
//! look-aheads of the GPT-4o and Tekken patterns.

use regex::Regex;

use crate::{Error, Result};

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|(?P<ws>\s+)";
const CONTRACTIONS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

fn llama3_like(digits: &str) -> String {
    format!(
        r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{digits}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|(?P<ws>\s+)"
    )
}

/// Upper-case-led and lower-case words (GPT-4o, Tekken), optionally with contractions.
fn cased_words(contractions: &str, digits: &str, trailing: &str) -> String {
    let upper = r"[\p{L}&&[^a-z]]";
    let lower = r"[\p{L}&&[^A-Z]]";
    format!(
        r"[^\r\n\p{{L}}\p{{N}}]?{upper}*{lower}+{contractions}|[^\r\n\p{{L}}\p{{N}}]?{upper}+{lower}*{contractions}|\p{{N}}{digits}| ?[^\s\p{{L}}\p{{N}}]+{trailing}|\s*[\r\n]+|(?P<ws>\s+)"
    )
}

/// The patterns of a pre-tokenizer name, or `None` for a name we do not know.
fn patterns(name: &str) -> Option<Vec<String>> {
    let s = |p: &str| p.to_string();
    Some(match name {
        "gpt2" | "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion" => vec![s(GPT2)],
        "default" => vec![
            s(r"[\p{P}\$\+<=>\^~\|]+"),
            s(GPT2),
            s(r"\p{N}+"),
            s(r"[0-9][0-9][0-9]"),
        ],
        "llama3" | "llama-bpe" | "llama-v3" | "dbrx" | "smaug-bpe" => vec![llama3_like("{1,3}")],
        "qwen2" | "stablelm2" | "hunyuan" => vec![llama3_like("")],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![s(r"\p{N}"), s(GPT2)]
        }
        "falcon" => vec![s(r"[\p{P}\$\+<=>\^~\|`]+"), s(GPT2), s(r"[0-9][0-9][0-9]")],
        // Letters here are the cased letters (Lu, Ll, Lt): the original pattern spells out that
        // category as explicit ranges of an older Unicode version.
        "deepseek-llm" => vec![
            s(r"[\r\n]"),
            s(r"\s?\p{LC}+"),
            s(r"\s?[!-/:-~！-／：-～‘-‟　-。]+"),
            s(r"\s+$"),
            s(r"[一-龥ࠀ-一가-퟿]+"),
            s(r"\p{N}+"),
        ],
        "deepseek-coder" => vec![
            s(r"[\r\n]"),
            s(r"\s?\p{L}+"),
            s(r"\s?\p{P}+"),
            s(r"[一-龥ࠀ-一가-퟿]+"),
            s(r"\p{N}"),
        ],
        "gpt-4o" | "minimax-m2" => vec![cased_words(
            &format!("{CONTRACTIONS}?"),
            "{1,3}",
            r"[\r\n/]*",
        )],
        "tekken" => vec![cased_words("", "", r"[\r\n/]*")],
        _ => return None,
    })
}

/// A compiled pre-tokenizer.
#[derive(Debug)]
pub struct PreTokenizer {
    /// Each pattern, and whether it needs capture groups to tell its `ws` alternative from
    /// another that can also match only whitespace (`\s*[\r\n]+`); without one, a match made
    /// only of whitespace is the `ws` alternative, and the cheaper `find` suffices.
    steps: Vec<(Regex, bool)>,
}

impl PreTokenizer {
    /// The pre-tokenizer `tokenizer.ggml.pre` names; an unknown name is an error, never a
    /// silent fallback to some other split.
    pub fn new(name: &str) -> Result<PreTokenizer> {
        let list = patterns(name).ok_or_else(|| Error::BadMetadata {
            key: "tokenizer.ggml.pre".into(),
            reason: format!("unknown pre-tokenizer {name:?}"),
        })?;
        let steps = list
            .iter()
            .map(|p| {
                let re = Regex::new(p)
                    .map_err(|e| Error::Internal(format!("pre-tokenizer {name:?}: {e}")))?;
                Ok((re, p.contains(r"\s*[\r\n]")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreTokenizer { steps })
    }

    /// Cuts `text` into words (byte ranges of `text`, in order, covering it).
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for (re, captures) in &self.steps {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                split_one(re, *captures, piece, &mut next);
            }
            pieces = next;
        }
        pieces
    }
}

fn split_one<'t>(re: &Regex, captures: bool, piece: &'t str, out: &mut Vec<&'t str>) {
    let mut pos = 0;
    let mut gap_start = 0;
    while pos < piece.len() {
        let (m, ws) = if captures {
            let Some(caps) = re.captures_at(piece, pos) else {
                break;
            };
            let m = caps.get(0).expect("group 0 always matches");
            (m, caps.name("ws").is_some())
        } else {
            let Some(m) = re.find_at(piece, pos) else {
                break;
            };
            (m, m.as_str().chars().all(char::is_whitespace))
        };
        let mut end = m.end();
        if ws {
            // `\s+(?!\S)`: give back the last whitespace character when a non-space follows.
            let followed_by_text = piece[end..]
                .chars()
                .next()
                .is_some_and(|c| !c.is_whitespace());
            if followed_by_text && m.as_str().chars().nth(1).is_some() {
                let last = m.as_str().chars().next_back().map_or(0, char::len_utf8);
                end -= last;
            }
        }
        if m.start() > gap_start {
            out.push(&piece[gap_start..m.start()]);
        }
        if end > m.start() {
            out.push(&piece[m.start()..end]);
            pos = end;
        } else {
            // An empty match: step over one character so the search moves on.
            pos = m.start() + piece[m.start()..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        gap_start = pos;
    }
    if gap_start < piece.len() {
        out.push(&piece[gap_start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_splits_like_the_lookahead_pattern() {
        let p = PreTokenizer::new("gpt2").unwrap();
        assert_eq!(p.split("Hello world"), ["Hello", " world"]);
        assert_eq!(p.split("a   b"), ["a", "  ", " b"]);
        assert_eq!(p.split("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(p.split("end  "), ["end", "  "]);
        assert_eq!(p.split("I'm 12!"), ["I", "'m", " 12", "!"]);
    }

    #[test]
    fn smollm_splits_digits_first() {
        let p = PreTokenizer::new("smollm").unwrap();
        assert_eq!(p.split("x 123"), ["x", " ", "1", "2", "3"]);
    }

    #[test]
    fn llama3_qwen2_and_gpt4o_patterns_split_as_their_regexes_say() {
        let l3 = PreTokenizer::new("llama3").unwrap();
        assert_eq!(l3.split("Hello world"), ["Hello", " world"]);
        assert_eq!(l3.split("12345"), ["123", "45"]);
        assert_eq!(l3.split("I'M fine"), ["I", "'M", " fine"]);
        assert_eq!(l3.split("a\n\nb"), ["a", "\n\n", "b"]);
        assert_eq!(l3.split("x  y"), ["x", " ", " y"]);
        let q = PreTokenizer::new("qwen2").unwrap();
        assert_eq!(q.split("12345"), ["1", "2", "3", "4", "5"]);
        let g = PreTokenizer::new("gpt-4o").unwrap();
        assert_eq!(g.split("HelloWorld it's"), ["Hello", "World", " it's"]);
        assert_eq!(g.split("ABCdef 1234"), ["ABCdef", " ", "123", "4"]);
    }

    #[test]
    fn every_listed_pre_tokenizer_compiles_and_unknown_ones_fail() {
        for name in [
            "default",
            "gpt2",
            "llama3",
            "llama-bpe",
            "qwen2",
            "smollm",
            "deepseek-coder",
            "falcon",
            "starcoder",
            "command-r",
            "gpt-4o",
            "tekken",
        ] {
            let p = PreTokenizer::new(name).unwrap();
            assert_eq!(
                p.split("Hello, World 2024!\n").concat(),
                "Hello, World 2024!\n",
                "{name}"
            );
        }
        assert!(PreTokenizer::new("no-such-pre").is_err());
    }
}
