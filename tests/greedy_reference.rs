//! Greedy continuations against llama.cpp: after each reference prompt, 32 tokens chosen by
//! argmax one at a time (decode steps of one token on the growing K/V), compared with
//! logits.jsonl's `greedy` tokens and `greedy_text`.
//!
//! Measured (tokens matching before the first divergence, per prompt 0..7) with llama.cpp's
//! kernel choice (`Numerics::LlamaCpp`): SmolLM2 and Gemma 3 all 32 on every prompt (12 of 12
//! on SmolLM2's prompt 4, which ends at EOG): their logits are bit-exact with llama.cpp's
//! (tests/reference_logits.rs) on x86-64 with AVX2 or AVX-512. The scalar kernels (other
//! CPUs) part after a few tokens on some prompts (measured: 4 of 8 in full for each model,
//! the earliest divergence after 2 tokens).

mod common;

use common::{GEMMA3, SMOLLM2, argmax, decode_last, ids, in_ci, load, model, reference_context};
use rocmforge::quant::{SimdLevel, cpu};
use rocmforge::{KvType, Model};
use serde_json::Value;

/// Runs every prompt of `name`'s logits.jsonl and returns, per prompt, how many greedy tokens
/// match the reference before the first divergence and how many the reference has. Where
/// all match, the concatenated pieces (control tokens rendered as nothing, as the reference
/// does) must equal `greedy_text`.
fn greedy_matches(name: &str, path: &std::path::Path) -> Option<Vec<(usize, usize)>> {
    let dir = common::root().join(format!("../shared/reference/{name}"));
    let Ok(text) = std::fs::read_to_string(dir.join("logits.jsonl")) else {
        assert!(!in_ci(), "reference missing under CI");
        return None;
    };
    let m = load(path);
    let mut ctx = reference_context(&m, KvType::F16);
    let tok: &rocmforge::tokenizer::Tokenizer = Model::tokenizer(&m);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let (prompt, want) = (ids(&rec["tokens"]), ids(&rec["greedy"]));
        ctx.kv_clear();
        let mut logits = decode_last(&mut ctx, &prompt, 0);
        let mut got = Vec::new();
        while got.len() < want.len() {
            let t = argmax(&logits);
            got.push(t);
            if tok.vocab().is_eog(t) {
                break;
            }
            logits = decode_last(&mut ctx, &[t], 0);
        }
        let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        if same == want.len() {
            assert_eq!(got.len(), want.len(), "{name} prompt {i}: stopped early");
            let mut text = Vec::new();
            for &t in &got {
                tok.token_to_piece(t, false, &mut text).unwrap();
            }
            assert_eq!(
                String::from_utf8_lossy(&text),
                rec["greedy_text"].as_str().unwrap(),
                "{name} prompt {i}: greedy text"
            );
        }
        out.push((same, want.len()));
    }
    Some(out)
}

fn check(name: &str, got: &[(usize, usize)], min_full: usize, min_prefix: usize) {
    eprintln!("{name}: tokens matching before the first divergence: {got:?}");
    let full = got.iter().filter(|(s, n)| s == n).count();
    assert!(
        full >= min_full,
        "{name}: only {full} of {} prompts match in full: {got:?}",
        got.len()
    );
    for (i, &(same, n)) in got.iter().enumerate() {
        assert!(
            same >= min_prefix.min(n),
            "{name} prompt {i}: diverges after {same} of {n} tokens"
        );
    }
}

/// All continuations in full on the SIMD paths (bit-exact logits), the measured bounds on
/// the scalar kernels (module docs).
fn expect(file: &str, name: &str) {
    let Some(path) = model(file) else { return };
    if let Some(got) = greedy_matches(name, &path) {
        let exact = cpu::level() >= SimdLevel::Avx2;
        let (full, prefix) = if exact { (8, 32) } else { (4, 2) };
        check(name, &got, full, prefix);
    }
}

#[test]
fn smollm2_greedy_continuations_match_llama_cpp() {
    expect(SMOLLM2, "smollm2");
}

#[test]
fn gemma3_greedy_continuations_match_llama_cpp() {
    expect(GEMMA3, "gemma3");
}
