//! The engine's worker thread: owns the context, runs the steps, streams the text.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::request::{FinishReason, PieceFn, Shared};
use super::schedule::{self, SeqView};
use super::stop::{Scan, StopMatcher};
use super::{EngineStats, Inner, Pending};
use crate::sampling::SamplerChain;
use crate::tokenizer::StreamDecoder;
use crate::{Batch, Context, Error, Result};

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

struct Worker {
    ctx: Context,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    free_slots: Vec<usize>,
    next_id: u64,
    stats: EngineStats,
    batch: Batch,
    piece: Vec<u8>,
    text: Vec<u8>,
}

/// The thread's body: steps until shutdown, then cancels what is left. A panic in a step
/// ends every request with an error instead of leaving its handle waiting.
pub(super) fn run(ctx: Context, inner: &Inner) {
    let slots = (0..ctx.n_seq_max()).rev().collect();
    let mut w = Worker {
        batch: Batch::with_capacity(ctx.n_batch()),
        ctx,
        waiting: VecDeque::new(),
        running: Vec::new(),
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
                q.stats = EngineStats {
                    n_submitted: q.stats.n_submitted,
                    ..self.stats
                };
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
            self.step();
        }
    }

    fn block_size(&self) -> usize {
        self.ctx.kv_stats().block_size
    }

    fn total_blocks(&self) -> usize {
        self.ctx.kv_stats().n_blocks_total
    }

    /// Ends a running sequence: frees its blocks and its slot.
    fn retire(&mut self, i: usize, reason: FinishReason, error: Option<String>) {
        let mut s = self.running.swap_remove(i);
        self.release(&mut s);
        s.end(reason, error);
        self.stats.n_finished += 1;
    }

    fn release(&mut self, s: &mut Seq) {
        if let Some(slot) = s.slot.take() {
            // The slot id is in range by construction; freeing cannot fail for it.
            let _ = self.ctx.kv_free(slot as i32);
            self.free_slots.push(slot);
        }
        s.in_kv = 0;
    }

    fn step(&mut self) {
        self.schedule_and_decode();
        self.stats.kv_blocks_used = self.ctx.kv_stats().n_blocks_used;
        self.stats.n_running = self.running.len();
        self.stats.n_waiting = self.waiting.len();
        self.stats.n_steps += 1;
    }

    fn schedule_and_decode(&mut self) {
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

        let (bs, total) = (self.block_size(), self.total_blocks());
        // Growth past the cache: the newest running sequences give way and wait in front.
        let views: Vec<SeqView> = self.running.iter().map(Seq::view).collect();
        let mut out = schedule::preempt(&views, total, bs);
        out.sort_unstable_by_key(|&i| std::cmp::Reverse(i));
        let mut preempted = Vec::new();
        for i in out {
            let mut s = self.running.swap_remove(i);
            self.release(&mut s);
            s.shared.update(|st| st.n_preemptions += 1);
            self.stats.n_preemptions += 1;
            preempted.push(s);
        }
        preempted.sort_by_key(|s| std::cmp::Reverse(s.id));
        for s in preempted {
            self.waiting.push_front(s);
        }
        // Admission, first come first served: the head of the queue waits for room rather
        // than being overtaken.
        while let Some(head) = self.waiting.front() {
            let views: Vec<SeqView> = self.running.iter().map(Seq::view).collect();
            if self.free_slots.is_empty() || !schedule::admits(&views, head.tokens.len(), total, bs)
            {
                break;
            }
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            s.slot = self.free_slots.pop();
            s.id = self.next_id;
            self.next_id += 1;
            if !s.started {
                s.started = true;
                let q = s.shared.elapsed();
                s.shared.update(|st| st.queue_s = q);
            }
            self.running.push(s);
        }
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
        match self.ctx.decode(&self.batch) {
            Ok(()) => {}
            Err(Error::KvFull(_)) => {
                // The claims say it fits; if the cache disagrees, the newest gives way and the
                // next step tries again (nothing was decoded).
                if let Some(i) = (0..self.running.len()).max_by_key(|&i| self.running[i].id) {
                    let mut s = self.running.swap_remove(i);
                    self.release(&mut s);
                    s.shared.update(|st| st.n_preemptions += 1);
                    self.stats.n_preemptions += 1;
                    self.waiting.push_front(s);
                }
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
        for (row, &i) in outputs.iter().enumerate() {
            let logits = self.ctx.logits(row as i32)?;
            let s = &mut self.running[i];
            let token = s.sampler.sample(logits)?;
            s.sampler.accept(token);
            match self.take_token(i, token) {
                Ok(None) => {}
                Ok(Some(f)) => done.push((i, f, None)),
                Err(e) => done.push((i, FinishReason::Error, Some(e.to_string()))),
            }
        }
        done.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
        for (i, f, e) in done {
            self.retire(i, f, e);
        }
        Ok(())
    }

    /// A sampled token: the end, or its text through the decoder and the stop matcher.
    fn take_token(&mut self, i: usize, token: u32) -> Result<Option<FinishReason>> {
        let tok = self.ctx.model().tokenizer();
        let s = &mut self.running[i];
        if tok.vocab().is_eog(token) {
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
