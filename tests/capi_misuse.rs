//! The C API's misuse matrix: every function of include/rocmforge.h called with NULL handles,
//! NULL outputs, NULL buffers with non-zero lengths, huge lengths, out-of-range ids and
//! positions, and enum values no constant names, on real handles where a handle is needed:
//! each returns its documented status (mostly `RF_ERR_INVALID_ARG`) with a message, changes
//! nothing, and never crashes. A last check parses the header and fails when a function has
//! no row here, so a new function cannot skip the matrix.

mod common;

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, c_char};
use std::ptr::{null, null_mut};

use rocmforge::capi::*;

struct Matrix {
    covered: BTreeSet<&'static str>,
    checks: usize,
}

impl Matrix {
    /// `got` must be `want`, and a failing status must leave a message.
    fn check(&mut self, f: &'static str, what: &str, got: rf_status, want: rf_status) {
        self.covered.insert(f);
        self.checks += 1;
        let msg = last_error();
        assert_eq!(got, want, "{f}: {what}: status {got} ({msg})");
        if want < 0 {
            assert!(!msg.is_empty(), "{f}: {what}: no error message");
        }
    }

    /// A call whose only contract under misuse is to return without crashing (frees of
    /// NULL, constructors of plain values).
    fn returns(&mut self, f: &'static str) {
        self.covered.insert(f);
        self.checks += 1;
    }
}

fn last_error() -> String {
    // SAFETY: the library's thread-local, NUL-terminated message.
    unsafe { CStr::from_ptr(rf_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

const BAD: rf_status = RF_ERR_INVALID_ARG;

#[test]
fn every_function_refuses_misuse_with_its_status() {
    let Some(path) = common::zoo_model("llama.F32.gguf") else {
        return;
    };
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = Matrix {
        covered: BTreeSet::new(),
        checks: 0,
    };
    let mut buf = [0 as c_char; 64];
    let mut len = 0usize;
    // SAFETY: every call passes NULL or live pointers with the sizes they name; the point of
    // the test is that the library checks the NULLs, lengths and ids itself.
    unsafe {
        // Plain values and library-wide calls.
        let _ = rf_model_params_default();
        m.returns("rf_model_params_default");
        let _ = rf_context_params_default();
        m.returns("rf_context_params_default");
        let _ = rf_engine_params_default();
        m.returns("rf_engine_params_default");
        let _ = rf_request_params_default();
        m.returns("rf_request_params_default");
        let _ = rf_sampler_chain_params_default();
        m.returns("rf_sampler_chain_params_default");
        assert!(!rf_version().is_null());
        m.returns("rf_version");
        for s in [RF_OK, BAD, -1000, 1000, i32::MIN, i32::MAX] {
            // Any value, named or not, gives a string.
            assert!(!rf_status_str(s).is_null(), "rf_status_str({s})");
        }
        m.returns("rf_status_str");
        assert!(!rf_last_error_message().is_null());
        m.returns("rf_last_error_message");
        rf_log_set(None, null_mut());
        m.returns("rf_log_set");

        // Models.
        let mut model: *mut rf_model_t = null_mut();
        m.check(
            "rf_model_load",
            "NULL path",
            rf_model_load(null(), null(), &mut model),
            BAD,
        );
        m.check(
            "rf_model_load",
            "NULL out",
            rf_model_load(cpath.as_ptr(), null(), null_mut()),
            BAD,
        );
        let mut p = rf_model_params_default();
        p.backend = 99;
        m.check(
            "rf_model_load",
            "backend 99",
            rf_model_load(cpath.as_ptr(), &p, &mut model),
            BAD,
        );
        let mut p = rf_model_params_default();
        p.struct_size = 1;
        m.check(
            "rf_model_load",
            "struct_size 1",
            rf_model_load(cpath.as_ptr(), &p, &mut model),
            BAD,
        );
        assert!(model.is_null(), "a failed load wrote a handle");
        m.check(
            "rf_model_load",
            "real",
            rf_model_load(cpath.as_ptr(), null(), &mut model),
            RF_OK,
        );
        rf_model_free(null_mut());
        m.returns("rf_model_free");
        let mut desc = std::mem::zeroed::<rf_model_desc>();
        m.check(
            "rf_model_describe",
            "NULL model",
            rf_model_describe(null(), &mut desc),
            BAD,
        );
        m.check(
            "rf_model_describe",
            "NULL out",
            rf_model_describe(model, null_mut()),
            BAD,
        );
        m.check(
            "rf_model_meta_count",
            "NULL model",
            rf_model_meta_count(null(), &mut len),
            BAD,
        );
        m.check(
            "rf_model_meta_count",
            "NULL out",
            rf_model_meta_count(model, null_mut()),
            BAD,
        );
        let mut n_meta = 0;
        m.check(
            "rf_model_meta_count",
            "real",
            rf_model_meta_count(model, &mut n_meta),
            RF_OK,
        );
        let mut key = |i| rf_model_meta_key(model, i, buf.as_mut_ptr(), buf.len(), &mut len);
        m.check("rf_model_meta_key", "index past the end", key(n_meta), BAD);
        m.check(
            "rf_model_meta_key",
            "index usize::MAX",
            key(usize::MAX),
            BAD,
        );
        m.check(
            "rf_model_meta_key",
            "NULL model",
            rf_model_meta_key(null(), 0, buf.as_mut_ptr(), buf.len(), &mut len),
            BAD,
        );
        m.check(
            "rf_model_meta_key",
            "NULL buffer, huge capacity",
            rf_model_meta_key(model, 0, null_mut(), usize::MAX, &mut len),
            BAD,
        );
        let arch = c"general.architecture";
        m.check(
            "rf_model_meta_str",
            "NULL key",
            rf_model_meta_str(model, null(), buf.as_mut_ptr(), buf.len(), &mut len),
            BAD,
        );
        m.check(
            "rf_model_meta_str",
            "NULL buffer, capacity 8",
            rf_model_meta_str(model, arch.as_ptr(), null_mut(), 8, &mut len),
            BAD,
        );
        m.check(
            "rf_model_meta_str",
            "absent key",
            rf_model_meta_str(
                model,
                c"no.such.key".as_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            ),
            RF_ERR_NOT_FOUND,
        );

        // Vocabulary.
        let mut toks = [0i32; 16];
        let text = c"hello";
        m.check(
            "rf_vocab_tokenize",
            "NULL model",
            rf_vocab_tokenize(
                null(),
                text.as_ptr(),
                5,
                1,
                0,
                toks.as_mut_ptr(),
                16,
                &mut len,
            ),
            BAD,
        );
        m.check(
            "rf_vocab_tokenize",
            "NULL text, length 5",
            rf_vocab_tokenize(model, null(), 5, 1, 0, toks.as_mut_ptr(), 16, &mut len),
            BAD,
        );
        m.check(
            "rf_vocab_tokenize",
            "NULL tokens, capacity 16",
            rf_vocab_tokenize(model, text.as_ptr(), 5, 1, 0, null_mut(), 16, &mut len),
            BAD,
        );
        m.check(
            "rf_vocab_tokenize",
            "NULL out_len",
            rf_vocab_tokenize(
                model,
                text.as_ptr(),
                5,
                1,
                0,
                toks.as_mut_ptr(),
                16,
                null_mut(),
            ),
            BAD,
        );
        let mut info = std::mem::zeroed::<rf_vocab_info>();
        info.struct_size = std::mem::size_of::<rf_vocab_info>() as u32;
        m.check(
            "rf_vocab_get_info",
            "NULL model",
            rf_vocab_get_info(null(), &mut info),
            BAD,
        );
        m.check(
            "rf_vocab_get_info",
            "NULL out",
            rf_vocab_get_info(model, null_mut()),
            BAD,
        );
        m.check(
            "rf_vocab_get_info",
            "real",
            rf_vocab_get_info(model, &mut info),
            RF_OK,
        );
        let n_vocab = info.n_tokens;
        for t in [-1, n_vocab, i32::MAX, i32::MIN] {
            m.check(
                "rf_token_to_piece",
                &format!("token {t}"),
                rf_token_to_piece(model, t, 0, buf.as_mut_ptr(), buf.len(), &mut len),
                BAD,
            );
            assert_eq!(rf_vocab_is_eog(model, t), 0, "rf_vocab_is_eog({t})");
        }
        m.check(
            "rf_token_to_piece",
            "NULL buffer, capacity 8",
            rf_token_to_piece(model, 0, 0, null_mut(), 8, &mut len),
            BAD,
        );
        assert_eq!(rf_vocab_is_eog(null(), 0), 0);
        m.returns("rf_vocab_is_eog");
        let bad_ids = [1, n_vocab, 2];
        m.check(
            "rf_detokenize",
            "an id past the vocabulary",
            rf_detokenize(
                model,
                bad_ids.as_ptr(),
                3,
                0,
                0,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            ),
            BAD,
        );
        m.check(
            "rf_detokenize",
            "NULL tokens, 3 of them",
            rf_detokenize(
                model,
                null(),
                3,
                0,
                0,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            ),
            BAD,
        );
        m.check(
            "rf_detokenize",
            "NULL tokens, usize::MAX of them",
            rf_detokenize(
                model,
                null(),
                usize::MAX,
                0,
                0,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            ),
            BAD,
        );
        let msg = rf_chat_message {
            role: c"user".as_ptr(),
            content: null(),
        };
        m.check(
            "rf_chat_apply_template",
            "a message with NULL content",
            rf_chat_apply_template(
                model,
                null(),
                &msg,
                1,
                1,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            ),
            BAD,
        );
        m.check(
            "rf_chat_apply_template",
            "NULL messages, 2 of them",
            rf_chat_apply_template(
                model,
                null(),
                null(),
                2,
                1,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            ),
            BAD,
        );

        // Contexts and batches.
        let mut ctx: *mut rf_context_t = null_mut();
        m.check(
            "rf_context_new",
            "NULL model",
            rf_context_new(null(), null(), &mut ctx),
            BAD,
        );
        m.check(
            "rf_context_new",
            "NULL out",
            rf_context_new(model, null(), null_mut()),
            BAD,
        );
        let mut cp = rf_context_params_default();
        cp.kv_type = 99;
        m.check(
            "rf_context_new",
            "kv_type 99",
            rf_context_new(model, &cp, &mut ctx),
            BAD,
        );
        let mut cp = rf_context_params_default();
        cp.numerics = -1;
        m.check(
            "rf_context_new",
            "numerics -1",
            rf_context_new(model, &cp, &mut ctx),
            BAD,
        );
        let mut cp = rf_context_params_default();
        cp.n_ctx = u32::MAX;
        cp.n_seq_max = 2;
        cp.n_threads = 1;
        let huge = rf_context_new(model, &cp, &mut ctx);
        assert!(huge < 0, "a context of 2^32 positions: {huge}");
        assert!(ctx.is_null(), "a failed context_new wrote a handle");
        m.returns("rf_context_new");
        let mut cp = rf_context_params_default();
        cp.n_ctx = 64;
        cp.n_seq_max = 2;
        cp.n_threads = 1;
        m.check(
            "rf_context_new",
            "real",
            rf_context_new(model, &cp, &mut ctx),
            RF_OK,
        );
        rf_context_free(null_mut());
        m.returns("rf_context_free");
        let mut batch: *mut rf_batch_t = null_mut();
        m.check(
            "rf_batch_new",
            "capacity 0",
            rf_batch_new(0, &mut batch),
            BAD,
        );
        m.check(
            "rf_batch_new",
            "capacity usize::MAX",
            rf_batch_new(usize::MAX, &mut batch),
            BAD,
        );
        m.check("rf_batch_new", "NULL out", rf_batch_new(4, null_mut()), BAD);
        m.check("rf_batch_new", "real", rf_batch_new(4, &mut batch), RF_OK);
        let s0 = [0i32];
        m.check(
            "rf_batch_add",
            "NULL batch",
            rf_batch_add(null_mut(), 1, 0, s0.as_ptr(), 1, 1),
            BAD,
        );
        m.check(
            "rf_batch_add",
            "NULL sequence ids, usize::MAX of them",
            rf_batch_add(batch, 1, 0, null(), usize::MAX, 1),
            BAD,
        );
        rf_batch_clear(null_mut());
        m.returns("rf_batch_clear");
        rf_batch_free(null_mut());
        m.returns("rf_batch_free");
        for (tok, pos, seq) in [
            (-1, 0, 0),
            (n_vocab, 0, 0),
            (1, -1, 0),
            (1, 0, 2),
            (1, 0, -1),
        ] {
            rf_batch_clear(batch);
            let s = [seq];
            let added = rf_batch_add(batch, tok, pos, s.as_ptr(), 1, 1);
            // Refused when added, or at the decode: either way nothing is decoded.
            let st = if added == RF_OK {
                rf_decode(ctx, batch)
            } else {
                added
            };
            m.check(
                "rf_decode",
                &format!("token {tok} at {pos} in {seq}"),
                st,
                BAD,
            );
        }
        m.check(
            "rf_decode",
            "NULL context",
            rf_decode(null_mut(), batch),
            BAD,
        );
        m.check("rf_decode", "NULL batch", rf_decode(ctx, null()), BAD);
        rf_batch_clear(batch);
        assert_eq!(rf_batch_add(batch, 1, 0, s0.as_ptr(), 1, 1), RF_OK);
        m.check("rf_decode", "real", rf_decode(ctx, batch), RF_OK);
        let mut view: *const f32 = null();
        let mut nv = 0usize;
        for i in [1, -2, i32::MAX, i32::MIN] {
            m.check(
                "rf_logits",
                &format!("row {i}"),
                rf_logits(ctx, i, &mut view, &mut nv),
                BAD,
            );
        }
        m.check(
            "rf_logits",
            "NULL context",
            rf_logits(null_mut(), 0, &mut view, &mut nv),
            BAD,
        );
        m.check(
            "rf_logits",
            "NULL out",
            rf_logits(ctx, 0, null_mut(), &mut nv),
            BAD,
        );
        let mut dst = vec![0f32; n_vocab as usize];
        m.check(
            "rf_logits_copy",
            "NULL buffer, huge capacity",
            rf_logits_copy(ctx, 0, null_mut(), usize::MAX),
            BAD,
        );
        m.check(
            "rf_logits_copy",
            "one float short",
            rf_logits_copy(ctx, 0, dst.as_mut_ptr(), dst.len() - 1),
            RF_ERR_BUFFER_TOO_SMALL,
        );
        m.check(
            "rf_logits_copy",
            "NULL context",
            rf_logits_copy(null_mut(), 0, dst.as_mut_ptr(), dst.len()),
            BAD,
        );
        let mut token = 0i32;
        for i in [1, -2, i32::MAX, i32::MIN] {
            m.check(
                "rf_greedy_token",
                &format!("row {i}"),
                rf_greedy_token(ctx, i, &mut token),
                BAD,
            );
        }
        m.check(
            "rf_greedy_token",
            "NULL context",
            rf_greedy_token(null_mut(), 0, &mut token),
            BAD,
        );
        m.check(
            "rf_greedy_token",
            "NULL out",
            rf_greedy_token(ctx, 0, null_mut()),
            BAD,
        );
        m.check(
            "rf_decode_greedy",
            "NULL context",
            rf_decode_greedy(null_mut(), batch),
            BAD,
        );
        m.check(
            "rf_decode_greedy",
            "NULL batch",
            rf_decode_greedy(ctx, null()),
            BAD,
        );
        rf_batch_clear(batch);
        let s1 = [1i32];
        assert_eq!(rf_batch_add(batch, 1, 0, s1.as_ptr(), 1, 1), RF_OK);
        m.check(
            "rf_decode_greedy",
            "real",
            rf_decode_greedy(ctx, batch),
            RF_OK,
        );
        m.check(
            "rf_logits",
            "after rf_decode_greedy",
            rf_logits(ctx, 0, &mut view, &mut nv),
            BAD,
        );
        m.check(
            "rf_greedy_token",
            "real",
            rf_greedy_token(ctx, 0, &mut token),
            RF_OK,
        );
        assert!((0..n_vocab).contains(&token));
        m.check(
            "rf_decode_greedy",
            "token outside the vocabulary",
            {
                rf_batch_clear(batch);
                assert_eq!(rf_batch_add(batch, n_vocab, 1, s1.as_ptr(), 1, 1), RF_OK);
                rf_decode_greedy(ctx, batch)
            },
            BAD,
        );
        // Logits again for what follows (a plain decode; the sequence freed after it).
        assert_eq!(rf_kv_free(ctx, 1), RF_OK);
        rf_batch_clear(batch);
        assert_eq!(rf_batch_add(batch, 1, 0, s1.as_ptr(), 1, 1), RF_OK);
        assert_eq!(rf_decode(ctx, batch), RF_OK);
        assert_eq!(rf_kv_free(ctx, 1), RF_OK);

        // The KV cache: sequence ids outside 0..n_seq_max, positions out of order, NULLs.
        let (mut lo, mut hi) = (0i32, 0i32);
        for s in [-1, 2, i32::MAX, i32::MIN] {
            m.check(
                "rf_kv_free",
                &format!("sequence {s}"),
                rf_kv_free(ctx, s),
                BAD,
            );
            m.check(
                "rf_kv_seq_keep",
                &format!("sequence {s}"),
                rf_kv_seq_keep(ctx, s),
                BAD,
            );
            m.check(
                "rf_kv_seq_remove",
                &format!("sequence {s}"),
                rf_kv_seq_remove(ctx, s, 0, -1),
                BAD,
            );
            m.check(
                "rf_kv_seq_copy",
                &format!("sequence {s}"),
                rf_kv_seq_copy(ctx, 0, s, 0, -1),
                BAD,
            );
            m.check(
                "rf_kv_seq_pos_range",
                &format!("sequence {s}"),
                rf_kv_seq_pos_range(ctx, s, &mut lo, &mut hi),
                BAD,
            );
        }
        m.check(
            "rf_kv_seq_remove",
            "p0 > p1",
            rf_kv_seq_remove(ctx, 0, 5, 3),
            BAD,
        );
        m.check(
            "rf_kv_seq_copy",
            "onto itself",
            rf_kv_seq_copy(ctx, 0, 0, 0, -1),
            BAD,
        );
        m.check("rf_kv_free", "NULL context", rf_kv_free(null_mut(), 0), BAD);
        m.check("rf_kv_clear", "NULL context", rf_kv_clear(null_mut()), BAD);
        m.check(
            "rf_kv_seq_pos_range",
            "NULL outputs",
            rf_kv_seq_pos_range(ctx, 0, null_mut(), null_mut()),
            BAD,
        );
        let mut kvs = std::mem::zeroed::<rf_kv_stats>();
        m.check(
            "rf_kv_get_stats",
            "NULL context",
            rf_kv_get_stats(null_mut(), &mut kvs),
            BAD,
        );
        m.check(
            "rf_kv_get_stats",
            "NULL out",
            rf_kv_get_stats(ctx, null_mut()),
            BAD,
        );
        // None of the refusals changed the cache: sequence 0 still holds position 0 only.
        m.check(
            "rf_kv_seq_pos_range",
            "real",
            rf_kv_seq_pos_range(ctx, 0, &mut lo, &mut hi),
            RF_OK,
        );
        assert_eq!((lo, hi), (0, 0), "the refusals changed the cache");

        // Samplers.
        let mut chain: *mut rf_sampler_t = null_mut();
        m.check(
            "rf_sampler_chain_new",
            "NULL out",
            rf_sampler_chain_new(null(), null_mut()),
            BAD,
        );
        m.check(
            "rf_sampler_chain_new",
            "real",
            rf_sampler_chain_new(null(), &mut chain),
            RF_OK,
        );
        let mut spec = rf_sampler_spec_greedy();
        spec.kind = 99;
        m.check(
            "rf_sampler_chain_add",
            "kind 99",
            rf_sampler_chain_add(chain, &spec),
            BAD,
        );
        let spec = rf_sampler_spec_logit_bias(null(), 3);
        m.check(
            "rf_sampler_chain_add",
            "logit bias: NULL biases, 3 of them",
            rf_sampler_chain_add(chain, &spec),
            BAD,
        );
        let spec = rf_sampler_spec_top_p(f32::NAN, 1);
        m.check(
            "rf_sampler_chain_add",
            "top_p NaN",
            rf_sampler_chain_add(chain, &spec),
            BAD,
        );
        let spec = rf_sampler_spec_temperature(f32::NAN);
        m.check(
            "rf_sampler_chain_add",
            "temperature NaN",
            rf_sampler_chain_add(chain, &spec),
            BAD,
        );
        let spec = rf_sampler_spec_dry(null(), 0.8, 1.75, 2, -1, null(), 2);
        m.check(
            "rf_sampler_chain_add",
            "dry: NULL model, NULL breakers, 2 of them",
            rf_sampler_chain_add(chain, &spec),
            BAD,
        );
        m.check(
            "rf_sampler_chain_add",
            "NULL chain",
            rf_sampler_chain_add(null_mut(), &rf_sampler_spec_greedy()),
            BAD,
        );
        m.check(
            "rf_sampler_chain_add",
            "NULL spec",
            rf_sampler_chain_add(chain, null()),
            BAD,
        );
        for f in [
            rf_sampler_spec_dist as unsafe extern "C" fn() -> rf_sampler_spec,
            rf_sampler_spec_greedy,
        ] {
            let _ = f();
        }
        let _ = rf_sampler_spec_top_k(-5);
        let _ = rf_sampler_spec_min_p(2.0, 0);
        let _ = rf_sampler_spec_typical(-1.0, 0);
        let _ = rf_sampler_spec_penalties(-2, f32::NAN, 0.0, 0.0);
        let _ = rf_sampler_spec_xtc(2.0, -1.0, 0);
        for f in [
            "rf_sampler_spec_dist",
            "rf_sampler_spec_greedy",
            "rf_sampler_spec_top_k",
            "rf_sampler_spec_min_p",
            "rf_sampler_spec_typical",
            "rf_sampler_spec_penalties",
            "rf_sampler_spec_xtc",
            "rf_sampler_spec_logit_bias",
            "rf_sampler_spec_dry",
            "rf_sampler_spec_top_p",
            "rf_sampler_spec_temperature",
        ] {
            m.returns(f);
        }
        for (what, spec) in [
            ("min_p 2", rf_sampler_spec_min_p(2.0, 0)),
            ("typical -1", rf_sampler_spec_typical(-1.0, 0)),
            (
                "penalties NaN",
                rf_sampler_spec_penalties(-2, f32::NAN, 0.0, 0.0),
            ),
            ("xtc 2 / -1", rf_sampler_spec_xtc(2.0, -1.0, 0)),
        ] {
            m.check(
                "rf_sampler_chain_add",
                what,
                rf_sampler_chain_add(chain, &spec),
                BAD,
            );
        }
        // A top-k of 0 or below is documented as off, not an error.
        let spec = rf_sampler_spec_top_k(-5);
        m.check(
            "rf_sampler_chain_add",
            "top_k -5 (off)",
            rf_sampler_chain_add(chain, &spec),
            RF_OK,
        );
        let mut tok = 0i32;
        m.check(
            "rf_sampler_sample",
            "NULL chain",
            rf_sampler_sample(null_mut(), ctx, 0, &mut tok),
            BAD,
        );
        m.check(
            "rf_sampler_sample",
            "NULL context",
            rf_sampler_sample(chain, null_mut(), 0, &mut tok),
            BAD,
        );
        m.check(
            "rf_sampler_sample",
            "row 7",
            rf_sampler_sample(chain, ctx, 7, &mut tok),
            BAD,
        );
        m.check(
            "rf_sampler_sample",
            "NULL out",
            rf_sampler_sample(chain, ctx, 0, null_mut()),
            BAD,
        );
        m.check(
            "rf_sampler_sample_logits",
            "NULL logits, 8 of them",
            rf_sampler_sample_logits(chain, null(), 8, &mut tok),
            BAD,
        );
        m.check(
            "rf_sampler_sample_logits",
            "no logits",
            rf_sampler_sample_logits(chain, dst.as_ptr(), 0, &mut tok),
            BAD,
        );
        m.check(
            "rf_sampler_accept",
            "NULL chain",
            rf_sampler_accept(null_mut(), 1),
            BAD,
        );
        m.check(
            "rf_sampler_accept",
            "token -1",
            rf_sampler_accept(chain, -1),
            BAD,
        );
        m.check(
            "rf_sampler_reset",
            "NULL chain",
            rf_sampler_reset(null_mut()),
            BAD,
        );
        let mut seed = 0u64;
        m.check(
            "rf_sampler_get_seed",
            "NULL chain",
            rf_sampler_get_seed(null(), &mut seed),
            BAD,
        );
        m.check(
            "rf_sampler_get_seed",
            "NULL out",
            rf_sampler_get_seed(chain, null_mut()),
            BAD,
        );
        rf_sampler_free(null_mut());
        m.returns("rf_sampler_free");

        // The engine and its requests.
        let mut engine: *mut rf_engine_t = null_mut();
        m.check(
            "rf_engine_new",
            "NULL model",
            rf_engine_new(null(), null(), &mut engine),
            BAD,
        );
        m.check(
            "rf_engine_new",
            "NULL out",
            rf_engine_new(model, null(), null_mut()),
            BAD,
        );
        let mut ep = rf_engine_params_default();
        ep.struct_size = 3;
        m.check(
            "rf_engine_new",
            "struct_size 3",
            rf_engine_new(model, &ep, &mut engine),
            BAD,
        );
        let mut ep = rf_engine_params_default();
        ep.n_ctx = 128;
        ep.n_seq_max = 2;
        ep.n_threads = 1;
        m.check(
            "rf_engine_new",
            "real",
            rf_engine_new(model, &ep, &mut engine),
            RF_OK,
        );
        let mut req: *mut rf_request_t = null_mut();
        let mut rp = rf_request_params_default();
        m.check(
            "rf_engine_submit",
            "no prompt",
            rf_engine_submit(engine, &rp, &mut req),
            BAD,
        );
        rp.prompt = null();
        rp.prompt_len = 5;
        m.check(
            "rf_engine_submit",
            "NULL prompt, 5 bytes",
            rf_engine_submit(engine, &rp, &mut req),
            BAD,
        );
        let bad_toks = [1, n_vocab];
        rp.prompt_len = 0;
        rp.tokens = bad_toks.as_ptr();
        rp.n_tokens = 2;
        m.check(
            "rf_engine_submit",
            "a prompt token past the vocabulary",
            rf_engine_submit(engine, &rp, &mut req),
            BAD,
        );
        m.check(
            "rf_engine_submit",
            "NULL engine",
            rf_engine_submit(null(), &rp, &mut req),
            BAD,
        );
        m.check(
            "rf_engine_submit",
            "NULL request",
            rf_engine_submit(engine, null(), &mut req),
            BAD,
        );
        assert!(req.is_null(), "a refused submit wrote a handle");
        let mut fin: rf_finish_reason = 0;
        m.check(
            "rf_request_next",
            "NULL request",
            rf_request_next(null(), buf.as_mut_ptr(), buf.len(), &mut len, 0, &mut fin),
            BAD,
        );
        m.check(
            "rf_request_cancel",
            "NULL request",
            rf_request_cancel(null()),
            BAD,
        );
        let mut rs = std::mem::zeroed::<rf_request_stats>();
        m.check(
            "rf_request_get_stats",
            "NULL request",
            rf_request_get_stats(null(), &mut rs),
            BAD,
        );
        let mut es = std::mem::zeroed::<rf_engine_stats>();
        m.check(
            "rf_engine_get_stats",
            "NULL engine",
            rf_engine_get_stats(null(), &mut es),
            BAD,
        );
        m.check(
            "rf_engine_get_stats",
            "NULL out",
            rf_engine_get_stats(engine, null_mut()),
            BAD,
        );
        rf_request_free(null_mut());
        m.returns("rf_request_free");
        rf_engine_free(null_mut());
        m.returns("rf_engine_free");

        // After all of it every handle still works.
        let ok_toks = [1i32, 2];
        rp.tokens = ok_toks.as_ptr();
        rp.max_tokens = 2;
        m.check(
            "rf_engine_submit",
            "real",
            rf_engine_submit(engine, &rp, &mut req),
            RF_OK,
        );
        let mut text = vec![0 as c_char; 256];
        loop {
            let st = rf_request_next(
                req,
                text.as_mut_ptr(),
                text.len(),
                &mut len,
                10_000,
                &mut fin,
            );
            assert!(st == RF_OK, "rf_request_next: {st} ({})", last_error());
            if fin != RF_FINISH_NONE {
                break;
            }
        }
        m.check(
            "rf_request_next",
            "NULL buffer, capacity 8",
            rf_request_next(req, null_mut(), 8, &mut len, 0, &mut fin),
            BAD,
        );
        m.check(
            "rf_request_get_stats",
            "NULL out",
            rf_request_get_stats(req, null_mut()),
            BAD,
        );
        m.check(
            "rf_request_cancel",
            "finished",
            rf_request_cancel(req),
            RF_OK,
        );
        rf_request_free(req);
        rf_engine_free(engine);
        m.check("rf_sampler_reset", "real", rf_sampler_reset(chain), RF_OK);
        m.check(
            "rf_sampler_chain_add",
            "real",
            rf_sampler_chain_add(chain, &rf_sampler_spec_greedy()),
            RF_OK,
        );
        m.check(
            "rf_sampler_sample",
            "real",
            rf_sampler_sample(chain, ctx, 0, &mut tok),
            RF_OK,
        );
        m.check("rf_kv_clear", "real", rf_kv_clear(ctx), RF_OK);
        rf_sampler_free(chain);
        rf_batch_free(batch);
        rf_context_free(ctx);
        rf_model_free(model);
    }

    // Every function of the header has a row.
    let header = std::fs::read_to_string(common::root().join("include/rocmforge.h")).unwrap();
    let declared: BTreeSet<String> = header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#') && !l.starts_with('*'))
        .filter_map(|l| {
            // The declared name: the identifier starting "rf_" that an opening parenthesis
            // follows (the return type may be an rf_ type too).
            l.match_indices("rf_").find_map(|(at, _)| {
                let name: String = l[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                l[at + name.len()..].starts_with('(').then_some(name)
            })
        })
        .collect();
    let missing: Vec<_> = declared
        .iter()
        .filter(|f| !m.covered.contains(f.as_str()))
        .collect();
    assert!(declared.len() >= 60, "parsed {} functions", declared.len());
    assert!(
        missing.is_empty(),
        "functions without a misuse row: {missing:?}"
    );
    eprintln!(
        "{} checks over all {} functions of the header",
        m.checks,
        declared.len()
    );
}
