//! Detokenizing arbitrary id lists (in and out of the vocabulary) with both tokenizer kinds:
//! ids in range always detokenize, out of range is an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge_fuzz::{Bytes, vocabularies};

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let flags = b.u8();
    let model = &vocabularies()[usize::from(flags & 1)];
    let tok = model.tokenizer();
    let n_vocab = tok.vocab().len();
    let mut ids = Vec::new();
    while !b.is_empty() {
        // Mostly ids in range, some anywhere.
        let raw = b.i32() as u32;
        ids.push(if raw & 0x8000_0000 != 0 {
            raw
        } else {
            raw % n_vocab as u32
        });
    }
    let r = tok.detokenize(&ids, flags & 2 != 0, flags & 4 != 0);
    let all_valid = ids.iter().all(|&t| (t as usize) < n_vocab);
    assert_eq!(r.is_ok(), all_valid, "{r:?}");
    let mut piece = Vec::new();
    for &t in &ids {
        assert_eq!(
            tok.token_to_piece(t, flags & 4 != 0, &mut piece).is_ok(),
            (t as usize) < n_vocab
        );
    }
});
