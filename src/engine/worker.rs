//! The engine's worker thread: owns the context, runs the steps, streams the text.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::request::{FinishReason, PieceFn, Shared};
use super::schedule::{self, SeqView};
use super::stop::{Scan, StopMatcher};
use super::{EngineStats, Inner, Pending, Queue};
use crate::sampling::SamplerChain;
use crate::tokenizer::StreamDecoder;
use crate::{Batch, Context, Error, Result};

/// Output rows from which a step samples on the context's threads (`sample_outputs`).
const PARALLEL_SAMPLING_ROWS: usize = 4;

/// One request inside the worker.
struct Seq {
    shared: Arc<Shared>,
    on_piece: Option<PieceFn>,
    /// Prompt, then every generated token: what the cache must hold to sample the next one.
    tokens: Vec<u32>,
    /// `tokens[..in_kv]` are in the cache.
    in_kv: usize,
    n_generated: usize,
    max_tokens: usize,
    /// `RequestSpec::ignore_eog`.
    ignore_eog: bool,
    sampler: SamplerChain,
    detok: StreamDecoder,
    stop: StopMatcher,
    /// Admission order (renewed when a preempted sequence comes back).
    id: u64,
    /// Sequence id in the context while running.
    slot: Option<usize>,
    started: bool,
}

impl Seq {
    fn new(p: Pending) -> Seq {
        Seq {
            stop: StopMatcher::new(&p.spec.stop),
            shared: p.shared,
            on_piece: p.spec.on_piece,
            tokens: p.tokens,
            in_kv: 0,
            n_generated: 0,
            max_tokens: p.max_tokens,
            ignore_eog: p.spec.ignore_eog,
            sampler: p.spec.sampler,
            detok: StreamDecoder::new(),
            id: 0,
            slot: None,
            started: false,
        }
    }

    fn view(&self) -> SeqView {
        SeqView {
            id: self.id,
            n_tokens: self.tokens.len(),
            in_kv: self.in_kv,
        }
    }

    /// Hands text to the callback or the handle. A panicking callback ends the request.
    fn emit(&mut self, text: &[u8]) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        match &mut self.on_piece {
            Some(f) => catch_unwind(AssertUnwindSafe(|| f(text, None)))
                .map_err(|_| Error::Internal("the request's piece callback panicked".into())),
            None => {
                self.shared.push_text(text);
                Ok(())
            }
        }
    }

    /// Text the stop matcher lets out, or the end of the request when a stop string matched.
    fn show(&mut self, text: &[u8]) -> Result<Option<FinishReason>> {
        // The decoder passes bytes that cannot form a character as they are; the stream
        // promises valid UTF-8, so they become U+FFFD here.
        let text = String::from_utf8_lossy(text);
        match self.stop.push(text.as_bytes()) {
            Scan::Release(t) => self.emit(&t).map(|_| None),
            Scan::Stopped(t) => self.emit(&t).map(|_| Some(FinishReason::Stop)),
        }
    }

    /// Releases what the decoder and the stop matcher still hold (no stop string matched).
    fn flush(&mut self) -> Result<Option<FinishReason>> {
        let mut rest = Vec::new();
        self.detok.finish(&mut rest);
        if let Some(f) = self.show(&rest)? {
            return Ok(Some(f));
        }
        let held = self.stop.finish();
        self.emit(&held).map(|_| None)
    }

    fn end(&mut self, reason: FinishReason, error: Option<String>) {
        if let Some(f) = &mut self.on_piece {
            // A panic here has nobody left to tell; the handle still gets the finish.
            let _ = catch_unwind(AssertUnwindSafe(|| f(&[], Some(reason))));
        }
        self.shared.finish(reason, error);
    }
}

/// A finished sequence left in the cache for later prompts that start the same way.
struct Idle {
    slot: usize,
    /// The tokens its KV holds, positions `0..tokens.len()`.
    tokens: Vec<u32>,
    last_used: u64,
}

struct Worker {
    ctx: Context,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    /// The prefix cache, least recently used first out.
    idle: Vec<Idle>,
    prefix_cache: bool,
    clock: u64,
    free_slots: Vec<usize>,
    next_id: u64,
    stats: EngineStats,
    batch: Batch,
    piece: Vec<u8>,
    text: Vec<u8>,
}

/// The thread's body: steps until shutdown, then cancels what is left. A panic in a step
/// ends every request with an error instead of leaving its handle waiting.
pub(super) fn run(ctx: Context, prefix_cache: bool, inner: &Inner) {
    let slots = (0..ctx.n_seq_max()).rev().collect();
    let mut w = Worker {
        batch: Batch::with_capacity(ctx.n_batch()),
        ctx,
        waiting: VecDeque::new(),
        running: Vec::new(),
        idle: Vec::new(),
        prefix_cache,
        clock: 0,
        free_slots: slots,
        next_id: 0,
        stats: inner.queue.lock().stats,
        piece: Vec::new(),
        text: Vec::new(),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| w.serve(inner)));
    let (reason, error) = match outcome {
        Ok(()) => (FinishReason::Cancelled, None),
        Err(_) => (
            FinishReason::Error,
            Some("the engine's worker panicked".to_string()),
        ),
    };
    let mut q = inner.queue.lock();
    q.shutdown = true;
    let incoming: Vec<Pending> = q.incoming.drain(..).collect();
    drop(q);
    for p in incoming {
        p.shared.finish(reason, error.clone());
    }
    for mut s in w.running.drain(..).chain(w.waiting.drain(..)) {
        s.end(reason, error.clone());
    }
}

impl Worker {
    fn serve(&mut self, inner: &Inner) {
        loop {
            {
                let mut q = inner.queue.lock();
                self.publish(&mut q);
                while !q.shutdown
                    && q.incoming.is_empty()
                    && self.running.is_empty()
                    && self.waiting.is_empty()
                {
                    inner.wake.wait(&mut q);
                }
                if q.shutdown {
                    return;
                }
                self.waiting.extend(q.incoming.drain(..).map(Seq::new));
                // Published under the same lock, so a request is always counted somewhere.
                q.stats.n_waiting = self.waiting.len();
            }
            self.step(inner);
        }
    }

    fn block_size(&self) -> usize {
        self.ctx.kv_stats().block_size
    }

    /// Ends a running sequence. Its KV stays as a prefix-cache entry when the cache is on
    /// (and it holds a whole block), otherwise its blocks and slot are freed.
    fn retire(&mut self, i: usize, reason: FinishReason, error: Option<String>) {
        let mut s = self.running.swap_remove(i);
        let bs = self.block_size();
        match s.slot {
            Some(slot) if self.prefix_cache && reason != FinishReason::Error && s.in_kv >= bs => {
                s.slot = None;
                s.tokens.truncate(s.in_kv);
                self.clock += 1;
                self.idle.push(Idle {
                    slot,
                    tokens: std::mem::take(&mut s.tokens),
                    last_used: self.clock,
                });
            }
            _ => self.release(&mut s),
        }
        s.end(reason, error);
        self.stats.n_finished += 1;
    }

    fn release(&mut self, s: &mut Seq) {
        if let Some(slot) = s.slot.take() {
            self.free_slot(slot);
        }
        s.in_kv = 0;
    }

    fn free_slot(&mut self, slot: usize) {
        // The slot id is in range by construction; freeing cannot fail for it.
        let _ = self.ctx.kv_free(slot as i32);
        self.free_slots.push(slot);
    }

    /// Drops the least recently used prefix-cache entry other than the one in slot `keep`;
    /// false when there is none.
    fn evict(&mut self, keep: Option<usize>) -> bool {
        let lru = (0..self.idle.len())
            .filter(|&i| Some(self.idle[i].slot) != keep)
            .min_by_key(|&i| self.idle[i].last_used);
        let Some(i) = lru else { return false };
        let e = self.idle.swap_remove(i);
        self.free_slot(e.slot);
        true
    }

    fn free_blocks(&self) -> usize {
        let k = self.ctx.kv_stats();
        k.n_blocks_total - k.n_blocks_used
    }

    fn growth(&self) -> usize {
        let views: Vec<SeqView> = self.running.iter().map(Seq::view).collect();
        schedule::growth(&views, self.block_size())
    }

    /// The resident sequence (running or cached) that holds the longest whole-block prefix
    /// of `tokens`: its slot and the tokens to share.
    fn best_prefix(&self, tokens: &[u32]) -> Option<(usize, usize)> {
        if !self.prefix_cache {
            return None;
        }
        let bs = self.block_size();
        let running = self
            .running
            .iter()
            .filter_map(|s| Some((s.slot?, &s.tokens[..s.in_kv])));
        let idle = self.idle.iter().map(|e| (e.slot, &e.tokens[..]));
        running
            .chain(idle)
            .map(|(slot, held)| (slot, schedule::shareable(tokens, held, bs)))
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n)
    }

    /// The newest running sequence gives its blocks back and waits in front of the queue,
    /// to be recomputed from its tokens.
    fn preempt_newest(&mut self) -> bool {
        let Some(i) = (0..self.running.len()).max_by_key(|&i| self.running[i].id) else {
            return false;
        };
        let mut s = self.running.swap_remove(i);
        self.release(&mut s);
        s.shared.update(|st| st.n_preemptions += 1);
        self.stats.n_preemptions += 1;
        self.waiting.push_front(s);
        true
    }

    fn step(&mut self, inner: &Inner) {
        self.schedule_and_decode(inner);
        self.publish_blocks();
        self.count_sequences();
        self.stats.n_steps += 1;
    }

    fn count_sequences(&mut self) {
        self.stats.n_running = self.running.len();
        self.stats.n_waiting = self.waiting.len();
    }

    /// Makes the worker's counts what `Engine::stats` and `submit` see (`n_submitted` is
    /// counted by `submit` itself).
    fn publish(&self, q: &mut Queue) {
        q.stats = EngineStats {
            n_submitted: q.stats.n_submitted,
            ..self.stats
        };
    }

    /// Blocks held by running requests, and blocks held only by the prefix cache.
    fn publish_blocks(&mut self) {
        let total = self.ctx.kv_stats().n_blocks_total;
        let mut mark = vec![0u8; total];
        let count = |slot: usize, tag: u8, mark: &mut Vec<u8>| {
            for b in self.ctx.kv_seq_blocks(slot as i32).unwrap_or_default() {
                if let Some(m) = mark.get_mut(b as usize)
                    && *m == 0
                {
                    *m = tag;
                }
            }
        };
        for s in &self.running {
            if let Some(slot) = s.slot {
                count(slot, 1, &mut mark);
            }
        }
        for e in &self.idle {
            count(e.slot, 2, &mut mark);
        }
        self.stats.kv_blocks_used = mark.iter().filter(|&&m| m == 1).count();
        self.stats.kv_blocks_cached = mark.iter().filter(|&&m| m == 2).count();
    }

    fn schedule_and_decode(&mut self, inner: &Inner) {
        // Cancelled requests leave first, waiting or running.
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].shared.cancelled() {
                self.retire(i, FinishReason::Cancelled, None);
            } else {
                i += 1;
            }
        }
        let before = self.waiting.len();
        self.waiting.retain_mut(|s| {
            let keep = !s.shared.cancelled();
            if !keep {
                s.end(FinishReason::Cancelled, None);
            }
            keep
        });
        self.stats.n_finished += (before - self.waiting.len()) as u64;

        // Growth past the free blocks: the prefix cache gives way first, then the newest
        // running sequences, which wait in front of the queue.
        while self.growth() > self.free_blocks() {
            if !self.evict(None) && !self.preempt_newest() {
                break;
            }
        }
        // Admission, first come first served: the head of the queue waits for room rather
        // than being overtaken.
        while self.admit_head() {}
        // Published before the decode emits text: a client that submits on its first piece
        // must not be refused `Busy` for a request that has already left the queue (or was
        // cancelled in it), and must see it running. The block counts follow after the step
        // (a stale count only makes a waiter wait one step longer).
        self.count_sequences();
        self.publish(&mut inner.queue.lock());
        if self.running.is_empty() {
            // Nothing fits even alone: cannot happen for a request `submit` accepted (it fits
            // the whole cache), so this is a bookkeeping bug; fail the head, never spin.
            if let Some(mut s) = self.waiting.pop_front() {
                s.end(
                    FinishReason::Error,
                    Some("the request does not fit the KV cache".into()),
                );
                self.stats.n_finished += 1;
            }
            return;
        }
        if let Err(e) = self.decode_step() {
            // A failed decode changed nothing; its requests end with the reason.
            let msg = e.to_string();
            while !self.running.is_empty() {
                self.retire(0, FinishReason::Error, Some(msg.clone()));
            }
        }
    }

    /// Starts the head of the queue when a slot and its blocks are free (evicting prefix-cache
    /// entries for them), sharing the longest cached prefix of its tokens.
    fn admit_head(&mut self) -> bool {
        let Some(head) = self.waiting.front() else {
            return false;
        };
        let bs = self.block_size();
        let n = head.tokens.len();
        let mut share = self.best_prefix(&head.tokens);
        loop {
            let shared = share.map_or(0, |(_, t)| t);
            let need = schedule::blocks(n, bs) - shared / bs;
            if !self.free_slots.is_empty() && self.growth() + need <= self.free_blocks() {
                break;
            }
            if !self.evict(share.map(|(slot, _)| slot)) {
                if share.is_none() {
                    return false;
                }
                // Only the entry it would share from is left to evict: start from scratch.
                share = None;
            }
        }
        let Some(mut s) = self.waiting.pop_front() else {
            return false;
        };
        let Some(slot) = self.free_slots.pop() else {
            self.waiting.push_front(s);
            return false;
        };
        s.slot = Some(slot);
        s.id = self.next_id;
        self.next_id += 1;
        if let Some((src, t)) = share {
            let p1 = i32::try_from(t).unwrap_or(i32::MAX);
            if self.ctx.kv_seq_copy(src as i32, slot as i32, 0, p1).is_ok() {
                s.in_kv = t;
                s.shared.update(|st| st.n_cached_tokens += t);
                self.stats.n_cached_tokens += t as u64;
                self.stats.n_prefix_hits += 1;
                self.clock += 1;
                let now = self.clock;
                if let Some(e) = self.idle.iter_mut().find(|e| e.slot == src) {
                    e.last_used = now;
                }
            }
        }
        if !s.started {
            s.started = true;
            let q = s.shared.elapsed();
            s.shared.update(|st| st.queue_s = q);
        }
        self.running.push(s);
        true
    }

    /// Builds, decodes and samples one batch.
    fn decode_step(&mut self) -> Result<()> {
        let views: Vec<SeqView> = self.running.iter().map(Seq::view).collect();
        let plan = schedule::plan(&views, self.ctx.n_batch());
        self.batch.clear();
        let mut outputs = Vec::new();
        for &(i, n) in &plan {
            let s = &self.running[i];
            let slot = s
                .slot
                .ok_or_else(|| Error::Internal("running without a slot".into()))?;
            let slot = i32::try_from(slot).map_err(|_| Error::Overflow("slot".into()))?;
            for k in s.in_kv..s.in_kv + n {
                let last = k + 1 == s.tokens.len();
                let pos = i32::try_from(k).map_err(|_| Error::Overflow("position".into()))?;
                self.batch.add(s.tokens[k] as i32, pos, &[slot], last)?;
                if last {
                    outputs.push(i);
                }
            }
        }
        let only_gen = plan
            .iter()
            .all(|&(i, n)| n == 1 && self.running[i].n_generated > 0);
        // Rows that all sample greedily need only their tokens: on a GPU the logits stay
        // there (`Context::decode_greedy`).
        let greedy = outputs.iter().all(|&i| self.running[i].sampler.is_greedy());
        let t0 = Instant::now();
        let decoded = match greedy {
            true => self.ctx.decode_greedy(&self.batch),
            false => self.ctx.decode(&self.batch),
        };
        let decode_us = micros(t0);
        self.stats.decode_us += decode_us;
        match decoded {
            Ok(()) => {}
            Err(Error::KvFull(_)) => {
                // The growth says it fits; if the cache disagrees, the newest gives way and
                // the next step tries again (nothing was decoded).
                self.preempt_newest();
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        for &(i, n) in &plan {
            let s = &mut self.running[i];
            s.in_kv += n;
            // Prefill, first or after a preemption (a generating step feeds one token).
            if n > 1 || s.n_generated == 0 {
                self.stats.n_prompt_tokens += n as u64;
            }
        }
        let mut done = Vec::new();
        let t0 = Instant::now();
        let tokens = match greedy {
            true => self.greedy_outputs(&outputs)?,
            false => self.sample_outputs(&outputs)?,
        };
        for (&i, token) in outputs.iter().zip(tokens) {
            match self.take_token(i, token) {
                Ok(None) => {}
                Ok(Some(f)) => done.push((i, f, None)),
                Err(e) => done.push((i, FinishReason::Error, Some(e.to_string()))),
            }
        }
        let sample_us = micros(t0);
        self.stats.sample_us += sample_us;
        if only_gen {
            self.stats.gen_steps += 1;
            self.stats.gen_step_tokens += plan.len() as u64;
            self.stats.gen_step_us += decode_us + sample_us;
        }
        done.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
        for (i, f, e) in done {
            self.retire(i, f, e);
        }
        Ok(())
    }

    /// Samples output row `r` of the last decode with the chain of sequence `outputs[r]`
    /// (each sequence has at most one output row), and lets each chain accept its token.
    /// The rows are independent (every chain has its own state and random stream), so with
    /// several rows they are sampled on the context's threads, idle between decodes: a
    /// greedy pass over a 128k vocabulary takes about 40 us a row, 5 ms for 128 rows on
    /// one thread. The tokens are the same on any number of threads.
    fn sample_outputs(&mut self, outputs: &[usize]) -> Result<Vec<u32>> {
        let mut chains: Vec<Option<&mut SamplerChain>> = self
            .running
            .iter_mut()
            .map(|s| Some(&mut s.sampler))
            .collect();
        let jobs = outputs
            .iter()
            .map(|&i| {
                let chain = chains.get_mut(i).and_then(Option::take);
                chain.map(|c| Mutex::new((c, Ok(0))))
            })
            .collect::<Option<Vec<Mutex<(&mut SamplerChain, Result<u32>)>>>>()
            .ok_or_else(|| Error::Internal("an output row without its sequence".into()))?;
        let rows = (0..jobs.len())
            .map(|r| {
                let r = i32::try_from(r).map_err(|_| Error::Overflow("output row".into()))?;
                self.ctx.logits(r)
            })
            .collect::<Result<Vec<&[f32]>>>()?;
        let sample = |row: usize| {
            let mut job = jobs[row].lock();
            let (chain, token) = &mut *job;
            *token = chain.sample(rows[row]);
            if let Ok(t) = *token {
                chain.accept(t);
            }
        };
        if jobs.len() >= PARALLEL_SAMPLING_ROWS {
            self.ctx.pool().run(jobs.len(), &sample);
        } else {
            (0..jobs.len()).for_each(sample);
        }
        jobs.into_iter().map(|j| j.into_inner().1).collect()
    }

    /// The tokens of a `decode_greedy`: output row `r` is sequence `outputs[r]`'s, which
    /// its chain (greedy) accepts.
    fn greedy_outputs(&mut self, outputs: &[usize]) -> Result<Vec<u32>> {
        let mut tokens = Vec::with_capacity(outputs.len());
        for (r, &i) in outputs.iter().enumerate() {
            let r = i32::try_from(r).map_err(|_| Error::Overflow("output row".into()))?;
            let t = self.ctx.greedy_token(r)?;
            let s = self
                .running
                .get_mut(i)
                .ok_or_else(|| Error::Internal("an output row without its sequence".into()))?;
            s.sampler.accept(t);
            tokens.push(t);
        }
        Ok(tokens)
    }

    /// A sampled token: the end, or its text through the decoder and the stop matcher.
    fn take_token(&mut self, i: usize, token: u32) -> Result<Option<FinishReason>> {
        let tok = self.ctx.model().tokenizer();
        let s = &mut self.running[i];
        if !s.ignore_eog && tok.vocab().is_eog(token) {
            return s.flush().map(|f| f.or(Some(FinishReason::Stop)));
        }
        s.tokens.push(token);
        s.n_generated += 1;
        self.stats.n_generated_tokens += 1;
        if s.n_generated == 1 {
            let t = s.shared.elapsed();
            s.shared.update(|st| st.first_token_s = t);
        }
        let n = s.n_generated;
        s.shared.update(|st| st.n_generated_tokens = n);
        self.piece.clear();
        tok.token_to_piece(token, false, &mut self.piece)?;
        self.text.clear();
        s.detok.push(&self.piece, &mut self.text);
        if let Some(f) = s.show(&self.text)? {
            return Ok(Some(f));
        }
        if s.n_generated >= s.max_tokens {
            return s.flush().map(|f| f.or(Some(FinishReason::Length)));
        }
        Ok(None)
    }
}

/// Microseconds since `t0`.
fn micros(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX)
}
