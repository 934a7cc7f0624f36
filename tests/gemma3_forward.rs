//! The gemma3 forward pass against llama.cpp on Gemma 3 270M (first slice of issue 5).
//!
//! Measured: the first token's residual stream equals llama.cpp's trace to 4 digits through
//! layer 2 and then drifts slowly (docs/INFERENCE-NOTES.md); position-0 top-10 logits are
//! within 0.15 of the reference and the argmax agrees at 145 of 150 positions over the 8
//! prompts. This test holds the position-0 facts; the rest is issue 5's open work.

mod common;

use common::{GEMMA3, argmax, context, decode_rows, ids, in_ci, load, model};
use rocmforge::KvType;
use serde_json::Value;

#[test]
fn gemma3_position_0_logits_match_llama_cpp() {
    let Some(path) = model(GEMMA3) else { return };
    let dir = common::root().join("../shared/reference/gemma3");
    let Ok(text) = std::fs::read_to_string(dir.join("logits.jsonl")) else {
        assert!(!in_ci(), "reference missing under CI");
        return;
    };
    let m = load(&path);
    let mut ctx = context(&m, 1, KvType::F16);
    // Every prompt starts with BOS, so position 0 is the same computation: check it once,
    // after running a whole prompt through (later positions must not disturb row 0).
    let rec: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let tokens = ids(&rec["tokens"]);
    let all = decode_rows(&mut ctx, &tokens, 0);
    let logits = &all[..ctx.n_vocab()];
    let want = rec["top10"][0].as_array().unwrap();
    assert_eq!(
        u64::from(argmax(logits)),
        want[0][0].as_u64().unwrap(),
        "argmax at position 0"
    );
    let max_diff = want.iter().fold(0f32, |m, p| {
        m.max((logits[p[0].as_u64().unwrap() as usize] - p[1].as_f64().unwrap() as f32).abs())
    });
    assert!(
        max_diff < 0.2,
        "position-0 top-10 logits differ by {max_diff}"
    );
}
