//! A model from arbitrary bytes (hyperparameters, tensor shapes and vocabulary validated):
//! it loads or is rejected with an error, and a model that loads tokenizes and detokenizes
//! text with ids inside its vocabulary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::gguf::GgufFile;
use rocmforge::{Backend, Model, ModelParams};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let vocab_only = data.len() % 2 == 1;
    let params = ModelParams {
        backend: Backend::Cpu,
        vocab_only,
        ..ModelParams::default()
    };
    let Ok(model) = Model::from_gguf(file, params) else {
        return;
    };
    let tok = model.tokenizer();
    let n_vocab = tok.vocab().len();
    for parse_special in [false, true] {
        let ids = tok.tokenize(b"Hello, world! <s> 123", true, parse_special);
        assert!(
            ids.iter().all(|&t| (t as usize) < n_vocab),
            "ids inside the vocabulary"
        );
        let _ = tok.detokenize(&ids, true, parse_special);
    }
});
