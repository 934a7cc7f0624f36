//! Contexts, batches and decoding through the C API: `rf_context_*`, `rf_batch_*`,
//! `rf_decode`, `rf_logits*` and the KV sequence calls.

use std::ffi::c_void;
use std::mem::size_of;

use parking_lot::{Mutex, MutexGuard};

use super::args::{Versioned, input, lock_handle, non_null, read_params, write_versioned};
use super::model::model_ref;
use super::{guard, guard_void, rf_model_t, rf_status};
use crate::context::available_threads;
use crate::{Batch, Context, ContextParams, Error, KvType, Numerics};

/// How the KV cache stores keys and values.
pub type rf_kv_type = i32;
/// Half precision (the default, as llama.cpp's).
pub const RF_KV_TYPE_F16: rf_kv_type = 0;
/// Single precision: twice the memory of F16.
pub const RF_KV_TYPE_F32: rf_kv_type = 1;
/// 8-bit blocks (about half the memory of F16); needs head sizes that are multiples of 32.
pub const RF_KV_TYPE_Q8_0: rf_kv_type = 2;

/// How matrix products and attention round (see `rf_context_params.numerics`).
pub type rf_numerics = i32;
/// rocmforge's own float order, the same for every token whatever the batch: a token's
/// logits do not depend on what else is decoded with it (the default). Matrix products take
/// the kernels llama.cpp uses for a single row; attention sums in f32 in two passes. Logits
/// differ from llama.cpp's by rounding.
pub const RF_NUMERICS_BATCH_INVARIANT: rf_numerics = 0;
/// The kernels llama.cpp's x86 CPU backend picks for each product's shape: logits equal
/// llama.cpp's bit for bit on x86-64 with AVX2 or AVX-512 (docs/INFERENCE-NOTES.md), and depend on the
/// batch as llama.cpp's do.
pub const RF_NUMERICS_LLAMA_CPP: rf_numerics = 1;

/// Asked between layers during `rf_decode`; return 1 to stop the decode (which then returns
/// `RF_ABORTED` with the context as before the call), 0 to go on. Called on the decoding
/// thread; must not call `rf_*` functions on the same context.
pub type rf_abort_callback = Option<unsafe extern "C" fn(user_data: *mut c_void) -> u8>;

/// Options for `rf_context_new`. Initialise with `rf_context_params_default()`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_context_params {
    /// `sizeof(rf_context_params)` as the caller was compiled; set by the default function.
    pub struct_size: u32,
    /// KV positions over all sequences (default 4096), rounded up to whole blocks of 16.
    pub n_ctx: u32,
    /// The most tokens one `rf_decode` takes (default 512).
    pub n_batch: u32,
    /// Sequence ids are 0 to n_seq_max - 1 (default 1, at most 256).
    pub n_seq_max: u32,
    /// Threads used by a decode (default, and 0: the available cores).
    pub n_threads: u32,
    /// `RF_KV_TYPE_F16` (default), `RF_KV_TYPE_F32` or `RF_KV_TYPE_Q8_0`.
    pub kv_type: rf_kv_type,
    /// Optional abort callback (NULL: none).
    pub abort_callback: rf_abort_callback,
    /// Passed to `abort_callback`.
    pub abort_callback_user_data: *mut c_void,
    /// `RF_NUMERICS_BATCH_INVARIANT` (default) or `RF_NUMERICS_LLAMA_CPP`.
    pub numerics: rf_numerics,
}

// SAFETY: repr(C), starts with struct_size, and every field accepts any byte pattern
// (integers, an Option of a function pointer, a raw pointer).
unsafe impl Versioned for rf_context_params {
    // The first version ended before numerics.
    const MIN_SIZE: usize = std::mem::offset_of!(rf_context_params, numerics);
    const NAME: &'static str = "rf_context_params";
}

/// What `rf_kv_get_stats` reports. Set `struct_size = sizeof(rf_kv_stats)` before the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_kv_stats {
    /// `sizeof(rf_kv_stats)` as the caller was compiled; set by the caller.
    pub struct_size: u32,
    /// Positions per block.
    pub block_size: u32,
    pub n_blocks_total: u64,
    pub n_blocks_used: u64,
    /// Blocks held by more than one sequence.
    pub n_blocks_shared: u64,
    /// Sequences holding at least one position.
    pub n_seqs: u64,
    /// Bytes of key and value storage over all layers.
    pub bytes_total: u64,
}

// SAFETY: repr(C), starts with struct_size, integers only.
unsafe impl Versioned for rf_kv_stats {
    const MIN_SIZE: usize = size_of::<rf_kv_stats>();
    const NAME: &'static str = "rf_kv_stats";
}

/// A decoding context: the KV cache, threads and buffers of one model. Use from one thread at
/// a time: a call while another thread is inside a call on the same context fails with
/// `RF_ERR_INVALID_ARG` ("in use") instead of racing. The context keeps its model alive.
pub struct rf_context_t {
    ctx: Mutex<Context>,
}

/// Tokens for one `rf_decode`, with positions, sequence ids and output flags. Same threading
/// rule as a context.
pub struct rf_batch_t {
    batch: Mutex<Batch>,
}

/// Default context options: n_ctx 4096, n_batch 512, n_seq_max 1, every available core, an
/// F16 cache, no abort callback, batch-invariant numerics.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_context_params_default() -> rf_context_params {
    super::clear_last_error();
    let d = ContextParams::default();
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    rf_context_params {
        struct_size: size_of::<rf_context_params>() as u32,
        n_ctx: u(d.n_ctx),
        n_batch: u(d.n_batch),
        n_seq_max: u(d.n_seq_max),
        n_threads: u(d.n_threads),
        kv_type: RF_KV_TYPE_F16,
        abort_callback: None,
        abort_callback_user_data: std::ptr::null_mut(),
        numerics: RF_NUMERICS_BATCH_INVARIANT,
    }
}

/// The Rust numerics an `rf_numerics` names; an unknown value is `InvalidArg`.
pub(super) fn numerics_of(n: rf_numerics) -> Result<Numerics, Error> {
    match n {
        RF_NUMERICS_BATCH_INVARIANT => Ok(Numerics::BatchInvariant),
        RF_NUMERICS_LLAMA_CPP => Ok(Numerics::LlamaCpp),
        n => Err(Error::InvalidArg(format!(
            "numerics {n} is not a rf_numerics"
        ))),
    }
}

/// The embedder's abort callback and its `user_data`, carried into the context.
struct AbortHook(unsafe extern "C" fn(*mut c_void) -> u8, *mut c_void);
// SAFETY: the pointer is only handed back to the embedder's callback, on whichever thread
// decodes; rf_context_new's contract requires that to be allowed.
unsafe impl Send for AbortHook {}

impl AbortHook {
    fn call(&self) -> bool {
        // SAFETY: the embedder's function with its own user_data, as documented.
        unsafe { (self.0)(self.1) != 0 }
    }
}

/// Makes a context for `model` with `params` (NULL: defaults). On success `*out` receives a
/// new context, freed with `rf_context_free`; on failure `*out` is untouched. Statuses:
/// `RF_OK`; `RF_ERR_INVALID_ARG` (NULL model/out, a bad struct_size, a size of 0 or over its
/// limit, an unknown kv_type or numerics); `RF_ERR_UNSUPPORTED` (a model loaded vocab_only,
/// a Q8_0 cache for heads that are not multiples of 32); `RF_ERR_OOM`. Thread-safe (for different contexts).
///
/// # Safety
/// `model` must be NULL or a live handle; `params` NULL or a valid `rf_context_params`; `out`
/// NULL or writable. An abort callback must be callable from the thread that decodes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_context_new(
    model: *const rf_model_t,
    params: *const rf_context_params,
    out: *mut *mut rf_context_t,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let model = unsafe { model_ref(model) }?;
        // SAFETY: contract of this function.
        let p = unsafe { read_params(params, rf_context_params_default()) }?;
        let out = non_null(out, "out")?;
        let kv_type = match p.kv_type {
            RF_KV_TYPE_F16 => KvType::F16,
            RF_KV_TYPE_F32 => KvType::F32,
            RF_KV_TYPE_Q8_0 => KvType::Q8_0,
            t => {
                return Err(Error::InvalidArg(format!(
                    "kv_type {t} is not a rf_kv_type"
                )));
            }
        };
        let numerics = numerics_of(p.numerics)?;
        let abort = p.abort_callback.map(|cb| {
            let hook = AbortHook(cb, p.abort_callback_user_data);
            Box::new(move || hook.call()) as Box<dyn FnMut() -> bool + Send>
        });
        let params = ContextParams {
            n_ctx: p.n_ctx as usize,
            n_batch: p.n_batch as usize,
            n_seq_max: p.n_seq_max as usize,
            n_threads: match p.n_threads {
                0 => available_threads(),
                n => n as usize,
            },
            kv_type,
            numerics,
            abort,
            ..ContextParams::default()
        };
        let ctx = Context::new(std::sync::Arc::clone(model), params)?;
        let handle = Box::new(rf_context_t {
            ctx: Mutex::new(ctx),
        });
        // SAFETY: out is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Frees a context and its KV cache; the model stays loaded for its other users. NULL is a
/// no-op. The handle and any logits pointer from it must not be used afterwards.
///
/// # Safety
/// `ctx` must be NULL or a live handle from `rf_context_new` not in use on another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_context_free(ctx: *mut rf_context_t) {
    guard_void(|| {
        if !ctx.is_null() {
            // SAFETY: a live handle made by Box::into_raw in rf_context_new, freed once.
            drop(unsafe { Box::from_raw(ctx) });
        }
    })
}

/// Locks a context for one call, or refuses when another thread holds it.
///
/// # Safety
/// `ctx` must be NULL or a live handle.
unsafe fn lock<'a>(ctx: *const rf_context_t) -> Result<MutexGuard<'a, Context>, Error> {
    // SAFETY: contract of this function.
    unsafe { lock_handle(ctx, |c: &'a rf_context_t| &c.ctx, "ctx", "context") }
}

/// Runs `f` on a locked context (for the other handle types' calls that read one).
///
/// # Safety
/// `ctx` must be NULL or a live handle.
pub(crate) unsafe fn with_context<T>(
    ctx: *const rf_context_t,
    f: impl FnOnce(&Context) -> Result<T, Error>,
) -> Result<T, Error> {
    // SAFETY: contract of this function.
    let c = unsafe { lock(ctx) }?;
    f(&c)
}

/// Makes a batch that holds up to `capacity` tokens (1 or more). On success `*out` receives
/// it, freed with `rf_batch_free`. Statuses: `RF_OK`, `RF_ERR_INVALID_ARG`.
/// Thread-safe.
///
/// # Safety
/// `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_batch_new(capacity: usize, out: *mut *mut rf_batch_t) -> rf_status {
    guard(|| {
        let out = non_null(out, "out")?;
        if capacity == 0 || capacity > crate::context::MAX_CTX {
            return Err(Error::InvalidArg(format!(
                "batch capacity {capacity} (1 to {})",
                crate::context::MAX_CTX
            )));
        }
        let handle = Box::new(rf_batch_t {
            batch: Mutex::new(Batch::with_capacity(capacity)),
        });
        // SAFETY: out is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Locks a batch for one call.
///
/// # Safety
/// `b` must be NULL or a live handle.
unsafe fn lock_batch<'a>(b: *const rf_batch_t) -> Result<MutexGuard<'a, Batch>, Error> {
    // SAFETY: contract of this function.
    unsafe { lock_handle(b, |h: &'a rf_batch_t| &h.batch, "batch", "batch") }
}

/// Appends a token at position `pos` to the sequences `seq_ids[0..n_seq_ids]` (1 to 256 of
/// them; the token attends over the first one's cache and its keys and values go to all);
/// `output` 1 asks for its logits. Token, position and sequence ids are checked by
/// `rf_decode`. Statuses: `RF_OK`; `RF_ERR_INVALID_ARG` (NULL, a full batch, no sequence id).
/// One thread at a time per batch (a concurrent call fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `batch` must be NULL or a live handle; `seq_ids` NULL or `n_seq_ids` readable values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_batch_add(
    batch: *mut rf_batch_t,
    token: i32,
    pos: i32,
    seq_ids: *const i32,
    n_seq_ids: usize,
    output: u8,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let mut b = unsafe { lock_batch(batch) }?;
        // SAFETY: contract of this function.
        let seqs = unsafe { input(seq_ids, n_seq_ids, "seq_ids") }?;
        b.add(token, pos, seqs, output != 0)
    })
}

/// Removes every token from a batch (its capacity stays). NULL is a no-op.
/// One thread at a time per batch (a concurrent call fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `batch` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_batch_clear(batch: *mut rf_batch_t) {
    guard_void(|| {
        // SAFETY: contract of this function.
        if let Ok(mut b) = unsafe { lock_batch(batch) } {
            b.clear();
        }
    })
}

/// Frees a batch. NULL is a no-op.
///
/// # Safety
/// `batch` must be NULL or a live handle from `rf_batch_new` not in use on another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_batch_free(batch: *mut rf_batch_t) {
    guard_void(|| {
        if !batch.is_null() {
            // SAFETY: a live handle made by Box::into_raw in rf_batch_new, freed once.
            drop(unsafe { Box::from_raw(batch) });
        }
    })
}

/// Runs a batch through the model: stores its keys and values in the cache and computes the
/// logits of the tokens flagged for output. The batch is checked first: 1 to n_batch tokens,
/// token ids in the vocabulary, sequence ids below n_seq_max, and positions that continue each
/// sequence (an empty sequence may start at any position). All or nothing: `RF_OK`;
/// `RF_KV_FULL` (no room; nothing changed: free sequences or decode fewer tokens);
/// `RF_ABORTED` (the abort callback stopped it; nothing changed); `RF_ERR_INVALID_ARG` (a bad
/// batch, NULL, the context in use; nothing changed); `RF_ERR_MODEL_FORMAT` (the logits came
/// out NaN or infinite: the model's numbers overflow; nothing kept); `RF_ERR_UNSUPPORTED`;
/// `RF_ERR_INTERNAL`.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`). The batch is locked for the call too.
///
/// # Safety
/// `ctx` and `batch` must be NULL or live handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_decode(ctx: *mut rf_context_t, batch: *const rf_batch_t) -> rf_status {
    // SAFETY: contract of this function.
    unsafe { decode_call(ctx, batch, false) }
}

/// `rf_decode` (`greedy` false) or `rf_decode_greedy` (true) on locked handles.
///
/// # Safety
/// `ctx` and `batch` must be NULL or live handles.
unsafe fn decode_call(ctx: *mut rf_context_t, batch: *const rf_batch_t, greedy: bool) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let mut c = unsafe { lock(ctx) }?;
        // SAFETY: contract of this function.
        let b = unsafe { lock_batch(batch) }?;
        match greedy {
            true => c.decode_greedy(&b),
            false => c.decode(&b),
        }
    })
}

/// `rf_decode` for callers that only want each output row's greedy token (highest logit,
/// lowest id on ties: what a chain of `RF_SAMPLER_GREEDY` alone picks): read them with
/// `rf_greedy_token`. The logits are not kept: `rf_logits` refuses until the next
/// `rf_decode`. With the model's output layer on a GPU the argmax runs there and only the
/// tokens are copied back (a large vocabulary's logits are megabytes a row). Same checks and
/// all-or-nothing rule as `rf_decode`; statuses: `RF_OK`, `RF_KV_FULL`, `RF_ABORTED`,
/// `RF_ERR_INVALID_ARG`, `RF_ERR_MODEL_FORMAT` (non-finite logits), `RF_ERR_UNSUPPORTED`,
/// `RF_ERR_INTERNAL`, each as `rf_decode` gives it.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`). The batch is locked for the call too.
///
/// # Safety
/// `ctx` and `batch` must be NULL or live handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_decode_greedy(
    ctx: *mut rf_context_t,
    batch: *const rf_batch_t,
) -> rf_status {
    // SAFETY: contract of this function.
    unsafe { decode_call(ctx, batch, true) }
}

/// Writes the greedy token of output row `i` (-1: the last) of the last successful decode
/// to `*out_token`: after `rf_decode_greedy`, or after `rf_decode` (the argmax of its logits).
/// Statuses: `RF_OK`; `RF_ERR_INVALID_ARG` (NULL, no such row).
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle; `out_token` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_greedy_token(
    ctx: *mut rf_context_t,
    i: i32,
    out_token: *mut i32,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let c = unsafe { lock(ctx) }?;
        let out = non_null(out_token, "out_token")?;
        let t = c.greedy_token(i)?;
        let t = i32::try_from(t).map_err(|_| Error::Overflow("token id".into()))?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { out.write(t) };
        Ok(())
    })
}

/// Borrows the logits of output row `i` of the last successful decode (the rows flagged for
/// output, in batch order; -1: the last): `*out` points to `*n_vocab` floats owned by the
/// context, valid until the next `rf_decode` or `rf_context_free`. Statuses: `RF_OK`;
/// `RF_ERR_INVALID_ARG` (NULL, no such row, the last decode was `rf_decode_greedy`).
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle; `out` and `n_vocab` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_logits(
    ctx: *mut rf_context_t,
    i: i32,
    out: *mut *const f32,
    n_vocab: *mut usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let c = unsafe { lock(ctx) }?;
        let out = non_null(out, "out")?;
        let n_vocab = non_null(n_vocab, "n_vocab")?;
        let row = c.logits(i)?;
        // SAFETY: both non-NULL and writable by contract. The row lives in the context's
        // logits buffer, which only the next decode (or freeing the context) replaces.
        unsafe {
            out.write(row.as_ptr());
            n_vocab.write(row.len());
        }
        Ok(())
    })
}

/// Copies the logits of output row `i` (as `rf_logits`) into `dst`, which has room for `cap`
/// floats. Statuses: `RF_OK`; `RF_ERR_BUFFER_TOO_SMALL` when `cap` is below the vocabulary
/// size (nothing written); `RF_ERR_INVALID_ARG`.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle; `dst` NULL or `cap` writable floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_logits_copy(
    ctx: *mut rf_context_t,
    i: i32,
    dst: *mut f32,
    cap: usize,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let c = unsafe { lock(ctx) }?;
        let row = c.logits(i)?;
        let dst = non_null(dst, "dst")?;
        if cap < row.len() {
            return Err(Error::BufferTooSmall {
                need: row.len(),
                cap,
            });
        }
        // SAFETY: dst is non-NULL with cap >= row.len() writable floats by contract; the
        // context's buffer and the caller's do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst, row.len()) };
        Ok(())
    })
}

/// Returns every KV block of sequence `seq_id` to the pool (a block it shares with another
/// sequence loses one holder); an empty sequence is a no-op. Statuses: `RF_OK`;
/// `RF_ERR_INVALID_ARG` (NULL, an id outside 0..n_seq_max).
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_kv_free(ctx: *mut rf_context_t, seq_id: i32) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        unsafe { lock(ctx) }?.kv_free(seq_id)
    })
}

/// Drops positions `[p0, p1)` of sequence `seq_id`: `p0 < 0` means from its first position,
/// `p1 < 0` to its end. Truncating the tail (`rf_kv_seq_remove(ctx, s, n, -1)`) is the common
/// use; the next token of the sequence then continues at the last position left + 1 (n, when
/// it held 0..n-1 before). A range removed from the middle leaves a hole that attention skips.
/// A block cut at a boundary stays; blocks no held position needs go back to the pool at once.
/// Statuses: `RF_OK`; `RF_ERR_INVALID_ARG` (NULL, an id outside 0..n_seq_max, `0 <= p1 < p0`),
/// which changes nothing.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_kv_seq_remove(
    ctx: *mut rf_context_t,
    seq_id: i32,
    p0: i32,
    p1: i32,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        unsafe { lock(ctx) }?.kv_seq_remove(seq_id, p0, p1)
    })
}

/// Makes sequence `dst` hold exactly the positions of `src` within `[p0, p1)` (conventions of
/// `rf_kv_seq_remove`), sharing `src`'s KV blocks: no keys or values are copied until one of
/// the two sequences writes into a block they share, and then only that block
/// (copy-on-write). What `dst` held before is dropped. The usual use: decode a shared prompt
/// once in one sequence, copy it to the others, continue each with its own tokens.
/// Statuses: `RF_OK`; `RF_ERR_INVALID_ARG` (NULL, an id outside 0..n_seq_max, `src == dst`,
/// `0 <= p1 < p0`), which changes nothing.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_kv_seq_copy(
    ctx: *mut rf_context_t,
    src: i32,
    dst: i32,
    p0: i32,
    p1: i32,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        unsafe { lock(ctx) }?.kv_seq_copy(src, dst, p0, p1)
    })
}

/// Drops every sequence but `seq_id`. Statuses: `RF_OK`; `RF_ERR_INVALID_ARG` (NULL, an id
/// outside 0..n_seq_max), which changes nothing.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_kv_seq_keep(ctx: *mut rf_context_t, seq_id: i32) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        unsafe { lock(ctx) }?.kv_seq_keep(seq_id)
    })
}

/// Empties every sequence of the cache. Statuses: `RF_OK`, `RF_ERR_INVALID_ARG`.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_kv_clear(ctx: *mut rf_context_t) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        unsafe { lock(ctx) }?.kv_clear();
        Ok(())
    })
}

/// The first and last position sequence `seq_id` holds; both -1 when it is empty. Statuses:
/// `RF_OK`, `RF_ERR_INVALID_ARG`.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle; `pos_min` and `pos_max` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_kv_seq_pos_range(
    ctx: *mut rf_context_t,
    seq_id: i32,
    pos_min: *mut i32,
    pos_max: *mut i32,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let c = unsafe { lock(ctx) }?;
        let (lo, hi) = (non_null(pos_min, "pos_min")?, non_null(pos_max, "pos_max")?);
        let (a, b) = c.kv_pos_range(seq_id)?.unwrap_or((-1, -1));
        // SAFETY: non-NULL and writable by contract.
        unsafe {
            lo.write(a);
            hi.write(b);
        }
        Ok(())
    })
}

/// Fills `*out` with the cache's block accounting. The caller sets `out->struct_size` first.
/// Statuses: `RF_OK`, `RF_ERR_INVALID_ARG`.
/// One thread at a time per context (a call while another thread is inside one on the same context fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `ctx` must be NULL or a live handle; `out` NULL or a writable `rf_kv_stats` of at least
/// `out->struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_kv_get_stats(
    ctx: *mut rf_context_t,
    out: *mut rf_kv_stats,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { lock(ctx) }?.kv_stats();
        let u = |v: usize| v as u64;
        let stats = rf_kv_stats {
            struct_size: size_of::<rf_kv_stats>() as u32,
            block_size: u32::try_from(s.block_size).unwrap_or(u32::MAX),
            n_blocks_total: u(s.n_blocks_total),
            n_blocks_used: u(s.n_blocks_used),
            n_blocks_shared: u(s.n_blocks_shared),
            n_seqs: u(s.n_seqs),
            bytes_total: u(s.bytes_total),
        };
        // SAFETY: contract of this function.
        unsafe { write_versioned(out, &stats) }
    })
}
