//! The gemma3 forward pass against llama.cpp on Gemma 3 270M (first slice of issue 5).
//!
//! Measured: the first token's residual stream equals llama.cpp's trace to 4 digits through
//! layer 2 and then drifts slowly (docs/INFERENCE-NOTES.md); position-0 top-10 logits are
//! within 0.15 of the reference and the argmax agrees at 145 of 150 positions over the 8
//! prompts. This test holds the position-0 facts; the rest is issue 5's open work.

mod common;

use common::{GEMMA3, ids, in_ci, model};
use rocmforge::backend::cpu::ThreadPool;
use rocmforge::model::gemma3::Gemma3;
use rocmforge::model::llama::SeqKv;
use rocmforge::{Model, ModelParams};
use serde_json::Value;

#[test]
fn gemma3_position_0_logits_match_llama_cpp() {
    let Some(path) = model(GEMMA3) else { return };
    let dir = common::root().join("../shared/reference/gemma3");
    let Ok(text) = std::fs::read_to_string(dir.join("logits.jsonl")) else {
        assert!(!in_ci(), "reference missing under CI");
        return;
    };
    let m = Model::load(&path, ModelParams::default()).unwrap();
    let g = Gemma3::from_gguf(m.gguf(), m.hparams()).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    // Every prompt starts with BOS, so position 0 is the same computation: check it once,
    // after running a whole prompt through (later positions must not disturb row 0).
    let rec: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let tokens = ids(&rec["tokens"]);
    let mut kv = SeqKv::default();
    let logits = g.forward(m.gguf(), &pool, &tokens, &mut kv, &[0]).unwrap();
    assert_eq!(kv.len(), tokens.len());
    let want = rec["top10"][0].as_array().unwrap();
    let best = logits
        .iter()
        .enumerate()
        .fold(0, |b, (t, &v)| if v > logits[b] { t } else { b });
    assert_eq!(
        best as u64,
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
