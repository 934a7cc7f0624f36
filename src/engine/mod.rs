//! The continuous-batching engine: many requests share one model and one context. Callers
//! submit requests from any thread (`Engine::submit`) and read their text from the returned
//! handles; one worker thread owns the context and, every step, decodes one batch holding the
//! next token of every generating sequence plus chunks of waiting prompts (chunked prefill),
//! within a token budget (`n_batch`). See docs/ENGINE.md for the scheduling rules.
//!
//! Results do not depend on the company a request keeps: the context's default numerics are
//! batch-invariant (every row of a product and of attention rounds the same whatever else is
//! in the batch), each request samples with its own chain, and a preempted request is
//! recomputed from its tokens, which gives back the same keys and values.

mod request;
mod schedule;
mod stop;
mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

pub use request::{Event, FinishReason, PieceFn, Prompt, Request, RequestSpec, RequestStats};
pub use stop::{Scan, StopMatcher};

use crate::context::{ContextParams, MAX_SEQ};
use crate::kv::KvType;
use crate::tokenizer::ChatMessage;
use crate::{Context, Error, Model, Numerics, Result};
use request::Shared;

pub struct EngineParams {
    /// KV positions shared by all running requests (default 4096).
    pub n_ctx: usize,
    /// Requests generating at once (default 8); more wait in the queue.
    pub n_seq_max: usize,
    /// Tokens one step decodes at most (default 512); at least `n_seq_max`.
    pub n_batch: usize,
    /// Threads of the worker's pool (default: the available cores).
    pub n_threads: usize,
    /// Requests waiting at most before `submit` says `Busy` (default 1024).
    pub max_queued: usize,
    pub kv_type: KvType,
    pub block_size: usize,
    pub numerics: Numerics,
    /// Keep finished requests' KV blocks for later prompts that start the same way, and share
    /// whole blocks between requests with a common prefix (default on).
    pub prefix_cache: bool,
}

impl Default for EngineParams {
    fn default() -> Self {
        let c = ContextParams::default();
        EngineParams {
            n_ctx: c.n_ctx,
            n_seq_max: 8,
            n_batch: c.n_batch,
            n_threads: c.n_threads,
            max_queued: 1024,
            kv_type: c.kv_type,
            block_size: c.block_size,
            numerics: c.numerics,
            prefix_cache: true,
        }
    }
}

/// What the engine is doing, for monitoring (`/metrics`). Counts are since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub n_running: usize,
    pub n_waiting: usize,
    /// Blocks held by running requests (shared ones once).
    pub kv_blocks_used: usize,
    /// Blocks held only by the prefix cache (given back whenever room is needed).
    pub kv_blocks_cached: usize,
    pub kv_blocks_total: usize,
    pub n_submitted: u64,
    pub n_finished: u64,
    /// Prompt tokens prefilled (recomputations included) and tokens generated.
    pub n_prompt_tokens: u64,
    pub n_generated_tokens: u64,
    pub n_preemptions: u64,
    /// Requests that started from cached blocks, and the prompt tokens those blocks held.
    pub n_prefix_hits: u64,
    pub n_cached_tokens: u64,
    pub n_steps: u64,
    /// Wall time the worker spent in decodes (the forward pass, logits included) and in
    /// sampling their output rows and handing the tokens out, in microseconds: with
    /// `n_steps`, where a step's time goes.
    pub decode_us: u64,
    pub sample_us: u64,
    /// Steps that only generated (every row a sequence's next token, no prompt), their
    /// tokens and their decode and sampling time in microseconds: the steady generation
    /// rate, as llama-batched-bench's S_TG measures it.
    pub gen_steps: u64,
    pub gen_step_tokens: u64,
    pub gen_step_us: u64,
}

/// A submitted request on its way to the worker.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    spec: RequestSpec,
    tokens: Vec<u32>,
    max_tokens: usize,
}

#[derive(Default)]
pub(crate) struct Queue {
    incoming: Vec<Pending>,
    shutdown: bool,
    stats: EngineStats,
}

pub(crate) struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Inner {
    fn wake(&self) {
        let _q = self.queue.lock();
        self.wake.notify_all();
    }
}

pub struct Engine {
    model: Arc<Model>,
    inner: Arc<Inner>,
    /// KV positions one request may use (the cache's whole capacity).
    capacity: usize,
    max_queued: usize,
    worker: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn new(model: Arc<Model>, params: EngineParams) -> Result<Engine> {
        if params.n_seq_max == 0 || params.n_seq_max > MAX_SEQ {
            return Err(Error::InvalidArg(format!(
                "n_seq_max is {}; it must be 1 to {MAX_SEQ}",
                params.n_seq_max
            )));
        }
        if params.n_batch < params.n_seq_max {
            return Err(Error::InvalidArg(format!(
                "n_batch ({}) must be at least n_seq_max ({}): every generating request \
                 decodes one token each step",
                params.n_batch, params.n_seq_max
            )));
        }
        if params.max_queued == 0 {
            return Err(Error::InvalidArg("max_queued must be at least 1".into()));
        }
        let ctx = Context::new(
            model.clone(),
            ContextParams {
                n_ctx: params.n_ctx,
                n_batch: params.n_batch,
                n_seq_max: params.n_seq_max,
                n_threads: params.n_threads,
                kv_type: params.kv_type,
                block_size: params.block_size,
                numerics: params.numerics,
                abort: None,
            },
        )?;
        let kv = ctx.kv_stats();
        let capacity = kv.n_blocks_total * kv.block_size;
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                stats: EngineStats {
                    kv_blocks_total: kv.n_blocks_total,
                    ..EngineStats::default()
                },
                ..Queue::default()
            }),
            wake: Condvar::new(),
        });
        let w = inner.clone();
        let prefix_cache = params.prefix_cache;
        let worker = std::thread::Builder::new()
            .name("rocmforge-engine".into())
            .spawn(move || worker::run(ctx, prefix_cache, &w))
            .map_err(|e| Error::Internal(format!("starting the engine thread: {e}")))?;
        Ok(Engine {
            model,
            inner,
            capacity,
            max_queued: params.max_queued,
            worker: Some(worker),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// KV positions one request may use: its prompt plus its generated tokens.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The prompt's tokens as the engine will feed them.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let tok = self.model.tokenizer();
        let tokens = match prompt {
            Prompt::Tokens(t) => {
                let n_vocab = tok.vocab().len();
                if let Some(bad) = t.iter().find(|&&t| t as usize >= n_vocab) {
                    return Err(Error::InvalidArg(format!(
                        "prompt token {bad} is out of range (vocabulary of {n_vocab})"
                    )));
                }
                t.clone()
            }
            Prompt::Text(text) => tok.tokenize(text.as_bytes(), true, true),
            Prompt::Chat(messages) => {
                let msgs: Vec<ChatMessage<'_>> = messages
                    .iter()
                    .map(|(role, content)| ChatMessage { role, content })
                    .collect();
                let text = self.model.apply_chat_template(None, &msgs, true)?;
                tok.tokenize(text.as_bytes(), true, true)
            }
        };
        if tokens.is_empty() {
            return Err(Error::InvalidArg("the prompt has no tokens".into()));
        }
        Ok(tokens)
    }

    /// Queues a request. Refused, with nothing queued: an empty or unknown-token prompt,
    /// a prompt plus `max_tokens` beyond `capacity` (`InvalidArg`), a full queue (`Busy`),
    /// an engine that stopped (`Internal`).
    pub fn submit(&self, spec: RequestSpec) -> Result<Request> {
        let tokens = self.prompt_tokens(&spec.prompt)?;
        let room = self.capacity.checked_sub(tokens.len()).filter(|&r| r > 0);
        let Some(room) = room else {
            return Err(Error::InvalidArg(format!(
                "the prompt has {} tokens; the engine's context holds {} (one more is needed \
                 to generate)",
                tokens.len(),
                self.capacity
            )));
        };
        let max_tokens = match spec.max_tokens {
            None => room,
            Some(0) => return Err(Error::InvalidArg("max_tokens must be at least 1".into())),
            Some(n) if n > room => {
                return Err(Error::InvalidArg(format!(
                    "max_tokens {n} with a prompt of {} tokens exceeds the context of {} \
                     (at most {room})",
                    tokens.len(),
                    self.capacity
                )));
            }
            Some(n) => n,
        };
        let shared = Shared::new();
        shared.update(|s| s.n_prompt_tokens = tokens.len());
        let mut q = self.inner.queue.lock();
        if q.shutdown {
            return Err(Error::Internal("the engine has stopped".into()));
        }
        if q.incoming.len() + q.stats.n_waiting >= self.max_queued {
            return Err(Error::Busy(format!(
                "{} requests are waiting (max_queued {})",
                q.incoming.len() + q.stats.n_waiting,
                self.max_queued
            )));
        }
        q.incoming.push(Pending {
            shared: shared.clone(),
            spec,
            tokens,
            max_tokens,
        });
        q.stats.n_submitted += 1;
        drop(q);
        self.inner.wake.notify_all();
        let inner = self.inner.clone();
        Ok(Request {
            shared,
            wake: Arc::new(move || inner.wake()),
        })
    }

    pub fn stats(&self) -> EngineStats {
        let q = self.inner.queue.lock();
        let mut s = q.stats;
        s.n_waiting += q.incoming.len();
        s
    }
}

impl Drop for Engine {
    /// Cancels what is queued and running, and joins the worker.
    fn drop(&mut self) {
        self.inner.queue.lock().shutdown = true;
        self.inner.wake.notify_all();
        if let Some(w) = self.worker.take() {
            // The worker catches its own panics; a join error cannot carry anything useful.
            let _ = w.join();
        }
    }
}
