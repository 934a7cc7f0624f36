//! A persistent thread pool for fork/join parallel loops, built for the decode loop: a small
//! model runs about 200 matrix multiplies per token, each a few tens of microseconds, so
//! waking threads through the OS for each would cost more than the work. Workers spin for a
//! short while after each job (`SPIN_ROUNDS`) and only then sleep on a condition variable.
//! Handing out a job takes no lock and no system call while the workers spin: the job is
//! published by bumping a generation counter, and the condition variable is signalled only
//! when some worker has said it sleeps (`sleepers`); a signal on every job cost a futex call,
//! about 2 microseconds, 200 times a token.
//!
//! `run(n_tasks, f)` calls `f(i)` for every i in 0..n_tasks, on the calling thread and the
//! workers, and returns when all calls are done. Each thread first takes the tasks of its own
//! contiguous share, in order, from a counter of its own (`Share`), then helps with the others'
//! remaining tasks: neighbouring tasks of a matrix product read neighbouring weight rows, so
//! each thread streams one contiguous stretch of memory (what the hardware prefetcher follows)
//! instead of every other task, and taking a task touches no cache line another thread writes. A panic in a task is caught on the worker and
//! re-raised on the caller after every task has finished, so nothing keeps the job's borrow.
//!
//! Between jobs the caller often works alone (attention, norms), and a decoding step is
//! bound by memory bandwidth: `prefetch` names the memory the next job will read (its
//! weight matrices), and each idle worker pulls its own share of it toward its L2 cache until
//! that job arrives, so the stream from memory keeps going while the caller computes.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How many polls an idle worker makes before sleeping (on the order of 100 microseconds).
pub const SPIN_ROUNDS: u32 = 1 << 11;

/// The most jobs one `prefetch` names, and the most byte ranges per job.
pub const MAX_PREFETCH_JOBS: usize = 3;
pub const MAX_PREFETCH_RANGES: usize = 3;

/// The most bytes a worker prefetches of one job (its L2 holds 1-2 MiB on current x86).
const PREFETCH_CAP: usize = 1 << 20;

/// Cache lines an idle worker asks for between looks at whether a job has come.
const PREFETCH_BURST: usize = 16;

/// Memory the next jobs read, as addresses and lengths (never dereferenced: only
/// prefetched); ranges of length 0 are unused.
#[derive(Clone, Copy, Default)]
struct Hint {
    jobs: [[(usize, usize); MAX_PREFETCH_RANGES]; MAX_PREFETCH_JOBS],
}

/// The job being run: a type-erased pointer to the caller's closure.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
}

// SAFETY: the pointee is `Sync`, and `run` keeps it alive until every worker has stopped using
// it (it waits for `active` to reach zero before returning).
unsafe impl Send for Job {}

struct Shared {
    /// Bumped for each job; workers watch it.
    generation: AtomicUsize,
    /// One share of the tasks per thread (the caller's first).
    shares: Box<[Share]>,
    /// Workers still inside the current job.
    active: AtomicUsize,
    /// The current job. Written by `run` only while no worker is inside a job (before the
    /// generation bump that publishes it, after `active` is back to zero); read by workers
    /// only between seeing that bump and decrementing `active`.
    job: UnsafeCell<Option<Job>>,
    /// Workers that are about to sleep or sleep on `wake`.
    sleepers: AtomicUsize,
    /// Guards sleeping: a worker holds it from announcing itself in `sleepers` to waiting.
    sleep: Mutex<()>,
    wake: Condvar,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    quit: AtomicBool,
    /// Polls before an idle worker sleeps.
    spin: u32,
    /// What the next job reads (`prefetch`), and a counter bumped each time it is set.
    hint: Mutex<Hint>,
    hint_seq: AtomicUsize,
}

// SAFETY: every field but `job` is Sync; `job` is written and read only at the times its
// comment gives, which the generation counter (release/acquire) and `active` (release on the
// workers' side, acquire on the caller's) order: no write ever overlaps a read.
unsafe impl Sync for Shared {}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes `run` calls from different threads.
    running: Mutex<()>,
}

impl ThreadPool {
    /// A pool that runs jobs on `n_threads` threads in all: the caller plus `n_threads - 1`
    /// workers (0 is taken as 1).
    pub fn new(n_threads: usize) -> std::io::Result<ThreadPool> {
        Self::with_spin(n_threads, SPIN_ROUNDS)
    }

    /// A pool whose idle workers poll `spin` times before sleeping (0: sleep at once). For
    /// measuring the choice of `SPIN_ROUNDS`.
    pub fn with_spin(n_threads: usize, spin: u32) -> std::io::Result<ThreadPool> {
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            shares: (0..n_threads.max(1)).map(|_| Share::default()).collect(),
            active: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            panic: Mutex::new(None),
            quit: AtomicBool::new(false),
            spin,
            hint: Mutex::new(Hint::default()),
            hint_seq: AtomicUsize::new(0),
        });
        let mut pool = ThreadPool {
            shared: Arc::clone(&shared),
            workers: Vec::new(),
            running: Mutex::new(()),
        };
        for i in 1..n_threads.max(1) {
            let s = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("rocmforge-{i}"))
                .spawn(move || worker(&s, i))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Threads that run each job, the caller included.
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Names the memory the next jobs will read: per job, its ranges in the order its tasks
    /// read them (at most `MAX_PREFETCH_JOBS` jobs of `MAX_PREFETCH_RANGES` ranges; more are
    /// ignored). Until a job starts, each idle worker prefetches into L2 its own share of each
    /// named job's bytes in turn (the part its contiguous share of the tasks will read,
    /// `bytes * k / n` onwards for worker k of n threads; at most 1 MiB a job), and a job's
    /// start ends that. Returns at once; only a hint (the memory is never read, so it need
    /// not outlive the call).
    pub fn prefetch(&self, jobs: &[&[&[u8]]]) {
        if self.workers.is_empty() {
            return;
        }
        let mut h = Hint::default();
        for (slots, ranges) in h.jobs.iter_mut().zip(jobs) {
            for (slot, r) in slots.iter_mut().zip(ranges.iter()) {
                *slot = (r.as_ptr() as usize, r.len());
            }
        }
        *self.shared.hint.lock().unwrap_or_else(|e| e.into_inner()) = h;
        self.shared.hint_seq.fetch_add(1, Ordering::Release);
    }

    /// Calls `f(i)` for every `i` in `0..n_tasks` across the pool; returns when all are done.
    /// Re-raises the first panic of any task.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _serial = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY (lifetime erasure): the pointer is only dereferenced by workers between the
        // generation bump below and their decrement of `active`, and this function does not
        // return before `active` is zero, so `f` outlives every use.
        let erased: *const (dyn Fn(usize) + Sync) = unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        };
        // SAFETY: no worker is inside a job (the previous `run` saw `active` at zero, and
        // `running` keeps other callers out), so nothing reads `job` now.
        unsafe { *s.job.get() = Some(Job { f: erased }) };
        // Share k is tasks [k * n_tasks / n, (k + 1) * n_tasks / n) (in u128: no overflow).
        let n = s.shares.len() as u128;
        let bound = |k: usize| (k as u128 * n_tasks as u128 / n) as usize;
        for (k, share) in s.shares.iter().enumerate() {
            share.next.store(bound(k), Ordering::Relaxed);
            share.end.store(bound(k + 1), Ordering::Relaxed);
        }
        s.active.store(self.workers.len(), Ordering::Relaxed);
        // SeqCst here and on the worker's side of `sleepers`: either the worker sees this
        // generation before it sleeps, or this sees the worker in `sleepers` and wakes it.
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) != 0 {
            let _sleep = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let caller = panic::catch_unwind(AssertUnwindSafe(|| take_tasks(s, f, 0)));
        let mut spins = 0u32;
        while s.active.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < SPIN_ROUNDS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: `active` is zero: no worker reads `job` until the next generation.
        unsafe { *s.job.get() = None };
        if let Err(p) = caller {
            panic::resume_unwind(p);
        }
        if let Some(p) = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            panic::resume_unwind(p);
        }
    }
}

/// Runs the tasks of thread `me`'s share, then whatever is left of the others'.
fn take_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync), me: usize) {
    let n = s.shares.len();
    for k in (me..n).chain(0..me) {
        let share = &s.shares[k];
        let end = share.end.load(Ordering::Relaxed);
        loop {
            let i = share.next.fetch_add(1, Ordering::Relaxed);
            if i >= end {
                break;
            }
            f(i);
        }
    }
}

/// A contiguous stretch of a job's tasks: `next` is the next one to take, `end` one past the
/// last. Aligned to its own cache lines so threads taking tasks from different shares do not
/// write to one line.
#[derive(Default)]
#[repr(align(128))]
struct Share {
    next: AtomicUsize,
    end: AtomicUsize,
}

/// Prefetches worker `me`'s share of each job of `h` into L2, from `skip` bytes into that
/// sequence of shares on, until a job newer than `seen` arrives: returns how far it got
/// (to resume from once that job is done), or `None` when it got through.
fn prefetch_share(s: &Shared, h: &Hint, me: usize, seen: usize, mut skip: usize) -> Option<usize> {
    let mut done = 0usize;
    let mut lines = 0usize;
    for ranges in &h.jobs {
        let total = ranges.iter().fold(0usize, |t, r| t.saturating_add(r.1));
        let n = s.shares.len() as u128;
        let bound = |k: usize| (k as u128 * total as u128 / n) as usize;
        let lo = bound(me);
        let hi = bound(me + 1).min(lo.saturating_add(PREFETCH_CAP));
        let share = hi - lo;
        if skip >= share {
            skip -= share;
            done += share;
            continue;
        }
        let from = lo + skip;
        skip = 0;
        let mut at = 0usize;
        for &(ptr, len) in ranges {
            // The part of [from, hi) in this range, which covers [at, at + len) of the job.
            let mut off = from.max(at);
            let end = hi.min(at.saturating_add(len));
            while off < end {
                lines += 1;
                if lines.is_multiple_of(PREFETCH_BURST)
                    && s.generation.load(Ordering::Relaxed) != seen
                {
                    return Some(done + (off - lo));
                }
                prefetch_line(ptr.wrapping_add(off - at) as *const u8);
                off += 64;
            }
            at = at.saturating_add(len);
        }
        done += share;
    }
    None
}

/// Asks for the cache line at `p` into L2. Never faults and reads no value, whatever `p`.
#[inline]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults on any address and changes no
    // memory; SSE (which has it) is in the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

fn worker(s: &Shared, me: usize) {
    let mut seen = 0usize;
    // The last hint taken, and how far into it this worker got (`None`: all of it).
    let (mut hint_seen, mut hint, mut progress) = (0usize, Hint::default(), None);
    loop {
        // Wait for a new generation: spin (prefetching what the next jobs read, when named,
        // resuming after jobs that interrupt it), then sleep.
        let mut spins = 0u32;
        while s.generation.load(Ordering::Acquire) == seen && !s.quit.load(Ordering::Relaxed) {
            let hint_seq = s.hint_seq.load(Ordering::Acquire);
            if hint_seq != hint_seen {
                hint_seen = hint_seq;
                hint = *s.hint.lock().unwrap_or_else(|e| e.into_inner());
                progress = Some(0);
            }
            if let Some(skip) = progress {
                progress = prefetch_share(s, &hint, me, seen, skip);
                continue;
            }
            spins += 1;
            if spins < s.spin {
                std::hint::spin_loop();
                continue;
            }
            let guard = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            if s.generation.load(Ordering::SeqCst) == seen && !s.quit.load(Ordering::SeqCst) {
                drop(s.wake.wait(guard).unwrap_or_else(|e| e.into_inner()));
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            spins = 0;
        }
        if s.quit.load(Ordering::Relaxed) {
            return;
        }
        seen = s.generation.load(Ordering::Acquire);
        // SAFETY: this worker has seen the generation that published the job and has not yet
        // decremented `active`, so `run` neither writes `job` nor returns meanwhile.
        let job = unsafe { *s.job.get() };
        if let Some(job) = job {
            // SAFETY: `run` keeps the closure alive until this worker decrements `active`.
            let f = unsafe { &*job.f };
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| take_tasks(s, f, me))) {
                s.panic
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(p);
            }
        }
        s.active.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        {
            let _sleep = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once_across_many_jobs() {
        let pool = ThreadPool::new(4).unwrap();
        for n in [0, 1, 2, 3, 7, 100, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "n = {n}"
            );
        }
        // Many small jobs in a row (the decode pattern), some after workers fell asleep.
        let total = AtomicUsize::new(0);
        for round in 0..2000 {
            if round == 1000 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            pool.run(8, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 16_000);
    }

    #[test]
    fn a_stalled_threads_share_is_taken_by_the_others() {
        // Task 0 opens the caller's share; whichever thread takes it (the caller, or a worker
        // that ran out of its own tasks first) waits in it until every other task has run: the
        // job finishing at all, and tasks 1..10 of that share running elsewhere, show that a
        // stalled thread's share is taken by the others.
        let pool = ThreadPool::new(3).unwrap();
        let n = 30;
        let done = AtomicUsize::new(0);
        let ran_on = Mutex::new(vec![None; n]);
        pool.run(n, &|i| {
            ran_on.lock().unwrap()[i] = Some(std::thread::current().id());
            if i == 0 {
                let start = std::time::Instant::now();
                while done.load(Ordering::Acquire) < n - 1 {
                    assert!(start.elapsed().as_secs() < 10, "the other tasks never ran");
                    std::thread::yield_now();
                }
            }
            done.fetch_add(1, Ordering::Release);
        });
        assert_eq!(done.load(Ordering::Relaxed), n);
        let ran_on = ran_on.into_inner().unwrap();
        assert!(ran_on.iter().all(Option::is_some));
        assert!(ran_on[1..n / 3].iter().all(|t| *t != ran_on[0]));
    }

    #[test]
    fn prefetch_hints_never_disturb_jobs_even_for_memory_since_freed() {
        let pool = ThreadPool::new(3).unwrap();
        let total = AtomicUsize::new(0);
        for round in 0..200 {
            let buf = vec![round as u8; 300_000];
            pool.prefetch(&[&[&buf[..1000], &buf[1000..]], &[&buf[..]]]);
            drop(buf);
            if round % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            pool.run(8, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 1600);
    }

    /// A worker's prefetch stops when a job arrives, says how far it got, and resumes there.
    #[test]
    fn an_interrupted_prefetch_resumes_where_it_stopped() {
        let pool = ThreadPool::new(2).unwrap();
        let s = &*pool.shared;
        let buf = vec![0u8; 1 << 16];
        let mut h = Hint::default();
        h.jobs[0][0] = (buf.as_ptr() as usize, buf.len());
        h.jobs[1][0] = (buf.as_ptr() as usize, buf.len());
        let now = s.generation.load(Ordering::Relaxed);
        // Worker 1 of 2 takes the second half of each job: 32 KiB, twice.
        let stopped = prefetch_share(s, &h, 1, now.wrapping_sub(1), 0);
        assert_eq!(stopped, Some((PREFETCH_BURST - 1) * 64));
        assert_eq!(prefetch_share(s, &h, 1, now, 40_000), None);
        let stopped = prefetch_share(s, &h, 1, now.wrapping_sub(1), 40_000);
        assert_eq!(stopped, Some(40_000 + (PREFETCH_BURST - 1) * 64));
    }

    #[test]
    fn a_panicking_task_is_reraised_after_the_job_and_the_pool_survives() {
        let pool = ThreadPool::new(3).unwrap();
        let done = AtomicUsize::new(0);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(64, &|i| {
                if i == 5 {
                    panic!("task 5 failed");
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        assert_eq!(done.load(Ordering::Relaxed), 63, "the other tasks all ran");
        let count = AtomicUsize::new(0);
        pool.run(10, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 10);
    }
}
