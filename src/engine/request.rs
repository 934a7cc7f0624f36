//! A request as the caller sees it: what to generate (`RequestSpec`), and the handle that
//! streams its text, cancels it and reports its numbers (`Request`). The handle and the
//! engine's worker share one `Shared`: the worker appends text and finally a finish reason,
//! the handle takes them. A handle stays valid after the engine is gone (it then reports the
//! finish the engine gave it on the way down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::sampling::SamplerChain;
use crate::{Error, Result};

/// What the model is given.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Tokenized with the model's special tokens (BOS) and special-token parsing on.
    Text(String),
    /// Used as they are.
    Tokens(Vec<u32>),
    /// Rendered with the model's chat template (assistant turn opened), then as `Text`.
    Chat(Vec<(String, String)>),
}

/// Called on the engine's thread with each piece of text (never a broken UTF-8 character),
/// then once more with an empty piece and the finish reason. It must return quickly.
pub type PieceFn = Box<dyn FnMut(&[u8], Option<FinishReason>) + Send>;

pub struct RequestSpec {
    pub prompt: Prompt,
    /// Chooses the tokens; it is the request's own (its seed makes sampled runs repeatable).
    pub sampler: SamplerChain,
    /// Tokens to generate at most; `None`: as many as the context leaves.
    pub max_tokens: Option<usize>,
    /// Generation ends before the first of these appears; none of it is emitted.
    pub stop: Vec<String>,
    /// When set, text goes to the callback instead of `Request::next`.
    pub on_piece: Option<PieceFn>,
    /// An end-of-generation token does not end the request: it is kept as a generated token
    /// (its piece is text-less) and generation goes on to `max_tokens`. For fixed-length runs
    /// (benchmarks) that keep the sampler chain as it is, e.g. plain greedy, whose steps take
    /// their tokens on the device (a chain that bans the EOG tokens takes them on the host).
    pub ignore_eog: bool,
}

impl RequestSpec {
    pub fn new(prompt: Prompt, sampler: SamplerChain) -> RequestSpec {
        RequestSpec {
            prompt,
            sampler,
            max_tokens: None,
            stop: Vec::new(),
            on_piece: None,
            ignore_eog: false,
        }
    }
}

/// Why a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop = 1,
    /// `max_tokens` reached.
    Length = 2,
    /// `Request::cancel`, the handle dropped, or the engine shut down.
    Cancelled = 3,
    /// The decode failed; `Request::error` says why.
    Error = 4,
}

/// Counts and times of one request. Times are seconds from submission.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestStats {
    pub n_prompt_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache instead of a prefill.
    pub n_cached_tokens: usize,
    pub n_generated_tokens: usize,
    /// Times the request lost its KV blocks to older requests and was recomputed.
    pub n_preemptions: usize,
    /// Submission to the first prefill step.
    pub queue_s: f64,
    /// Submission to the first generated token (0 until there is one).
    pub first_token_s: f64,
    /// Submission to the finish (0 until finished).
    pub total_s: f64,
}

/// What `Request::next` hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Text, whole UTF-8 characters.
    Text(String),
    Finished(FinishReason),
    /// Nothing arrived within the timeout.
    Timeout,
}

#[derive(Default)]
struct State {
    text: Vec<u8>,
    finish: Option<FinishReason>,
    error: Option<String>,
    stats: RequestStats,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    cancel: AtomicBool,
    pub(crate) submitted: Instant,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            cancel: AtomicBool::new(false),
            submitted: Instant::now(),
        })
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    pub(crate) fn push_text(&self, text: &[u8]) {
        if !text.is_empty() {
            self.state.lock().text.extend_from_slice(text);
            self.ready.notify_all();
        }
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut RequestStats)) {
        f(&mut self.state.lock().stats);
    }

    pub(crate) fn elapsed(&self) -> f64 {
        self.submitted.elapsed().as_secs_f64()
    }

    /// The end; a second finish is ignored (the first reason stands).
    pub(crate) fn finish(&self, reason: FinishReason, error: Option<String>) {
        let mut s = self.state.lock();
        if s.finish.is_none() {
            s.finish = Some(reason);
            s.error = error;
            s.stats.total_s = self.elapsed();
        }
        drop(s);
        self.ready.notify_all();
    }
}

/// The caller's handle on a submitted request. Dropping it cancels the request if it is still
/// running. `Send + Sync`: any thread may wait on it or cancel it.
pub struct Request {
    pub(crate) shared: Arc<Shared>,
    /// Wakes the engine's worker to notice a cancel.
    pub(crate) wake: Arc<dyn Fn() + Send + Sync>,
}

/// Length of the longest prefix of `b` of at most `cap` bytes that ends on a character
/// boundary (`b` is valid UTF-8).
fn boundary(b: &[u8], cap: usize) -> usize {
    if cap >= b.len() {
        return b.len();
    }
    (0..=cap)
        .rev()
        .find(|&n| n == 0 || (b[n] & 0xc0) != 0x80)
        .unwrap_or(0)
}

/// Bytes of the UTF-8 character that starts with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0..0xe0 => 1 + usize::from(lead >= 0xc0),
        0xe0..0xf0 => 3,
        _ => 4,
    }
}

impl Request {
    /// Waits up to `timeout` (`None`: without limit) for text or the finish. Text comes first:
    /// the finish is reported once everything before it was taken.
    pub fn next(&self, timeout: Option<Duration>) -> Event {
        match self.next_bytes(usize::MAX, timeout) {
            Ok(Some(Ok(text))) => Event::Text(String::from_utf8_lossy(&text).into_owned()),
            Ok(Some(Err(reason))) => Event::Finished(reason),
            _ => Event::Timeout,
        }
    }

    /// As `next`, for a buffer of `cap` bytes: at most `cap` bytes of whole characters.
    /// `Err(n)`: the next character needs `n` bytes and `cap` is smaller (nothing taken).
    /// `Ok(None)`: timeout.
    pub(crate) fn next_bytes(
        &self,
        cap: usize,
        timeout: Option<Duration>,
    ) -> std::result::Result<Option<std::result::Result<Vec<u8>, FinishReason>>, usize> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.shared.state.lock();
        loop {
            if !s.text.is_empty() {
                let n = boundary(&s.text, cap);
                if n == 0 {
                    return Err(char_len(s.text[0]));
                }
                return Ok(Some(Ok(s.text.drain(..n).collect())));
            }
            if let Some(f) = s.finish {
                return Ok(Some(Err(f)));
            }
            match deadline {
                None => self.shared.ready.wait(&mut s),
                Some(d) => {
                    if self.shared.ready.wait_until(&mut s, d).timed_out()
                        && s.text.is_empty()
                        && s.finish.is_none()
                    {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Asks the engine to stop the request; its blocks are freed on the engine's next step and
    /// it finishes `Cancelled` (unless it had already finished).
    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::Release);
        (self.wake)();
    }

    /// The finish reason, once finished.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.shared.state.lock().finish
    }

    /// Why the request finished with `FinishReason::Error`.
    pub fn error(&self) -> Option<String> {
        self.shared.state.lock().error.clone()
    }

    pub fn stats(&self) -> RequestStats {
        self.shared.state.lock().stats
    }

    /// Reads everything to the end: the whole text and the finish reason.
    pub fn wait_text(&self) -> Result<(String, FinishReason)> {
        let mut text = String::new();
        loop {
            match self.next(None) {
                Event::Text(t) => text.push_str(&t),
                Event::Finished(FinishReason::Error) => {
                    return Err(Error::Internal(self.error().unwrap_or_default()));
                }
                Event::Finished(f) => return Ok((text, f)),
                Event::Timeout => {}
            }
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.finish_reason().is_none() {
            self.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::boundary;

    #[test]
    fn cuts_fall_between_characters() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        let cuts: Vec<usize> = (0..=10).map(|c| boundary(s, c)).collect();
        assert_eq!(cuts, [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10]);
    }
}
