//! Tokenization against llama.cpp on both real models: every line of
//! ../shared/reference/<model>/tokenize.jsonl in both modes (tokens and detokenized text), and
//! the prompts' tokens in logits.jsonl; round trips; arbitrary bytes.

mod common;

use std::path::PathBuf;

use common::{GEMMA3, SMOLLM2, ids, in_ci, model};
use rocmforge::{Model, ModelParams};
use serde_json::Value;

fn reference(name: &str, file: &str) -> Option<Vec<Value>> {
    let path = common::root()
        .join("../shared/reference")
        .join(name)
        .join(file);
    if !path.is_file() {
        assert!(!in_ci(), "{} is missing under CI", path.display());
        eprintln!("SKIPPED: {} is missing", path.display());
        return None;
    }
    let text = std::fs::read_to_string(&path).unwrap();
    Some(
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn load(name: &str) -> Option<Model> {
    let path: PathBuf = model(name)?;
    Some(Model::load(&path, ModelParams::default()).unwrap())
}

fn check_tokenize_jsonl(model_name: &str, reference_name: &str) {
    let (Some(m), Some(lines)) = (
        load(model_name),
        reference(reference_name, "tokenize.jsonl"),
    ) else {
        return;
    };
    let tok = m.tokenizer();
    let mut failures = Vec::new();
    for rec in &lines {
        let text = rec["text"].as_str().unwrap();
        let add = rec["add_special"].as_bool().unwrap();
        let parse = rec["parse_special"].as_bool().unwrap();
        let want = ids(&rec["tokens"]);
        let got = tok.tokenize(text.as_bytes(), add, parse);
        if got != want {
            failures.push(format!(
                "{text:?} (add {add}, parse {parse}):\n  got  {got:?}\n  want {want:?}"
            ));
        }
        let detok = tok.detokenize(&want, false, false).unwrap();
        let want_detok = rec["detok"].as_str().unwrap();
        if detok != want_detok.as_bytes() {
            failures.push(format!(
                "detok of {text:?}: {:?} != {want_detok:?}",
                String::from_utf8_lossy(&detok)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{model_name}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_tokenizes_like_llama_cpp() {
    check_tokenize_jsonl(SMOLLM2, "smollm2");
}

#[test]
fn gemma3_tokenizes_like_llama_cpp() {
    check_tokenize_jsonl(GEMMA3, "gemma3");
}

#[test]
fn prompts_tokenize_like_llama_cpp() {
    for (model_name, reference_name) in [(SMOLLM2, "smollm2"), (GEMMA3, "gemma3")] {
        let (Some(m), Some(lines)) = (load(model_name), reference(reference_name, "logits.jsonl"))
        else {
            return;
        };
        for rec in &lines {
            let prompt = rec["prompt"].as_str().unwrap();
            let got = m.tokenizer().tokenize(prompt.as_bytes(), true, true);
            assert_eq!(got, ids(&rec["tokens"]), "{model_name}: {prompt:?}");
        }
    }
}

/// Bytes the vocabulary can represent: byte-level BPE vocabularies may lack the symbols of
/// bytes that never occur in UTF-8 (SmolLM2 lacks 21, such as 0xc0 and 0xf5..0xff); llama.cpp
/// drops those bytes, and so do we.
fn representable(tok: &rocmforge::tokenizer::Tokenizer, bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|&b| !tok.tokenize(&[b], false, false).is_empty())
        .collect()
}

#[test]
fn plain_text_and_arbitrary_bytes_round_trip() {
    for model_name in [SMOLLM2, GEMMA3] {
        let Some(m) = load(model_name) else { return };
        let tok = m.tokenizer();
        let all: Vec<u8> = (0u8..=255).collect();
        let kept = representable(tok, &all).len();
        eprintln!("{model_name}: {kept} of 256 bytes have tokens");
        assert!(kept >= 235, "{model_name}: only {kept} bytes representable");
        let samples: Vec<Vec<u8>> = vec![
            b"The quick brown fox jumps over the lazy dog.".to_vec(),
            "  spaces, tabs\t and\nnewlines \n\n end "
                .as_bytes()
                .to_vec(),
            "Ünïcödé 中文 😀 👨‍👩‍👧".as_bytes().to_vec(),
            b"<|im_start|>user<|im_end|>".to_vec(),
            vec![0xff, 0xfe, b'a', 0xc3, b' ', 0x80, 0xe2, 0x82],
            (0u8..=255).collect(),
            // Found by the tokenize fuzz target (fuzz/): unrepresentable bytes (0xff) inside
            // a run of truncated 3-byte leads.
            [
                b"Hello, wmrldou?".as_slice(),
                &[0xed; 7],
                &[0xff; 3],
                &[0xed; 10],
            ]
            .concat(),
        ];
        for s in samples {
            let t = tok.tokenize(&s, false, false);
            let back = tok.detokenize(&t, false, false).unwrap();
            assert_eq!(
                back,
                representable(tok, &s),
                "{model_name}: {:?}",
                String::from_utf8_lossy(&s)
            );
        }
        // Pseudo-random byte strings never panic and round trip.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let t = tok.tokenize(&bytes, true, true);
            assert!(t.iter().all(|&id| (id as usize) < tok.vocab().len()));
            let t = tok.tokenize(&bytes, false, false);
            assert_eq!(
                tok.detokenize(&t, false, false).unwrap(),
                representable(tok, &bytes),
                "{model_name}"
            );
        }
    }
}

#[test]
fn smollm2_chat_template_renders_prompt_5() {
    let Some(m) = load(SMOLLM2) else { return };
    let path = common::root().join("../shared/reference/prompts.txt");
    let Ok(prompts) = std::fs::read_to_string(&path) else {
        assert!(!in_ci(), "{} is missing under CI", path.display());
        return;
    };
    // prompts.txt escapes: \n newline, \t tab, \\ backslash.
    let line = prompts.lines().nth(4).unwrap();
    let mut want = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => want.push('\n'),
                Some('t') => want.push('\t'),
                Some(o) => want.push(o),
                None => want.push('\\'),
            },
            (c, false) => want.push(c),
        }
    }
    let msgs = [rocmforge::tokenizer::ChatMessage {
        role: "user",
        content: "What is 2+2?",
    }];
    assert_eq!(m.apply_chat_template(None, &msgs, true).unwrap(), want);
}

#[test]
fn gemma3_has_no_template_but_accepts_one() {
    let Some(m) = load(GEMMA3) else { return };
    let msgs = [rocmforge::tokenizer::ChatMessage {
        role: "user",
        content: "Hi",
    }];
    let err = m.apply_chat_template(None, &msgs, true).unwrap_err();
    assert!(err.to_string().contains("no chat template"), "{err}");
    let t = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
    assert_eq!(
        m.apply_chat_template(Some(t), &msgs, true).unwrap(),
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
}
