//! Both tokenizer kinds (SmolLM2's byte-level BPE, Gemma 3's SentencePiece) on arbitrary
//! bytes, with and without BOS/EOS and special-token parsing: ids inside the vocabulary, and
//! for byte-level BPE without specials, detokenizing gives the text back exactly, less the
//! bytes the vocabulary has no symbol for (dropped, as llama.cpp does: docs/TOKENIZER.md).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rocmforge_fuzz::vocabularies;

/// The bytes SmolLM2's vocabulary cannot spell (each alone tokenizes to nothing).
fn dropped() -> &'static [bool; 256] {
    static D: OnceLock<[bool; 256]> = OnceLock::new();
    D.get_or_init(|| {
        let tok = vocabularies()[0].tokenizer();
        std::array::from_fn(|b| tok.tokenize(&[b as u8], false, false).is_empty())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let model = &vocabularies()[usize::from(flags & 1)];
    let (add_special, parse_special) = (flags & 2 != 0, flags & 4 != 0);
    let tok = model.tokenizer();
    let ids = tok.tokenize(text, add_special, parse_special);
    let n_vocab = tok.vocab().len();
    assert!(
        ids.iter().all(|&t| (t as usize) < n_vocab),
        "ids inside the vocabulary"
    );
    let back = tok
        .detokenize(&ids, add_special, false)
        .expect("detokenize valid ids");
    if flags & 1 == 0 && !parse_special {
        let kept: Vec<u8> = text
            .iter()
            .copied()
            .filter(|&b| !dropped()[usize::from(b)])
            .collect();
        assert_eq!(back, kept, "byte-level BPE round trip");
    }
});
