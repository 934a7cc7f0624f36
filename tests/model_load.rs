//! Loading the real models through the Rust API: descriptions, thread safety, cancellation.

mod common;

use std::sync::Arc;

use common::{GEMMA3, SMOLLM2, model};
use rocmforge::{Error, Model, ModelParams};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn model_is_send_and_sync() {
    assert_send_sync::<Model>();
}

#[test]
fn smollm2_and_gemma3_describe_themselves() {
    let Some(smol) = model(SMOLLM2) else { return };
    let Some(gemma) = model(GEMMA3) else { return };
    let m = Model::load(&smol, ModelParams::default()).unwrap();
    let d = m.describe();
    assert_eq!(
        (d.arch.as_str(), d.n_layer, d.n_vocab, d.n_ctx_train),
        ("llama", 30, 49152, 8192)
    );
    assert_eq!((d.n_embd, d.n_head, d.n_head_kv), (576, 9, 3));
    assert_eq!((d.file_type, d.file_type_name), (Some(3), "Q4_1"));
    assert_eq!(d.n_params, 134_515_008);

    let m = Model::load(&gemma, ModelParams::default()).unwrap();
    let d = m.describe();
    assert_eq!(
        (d.arch.as_str(), d.n_layer, d.n_vocab, d.n_ctx_train),
        ("gemma3", 18, 262_144, 32768)
    );
    assert_eq!((d.n_embd, d.n_head, d.n_head_kv), (640, 4, 1));
    assert_eq!(d.file_type_name, "Q4_K - Medium");
    // Gemma 3 mixes these types; the reader sized every one of them from the type table.
    let mut types: Vec<&str> = m.gguf().tensors().iter().map(|t| t.ty.name()).collect();
    types.sort();
    types.dedup();
    assert_eq!(types, ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"]);
}

#[test]
fn one_model_is_shared_by_threads_and_loads_concurrently() {
    let Some(path) = model(SMOLLM2) else { return };
    let shared = Arc::new(Model::load(&path, ModelParams::default()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let shared = Arc::clone(&shared);
            let path = path.clone();
            std::thread::spawn(move || {
                let own = Model::load(&path, ModelParams::default()).unwrap();
                assert_eq!(own.describe(), shared.describe());
                own.gguf().tensors().len()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 272);
    }
}

#[test]
fn cancelling_at_any_progress_report_aborts_the_load() {
    let Some(path) = model(SMOLLM2) else { return };
    let mut reports = Vec::new();
    let mut record = |f: f32| {
        reports.push(f);
        true
    };
    Model::load(
        &path,
        ModelParams {
            progress: Some(&mut record),
            ..ModelParams::default()
        },
    )
    .unwrap();
    assert_eq!(reports.first(), Some(&0.0));
    assert_eq!(reports.last(), Some(&1.0));
    assert!(
        reports.windows(2).all(|w| w[0] <= w[1]),
        "progress goes forward"
    );
    for stop_at in [0, 1, reports.len() / 2, reports.len() - 1] {
        let mut calls = 0;
        let mut cancel = |_: f32| {
            calls += 1;
            calls <= stop_at
        };
        let err = Model::load(
            &path,
            ModelParams {
                progress: Some(&mut cancel),
                ..ModelParams::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::Aborted(_)), "{err}");
        assert_eq!(calls, stop_at + 1);
    }
}

#[test]
fn an_architecture_without_a_forward_pass_is_a_clear_load_error() {
    // The corpus's tiny llama, renamed to an architecture rocmforge cannot run.
    let metadata: Vec<_> = common::corpus::base_metadata()
        .into_iter()
        .map(|(k, v)| match k.strip_prefix("llama.") {
            Some(rest) => (format!("mamba.{rest}"), v),
            None if k == "general.architecture" => (k, rocmforge::gguf::Value::string("mamba")),
            None => (k, v),
        })
        .collect();
    let (bytes, _) = common::corpus::build(&metadata, &common::corpus::base_tensors());
    let file = || rocmforge::gguf::GgufFile::from_bytes(bytes.clone()).unwrap();
    let err = Model::from_gguf(file(), ModelParams::default()).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"mamba\"") && msg.contains("llama, qwen2"),
        "{msg}"
    );
    // Its vocabulary still loads, for tokenizing.
    let params = ModelParams {
        vocab_only: true,
        ..ModelParams::default()
    };
    let m = Model::from_gguf(file(), params).unwrap();
    assert_eq!(m.describe().arch, "mamba");
    assert!(m.transformer().is_err());
}
