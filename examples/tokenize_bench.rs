//! Tokenizer speed: tokenizes 1 MB of English prose (the Apache-2.0 license text, repeated)
//! with each model and prints MB/s (target: at least 10 MB/s on one core). Repeated words are
//! merged once per call (a word cache), so the 1 MB case flatters; the single 11 KB copy shows
//! the rate on text with only its natural repetition.
//!
//!     cargo run --release --example tokenize_bench [-- MODEL.gguf ...]

use std::time::Instant;

use rocmforge::{Model, ModelParams};

fn prose() -> Vec<u8> {
    let base = std::fs::read("/usr/share/common-licenses/Apache-2.0").unwrap_or_else(|_| {
        b"The quick brown fox jumps over the lazy dog. It's 2024, and we're testing: \
          numbers 12345, punctuation (!?), and words like tokenizer, vocabulary, merge.\n"
            .to_vec()
    });
    let mut text = Vec::with_capacity(1 << 20);
    while text.len() < 1 << 20 {
        text.extend_from_slice(&base);
    }
    text.truncate(1 << 20);
    // Cut back to a character boundary.
    while std::str::from_utf8(&text).is_err() {
        text.pop();
    }
    text
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        paths = [
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "gemma-3-270m-q4_k_m.gguf",
        ]
        .iter()
        .map(|m| format!("{root}/models/{m}"))
        .collect();
    }
    let text = prose();
    let once = std::fs::read("/usr/share/common-licenses/Apache-2.0")
        .unwrap_or_else(|_| text[..11_358].to_vec());
    println!("| model | text | MB | tokens | ms | MB/s |");
    println!("|---|---|---:|---:|---:|---:|");
    for path in paths {
        let model = Model::load(path.as_ref(), ModelParams::default()).expect("load model");
        let tok = model.tokenizer();
        let name = path.rsplit('/').next().unwrap_or(&path);
        for (label, input) in [("1 MB (repeated)", &text), ("11 KB (once)", &once)] {
            tok.tokenize(input, true, false);
            let start = Instant::now();
            let mut runs = 0;
            let mut n = 0;
            while runs < 3 || start.elapsed().as_secs_f64() < 1.0 {
                n = tok.tokenize(input, true, false).len();
                runs += 1;
            }
            let secs = start.elapsed().as_secs_f64() / f64::from(runs);
            let mb = input.len() as f64 / 1e6;
            println!(
                "| {name} | {label} | {mb:.3} | {n} | {:.2} | {:.1} |",
                secs * 1e3,
                mb / secs
            );
        }
    }
}
