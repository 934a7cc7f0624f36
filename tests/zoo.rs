//! The model zoo of ../shared/reference/zoo (tiny random-weight models of other architectures
//! and weight types): every file loads and describes itself as the manifest says, and its
//! tokenizer gives llama.cpp's tokens and text for every reference line.

mod common;

use std::path::PathBuf;

use common::{ids, in_ci};
use rocmforge::{Model, ModelParams};
use serde_json::Value;

fn zoo() -> Option<PathBuf> {
    let dir = common::root().join("../shared/reference/zoo");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(!in_ci(), "{} is missing under CI", dir.display());
    eprintln!("SKIPPED: {} is missing", dir.display());
    None
}

#[test]
fn every_zoo_model_loads_and_tokenizes_like_llama_cpp() {
    let Some(dir) = zoo() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "only {} zoo models", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let model = match Model::load(path, ModelParams::default()) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: load failed: {e}"));
                continue;
            }
        };
        let d = model.describe();
        if d.n_vocab != 317 {
            failures.push(format!("{name}: vocabulary {} (manifest: 317)", d.n_vocab));
        }
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.tokenize.jsonl"))) else {
            continue;
        };
        for line in text.lines() {
            let rec: Value = serde_json::from_str(line).unwrap();
            let input = rec["text"].as_str().unwrap();
            let add = rec["add_special"].as_bool().unwrap();
            let parse = rec["parse_special"].as_bool().unwrap();
            let want = ids(&rec["tokens"]);
            let got = model.tokenizer().tokenize(input.as_bytes(), add, parse);
            if got != want {
                failures.push(format!(
                    "{name}: {input:?} (add {add}, parse {parse}): {got:?} != {want:?}"
                ));
            }
            let detok = model.tokenizer().detokenize(&want, false, false).unwrap();
            if detok != rec["detok"].as_str().unwrap().as_bytes() {
                failures.push(format!(
                    "{name}: detok of {input:?}: {:?}",
                    String::from_utf8_lossy(&detok)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
