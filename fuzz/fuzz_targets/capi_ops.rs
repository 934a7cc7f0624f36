//! The C API as a C caller would use it, with arbitrary arguments: up to 48 calls on real
//! handles (the zoo's tiny llama) and on NULL, with NULL or real buffers whose stated
//! capacities are at most their real sizes (a larger one would be the caller's undefined
//! behaviour, which no API can check). Every call returns a status the header names, a failed
//! call leaves a message, and the handles stay usable: a valid decode works at the end.
#![no_main]

use std::ffi::CStr;
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rocmforge::capi::*;
use rocmforge_fuzz::{Bytes, zoo_model_path};

/// The model handle, loaded once per process through rf_model_load.
struct Model(*mut rf_model_t);
// SAFETY: an rf_model_t is immutable after load and documented as usable from any thread.
unsafe impl Send for Model {}
// SAFETY: as above: shared use only reads it.
unsafe impl Sync for Model {}

fn model() -> *mut rf_model_t {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let path = std::ffi::CString::new(zoo_model_path("llama.F32.gguf")).unwrap();
        let mut params = rf_model_params_default();
        params.backend = RF_BACKEND_CPU;
        let mut m = null_mut();
        // SAFETY: a NUL-terminated path, default params, a valid out pointer.
        let st = unsafe { rf_model_load(path.as_ptr(), &params, &mut m) };
        assert_eq!(st, RF_OK, "load the zoo's llama.F32.gguf");
        Model(m)
    })
    .0
}

/// Checks a call's status: a value the header names, with a message when it failed.
fn check(st: rf_status) {
    // SAFETY: rf_status_str takes any value and returns a static string.
    let name = unsafe { CStr::from_ptr(rf_status_str(st)) };
    assert!(!name.to_bytes().is_empty(), "status {st} has a name");
    assert!(
        !name.to_bytes().starts_with(b"unknown"),
        "status {st} is one of the header's"
    );
    if st != RF_OK {
        // SAFETY: the message of the calling thread's last failure, NUL-terminated.
        let msg = unsafe { CStr::from_ptr(rf_last_error_message()) };
        assert!(!msg.to_bytes().is_empty(), "a failed call ({st}) says why");
    }
}

fuzz_target!(|data: &[u8]| {
    let model = model();
    let mut b = Bytes(data);
    let mut cp = rf_context_params_default();
    cp.n_ctx = 64;
    cp.n_batch = 16;
    cp.n_seq_max = 4;
    cp.n_threads = 1;
    let mut ctx = null_mut();
    // SAFETY: a live model, valid params and out pointer.
    check(unsafe { rf_context_new(model, &cp, &mut ctx) });
    assert!(!ctx.is_null());
    let mut batch = null_mut();
    // SAFETY: a valid out pointer.
    check(unsafe { rf_batch_new(32, &mut batch) });
    // Room for a logits row of the zoo model and more (capacities go up to this).
    let mut floats = vec![0f32; 32_000];
    let mut ids = vec![0i32; 64];
    let mut text = vec![0u8; 256];
    let mut steps = 0;
    while !b.is_empty() && steps < 48 {
        steps += 1;
        // Handles: mostly the real ones, sometimes NULL.
        let c = if b.u8() % 16 == 0 { null_mut() } else { ctx };
        let m = if b.u8() % 16 == 0 {
            null()
        } else {
            model.cast_const()
        };
        let seq = i32::from(b.u8() % 8) - 2;
        let (p0, p1) = (i32::from(b.u8()) - 8, i32::from(b.u8()) - 8);
        let cap = |b: &mut Bytes<'_>, len: usize| usize::from(b.u16()) % (len + 1);
        // SAFETY (every call below): handles are live or NULL; every buffer pointer is NULL
        // or a live buffer of at least the capacity passed with it.
        let st = unsafe {
            match b.u8() % 12 {
                0 => {
                    let seqs = [seq, i32::from(b.u8() % 4)];
                    let n = usize::from(b.u8() % 3);
                    let p = if b.u8() % 8 == 0 {
                        null()
                    } else {
                        seqs.as_ptr()
                    };
                    let token = if b.u8() % 4 == 0 {
                        b.i32()
                    } else {
                        i32::from(b.u16()) % 64
                    };
                    rf_batch_add(batch, token, p0, p, n, b.u8() & 1)
                }
                1 => {
                    rf_batch_clear(batch);
                    RF_OK
                }
                2 | 3 => rf_decode(c, if b.u8() % 16 == 0 { null() } else { batch }),
                4 => {
                    let mut out: *const f32 = null();
                    let mut n = 0usize;
                    let st = rf_logits(c, i32::from(b.u8()) - 2, &mut out, &mut n);
                    if st == RF_OK {
                        assert!(!out.is_null() && n > 0);
                        // The row is readable in full.
                        let row = std::slice::from_raw_parts(out, n);
                        std::hint::black_box(row.iter().sum::<f32>());
                    }
                    st
                }
                5 => {
                    let k = cap(&mut b, floats.len());
                    let dst = if b.u8() % 8 == 0 {
                        null_mut()
                    } else {
                        floats.as_mut_ptr()
                    };
                    rf_logits_copy(c, i32::from(b.u8()) - 2, dst, k)
                }
                6 => rf_kv_seq_remove(c, seq, p0, p1),
                7 => rf_kv_seq_copy(c, seq, i32::from(b.u8() % 8) - 2, p0, p1),
                8 => match b.u8() % 3 {
                    0 => rf_kv_free(c, seq),
                    1 => rf_kv_seq_keep(c, seq),
                    _ => {
                        let (mut lo, mut hi) = (0, 0);
                        rf_kv_seq_pos_range(c, seq, &mut lo, &mut hi)
                    }
                },
                9 => {
                    let len = usize::from(b.u8());
                    let src: Vec<u8> = (0..len).map(|_| b.u8()).collect();
                    let tp = if b.u8() % 8 == 0 {
                        null()
                    } else {
                        src.as_ptr().cast()
                    };
                    let k = cap(&mut b, ids.len());
                    let mut out_len = 0usize;
                    rf_vocab_tokenize(
                        m,
                        tp,
                        len,
                        b.u8() & 1,
                        b.u8() & 1,
                        ids.as_mut_ptr(),
                        k,
                        &mut out_len,
                    )
                }
                10 => {
                    let n = usize::from(b.u8()) % (ids.len() + 1);
                    for v in ids.iter_mut().take(n) {
                        *v = if b.u8() % 8 == 0 {
                            b.i32()
                        } else {
                            i32::from(b.u8())
                        };
                    }
                    let k = cap(&mut b, text.len());
                    let buf = if b.u8() % 8 == 0 {
                        null_mut()
                    } else {
                        text.as_mut_ptr().cast()
                    };
                    let mut out_len = 0usize;
                    rf_detokenize(
                        m,
                        ids.as_ptr(),
                        n,
                        b.u8() & 1,
                        b.u8() & 1,
                        buf,
                        k,
                        &mut out_len,
                    )
                }
                _ => {
                    let k = cap(&mut b, text.len());
                    let mut out_len = 0usize;
                    let tok = if b.u8() % 4 == 0 {
                        b.i32()
                    } else {
                        i32::from(b.u8())
                    };
                    rf_token_to_piece(
                        m,
                        tok,
                        b.u8() & 1,
                        text.as_mut_ptr().cast(),
                        k,
                        &mut out_len,
                    )
                }
            }
        };
        check(st);
    }
    // SAFETY: live handles; each freed once, the batch and context before the model (which
    // stays for the process).
    unsafe {
        rf_kv_clear(ctx);
        rf_batch_clear(batch);
        let seq = [0i32];
        check(rf_batch_add(batch, 1, 0, seq.as_ptr(), 1, 1));
        assert_eq!(rf_decode(ctx, batch), RF_OK, "the context is still usable");
        rf_batch_free(batch);
        rf_context_free(ctx);
    }
});
