//! Sampler chains from C: a chain is made with its seed, gets samplers appended from specs
//! (filled by the `rf_sampler_spec_*` constructors), and samples a context's logits row.

use std::ffi::c_char;
use std::mem::size_of;

use parking_lot::{Mutex, MutexGuard};

use super::args::{Versioned, input, lock_handle, non_null, read_params};
use super::context::{rf_context_t, with_context};
use super::model::model_ref;
use super::{c_str, guard, guard_void, rf_model_t, rf_status};
use crate::sampling::{SEED_RANDOM, Sampler, SamplerChain};

const _: () = assert!(RF_SEED_RANDOM == SEED_RANDOM);
use crate::{Error, Result};

/// Which sampler a `rf_sampler_spec` describes.
pub type rf_sampler_kind = i32;
/// Selects the best candidate (highest logit; the lowest id on ties). Ends a chain.
pub const RF_SAMPLER_GREEDY: rf_sampler_kind = 0;
/// Selects by a seeded draw from the softmax of the remaining candidates. Ends a chain.
pub const RF_SAMPLER_DIST: rf_sampler_kind = 1;
/// Divides logits by `temperature`; 0 or below keeps only the best candidate (greedy).
pub const RF_SAMPLER_TEMPERATURE: rf_sampler_kind = 2;
/// Keeps the `top_k` best candidates; 0 or below (or at least the vocabulary) is off.
pub const RF_SAMPLER_TOP_K: rf_sampler_kind = 3;
/// Keeps the fewest best candidates holding probability `p`; 1 is off.
pub const RF_SAMPLER_TOP_P: rf_sampler_kind = 4;
/// Keeps candidates at least `p` times as likely as the best; 0 is off.
pub const RF_SAMPLER_MIN_P: rf_sampler_kind = 5;
/// Locally typical sampling with mass `p`; 1 is off.
pub const RF_SAMPLER_TYPICAL: rf_sampler_kind = 6;
/// Repeat / frequency / presence penalties over the last `penalty_last_n` accepted tokens.
pub const RF_SAMPLER_PENALTIES: rf_sampler_kind = 7;
/// Adds `logit_bias[i].bias` to token `logit_bias[i].token` (-INFINITY bans it).
pub const RF_SAMPLER_LOGIT_BIAS: rf_sampler_kind = 8;
/// XTC: with chance `xtc_probability`, drops every candidate of probability
/// `xtc_threshold` or more but the least likely of them.
pub const RF_SAMPLER_XTC: rf_sampler_kind = 9;
/// DRY: a token continuing a repeat of the text's tail of `dry_allowed_length` tokens or more
/// loses `dry_multiplier * dry_base^(length - dry_allowed_length)`; repeats stop at the
/// tokens of `dry_model` whose text holds one of the `dry_breakers` strings.
pub const RF_SAMPLER_DRY: rf_sampler_kind = 10;

/// `seed` value that asks for a seed from the system (`rf_sampler_get_seed` reports it).
pub const RF_SEED_RANDOM: u64 = u64::MAX;

/// One token's logit bias.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_logit_bias {
    pub token: i32,
    pub bias: f32,
}

/// A sampler to append to a chain. Fill it with an `rf_sampler_spec_*` constructor; the
/// fields a kind does not use are ignored.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_sampler_spec {
    /// `sizeof(rf_sampler_spec)` as the caller was compiled.
    pub struct_size: u32,
    pub kind: rf_sampler_kind,
    pub temperature: f32,
    pub top_k: i32,
    /// TOP_P, MIN_P, TYPICAL: the probability (0 to 1).
    pub p: f32,
    /// TOP_P, MIN_P, TYPICAL, XTC: the fewest candidates to keep (0 counts as 1).
    pub min_keep: usize,
    /// PENALTIES: the window (0 is off), the repeat penalty (1 is off, must be above 0),
    /// the frequency and presence penalties (0 is off).
    pub penalty_last_n: i32,
    pub penalty_repeat: f32,
    pub penalty_freq: f32,
    pub penalty_present: f32,
    pub xtc_probability: f32,
    pub xtc_threshold: f32,
    /// LOGIT_BIAS: `n_logit_bias` entries, copied by `rf_sampler_chain_add`.
    pub logit_bias: *const rf_logit_bias,
    pub n_logit_bias: usize,
    /// DRY: the multiplier (0 is off), the base (1 or more), the shortest repeat penalised,
    /// the window of accepted tokens (0 is off), the model whose vocabulary the breakers are
    /// looked up in, and `n_dry_breakers` NUL-terminated UTF-8 breaker strings (read when the
    /// spec is added).
    pub dry_multiplier: f32,
    pub dry_base: f32,
    pub dry_allowed_length: i32,
    pub dry_last_n: i32,
    pub dry_model: *const rf_model_t,
    pub dry_breakers: *const *const c_char,
    pub n_dry_breakers: usize,
}

// SAFETY: repr(C), starts with struct_size, every field an integer, a float or a raw pointer.
unsafe impl Versioned for rf_sampler_spec {
    const MIN_SIZE: usize = size_of::<rf_sampler_spec>();
    const NAME: &'static str = "rf_sampler_spec";
}

/// Options of a new chain.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_sampler_chain_params {
    /// `sizeof(rf_sampler_chain_params)` as the caller was compiled.
    pub struct_size: u32,
    /// Seeds the chain's generator (xoshiro256**, the same stream on every platform);
    /// `RF_SEED_RANDOM` (the default) draws one.
    pub seed: u64,
}

// SAFETY: repr(C), starts with struct_size, integers only.
unsafe impl Versioned for rf_sampler_chain_params {
    const MIN_SIZE: usize = size_of::<rf_sampler_chain_params>();
    const NAME: &'static str = "rf_sampler_chain_params";
}

/// A sampler chain. Used by one thread at a time (a concurrent call fails with
/// `RF_ERR_INVALID_ARG`, as for contexts).
pub struct rf_sampler_t {
    pub(super) chain: Mutex<SamplerChain>,
}

/// Default chain options: a random seed.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_chain_params_default() -> rf_sampler_chain_params {
    super::clear_last_error();
    rf_sampler_chain_params {
        struct_size: size_of::<rf_sampler_chain_params>() as u32,
        seed: RF_SEED_RANDOM,
    }
}

fn spec(kind: rf_sampler_kind) -> rf_sampler_spec {
    rf_sampler_spec {
        struct_size: size_of::<rf_sampler_spec>() as u32,
        kind,
        temperature: 1.0,
        top_k: 0,
        p: 1.0,
        min_keep: 1,
        penalty_last_n: 0,
        penalty_repeat: 1.0,
        penalty_freq: 0.0,
        penalty_present: 0.0,
        xtc_probability: 0.0,
        xtc_threshold: 1.0,
        logit_bias: std::ptr::null(),
        n_logit_bias: 0,
        dry_multiplier: 0.0,
        dry_base: 1.75,
        dry_allowed_length: 2,
        dry_last_n: 0,
        dry_model: std::ptr::null(),
        dry_breakers: std::ptr::null(),
        n_dry_breakers: 0,
    }
}

/// The greedy selector.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_greedy() -> rf_sampler_spec {
    spec(RF_SAMPLER_GREEDY)
}

/// The seeded-draw selector.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_dist() -> rf_sampler_spec {
    spec(RF_SAMPLER_DIST)
}

/// Temperature `t` (0 or below: greedy).
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_temperature(t: f32) -> rf_sampler_spec {
    rf_sampler_spec {
        temperature: t,
        ..spec(RF_SAMPLER_TEMPERATURE)
    }
}

/// Top-k (`k` 0 or below: off).
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_top_k(k: i32) -> rf_sampler_spec {
    rf_sampler_spec {
        top_k: k,
        ..spec(RF_SAMPLER_TOP_K)
    }
}

/// Top-p (nucleus) with probability `p`, keeping at least `min_keep`.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_top_p(p: f32, min_keep: usize) -> rf_sampler_spec {
    rf_sampler_spec {
        p,
        min_keep,
        ..spec(RF_SAMPLER_TOP_P)
    }
}

/// Min-p with ratio `p`, keeping at least `min_keep`.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_min_p(p: f32, min_keep: usize) -> rf_sampler_spec {
    rf_sampler_spec {
        p,
        min_keep,
        ..spec(RF_SAMPLER_MIN_P)
    }
}

/// Locally typical sampling with mass `p`, keeping at least `min_keep`.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_typical(p: f32, min_keep: usize) -> rf_sampler_spec {
    rf_sampler_spec {
        p,
        min_keep,
        ..spec(RF_SAMPLER_TYPICAL)
    }
}

/// Penalties over the last `last_n` accepted tokens: `repeat` (1: off), `freq` and `present`
/// (0: off), as llama.cpp applies them.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_penalties(
    last_n: i32,
    repeat: f32,
    freq: f32,
    present: f32,
) -> rf_sampler_spec {
    rf_sampler_spec {
        penalty_last_n: last_n,
        penalty_repeat: repeat,
        penalty_freq: freq,
        penalty_present: present,
        ..spec(RF_SAMPLER_PENALTIES)
    }
}

/// Logit biases: `n` entries at `biases` (copied when the spec is added).
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_logit_bias(
    biases: *const rf_logit_bias,
    n: usize,
) -> rf_sampler_spec {
    rf_sampler_spec {
        logit_bias: biases,
        n_logit_bias: n,
        ..spec(RF_SAMPLER_LOGIT_BIAS)
    }
}

/// XTC with chance `probability` and `threshold`, keeping at least `min_keep`.
/// Thread-safe (touches no handle).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_xtc(
    probability: f32,
    threshold: f32,
    min_keep: usize,
) -> rf_sampler_spec {
    rf_sampler_spec {
        xtc_probability: probability,
        xtc_threshold: threshold,
        min_keep,
        ..spec(RF_SAMPLER_XTC)
    }
}

/// DRY with `multiplier` (0: off), `base`, `allowed_length` and a window of `last_n`
/// accepted tokens; `breakers` (`n` NUL-terminated strings; the usual ones are newline,
/// colon, double quote and asterisk) are looked up in `model`'s vocabulary when the spec is
/// added.
/// Thread-safe (it only records `model`; the breakers are read by `rf_sampler_chain_add`).
#[unsafe(no_mangle)]
pub extern "C" fn rf_sampler_spec_dry(
    model: *const rf_model_t,
    multiplier: f32,
    base: f32,
    allowed_length: i32,
    last_n: i32,
    breakers: *const *const c_char,
    n: usize,
) -> rf_sampler_spec {
    rf_sampler_spec {
        dry_multiplier: multiplier,
        dry_base: base,
        dry_allowed_length: allowed_length,
        dry_last_n: last_n,
        dry_model: model,
        dry_breakers: breakers,
        n_dry_breakers: n,
        ..spec(RF_SAMPLER_DRY)
    }
}

/// A non-negative count from C.
fn count(v: i32, what: &str) -> Result<usize> {
    usize::try_from(v)
        .map_err(|_| Error::InvalidArg(format!("{what} is {v}; it must be 0 or more")))
}

/// DRY's sampler: the breaker strings resolved in the model's vocabulary.
///
/// # Safety
/// As `sampler`.
unsafe fn dry(s: &rf_sampler_spec) -> Result<Sampler> {
    // SAFETY: contract of this function.
    let model = unsafe { model_ref(s.dry_model) }?;
    // SAFETY: contract of this function.
    let ptrs = unsafe { input(s.dry_breakers, s.n_dry_breakers, "dry_breakers") }?;
    let mut strings = Vec::with_capacity(ptrs.len());
    for &p in ptrs {
        // SAFETY: contract of this function: each entry is NULL or a NUL-terminated string.
        let c = unsafe { c_str(p, "a DRY breaker") }?;
        let text = c
            .to_str()
            .map_err(|_| Error::InvalidArg("a DRY breaker is not UTF-8".into()))?;
        strings.push(text);
    }
    Ok(Sampler::Dry {
        multiplier: s.dry_multiplier,
        base: s.dry_base,
        allowed_length: count(s.dry_allowed_length, "dry_allowed_length")?,
        last_n: count(s.dry_last_n, "dry_last_n")?,
        breakers: crate::sampling::dry::breaker_tokens(model, &strings),
    })
}

/// The Rust sampler a spec describes.
///
/// # Safety
/// `s.logit_bias` must be NULL or point to `s.n_logit_bias` readable entries; for DRY,
/// `s.dry_model` NULL or a live model and `s.dry_breakers` NULL or `s.n_dry_breakers`
/// readable pointers, each NULL or a NUL-terminated string.
unsafe fn sampler(s: &rf_sampler_spec) -> Result<Sampler> {
    let p = s.p;
    let min_keep = s.min_keep;
    Ok(match s.kind {
        RF_SAMPLER_GREEDY => Sampler::Greedy,
        RF_SAMPLER_DIST => Sampler::Dist,
        RF_SAMPLER_TEMPERATURE => Sampler::Temperature(s.temperature),
        RF_SAMPLER_TOP_K => Sampler::TopK(s.top_k),
        RF_SAMPLER_TOP_P => Sampler::TopP { p, min_keep },
        RF_SAMPLER_MIN_P => Sampler::MinP { p, min_keep },
        RF_SAMPLER_TYPICAL => Sampler::Typical { p, min_keep },
        RF_SAMPLER_PENALTIES => Sampler::Penalties {
            last_n: count(s.penalty_last_n, "penalty_last_n")?,
            repeat: s.penalty_repeat,
            frequency: s.penalty_freq,
            presence: s.penalty_present,
        },
        RF_SAMPLER_LOGIT_BIAS => {
            // SAFETY: contract of this function.
            let list = unsafe { input(s.logit_bias, s.n_logit_bias, "logit_bias") }?;
            let mut out = Vec::new();
            out.try_reserve_exact(list.len())
                .map_err(|_| Error::Oom(format!("{} logit biases", list.len())))?;
            for b in list {
                let t = u32::try_from(b.token)
                    .map_err(|_| Error::InvalidArg(format!("logit bias for token {}", b.token)))?;
                out.push((t, b.bias));
            }
            Sampler::LogitBias(out)
        }
        RF_SAMPLER_XTC => Sampler::Xtc {
            probability: s.xtc_probability,
            threshold: s.xtc_threshold,
            min_keep,
        },
        // SAFETY: contract of this function.
        RF_SAMPLER_DRY => unsafe { dry(s) }?,
        k => {
            return Err(Error::InvalidArg(format!(
                "kind {k} is not a rf_sampler_kind"
            )));
        }
    })
}

/// Makes an empty chain with `params` (NULL: defaults). On success `*out` receives it, freed
/// with `rf_sampler_free`. Statuses: `RF_OK`, `RF_ERR_INVALID_ARG`.
/// Thread-safe.
///
/// # Safety
/// `params` must be NULL or a valid `rf_sampler_chain_params`; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_sampler_chain_new(
    params: *const rf_sampler_chain_params,
    out: *mut *mut rf_sampler_t,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let p = unsafe { read_params(params, rf_sampler_chain_params_default()) }?;
        let out = non_null(out, "out")?;
        let handle = Box::new(rf_sampler_t {
            chain: Mutex::new(SamplerChain::new(p.seed)),
        });
        // SAFETY: out is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Locks a chain for one call, or refuses when another thread holds it.
///
/// # Safety
/// `chain` must be NULL or a live handle.
unsafe fn lock<'a>(chain: *const rf_sampler_t) -> Result<MutexGuard<'a, SamplerChain>> {
    // SAFETY: contract of this function.
    unsafe {
        lock_handle(
            chain,
            |h: &'a rf_sampler_t| &h.chain,
            "chain",
            "sampler chain",
        )
    }
}

/// Appends the sampler `spec` describes. Statuses: `RF_OK`; `RF_ERR_INVALID_ARG`, the chain
/// unchanged, for NULL arguments, a bad struct_size or kind, a parameter outside its range (a
/// probability outside 0..1, a NaN, a repeat penalty of 0 or below, a negative window or
/// token), or any sampler after a selector (greedy, dist).
/// One thread at a time per chain (a concurrent call fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `chain` must be NULL or a live handle; `spec` NULL or a valid `rf_sampler_spec` whose
/// `logit_bias` is NULL or points to `n_logit_bias` readable entries, and for DRY whose
/// `dry_model` is NULL or live and `dry_breakers` NULL or `n_dry_breakers` readable pointers
/// to NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_sampler_chain_add(
    chain: *mut rf_sampler_t,
    spec: *const rf_sampler_spec,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let mut c = unsafe { lock(chain) }?;
        if spec.is_null() {
            return Err(Error::InvalidArg("spec is NULL".into()));
        }
        // SAFETY: contract of this function (the default is never used: spec is non-NULL).
        let s = unsafe { read_params(spec, rf_sampler_spec_greedy()) }?;
        // SAFETY: contract of this function.
        c.add(unsafe { sampler(&s) }?)
    })
}

/// Samples output row `i` (-1: the last) of the context's last decode and writes the token
/// to `*out_token`. Does not accept it: call `rf_sampler_accept` with every token kept.
/// Statuses: `RF_OK`; `RF_ERR_INVALID_ARG` (NULL arguments, no such row, a chain without a
/// final selector, every candidate excluded: all logits -inf or NaN).
/// One thread at a time per chain (a concurrent call fails with `RF_ERR_INVALID_ARG`). The context is locked for the call too.
///
/// # Safety
/// `chain` and `ctx` must be NULL or live handles; `out_token` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_sampler_sample(
    chain: *mut rf_sampler_t,
    ctx: *mut rf_context_t,
    i: i32,
    out_token: *mut i32,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let mut c = unsafe { lock(chain) }?;
        let out = non_null(out_token, "out_token")?;
        // SAFETY: contract of this function.
        let t = unsafe { with_context(ctx, |x| c.sample_context(x, i)) }?;
        // SAFETY: non-NULL and writable by contract; t < n_vocab <= i32::MAX.
        unsafe { out.write(t as i32) };
        Ok(())
    })
}

/// Samples a caller's row of `n` logits (one per vocabulary token), as `rf_sampler_sample`.
/// Statuses: `RF_OK`; `RF_ERR_INVALID_ARG` (NULL arguments, `n` 0 or over `INT32_MAX`, a chain
/// without a final selector, every candidate excluded).
/// One thread at a time per chain (a concurrent call fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `chain` must be NULL or a live handle; `logits` NULL or `n` readable floats; `out_token`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_sampler_sample_logits(
    chain: *mut rf_sampler_t,
    logits: *const f32,
    n: usize,
    out_token: *mut i32,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let mut c = unsafe { lock(chain) }?;
        let out = non_null(out_token, "out_token")?;
        // SAFETY: contract of this function.
        let row = unsafe { input(logits, n, "logits") }?;
        if i32::try_from(n).is_err() {
            return Err(Error::InvalidArg(format!("{n} logits: too many tokens")));
        }
        let t = c.sample(row)?;
        // SAFETY: non-NULL and writable by contract; t < n <= i32::MAX.
        unsafe { out.write(t as i32) };
        Ok(())
    })
}

/// Records a token the caller keeps (generated or from the prompt), for the penalties.
/// Statuses: `RF_OK`; `RF_ERR_INVALID_ARG` (NULL, a negative token).
/// One thread at a time per chain (a concurrent call fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `chain` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_sampler_accept(chain: *mut rf_sampler_t, token: i32) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let mut c = unsafe { lock(chain) }?;
        let t = u32::try_from(token)
            .map_err(|_| Error::InvalidArg(format!("token {token} is negative")))?;
        c.accept(t);
        Ok(())
    })
}

/// Returns the chain to its state after the last `rf_sampler_chain_add`: the generator at its
/// seed, no accepted tokens. Statuses: `RF_OK`, `RF_ERR_INVALID_ARG`.
/// One thread at a time per chain (a concurrent call fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `chain` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_sampler_reset(chain: *mut rf_sampler_t) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        unsafe { lock(chain) }?.reset();
        Ok(())
    })
}

/// The seed in use (the drawn one for `RF_SEED_RANDOM`), so a run can be replayed.
/// Statuses: `RF_OK`, `RF_ERR_INVALID_ARG`.
/// One thread at a time per chain (a concurrent call fails with `RF_ERR_INVALID_ARG`).
///
/// # Safety
/// `chain` must be NULL or a live handle; `out_seed` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_sampler_get_seed(
    chain: *const rf_sampler_t,
    out_seed: *mut u64,
) -> rf_status {
    guard(|| {
        // SAFETY: contract of this function.
        let c = unsafe { lock(chain) }?;
        let out = non_null(out_seed, "out_seed")?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { out.write(c.seed()) };
        Ok(())
    })
}

/// Frees a chain. NULL is a no-op.
///
/// # Safety
/// `chain` must be NULL or a live handle not in use on another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rf_sampler_free(chain: *mut rf_sampler_t) {
    guard_void(|| {
        if !chain.is_null() {
            // SAFETY: a live handle made by Box::into_raw in rf_sampler_chain_new, freed once.
            drop(unsafe { Box::from_raw(chain) });
        }
    })
}
