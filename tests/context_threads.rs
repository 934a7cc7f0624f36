//! Concurrent use of one context through the C API is detected and refused: while one thread
//! is inside `rf_decode` (held in its abort callback), every call on that context from
//! another thread fails with `RF_ERR_INVALID_ARG` and an "in use" message, and the first
//! decode finishes normally. A second context on the same model works meanwhile. Eight
//! threads with contexts of their own on one shared model agree with one thread, bit for bit.

mod common;

use std::ffi::{CStr, CString, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use rocmforge::capi::*;
use rocmforge::{Context, ContextParams, Model};

struct Gate {
    entered: mpsc::SyncSender<()>,
    release: mpsc::Receiver<()>,
    held: AtomicBool,
}

/// Abort callback: at its first call, says "inside" and waits to be released.
unsafe extern "C" fn hold_once(user_data: *mut c_void) -> u8 {
    // SAFETY: user_data is the Gate that outlives the decode (see the test).
    let gate = unsafe { &*(user_data as *const Gate) };
    if !gate.held.swap(true, Ordering::SeqCst) {
        gate.entered.send(()).ok();
        gate.release.recv().ok();
    }
    0
}

fn last_error() -> String {
    // SAFETY: this thread's NUL-terminated last error.
    unsafe { CStr::from_ptr(rf_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// Raw handles cross to the helper thread as integers.
#[derive(Clone, Copy)]
struct Handles(usize, usize);

#[test]
fn a_context_in_use_on_another_thread_is_refused() {
    let zoo = common::root().join("../shared/reference/zoo/llama.F32.gguf");
    if !zoo.is_file() {
        assert!(!common::in_ci(), "{} is missing under CI", zoo.display());
        return;
    }
    let path = CString::new(zoo.to_str().unwrap()).unwrap();
    let (entered_tx, entered_rx) = mpsc::sync_channel(1);
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Box::new(Gate {
        entered: entered_tx,
        release: release_rx,
        held: AtomicBool::new(false),
    });
    // SAFETY: every pointer passed below is valid for the call; handles are freed once at the
    // end, after the helper thread is joined.
    unsafe {
        let mut model = std::ptr::null_mut();
        assert_eq!(
            rf_model_load(path.as_ptr(), std::ptr::null(), &mut model),
            RF_OK
        );
        let mut p = rf_context_params_default();
        p.n_threads = 1;
        p.abort_callback = Some(hold_once);
        p.abort_callback_user_data = &*gate as *const Gate as *mut c_void;
        let mut ctx = std::ptr::null_mut();
        assert_eq!(rf_context_new(model, &p, &mut ctx), RF_OK);
        let mut batch = std::ptr::null_mut();
        assert_eq!(rf_batch_new(4, &mut batch), RF_OK);
        let seq = 0i32;
        assert_eq!(rf_batch_add(batch, 5, 0, &seq, 1, 1), RF_OK);

        let h = Handles(ctx as usize, batch as usize);
        let worker = std::thread::spawn(move || {
            let h = h;
            rf_decode(h.0 as *mut rf_context_t, h.1 as *const rf_batch_t)
        });
        entered_rx.recv().unwrap();
        // The worker is inside rf_decode now.
        let mut other_batch = std::ptr::null_mut();
        assert_eq!(rf_batch_new(4, &mut other_batch), RF_OK);
        assert_eq!(rf_batch_add(other_batch, 6, 0, &seq, 1, 1), RF_OK);
        assert_eq!(rf_decode(ctx, other_batch), RF_ERR_INVALID_ARG);
        assert!(last_error().contains("in use"), "{}", last_error());
        let (mut out, mut n) = (std::ptr::null(), 0usize);
        assert_eq!(rf_logits(ctx, -1, &mut out, &mut n), RF_ERR_INVALID_ARG);
        assert_eq!(rf_kv_free(ctx, 0), RF_ERR_INVALID_ARG);
        // Another context on the same model is independent.
        let mut p2 = rf_context_params_default();
        p2.n_threads = 1;
        let mut ctx2 = std::ptr::null_mut();
        assert_eq!(rf_context_new(model, &p2, &mut ctx2), RF_OK);
        assert_eq!(rf_decode(ctx2, other_batch), RF_OK);
        release_tx.send(()).unwrap();
        assert_eq!(worker.join().unwrap(), RF_OK);
        assert_eq!(rf_logits(ctx, -1, &mut out, &mut n), RF_OK);
        assert_eq!(n, 317);
        rf_batch_free(other_batch);
        rf_batch_free(batch);
        rf_context_free(ctx2);
        rf_context_free(ctx);
        rf_model_free(model);
    }
    drop(gate);
}

/// One run of prompt `prompt` (tokens) and `n_gen` greedy tokens on a fresh one-thread
/// context: the generated tokens and the last logits' bits.
fn greedy_run(model: &std::sync::Arc<Model>, prompt: &[u32], n_gen: usize) -> (Vec<u32>, Vec<u32>) {
    let mut ctx = Context::new(
        std::sync::Arc::clone(model),
        ContextParams {
            n_ctx: 256,
            n_threads: 1,
            ..ContextParams::default()
        },
    )
    .expect("context");
    let mut logits = common::decode_last(&mut ctx, prompt, 0);
    let mut out = Vec::with_capacity(n_gen);
    for _ in 0..n_gen {
        let t = common::argmax(&logits);
        out.push(t);
        logits = common::decode_last(&mut ctx, &[t], 0);
    }
    (out, logits.iter().map(|v| v.to_bits()).collect())
}

/// Eight threads, each with contexts of its own on one shared model, decoding greedy
/// continuations over and over for RF_STRESS_SECONDS (60 by default): every run equals the
/// same prompt's run on one thread alone, to the bit. (Under ThreadSanitizer, see
/// docs/SECURITY.md, the same test checks the sharing for data races.)
#[test]
fn eight_threads_with_their_own_contexts_agree_with_one() {
    let Some(path) = common::model(common::SMOLLM2) else {
        return;
    };
    let secs: u64 = std::env::var("RF_STRESS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let model = common::load(&path);
    let tok = model.tokenizer();
    let prompts: Vec<Vec<u32>> = (0..8)
        .map(|i| {
            tok.tokenize(
                format!("Thread {i} says: the best thing about").as_bytes(),
                true,
                false,
            )
        })
        .collect();
    let alone: Vec<_> = prompts.iter().map(|p| greedy_run(&model, p, 8)).collect();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let runs: usize = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (model, prompts, alone) = (&model, &prompts, &alone);
                sc.spawn(move || {
                    let mut n = 0;
                    // Each thread walks the prompts from its own starting point.
                    while n == 0 || std::time::Instant::now() < until {
                        let k = (t + n) % prompts.len();
                        let got = greedy_run(model, &prompts[k], 8);
                        assert!(got == alone[k], "thread {t}, run {n}: prompt {k} differs");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!("{runs} runs of 8 tokens in {secs} s on 8 threads, all equal to one thread's");
    assert!(runs >= 8);
}
