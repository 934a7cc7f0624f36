//! Decoding through `Context` on the real models: the same logits however a prompt is cut into
//! batches, several sequences in one batch equal to each alone, every KV cache type, and the
//! all-or-nothing cases (a full cache, an abort) leaving the context as it was.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{
    GEMMA3, SMOLLM2, argmax, context, decode_last, decode_rows, load, max_abs_diff, model,
};
use rocmforge::quant::{SimdLevel, cpu};
use rocmforge::{Batch, Context, ContextParams, Error, KvType, Model, ModelParams};

/// A prompt of `n` ordinary tokens (BOS first).
fn prompt(m: &Model, n: usize) -> Vec<u32> {
    let text = "The quick brown fox jumps over the lazy dog while the cat sleeps on a warm \
                windowsill, dreaming of fish and of the long summer afternoons by the river.";
    let mut t = m.tokenizer().tokenize(text.as_bytes(), true, false);
    t.truncate(n);
    assert_eq!(t.len(), n, "the prompt has fewer than {n} tokens");
    t
}

/// Logits of every position of `tokens` decoded in batches of `chunk` tokens.
fn in_chunks(ctx: &mut Context, tokens: &[u32], chunk: usize) -> Vec<f32> {
    ctx.kv_clear();
    tokens
        .chunks(chunk)
        .flat_map(|c| decode_rows(ctx, c, 0))
        .collect()
}

fn batch_splits_agree(name: &str) {
    let Some(path) = model(name) else { return };
    let m = load(&path);
    let mut ctx = context(&m, 1, KvType::F16);
    let tokens = prompt(&m, 24);
    let whole = in_chunks(&mut ctx, &tokens, tokens.len());
    for chunk in [1, 5, 16] {
        let got = in_chunks(&mut ctx, &tokens, chunk);
        let d = max_abs_diff(&got, &whole);
        eprintln!("{name}: chunks of {chunk}: max |diff| {d}");
        assert!(d < 1e-2, "{name}: chunks of {chunk} differ by {d}");
    }
}

#[test]
fn smollm2_one_batch_chunks_and_single_tokens_give_the_same_logits() {
    batch_splits_agree(SMOLLM2);
}

#[test]
fn gemma3_one_batch_chunks_and_single_tokens_give_the_same_logits() {
    batch_splits_agree(GEMMA3);
}

fn sequences_in_one_batch_equal_each_alone(name: &str) {
    let Some(path) = model(name) else { return };
    let m = load(&path);
    let all = prompt(&m, 20);
    let (a, b) = (&all[..20], &all[..13]);
    let mut ctx = context(&m, 3, KvType::F16);
    let alone_a = decode_rows(&mut ctx, a, 0);
    let alone_b = decode_rows(&mut ctx, b, 1);
    ctx.kv_clear();
    // Both prompts interleaved in one batch, sequence 2 (empty) starting at position 7.
    let mut batch = Batch::new();
    for i in 0..a.len() {
        batch.add(a[i] as i32, i as i32, &[0], true).unwrap();
        if i < b.len() {
            batch.add(b[i] as i32, i as i32, &[1], true).unwrap();
        }
    }
    batch.add(a[0] as i32, 7, &[2], true).unwrap();
    ctx.decode(&batch).unwrap();
    let nv = ctx.n_vocab();
    let (mut row, mut worst) = (0, 0f32);
    for i in 0..a.len() {
        worst = worst.max(max_abs_diff(
            ctx.logits(row).unwrap(),
            &alone_a[i * nv..][..nv],
        ));
        row += 1;
        if i < b.len() {
            worst = worst.max(max_abs_diff(
                ctx.logits(row).unwrap(),
                &alone_b[i * nv..][..nv],
            ));
            row += 1;
        }
    }
    eprintln!("{name}: interleaved vs alone: max |diff| {worst}");
    assert!(
        worst < 1e-2,
        "{name}: interleaved sequences differ by {worst}"
    );
    assert_eq!(ctx.kv_pos_range(0).unwrap(), Some((0, 19)));
    assert_eq!(ctx.kv_pos_range(1).unwrap(), Some((0, 12)));
    assert_eq!(ctx.kv_pos_range(2).unwrap(), Some((7, 7)));
    assert_eq!(ctx.kv_stats().n_seqs, 3);
    // Continuing one sequence after the shared batch equals continuing it alone.
    let next = decode_last(&mut ctx, &all[13..14], 1);
    let want = decode_rows(&mut context(&m, 1, KvType::F16), &all[..14], 0);
    let d = max_abs_diff(&next, &want[13 * nv..]);
    assert!(d < 1e-2, "{name}: continuation differs by {d}");
}

#[test]
fn smollm2_sequences_in_one_batch_equal_each_alone() {
    sequences_in_one_batch_equal_each_alone(SMOLLM2);
}

#[test]
fn gemma3_sequences_in_one_batch_equal_each_alone() {
    sequences_in_one_batch_equal_each_alone(GEMMA3);
}

#[test]
fn a_token_in_two_sequences_is_stored_in_both() {
    let Some(path) = model(SMOLLM2) else { return };
    let m = load(&path);
    let t = prompt(&m, 8);
    let mut ctx = context(&m, 2, KvType::F16);
    // A shared prefix decoded once for both sequences, then each continues on its own.
    let mut b = Batch::new();
    for (i, &tok) in t[..6].iter().enumerate() {
        b.add(tok as i32, i as i32, &[0, 1], false).unwrap();
    }
    ctx.decode(&b).unwrap();
    assert_eq!(ctx.n_outputs(), 0);
    assert!(ctx.logits(-1).is_err());
    let x = decode_last(&mut ctx, &t[6..8], 1);
    let y = decode_last(&mut ctx, &t[6..7], 0);
    let want = decode_rows(&mut context(&m, 1, KvType::F16), &t, 0);
    let nv = ctx.n_vocab();
    assert!(max_abs_diff(&x, &want[7 * nv..]) < 1e-2);
    assert!(max_abs_diff(&y, &want[6 * nv..7 * nv]) < 1e-2);
}

#[test]
fn every_kv_type_gives_nearly_the_same_logits() {
    let Some(path) = model(SMOLLM2) else { return };
    let m = load(&path);
    let Some((tokens, want)) = common::reference_last_logits("smollm2", 0) else {
        return;
    };
    for ty in [KvType::F16, KvType::F32, KvType::Q8_0] {
        let got = decode_last(&mut context(&m, 1, ty), &tokens, 0);
        let d = max_abs_diff(&got, &want);
        eprintln!("{ty:?}: max |diff| to llama.cpp (F16 cache) {d}");
        assert!(d < 1.5, "{ty:?}: {d}");
        assert_eq!(argmax(&got), argmax(&want), "{ty:?}");
        // With llama.cpp's float order and the reference's own cache type, bit for bit.
        if ty == KvType::F16 && cpu::level() >= SimdLevel::Avx2 {
            let exact = decode_last(&mut common::reference_context(&m, ty), &tokens, 0);
            assert_eq!(max_abs_diff(&exact, &want), 0.0);
        }
    }
    // SmolLM2 amplifies any rounding (docs/INFERENCE-NOTES.md); the zoo's F32 llama does not.
    let zoo = common::root().join("../shared/reference/zoo");
    if let Ok(bytes) = std::fs::read(zoo.join("llama.F32.0.f32")) {
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let text = std::fs::read_to_string(zoo.join("llama.F32.logits.jsonl")).unwrap();
        let rec: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let tokens = common::ids(&rec["tokens"]);
        let zm = load(&zoo.join("llama.F32.gguf"));
        for (ty, bound) in [
            (KvType::F16, 0.01),
            (KvType::F32, 0.01),
            (KvType::Q8_0, 0.1),
        ] {
            let got = decode_last(&mut context(&zm, 1, ty), &tokens, 0);
            let d = max_abs_diff(&got, &want);
            eprintln!("zoo llama.F32, {ty:?} cache: max |diff| to llama.cpp {d}");
            assert!(d < bound, "zoo llama.F32 {ty:?}: {d}");
        }
    }
    // The reported size is what the cache allocated: layers x (K + V) x cells x row bytes.
    let p = &m.transformer().unwrap().params;
    for (ty, bytes_per_value) in [
        (KvType::F16, 2.0),
        (KvType::F32, 4.0),
        (KvType::Q8_0, 34.0 / 32.0),
    ] {
        let s = context(&m, 1, ty).kv_stats();
        let cells = s.n_blocks_total * s.block_size;
        let want =
            p.n_layer as f64 * (p.k_dim() + p.v_dim()) as f64 * cells as f64 * bytes_per_value;
        assert_eq!(s.bytes_total as f64, want, "{ty:?}");
    }
}

#[test]
fn a_full_cache_refuses_the_batch_and_changes_nothing() {
    let Some(path) = model(SMOLLM2) else { return };
    let m = load(&path);
    let mut ctx = Context::new(
        Arc::clone(&m),
        ContextParams {
            n_ctx: 32, // two blocks of 16
            n_seq_max: 2,
            n_threads: 2,
            ..ContextParams::default()
        },
    )
    .unwrap();
    let t = prompt(&m, 20);
    let first = decode_last(&mut ctx, &t[..20], 0);
    let stats = ctx.kv_stats();
    assert_eq!((stats.n_blocks_total, stats.n_blocks_used), (2, 2));
    // 20 positions fill both blocks' worth for sequence 0 (16 + 4): nothing left for 1.
    let err = ctx
        .decode(&Batch::from_tokens(&t[..1], 0, 1).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::KvFull(_)), "{err}");
    assert_eq!(ctx.kv_stats(), stats);
    assert_eq!(ctx.logits(-1).unwrap(), &first[..]);
    // Growing sequence 0 within its partial block still works; past it, KvFull again.
    decode_last(&mut ctx, &t[..12], 0);
    assert_eq!(ctx.kv_pos_range(0).unwrap(), Some((0, 31)));
    let err = ctx
        .decode(&Batch::from_tokens(&t[..1], 32, 0).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::KvFull(_)), "{err}");
    // Freeing the sequence returns every block at once.
    ctx.kv_free(0).unwrap();
    assert_eq!(ctx.kv_stats().n_blocks_used, 0);
    assert_eq!(ctx.kv_pos_range(0).unwrap(), None);
    let again = decode_last(&mut ctx, &t[..20], 1);
    assert!(max_abs_diff(&again, &first) < 1e-3);
    assert!(ctx.kv_free(2).is_err() && ctx.kv_free(-1).is_err());
}

#[test]
fn an_abort_stops_the_decode_and_the_context_stays_usable() {
    let Some(path) = model(SMOLLM2) else { return };
    let m = load(&path);
    let calls = Arc::new(AtomicUsize::new(0));
    let stop_after = Arc::new(AtomicUsize::new(usize::MAX));
    let (c, s) = (Arc::clone(&calls), Arc::clone(&stop_after));
    let mut ctx = Context::new(
        Arc::clone(&m),
        ContextParams {
            n_ctx: 256,
            n_threads: 2,
            abort: Some(Box::new(move || {
                c.fetch_add(1, Ordering::Relaxed) >= s.load(Ordering::Relaxed)
            })),
            ..ContextParams::default()
        },
    )
    .unwrap();
    let t = prompt(&m, 10);
    let first = decode_last(&mut ctx, &t[..5], 0);
    let n_layer = m.describe().n_layer as usize;
    assert_eq!(
        calls.load(Ordering::Relaxed),
        n_layer,
        "asked once per layer"
    );
    let stats = ctx.kv_stats();
    for stop in [0, 3, n_layer - 1] {
        calls.store(0, Ordering::Relaxed);
        stop_after.store(stop, Ordering::Relaxed);
        let err = ctx
            .decode(&Batch::from_tokens(&t[5..], 5, 0).unwrap())
            .unwrap_err();
        assert!(matches!(err, Error::Aborted(_)), "{err}");
        assert_eq!(calls.load(Ordering::Relaxed), stop + 1);
        assert_eq!(ctx.kv_stats(), stats);
        assert_eq!(ctx.kv_pos_range(0).unwrap(), Some((0, 4)));
        assert_eq!(ctx.logits(-1).unwrap(), &first[..]);
    }
    stop_after.store(usize::MAX, Ordering::Relaxed);
    let rest = decode_last(&mut ctx, &t[5..], 0);
    let want = decode_last(&mut context(&m, 1, KvType::F16), &t, 0);
    assert!(max_abs_diff(&rest, &want) < 1e-2);
}

#[test]
fn contexts_check_their_sizes_and_models_without_a_forward_pass() {
    let Some(path) = model(SMOLLM2) else { return };
    let m = load(&path);
    for (p, why) in [
        (
            ContextParams {
                n_ctx: 0,
                ..ContextParams::default()
            },
            "n_ctx",
        ),
        (
            ContextParams {
                n_batch: 0,
                ..ContextParams::default()
            },
            "n_batch",
        ),
        (
            ContextParams {
                n_seq_max: 257,
                ..ContextParams::default()
            },
            "n_seq_max",
        ),
        (
            ContextParams {
                n_threads: 0,
                ..ContextParams::default()
            },
            "n_threads",
        ),
        (
            ContextParams {
                n_ctx: usize::MAX,
                ..ContextParams::default()
            },
            "n_ctx",
        ),
    ] {
        let err = Context::new(Arc::clone(&m), p).err().expect("refused");
        assert!(err.to_string().contains(why), "{err}");
    }
    let vocab = Model::load(
        &path,
        ModelParams {
            vocab_only: true,
            ..ModelParams::default()
        },
    )
    .unwrap();
    let err = Context::new(Arc::new(vocab), ContextParams::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    // A context keeps its model alive after every other reference is gone.
    let mut ctx = context(&m, 1, KvType::F16);
    drop(m);
    assert_eq!(decode_last(&mut ctx, &[1, 2, 3], 0).len(), ctx.n_vocab());
}

/// A model whose output norm is NaN: a decode (`decode` or `decode_greedy`) fails with a non-finite error
/// (RF_ERR_MODEL_FORMAT) and keeps nothing (no KV positions, no logits), so the same batch
/// fails the same way again rather than running into its own positions.
#[test]
fn non_finite_logits_fail_the_decode_and_keep_nothing() {
    let Some(file) = common::zoo_with_nan_logits("llama.F32.gguf") else {
        return;
    };
    let model = std::sync::Arc::new(Model::from_gguf(file, ModelParams::default()).unwrap());
    let params = ContextParams {
        n_ctx: 64,
        n_threads: 1,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model, params).unwrap();
    let batch = Batch::from_tokens(&[1, 2, 3], 0, 0).unwrap();
    for round in 0..4 {
        // decode, then decode_greedy (which checks the logits as decode does).
        let e = match round % 2 {
            0 => ctx.decode(&batch).unwrap_err(),
            _ => ctx.decode_greedy(&batch).unwrap_err(),
        };
        assert!(matches!(e, Error::NonFinite(_)), "{e}");
        assert_eq!(e.status(), rocmforge::error::Status::ModelFormat);
        assert!(e.to_string().contains("non-finite logits"), "{e}");
        assert_eq!(ctx.kv_pos_range(0).unwrap(), None, "nothing kept");
        assert_eq!(ctx.n_outputs(), 0);
    }
}

/// `decode_greedy` keeps each output row's greedy token and no logits: on the zoo's llama,
/// 4 sequences of 5 tokens with every row an output, its tokens equal the argmax of what
/// `decode` gives for the same batch (and the greedy sampler's pick); `logits` is refused
/// after it, a refused batch keeps its tokens, and a `decode` brings logits back.
#[test]
fn decode_greedy_keeps_each_rows_greedy_token() {
    use rocmforge::sampling::{Sampler, SamplerChain};
    let Some(path) = common::zoo_model("llama.Q4_0.gguf") else {
        return;
    };
    let m = load(&path);
    let mut batch = Batch::new();
    for s in 0..4 {
        for p in 0..5 {
            batch.add(1 + 7 * s + 3 * p, p, &[s], true).unwrap();
        }
    }
    let mut full = context(&m, 4, KvType::F16);
    full.decode(&batch).unwrap();
    let mut greedy = context(&m, 4, KvType::F16);
    greedy.decode_greedy(&batch).unwrap();
    assert_eq!(greedy.n_outputs(), 20);
    let mut chain = SamplerChain::new(0);
    chain.add(Sampler::Greedy).unwrap();
    assert!(chain.is_greedy());
    for r in 0..20 {
        let row = full.logits(r).unwrap();
        let want = argmax(row);
        assert_eq!(chain.sample(row).unwrap(), want, "row {r}");
        assert_eq!(full.greedy_token(r).unwrap(), want, "row {r} after decode");
        assert_eq!(
            greedy.greedy_token(r).unwrap(),
            want,
            "row {r} after decode_greedy"
        );
    }
    assert_eq!(
        greedy.greedy_token(-1).unwrap(),
        full.greedy_token(19).unwrap()
    );
    let want7 = full.greedy_token(7).unwrap();
    let e = greedy.logits(0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArg(_)) && e.to_string().contains("greedy"),
        "{e}"
    );
    assert!(matches!(greedy.greedy_token(20), Err(Error::InvalidArg(_))));
    // A refused batch (a token outside the vocabulary) changes nothing.
    let mut bad = Batch::new();
    bad.add(m.hparams().n_vocab as i32, 5, &[0], true).unwrap();
    assert!(greedy.decode_greedy(&bad).is_err());
    assert_eq!(greedy.n_outputs(), 20);
    assert_eq!(
        greedy.greedy_token(3).unwrap(),
        full.greedy_token(3).unwrap()
    );
    // The next tokens: greedy and full agree again, and a plain decode keeps logits.
    let mut next = Batch::new();
    for s in 0..4 {
        next.add(full.greedy_token(5 * s + 4).unwrap() as i32, 5, &[s], true)
            .unwrap();
    }
    full.decode(&next).unwrap();
    greedy.decode_greedy(&next).unwrap();
    for r in 0..4 {
        assert_eq!(
            greedy.greedy_token(r).unwrap(),
            argmax(full.logits(r).unwrap())
        );
    }
    greedy.kv_clear();
    greedy.decode(&batch).unwrap();
    assert_eq!(argmax(greedy.logits(7).unwrap()), want7);
}
