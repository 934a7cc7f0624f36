//! The engine at the C boundary: `rf_engine_*` and `rf_request_*`. Both handles are
//! thread-safe: any thread may submit, read, cancel or query, at the same time.

use std::ffi::{c_char, c_void};
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

use super::args::{Versioned, input, non_null, read_params, write_versioned};
use super::context::{RF_NUMERICS_BATCH_INVARIANT, numerics_of, rf_numerics};
use super::model::{model_ref, rf_model_t};
use super::sampler::rf_sampler_t;
use super::vocab::rf_chat_message;
use super::{c_str, guard, guard_void, rf_status};
use crate::context::available_threads;
use crate::engine::{FinishReason, Prompt, Request, RequestSpec};
use crate::{Engine, EngineParams, Error, Sampler, SamplerChain};

/// Why a request ended; `RF_FINISH_NONE` while it runs.
pub type rf_finish_reason = i32;
pub const RF_FINISH_NONE: rf_finish_reason = 0;
/// An end-of-generation token or a stop string.
pub const RF_FINISH_STOP: rf_finish_reason = 1;
/// `max_tokens` reached.
pub const RF_FINISH_LENGTH: rf_finish_reason = 2;
/// `rf_request_cancel`, `rf_request_free` of a running request, or `rf_engine_free`.
pub const RF_FINISH_CANCELLED: rf_finish_reason = 3;
/// The decode failed; `rf_request_next` returned the error's status and message.
pub const RF_FINISH_ERROR: rf_finish_reason = 4;

fn finish_code(f: Option<FinishReason>) -> rf_finish_reason {
    f.map_or(RF_FINISH_NONE, |f| f as i32)
}

/// Options of `rf_engine_new`. Fill with `rf_engine_params_default()`, then change fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_engine_params {
    /// `sizeof(rf_engine_params)`, set by `rf_engine_params_default()`.
    pub struct_size: u32,
    /// KV positions shared by all running requests (default 4096).
    pub n_ctx: u32,
    /// Requests generating at once (default 8); more wait in the queue.
    pub n_seq_max: u32,
    /// Tokens one step decodes at most (default 512), at least n_seq_max.
    pub n_batch: u32,
    /// Threads (0: every available core).
    pub n_threads: u32,
    /// Waiting requests at most; `rf_engine_submit` returns `RF_BUSY` beyond (default 1024).
    pub max_queued: u32,
    /// `RF_NUMERICS_BATCH_INVARIANT` (default: batching never changes a result) or
    /// `RF_NUMERICS_LLAMA_CPP`.
    pub numerics: rf_numerics,
    /// 1 (default): finished requests' KV blocks serve later prompts with the same start, and
    /// requests with a common prefix share whole blocks; 0: off.
    pub prefix_cache: u8,
}

// SAFETY: repr(C), struct_size first, only integers.
unsafe impl Versioned for rf_engine_params {
    const MIN_SIZE: usize = size_of::<rf_engine_params>();
    const NAME: &'static str = "rf_engine_params";
}

/// Called on the engine's thread with each piece of text (`len` bytes of whole UTF-8
/// characters, not NUL-terminated, valid only during the call) and `RF_FINISH_NONE`, then
/// once with `len` 0 and the finish reason. Must return quickly and must not call
/// `rf_engine_free` on its own engine.
pub type rf_piece_callback = Option<
    unsafe extern "C" fn(
        piece: *const c_char,
        len: usize,
        finish: rf_finish_reason,
        user_data: *mut c_void,
    ),
>;

/// What to generate. Fill with `rf_request_params_default()`, then set exactly one of the
/// prompt forms: `prompt` (text; tokenized with BOS and special tokens parsed), `tokens`, or
/// `messages` (rendered with the model's chat template, assistant turn opened).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_request {
    /// `sizeof(rf_request)`, set by `rf_request_params_default()`.
    pub struct_size: u32,
    /// UTF-8 text of `prompt_len` bytes.
    pub prompt: *const c_char,
    pub prompt_len: usize,
    pub tokens: *const i32,
    pub n_tokens: usize,
    pub messages: *const rf_chat_message,
    pub n_messages: usize,
    /// Copied at submission (its state and seed included); NULL: greedy.
    pub sampler: *const rf_sampler_t,
    /// Tokens to generate at most; 0: as many as the context leaves.
    pub max_tokens: u32,
    /// `n_stop` NUL-terminated UTF-8 stop strings: generation ends before the first of them
    /// appears, and none of it is emitted.
    pub stop: *const *const c_char,
    pub n_stop: usize,
    /// When set, text goes to the callback instead of `rf_request_next` (which then only
    /// reports the finish).
    pub on_piece: rf_piece_callback,
    pub user_data: *mut c_void,
    /// Non-zero: an end-of-generation token ends nothing; it is kept as a generated token
    /// (it prints nothing) and generation goes on to `max_tokens` (fixed-length runs and
    /// benchmarks; a greedy sampler then keeps its device argmax, unlike a chain that bans
    /// the end tokens). Default 0.
    pub ignore_eog: u8,
}

// SAFETY: repr(C), struct_size first, integers, raw pointers and an Option of a function
// pointer: every byte pattern is valid.
unsafe impl Versioned for rf_request {
    // The first version ended before ignore_eog.
    const MIN_SIZE: usize = std::mem::offset_of!(rf_request, ignore_eog);
    const NAME: &'static str = "rf_request";
}

/// Counts and times of one request (seconds from submission).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct rf_request_stats {
    /// The caller sets `sizeof(rf_request_stats)`.
    pub struct_size: u32,
    pub n_prompt_tokens: u64,
    /// Prompt tokens whose KV came from the prefix cache.
    pub n_cached_tokens: u64,
    pub n_generated_tokens: u64,
    pub n_preemptions: u64,
    pub queue_s: f64,
    pub first_token_s: f64,
    pub total_s: f64,
    pub finish: rf_finish_reason,
}

// SAFETY: repr(C), struct_size first, integers and floats.
unsafe impl Versioned for rf_request_stats {
    const MIN_SIZE: usize = size_of::<rf_request_stats>();
    const NAME: &'static str = "rf_request_stats";
}

/// What an engine is doing.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct rf_engine_stats {
    /// The caller sets `sizeof(rf_engine_stats)`.
    pub struct_size: u32,
    pub n_running: u64,
    pub n_waiting: u64,
    /// Blocks held by running requests.
    pub kv_blocks_used: u64,
    /// Blocks held only by the prefix cache.
    pub kv_blocks_cached: u64,
    pub kv_blocks_total: u64,
    pub n_submitted: u64,
    pub n_finished: u64,
    pub n_prompt_tokens: u64,
    pub n_generated_tokens: u64,
    pub n_preemptions: u64,
    pub n_prefix_hits: u64,
    pub n_cached_tokens: u64,
}

// SAFETY: repr(C), struct_size first, integers.
unsafe impl Versioned for rf_engine_stats {
    const MIN_SIZE: usize = size_of::<rf_engine_stats>();
    const NAME: &'static str = "rf_engine_stats";
}

/// A continuous-batching engine: one worker thread decoding many requests together.
/// Thread-safe. Keeps its model alive.
pub struct rf_engine_t {
    engine: Engine,
}

/// One submitted request. Thread-safe; stays valid after its engine is freed.
pub struct rf_request_t {
    request: Request,
}

/// Default engine options: n_ctx 4096, n_seq_max 8, n_batch 512, every core, a queue of 1024,
/// batch-invariant numerics, the prefix cache on.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_engine_params_default() -> rf_engine_params {
    super::clear_last_error();
    let d = EngineParams::default();
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    rf_engine_params {
        struct_size: size_of::<rf_engine_params>() as u32,
        n_ctx: u(d.n_ctx),
        n_seq_max: u(d.n_seq_max),
        n_batch: u(d.n_batch),
        n_threads: 0,
        max_queued: u(d.max_queued),
        numerics: RF_NUMERICS_BATCH_INVARIANT,
        prefix_cache: 1,
    }
}

/// Starts an engine on `model` with `params` (NULL: defaults). On success `*out` receives it,
/// freed with `rf_engine_free`; on failure `*out` is untouched. Statuses: `RF_OK`;
/// `RF_ERR_INVALID_ARG` (NULL model/out, bad struct_size, n_seq_max 0 or over 256, n_batch
/// below n_seq_max, max_queued 0, unknown numerics); `RF_ERR_UNSUPPORTED`; `RF_ERR_OOM`.
/// Thread-safe.
///
/// # Safety
/// `model` NULL or live; `params` NULL or a valid `rf_engine_params`; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_engine_new(
    model: *const rf_model_t,
    params: *const rf_engine_params,
    out: *mut *mut rf_engine_t,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let model = unsafe { model_ref(model) }?;
        // SAFETY: contract of this function.
        let p = unsafe { read_params(params, rf_engine_params_default()) }?;
        let out = non_null(out, "out")?;
        let numerics = numerics_of(p.numerics)?;
        let engine = Engine::new(
            Arc::clone(model),
            EngineParams {
                n_ctx: p.n_ctx as usize,
                n_seq_max: p.n_seq_max as usize,
                n_batch: p.n_batch as usize,
                n_threads: match p.n_threads {
                    0 => available_threads(),
                    n => n as usize,
                },
                max_queued: p.max_queued as usize,
                numerics,
                prefix_cache: match p.prefix_cache {
                    0 => false,
                    1 => true,
                    v => {
                        return Err(Error::InvalidArg(format!(
                            "prefix_cache is {v}; it must be 0 or 1"
                        )));
                    }
                },
                ..EngineParams::default()
            },
        )?;
        // SAFETY: out is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(Box::new(rf_engine_t { engine }))) };
        Ok(())
    })
}

/// Cancels every queued and running request (each finishes `RF_FINISH_CANCELLED`), joins
/// the worker and frees the engine. Request handles stay valid and must still be freed.
/// NULL is a no-op.
///
/// # Safety
/// `e` NULL or a live handle from `rf_engine_new`, used by no other thread during or after
/// the call; never from inside a piece callback of this engine.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_engine_free(e: *mut rf_engine_t) {
    guard_void(|| {
        if !e.is_null() {
            // SAFETY: a live handle from Box::into_raw, given up by the caller.
            drop(unsafe { Box::from_raw(e) });
        }
    });
}

/// The embedder's piece callback and its `user_data`, carried to the engine's thread.
struct PieceHook(
    unsafe extern "C" fn(*const c_char, usize, rf_finish_reason, *mut c_void),
    *mut c_void,
);
// SAFETY: the pointer is only handed back to the embedder's callback on the engine's thread;
// rf_engine_submit's contract requires that to be allowed.
unsafe impl Send for PieceHook {}

impl PieceHook {
    fn call(&self, piece: &[u8], finish: Option<FinishReason>) {
        // SAFETY: the embedder's function with its own user_data; the piece is valid for the
        // call, as documented.
        unsafe {
            (self.0)(
                piece.as_ptr().cast(),
                piece.len(),
                finish_code(finish),
                self.1,
            )
        }
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Error> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::InvalidArg(format!("{what} is not valid UTF-8")))
}

/// The Rust request a C one describes.
///
/// # Safety
/// The pointers of `r` as `rf_engine_submit` documents them.
unsafe fn spec(r: &rf_request) -> Result<RequestSpec, Error> {
    let forms = [
        !r.prompt.is_null(),
        !r.tokens.is_null(),
        !r.messages.is_null(),
    ];
    if forms.iter().filter(|&&f| f).count() != 1 {
        return Err(Error::InvalidArg(
            "set exactly one of prompt, tokens and messages".into(),
        ));
    }
    let prompt = if !r.prompt.is_null() {
        // SAFETY: contract of this function.
        let b = unsafe { input(r.prompt.cast::<u8>(), r.prompt_len, "prompt") }?;
        Prompt::Text(utf8(b, "prompt")?)
    } else if !r.tokens.is_null() {
        // SAFETY: contract of this function.
        let t = unsafe { input(r.tokens, r.n_tokens, "tokens") }?;
        let ids = t
            .iter()
            .map(|&t| {
                u32::try_from(t)
                    .map_err(|_| Error::InvalidArg(format!("prompt token {t} is negative")))
            })
            .collect::<Result<Vec<u32>, Error>>()?;
        Prompt::Tokens(ids)
    } else {
        // SAFETY: contract of this function.
        let raw = unsafe { input(r.messages, r.n_messages, "messages") }?;
        let mut msgs = Vec::with_capacity(raw.len());
        for (i, m) in raw.iter().enumerate() {
            // SAFETY: fields NULL or NUL-terminated by contract; c_str rejects NULL.
            let role = unsafe { c_str(m.role, &format!("messages[{i}].role")) }?;
            // SAFETY: as above.
            let content = unsafe { c_str(m.content, &format!("messages[{i}].content")) }?;
            msgs.push((
                utf8(role.to_bytes(), "a role")?,
                utf8(content.to_bytes(), "a content")?,
            ));
        }
        Prompt::Chat(msgs)
    };
    let sampler = if r.sampler.is_null() {
        let mut c = SamplerChain::new(0);
        c.add(Sampler::Greedy)?;
        c
    } else {
        // SAFETY: a live sampler handle by contract; lock refuses one in use elsewhere.
        let h = unsafe { &*r.sampler };
        h.chain
            .try_lock()
            .ok_or_else(|| {
                Error::InvalidArg("the sampler chain is in use by another thread".into())
            })?
            .clone()
    };
    // SAFETY: contract of this function.
    let raw = unsafe { input(r.stop, r.n_stop, "stop") }?;
    let mut stop = Vec::with_capacity(raw.len());
    for (i, &s) in raw.iter().enumerate() {
        // SAFETY: NULL or NUL-terminated by contract; c_str rejects NULL.
        let s = unsafe { c_str(s, &format!("stop[{i}]")) }?;
        stop.push(utf8(s.to_bytes(), "a stop string")?);
    }
    let on_piece = r.on_piece.map(|cb| {
        let hook = PieceHook(cb, r.user_data);
        Box::new(move |piece: &[u8], f: Option<FinishReason>| hook.call(piece, f))
            as crate::engine::PieceFn
    });
    Ok(RequestSpec {
        prompt,
        sampler,
        max_tokens: match r.max_tokens {
            0 => None,
            n => Some(n as usize),
        },
        stop,
        on_piece,
        ignore_eog: r.ignore_eog != 0,
    })
}

/// Default request: no prompt set yet, greedy, max_tokens 0 (as many as the context leaves),
/// no stop strings, no callback, end tokens end it (ignore_eog 0).
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_request_params_default() -> rf_request {
    super::clear_last_error();
    rf_request {
        struct_size: size_of::<rf_request>() as u32,
        prompt: std::ptr::null(),
        prompt_len: 0,
        tokens: std::ptr::null(),
        n_tokens: 0,
        messages: std::ptr::null(),
        n_messages: 0,
        sampler: std::ptr::null(),
        max_tokens: 0,
        stop: std::ptr::null(),
        n_stop: 0,
        on_piece: None,
        user_data: std::ptr::null_mut(),
        ignore_eog: 0,
    }
}

/// Queues a request; everything it points to is copied, so the caller may free it on return.
/// On success `*out` receives the handle (free it with `rf_request_free`). Statuses: `RF_OK`;
/// `RF_BUSY` (the queue is full; nothing queued); `RF_ERR_INVALID_ARG` (NULL engine/req/out,
/// not exactly one prompt form, an empty prompt, invalid UTF-8, a token out of range,
/// max_tokens with the prompt beyond the context, a sampler chain without a final selector
/// or in use); `RF_ERR_NOT_FOUND` (messages for a model without a chat template).
/// Thread-safe.
///
/// # Safety
/// `e` NULL or live; `req` NULL or a valid `rf_request` whose pointers are NULL or point to
/// their counts of readable items (strings NUL-terminated, `sampler` a live chain); `out`
/// NULL or writable. A callback and its `user_data` must be usable from the engine's thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_engine_submit(
    e: *const rf_engine_t,
    req: *const rf_request,
    out: *mut *mut rf_request_t,
) -> rf_status {
    guard(|| {
        if e.is_null() {
            return Err(Error::InvalidArg("engine is NULL".into()));
        }
        if req.is_null() {
            return Err(Error::InvalidArg("req is NULL".into()));
        }
        let out = non_null(out, "out")?;
        // SAFETY: non-NULL, valid by contract.
        let r = unsafe { read_params(req, rf_request_params_default()) }?;
        // SAFETY: contract of this function.
        let spec = unsafe { spec(&r) }?;
        // SAFETY: non-NULL and live by contract.
        let request = unsafe { &(*e).engine }.submit(spec)?;
        // SAFETY: out is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(Box::new(rf_request_t { request }))) };
        Ok(())
    })
}

/// Takes the request's next text: waits up to `timeout_ms` (negative: without limit; 0:
/// only looks) and writes at most `cap` bytes of whole UTF-8 characters into `buf` (no NUL),
/// their count into `*out_len`, and `RF_FINISH_NONE` into `*finish`. Once all text was taken
/// and the request ended, `*out_len` is 0 and `*finish` says why (every later call says the
/// same). A timeout gives `*out_len` 0 and `RF_FINISH_NONE`. Statuses: `RF_OK`;
/// `RF_ERR_BUFFER_TOO_SMALL` (the next character needs `*out_len` bytes; any `cap` of 4 or
/// more always fits one; nothing taken); `RF_ERR_INVALID_ARG` (NULL handle or out-pointers,
/// NULL buf with cap > 0); for `RF_FINISH_ERROR` the decode's error status with its message.
/// Thread-safe.
///
/// # Safety
/// `r` NULL or live; `buf` NULL or `cap` writable bytes; `out_len` and `finish` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_request_next(
    r: *const rf_request_t,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    timeout_ms: i32,
    finish: *mut rf_finish_reason,
) -> rf_status {
    guard(|| {
        if r.is_null() {
            return Err(Error::InvalidArg("request is NULL".into()));
        }
        let out_len = non_null(out_len, "out_len")?;
        let finish = non_null(finish, "finish")?;
        if buf.is_null() && cap > 0 {
            return Err(Error::InvalidArg(format!("buf is NULL but cap is {cap}")));
        }
        // SAFETY: non-NULL and live by contract.
        let req = unsafe { &(*r).request };
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        let (len, reason) = match req.next_bytes(cap, timeout) {
            Err(need) => {
                // SAFETY: out_len is non-NULL and writable by contract.
                unsafe { out_len.write(need) };
                return Err(Error::BufferTooSmall { need, cap });
            }
            Ok(None) => (0, None),
            Ok(Some(Ok(text))) => {
                // SAFETY: next_bytes returns at most cap bytes; buf has cap writable bytes
                // (non-NULL when text is non-empty, since cap >= text.len() >= 1).
                unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast(), text.len()) };
                (text.len(), None)
            }
            Ok(Some(Err(f))) => (0, Some(f)),
        };
        // SAFETY: both non-NULL and writable by contract.
        unsafe {
            out_len.write(len);
            finish.write(finish_code(reason));
        }
        if reason == Some(FinishReason::Error) {
            return Err(Error::Internal(req.error().unwrap_or_default()));
        }
        Ok(())
    })
}

/// Asks the engine to stop the request: it finishes `RF_FINISH_CANCELLED` (unless it already
/// finished) and its KV blocks are freed on the engine's next step. Statuses: `RF_OK`,
/// `RF_ERR_INVALID_ARG` (NULL). Thread-safe.
///
/// # Safety
/// `r` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_request_cancel(r: *const rf_request_t) -> rf_status {
    guard(|| {
        if r.is_null() {
            return Err(Error::InvalidArg("request is NULL".into()));
        }
        // SAFETY: non-NULL and live by contract.
        unsafe { &(*r).request }.cancel();
        Ok(())
    })
}

/// Fills `*out` (its struct_size set by the caller) with the request's counts, times and
/// finish reason so far. Statuses: `RF_OK`, `RF_ERR_INVALID_ARG`. Thread-safe.
///
/// # Safety
/// `r` NULL or live; `out` NULL or a writable `rf_request_stats` of its struct_size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_request_get_stats(
    r: *const rf_request_t,
    out: *mut rf_request_stats,
) -> rf_status {
    guard(|| {
        if r.is_null() {
            return Err(Error::InvalidArg("request is NULL".into()));
        }
        // SAFETY: non-NULL and live by contract.
        let req = unsafe { &(*r).request };
        let s = req.stats();
        let u = |v: usize| v as u64;
        let value = rf_request_stats {
            struct_size: size_of::<rf_request_stats>() as u32,
            n_prompt_tokens: u(s.n_prompt_tokens),
            n_cached_tokens: u(s.n_cached_tokens),
            n_generated_tokens: u(s.n_generated_tokens),
            n_preemptions: u(s.n_preemptions),
            queue_s: s.queue_s,
            first_token_s: s.first_token_s,
            total_s: s.total_s,
            finish: finish_code(req.finish_reason()),
        };
        // SAFETY: contract of this function.
        unsafe { write_versioned(out, &value) }
    })
}

/// Fills `*out` (its struct_size set by the caller) with what the engine is doing.
/// Statuses: `RF_OK`, `RF_ERR_INVALID_ARG`. Thread-safe.
///
/// # Safety
/// `e` NULL or live; `out` NULL or a writable `rf_engine_stats` of its struct_size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_engine_get_stats(
    e: *const rf_engine_t,
    out: *mut rf_engine_stats,
) -> rf_status {
    guard(|| {
        if e.is_null() {
            return Err(Error::InvalidArg("engine is NULL".into()));
        }
        // SAFETY: non-NULL and live by contract.
        let s = unsafe { &(*e).engine }.stats();
        let u = |v: usize| v as u64;
        let value = rf_engine_stats {
            struct_size: size_of::<rf_engine_stats>() as u32,
            n_running: u(s.n_running),
            n_waiting: u(s.n_waiting),
            kv_blocks_used: u(s.kv_blocks_used),
            kv_blocks_cached: u(s.kv_blocks_cached),
            kv_blocks_total: u(s.kv_blocks_total),
            n_submitted: s.n_submitted,
            n_finished: s.n_finished,
            n_prompt_tokens: s.n_prompt_tokens,
            n_generated_tokens: s.n_generated_tokens,
            n_preemptions: s.n_preemptions,
            n_prefix_hits: s.n_prefix_hits,
            n_cached_tokens: s.n_cached_tokens,
        };
        // SAFETY: contract of this function.
        unsafe { write_versioned(out, &value) }
    })
}

/// Frees a request handle; a request still running is cancelled first. NULL is a no-op.
///
/// # Safety
/// `r` NULL or a live handle from `rf_engine_submit`, used by no other thread during or
/// after the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_request_free(r: *mut rf_request_t) {
    guard_void(|| {
        if !r.is_null() {
            // SAFETY: a live handle from Box::into_raw, given up by the caller.
            drop(unsafe { Box::from_raw(r) });
        }
    });
}
