//! The engine's C functions called as C would call them, on the zoo's tiny llama: the
//! documented statuses for NULLs, bad struct sizes, bad prompt forms, small buffers,
//! timeouts and cancel, and handles that outlive their engine.

mod common;

use std::ffi::CString;
use std::ptr;

use rocmforge::capi::*;

struct Model(*mut rf_model_t);

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: a live handle from rf_model_load, freed once.
        unsafe { rf_model_free(self.0) };
    }
}

fn load() -> Option<Model> {
    let path = common::zoo_model("llama.F32.gguf")?;
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = ptr::null_mut();
    // SAFETY: valid path, writable out.
    assert_eq!(
        unsafe { rf_model_load(c.as_ptr(), ptr::null(), &mut m) },
        RF_OK
    );
    Some(Model(m))
}

fn engine(m: &Model, max_queued: u32) -> *mut rf_engine_t {
    let mut p = rf_engine_params_default();
    p.n_ctx = 256;
    p.n_seq_max = 2;
    p.n_threads = 2;
    p.max_queued = max_queued;
    let mut e = ptr::null_mut();
    // SAFETY: live model, valid params, writable out.
    assert_eq!(unsafe { rf_engine_new(m.0, &p, &mut e) }, RF_OK);
    e
}

fn submit(e: *mut rf_engine_t, prompt: &str, max_tokens: u32) -> (rf_status, *mut rf_request_t) {
    let mut r = rf_request_params_default();
    r.prompt = prompt.as_ptr().cast();
    r.prompt_len = prompt.len();
    r.max_tokens = max_tokens;
    let mut out = ptr::null_mut();
    // SAFETY: live engine, a request whose prompt outlives the call, writable out.
    let s = unsafe { rf_engine_submit(e, &r, &mut out) };
    (s, out)
}

/// Reads to the end: the text and the finish.
fn drain(r: *mut rf_request_t) -> (Vec<u8>, rf_finish_reason) {
    let mut text = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let (mut len, mut f) = (0usize, RF_FINISH_NONE);
        // SAFETY: live request, buf of 64 writable bytes, writable outs.
        let s =
            unsafe { rf_request_next(r, buf.as_mut_ptr().cast(), buf.len(), &mut len, -1, &mut f) };
        assert_eq!(s, RF_OK);
        text.extend_from_slice(&buf[..len]);
        if f != RF_FINISH_NONE {
            return (text, f);
        }
    }
}

#[test]
fn engine_calls_report_their_documented_statuses() {
    let Some(m) = load() else { return };
    // SAFETY (whole test): every handle passed is live or NULL, every buffer sized as passed.
    unsafe {
        let mut e = ptr::null_mut();
        assert_eq!(
            rf_engine_new(ptr::null(), ptr::null(), &mut e),
            RF_ERR_INVALID_ARG
        );
        assert_eq!(
            rf_engine_new(m.0, ptr::null(), ptr::null_mut()),
            RF_ERR_INVALID_ARG
        );
        let mut p = rf_engine_params_default();
        p.struct_size = 3;
        assert_eq!(rf_engine_new(m.0, &p, &mut e), RF_ERR_INVALID_ARG);
        let mut p = rf_engine_params_default();
        p.numerics = 7;
        assert_eq!(rf_engine_new(m.0, &p, &mut e), RF_ERR_INVALID_ARG);
        assert!(e.is_null());

        let e = engine(&m, 4);
        let mut out = ptr::null_mut();
        assert_eq!(
            rf_engine_submit(e, ptr::null(), &mut out),
            RF_ERR_INVALID_ARG
        );
        // No prompt form, then two.
        let mut r = rf_request_params_default();
        assert_eq!(rf_engine_submit(e, &r, &mut out), RF_ERR_INVALID_ARG);
        let toks = [1i32, 2, 3];
        r.prompt = c"hi".as_ptr();
        r.prompt_len = 2;
        r.tokens = toks.as_ptr();
        r.n_tokens = 3;
        assert_eq!(rf_engine_submit(e, &r, &mut out), RF_ERR_INVALID_ARG);
        // Negative and out-of-range tokens, a NULL stop string, invalid UTF-8.
        let mut r = rf_request_params_default();
        let neg = [1i32, -5];
        r.tokens = neg.as_ptr();
        r.n_tokens = 2;
        assert_eq!(rf_engine_submit(e, &r, &mut out), RF_ERR_INVALID_ARG);
        let big = [1i32, i32::MAX];
        r.tokens = big.as_ptr();
        assert_eq!(rf_engine_submit(e, &r, &mut out), RF_ERR_INVALID_ARG);
        let mut r = rf_request_params_default();
        r.prompt = c"hi".as_ptr();
        r.prompt_len = 2;
        let stops = [ptr::null::<std::ffi::c_char>()];
        r.stop = stops.as_ptr();
        r.n_stop = 1;
        assert_eq!(rf_engine_submit(e, &r, &mut out), RF_ERR_INVALID_ARG);
        let mut r = rf_request_params_default();
        let bad = [0xffu8, 0xfe];
        r.prompt = bad.as_ptr().cast();
        r.prompt_len = 2;
        assert_eq!(rf_engine_submit(e, &r, &mut out), RF_ERR_INVALID_ARG);
        // max_tokens beyond the context.
        assert_eq!(submit(e, "hello", 10_000).0, RF_ERR_INVALID_ARG);
        assert!(out.is_null());

        // A good request: a zero-capacity buffer is too small, a zero timeout only looks.
        let (s, r1) = submit(e, "hello world", 12);
        assert_eq!(s, RF_OK);
        let (mut len, mut f) = (0usize, RF_FINISH_NONE);
        assert_eq!(
            rf_request_next(r1, ptr::null_mut(), 0, ptr::null_mut(), 0, &mut f),
            RF_ERR_INVALID_ARG
        );
        assert_eq!(
            rf_request_next(r1, ptr::null_mut(), 5, &mut len, 0, &mut f),
            RF_ERR_INVALID_ARG
        );
        loop {
            let s = rf_request_next(r1, ptr::null_mut(), 0, &mut len, 1000, &mut f);
            if s == RF_ERR_BUFFER_TOO_SMALL {
                assert!((1..=4).contains(&len), "{len}");
                break;
            }
            // Nothing yet (timeout) or already finished without text: both report OK.
            assert_eq!(s, RF_OK);
            if f != RF_FINISH_NONE {
                break;
            }
        }
        let (_, f1) = drain(r1);
        assert!(f1 == RF_FINISH_LENGTH || f1 == RF_FINISH_STOP, "{f1}");
        let mut st = rf_request_stats {
            struct_size: size_of::<rf_request_stats>() as u32,
            ..Default::default()
        };
        assert_eq!(rf_request_get_stats(r1, &mut st), RF_OK);
        assert_eq!(st.finish, f1);
        assert!(st.n_prompt_tokens > 0 && st.n_generated_tokens <= 12);
        st.struct_size = 0;
        assert_eq!(rf_request_get_stats(r1, &mut st), RF_ERR_INVALID_ARG);
        assert_eq!(
            rf_request_get_stats(ptr::null(), &mut st),
            RF_ERR_INVALID_ARG
        );
        assert_eq!(rf_request_cancel(ptr::null()), RF_ERR_INVALID_ARG);
        // Cancel after the finish changes nothing.
        assert_eq!(rf_request_cancel(r1), RF_OK);
        assert_eq!(drain(r1).1, f1);
        rf_request_free(r1);

        let mut es = rf_engine_stats {
            struct_size: size_of::<rf_engine_stats>() as u32,
            ..Default::default()
        };
        assert_eq!(rf_engine_get_stats(e, &mut es), RF_OK);
        assert!(es.kv_blocks_total > 0 && es.n_submitted == 1);
        assert_eq!(
            rf_engine_get_stats(ptr::null(), &mut es),
            RF_ERR_INVALID_ARG
        );

        // Requests outlive their engine: freeing it cancels them.
        let (s, r2) = submit(e, "a long story", 200);
        assert_eq!(s, RF_OK);
        rf_engine_free(e);
        assert_eq!(drain(r2).1, RF_FINISH_CANCELLED);
        rf_request_free(r2);
        rf_request_free(ptr::null_mut());
        rf_engine_free(ptr::null_mut());
    }
}

#[test]
fn a_full_queue_is_busy_and_cancel_ends_a_request() {
    let Some(m) = load() else { return };
    let e = engine(&m, 1);
    let mut held = Vec::new();
    let mut busy = false;
    for _ in 0..50 {
        let (s, r) = submit(e, "count to a thousand", 200);
        if s == RF_BUSY {
            busy = true;
            break;
        }
        assert_eq!(s, RF_OK);
        held.push(r);
    }
    assert!(busy, "the queue of one never filled");
    // SAFETY: live handles, each freed once; the engine freed last.
    unsafe {
        for &r in &held {
            assert_eq!(rf_request_cancel(r), RF_OK);
        }
        for &r in &held {
            let f = drain(r).1;
            assert!(f == RF_FINISH_CANCELLED || f == RF_FINISH_STOP, "{f}");
            rf_request_free(r);
        }
        rf_engine_free(e);
    }
}

/// `ignore_eog`: with a sampler that always picks EOS (a +100 logit bias, then greedy), a
/// request ends at once (`Stop`, nothing generated), and with `ignore_eog` goes on to
/// `max_tokens`. A caller compiled before the field (`struct_size` up to it) is accepted and
/// gets the default (0).
#[test]
fn ignore_eog_generates_to_max_tokens() {
    let Some(m) = load() else { return };
    // SAFETY (whole test): every handle passed is live, every struct sized as passed.
    unsafe {
        let mut info = rf_vocab_info {
            struct_size: size_of::<rf_vocab_info>() as u32,
            n_tokens: 0,
            bos: 0,
            eos: 0,
            eot: 0,
            pad: 0,
            add_bos: 0,
            add_eos: 0,
        };
        assert_eq!(rf_vocab_get_info(m.0, &mut info), RF_OK);
        assert!(info.eos >= 0);
        let mut chain = ptr::null_mut();
        assert_eq!(rf_sampler_chain_new(ptr::null(), &mut chain), RF_OK);
        let bias = [rf_logit_bias {
            token: info.eos,
            bias: 100.0,
        }];
        assert_eq!(
            rf_sampler_chain_add(chain, &rf_sampler_spec_logit_bias(bias.as_ptr(), 1)),
            RF_OK
        );
        assert_eq!(
            rf_sampler_chain_add(chain, &rf_sampler_spec_greedy()),
            RF_OK
        );
        let e = engine(&m, 4);
        let run = |ignore: u8, size: usize| {
            let mut r = rf_request_params_default();
            r.prompt = c"hello".as_ptr();
            r.prompt_len = 5;
            r.max_tokens = 6;
            r.sampler = chain;
            r.ignore_eog = ignore;
            r.struct_size = size as u32;
            let mut out = ptr::null_mut();
            assert_eq!(rf_engine_submit(e, &r, &mut out), RF_OK);
            let (_, f) = drain(out);
            let mut st = rf_request_stats {
                struct_size: size_of::<rf_request_stats>() as u32,
                ..Default::default()
            };
            assert_eq!(rf_request_get_stats(out, &mut st), RF_OK);
            rf_request_free(out);
            (f, st.n_generated_tokens)
        };
        let full = size_of::<rf_request>();
        assert_eq!(run(0, full), (RF_FINISH_STOP, 0));
        assert_eq!(run(1, full), (RF_FINISH_LENGTH, 6));
        // The first version's size: the field is not read.
        let old = std::mem::offset_of!(rf_request, ignore_eog);
        assert_eq!(run(1, old), (RF_FINISH_STOP, 0));
        let mut r = rf_request_params_default();
        r.prompt = c"hello".as_ptr();
        r.prompt_len = 5;
        r.struct_size = old as u32 - 1;
        let mut out = ptr::null_mut();
        assert_eq!(rf_engine_submit(e, &r, &mut out), RF_ERR_INVALID_ARG);
        rf_engine_free(e);
        rf_sampler_free(chain);
    }
}
