//! The llama forward pass on the zoo's plain llama models (../shared/reference/zoo: `llama.*`
//! and `llama-k.*`, every weight type), against llama.cpp's logits.
//!
//! Measured (last-position max |logit diff| over the 4 prompts): F32 0.002-0.003, F16
//! 0.004-0.006, BF16 0.02-0.03: the forward math is right. Quantized weights: 0 to 0.15 (0 for llama.Q4_0,
//! Q5_0 and IQ4_NL), with at most 2 of 110 argmaxes differing; issue 5's 0.1 needs the rest
//! of the gap found (see docs/INFERENCE-NOTES.md). The bounds below hold what is measured.
//! (Rope scaling and MoE variants come with the rest of issue 5.)

mod common;

use common::{argmax, context, decode_rows, ids, in_ci, load};
use rocmforge::KvType;
use serde_json::Value;

#[test]
fn zoo_llama_models_match_llama_cpp() {
    let dir = common::root().join("../shared/reference/zoo");
    if !dir.is_dir() {
        assert!(!in_ci(), "{} is missing under CI", dir.display());
        return;
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| (n.starts_with("llama.") || n.starts_with("llama-k.")) && n.ends_with(".gguf"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    let mut report = Vec::new();
    for name in &names {
        let stem = name.trim_end_matches(".gguf");
        let m = load(&dir.join(name));
        let mut ctx = context(&m, 1, KvType::F16);
        let nv = ctx.n_vocab();
        let text = std::fs::read_to_string(dir.join(format!("{stem}.logits.jsonl"))).unwrap();
        let (mut worst_full, mut argmax_bad, mut positions) = (0f32, 0, 0);
        for (i, line) in text.lines().enumerate() {
            let rec: Value = serde_json::from_str(line).unwrap();
            let tokens = ids(&rec["tokens"]);
            let n = tokens.len();
            ctx.kv_clear();
            let logits = decode_rows(&mut ctx, &tokens, 0);
            for (pos, want) in rec["top10"].as_array().unwrap().iter().enumerate() {
                let row = &logits[pos * nv..(pos + 1) * nv];
                positions += 1;
                if u64::from(argmax(row)) != want[0][0].as_u64().unwrap() {
                    argmax_bad += 1;
                }
            }
            if let Ok(bytes) = std::fs::read(dir.join(format!("{stem}.{i}.f32"))) {
                let want: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let d = logits[(n - 1) * nv..]
                    .iter()
                    .zip(&want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                worst_full = worst_full.max(d);
            }
        }
        eprintln!(
            "{stem}: max |logit diff| {worst_full:.4}, argmax mismatches {argmax_bad}/{positions}"
        );
        report.push((stem.to_string(), worst_full, argmax_bad, positions));
    }
    for (stem, worst, bad, positions) in &report {
        let float = stem.ends_with(".F32") || stem.ends_with(".F16") || stem.ends_with(".BF16");
        let bound = if stem.ends_with(".F32") {
            0.01
        } else if float {
            0.05
        } else {
            0.2
        };
        assert!(
            *worst < bound,
            "{stem}: last-position logits differ by {worst} (bound {bound})"
        );
        assert!(
            *bad * 50 <= *positions,
            "{stem}: {bad} of {positions} argmaxes differ"
        );
    }
}
