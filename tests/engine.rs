//! The continuous-batching engine on SmolLM2: requests batched together produce what each
//! produces alone (greedy and seeded sampling), through queueing, chunked prefill and
//! preemption; stop strings, max_tokens, cancel and shutdown end requests as documented and
//! give every KV block back.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{SMOLLM2, argmax, context, decode_last, load, model};
use rocmforge::engine::{Event, FinishReason, Prompt, RequestSpec};
use rocmforge::{Engine, EngineParams, Error, KvType, Model, Sampler, SamplerChain};

fn smollm2() -> Option<Arc<Model>> {
    static M: OnceLock<Option<Arc<Model>>> = OnceLock::new();
    M.get_or_init(|| model(SMOLLM2).map(|p| load(&p))).clone()
}

const PROMPTS: [&str; 6] = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at a temperature of",
    "My favourite book is",
];

fn engine(m: &Arc<Model>, n_ctx: usize, n_seq_max: usize, n_batch: usize) -> Engine {
    Engine::new(
        m.clone(),
        EngineParams {
            n_ctx,
            n_seq_max,
            n_batch,
            n_threads: 2,
            ..EngineParams::default()
        },
    )
    .unwrap()
}

fn greedy() -> SamplerChain {
    let mut c = SamplerChain::new(0);
    c.add(Sampler::Greedy).unwrap();
    c
}

fn seeded(seed: u64) -> SamplerChain {
    let mut c = SamplerChain::new(seed);
    for s in [Sampler::TopK(40), Sampler::Temperature(0.9), Sampler::Dist] {
        c.add(s).unwrap();
    }
    c
}

fn spec(prompt: &str, sampler: SamplerChain, max_tokens: usize) -> RequestSpec {
    RequestSpec {
        max_tokens: Some(max_tokens),
        ..RequestSpec::new(Prompt::Text(prompt.into()), sampler)
    }
}

type Outcome = (String, FinishReason, usize);

fn outcome(r: &rocmforge::engine::Request) -> Outcome {
    let (text, f) = r.wait_text().unwrap();
    (text, f, r.stats().n_generated_tokens)
}

/// Each spec run alone, one after the other, on a fresh engine without a prefix cache.
fn alone(m: &Arc<Model>, specs: Vec<RequestSpec>) -> Vec<Outcome> {
    let e = Engine::new(
        m.clone(),
        EngineParams {
            n_ctx: 1024,
            n_seq_max: 1,
            n_threads: 2,
            prefix_cache: false,
            ..EngineParams::default()
        },
    )
    .unwrap();
    specs
        .into_iter()
        .map(|s| outcome(&e.submit(s).unwrap()))
        .collect()
}

/// All specs submitted at once; every response read on its own thread.
fn together(e: &Engine, specs: Vec<RequestSpec>) -> Vec<Outcome> {
    let reqs: Vec<_> = specs.into_iter().map(|s| e.submit(s).unwrap()).collect();
    std::thread::scope(|sc| {
        let handles: Vec<_> = reqs.iter().map(|r| sc.spawn(move || outcome(r))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Waits until the engine holds nothing (its stats are published after each step).
fn settles(e: &Engine) {
    let t0 = Instant::now();
    loop {
        let s = e.stats();
        if s.n_running == 0 && s.n_waiting == 0 && s.kv_blocks_used == 0 {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "engine never settled: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn greedy_alone_equals_a_plain_decode_loop() {
    let Some(m) = smollm2() else { return };
    let (text, f, _) = alone(&m, vec![spec(PROMPTS[0], greedy(), 16)]).remove(0);
    assert_eq!(f, FinishReason::Length);
    let tok = m.tokenizer();
    let mut ctx = context(&m, 1, KvType::F16);
    let mut tokens = tok.tokenize(PROMPTS[0].as_bytes(), true, true);
    let mut logits = decode_last(&mut ctx, &tokens, 0);
    let mut made = Vec::new();
    for _ in 0..16 {
        let t = argmax(&logits);
        made.push(t);
        tokens.push(t);
        logits = decode_last(&mut ctx, &[t], 0);
    }
    let expect = tok.detokenize(&made, false, false).unwrap();
    assert_eq!(text.as_bytes(), expect.as_slice());
}

#[test]
fn batched_greedy_requests_equal_each_alone() {
    let Some(m) = smollm2() else { return };
    let specs = || PROMPTS.iter().map(|p| spec(p, greedy(), 20)).collect();
    let expect = alone(&m, specs());
    // Four at a time (two wait), prompts prefilled in chunks of at most 24 tokens per step.
    let e = engine(&m, 1024, 4, 24);
    let got = together(&e, specs());
    assert_eq!(got, expect);
    settles(&e);
    let s = e.stats();
    assert_eq!((s.n_submitted, s.n_finished), (6, 6));
    let made: usize = got.iter().map(|o| o.2).sum();
    assert_eq!(s.n_generated_tokens, made as u64);
    assert_eq!(s.n_preemptions, 0);
}

#[test]
fn seeded_sampling_is_the_same_in_company() {
    let Some(m) = smollm2() else { return };
    let specs = || {
        PROMPTS[..4]
            .iter()
            .enumerate()
            .map(|(i, p)| spec(p, seeded(100 + i as u64), 16))
            .collect()
    };
    let expect = alone(&m, specs());
    let e = engine(&m, 1024, 4, 512);
    assert_eq!(together(&e, specs()), expect);
}

#[test]
fn preempted_requests_are_recomputed_to_the_same_text() {
    let Some(m) = smollm2() else { return };
    let specs = || PROMPTS[..3].iter().map(|p| spec(p, greedy(), 40)).collect();
    let expect = alone(&m, specs());
    // Six blocks of sixteen: each request needs up to four alone, all three twelve.
    let e = engine(&m, 96, 3, 512);
    let got = together(&e, specs());
    assert_eq!(got, expect);
    settles(&e);
    assert!(e.stats().n_preemptions > 0, "{:?}", e.stats());
}

#[test]
fn shared_prefixes_are_computed_once_and_change_nothing() {
    let Some(m) = smollm2() else { return };
    let system = "You are a careful assistant. Answer in one short sentence, plainly, without \
                  lists, and never mention that you are an assistant. Keep to facts that any \
                  encyclopedia would confirm, and say so when you do not know. The question \
                  follows.";
    let questions = [
        " What is the sun?",
        " Why is grass green?",
        " Who wrote Hamlet?",
    ];
    let specs = || {
        questions
            .iter()
            .map(|q| spec(&format!("{system}{q}"), greedy(), 12))
            .collect::<Vec<_>>()
    };
    let expect = alone(&m, specs());
    let n_system = m.tokenizer().tokenize(system.as_bytes(), true, true).len();
    assert!(n_system >= 32, "{n_system}");
    let e = engine(&m, 1024, 4, 512);
    // The first request alone fills the cache; the others start from its blocks, together.
    let mut specs = specs();
    let first = outcome(&e.submit(specs.remove(0)).unwrap());
    let reqs: Vec<_> = specs.into_iter().map(|s| e.submit(s).unwrap()).collect();
    let mut got = vec![first];
    got.extend(reqs.iter().map(outcome));
    assert_eq!(got, expect);
    let whole = n_system / 16 * 16;
    for r in &reqs {
        assert!(r.stats().n_cached_tokens >= whole, "{:?}", r.stats());
    }
    settles(&e);
    let s = e.stats();
    assert!(s.n_prefix_hits >= 2 && s.kv_blocks_cached > 0, "{s:?}");
}

#[test]
fn stop_strings_end_before_the_match() {
    let Some(m) = smollm2() else { return };
    let (full, _, _) = alone(&m, vec![spec(PROMPTS[1], greedy(), 30)]).remove(0);
    // A stop string from the middle of the greedy text: the response is what precedes it.
    let words: Vec<&str> = full.split_inclusive(' ').collect();
    assert!(words.len() > 6, "{full:?}");
    let stop: String = words[4..6].concat();
    let at = full.find(&stop).unwrap();
    let e = engine(&m, 1024, 2, 512);
    let r = e
        .submit(RequestSpec {
            stop: vec!["never appears".into(), stop.clone()],
            ..spec(PROMPTS[1], greedy(), 30)
        })
        .unwrap();
    assert_eq!(
        r.wait_text().unwrap(),
        (full[..at].to_string(), FinishReason::Stop)
    );
}

#[test]
fn ignore_eog_generates_past_the_end_token() {
    let Some(m) = smollm2() else { return };
    let chat = || {
        Prompt::Chat(vec![(
            "user".into(),
            "Answer with one word: is the sky blue?".into(),
        )])
    };
    let e = engine(&m, 1024, 2, 512);
    let short = e
        .submit(RequestSpec {
            max_tokens: Some(64),
            ..RequestSpec::new(chat(), greedy())
        })
        .unwrap();
    let (text, f) = short.wait_text().unwrap();
    let n = short.stats().n_generated_tokens;
    assert_eq!(f, FinishReason::Stop, "{text:?}");
    assert!(n < 60, "{n} tokens: {text:?}");
    // The same request past its end token: the same text first, then max_tokens tokens in
    // all, the end token among them (it ends nothing and prints nothing).
    let long = e
        .submit(RequestSpec {
            max_tokens: Some(n + 8),
            ignore_eog: true,
            ..RequestSpec::new(chat(), greedy())
        })
        .unwrap();
    let (more, f) = long.wait_text().unwrap();
    assert_eq!(f, FinishReason::Length);
    assert_eq!(long.stats().n_generated_tokens, n + 8);
    assert!(more.starts_with(&text), "{text:?} then {more:?}");
    settles(&e);
}

#[test]
fn cancel_frees_the_blocks_and_reports_cancelled() {
    let Some(m) = smollm2() else { return };
    let e = engine(&m, 1024, 2, 512);
    let r = e.submit(spec(PROMPTS[2], greedy(), 500)).unwrap();
    let other = e.submit(spec(PROMPTS[3], greedy(), 8)).unwrap();
    // Some text first, so the request is running when it is cancelled.
    let first = r.next(Some(Duration::from_secs(30)));
    assert!(
        matches!(first, Event::Text(_)),
        "expected text, got {first:?}"
    );
    r.cancel();
    loop {
        match r.next(Some(Duration::from_secs(30))) {
            Event::Text(_) => {}
            Event::Finished(f) => {
                assert_eq!(f, FinishReason::Cancelled);
                break;
            }
            Event::Timeout => panic!("no finish after cancel"),
        }
    }
    assert!(r.stats().n_generated_tokens < 500);
    assert_eq!(other.wait_text().unwrap().1, FinishReason::Length);
    // A dropped handle cancels too.
    let dropped = e.submit(spec(PROMPTS[4], greedy(), 500)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(dropped);
    settles(&e);
    assert_eq!(e.stats().n_finished, 3);
}

#[test]
fn callbacks_get_the_same_text_and_the_finish() {
    let Some(m) = smollm2() else { return };
    let (expect, _, _) = alone(&m, vec![spec(PROMPTS[3], greedy(), 12)]).remove(0);
    let got = Arc::new(Mutex::new((Vec::new(), None)));
    let sink = got.clone();
    let e = engine(&m, 1024, 2, 512);
    let r = e
        .submit(RequestSpec {
            on_piece: Some(Box::new(move |piece, finish| {
                let mut g = sink.lock().unwrap();
                assert!(std::str::from_utf8(piece).is_ok(), "a piece is not UTF-8");
                g.0.extend_from_slice(piece);
                if finish.is_some() {
                    g.1 = finish;
                }
            })),
            ..spec(PROMPTS[3], greedy(), 12)
        })
        .unwrap();
    // The handle reports only the finish; the text went to the callback.
    assert_eq!(
        r.wait_text().unwrap(),
        (String::new(), FinishReason::Length)
    );
    let g = got.lock().unwrap();
    assert_eq!(
        (g.0.as_slice(), g.1),
        (expect.as_bytes(), Some(FinishReason::Length))
    );
}

#[test]
fn submissions_that_cannot_run_are_refused() {
    let Some(m) = smollm2() else { return };
    let e = Engine::new(
        m.clone(),
        EngineParams {
            n_ctx: 64,
            n_seq_max: 1,
            n_batch: 64,
            n_threads: 2,
            max_queued: 1,
            ..EngineParams::default()
        },
    )
    .unwrap();
    let err = |s: RequestSpec| e.submit(s).err().expect("refused");
    assert!(matches!(
        err(spec("Hello", greedy(), 64)),
        Error::InvalidArg(_)
    ));
    assert!(matches!(err(spec("", greedy(), 4)), Error::InvalidArg(_)));
    assert!(matches!(
        err(spec("Hello", greedy(), 0)),
        Error::InvalidArg(_)
    ));
    let bad = RequestSpec::new(Prompt::Tokens(vec![1, u32::MAX]), greedy());
    assert!(matches!(err(bad), Error::InvalidArg(_)));
    // One runs, one waits, the third finds the queue full.
    let a = e.submit(spec(PROMPTS[1], greedy(), 40)).unwrap();
    assert!(matches!(
        a.next(Some(Duration::from_secs(30))),
        Event::Text(_)
    ));
    let mut kept = Vec::new();
    let mut busy = None;
    for _ in 0..100 {
        match e.submit(spec("Hi", greedy(), 4)) {
            Err(Error::Busy(msg)) => {
                busy = Some(msg);
                break;
            }
            // The running one finished meanwhile: this one runs or waits instead.
            Ok(r) => kept.push(r),
            Err(other) => panic!("{other}"),
        }
    }
    assert!(busy.is_some(), "the queue never filled");
    drop((a, kept));
    for bad in [
        EngineParams {
            n_seq_max: 0,
            ..EngineParams::default()
        },
        EngineParams {
            n_seq_max: 8,
            n_batch: 4,
            ..EngineParams::default()
        },
    ] {
        assert!(Engine::new(m.clone(), bad).is_err());
    }
}

/// A request that runs has left the queue by the time its first text arrives: a client that
/// submits on that text is not refused `Busy` for it (the queue length `submit` checks was
/// once published only after the step, found through the Python binding's tests).
#[test]
fn a_running_request_no_longer_counts_as_waiting() {
    let Some(m) = smollm2() else { return };
    let e = Engine::new(
        m.clone(),
        EngineParams {
            n_ctx: 256,
            n_seq_max: 1,
            n_threads: 2,
            max_queued: 1,
            prefix_cache: false,
            ..EngineParams::default()
        },
    )
    .unwrap();
    for round in 0..100 {
        let a = e.submit(spec(PROMPTS[0], greedy(), 8)).unwrap();
        assert!(matches!(
            a.next(Some(Duration::from_secs(30))),
            Event::Text(_)
        ));
        let b = e
            .submit(spec(PROMPTS[3], greedy(), 1))
            .unwrap_or_else(|err| panic!("round {round}: {err}"));
        drop((a, b));
        settles(&e);
    }
}

#[test]
fn dropping_the_engine_cancels_what_runs_and_waits() {
    let Some(m) = smollm2() else { return };
    let e = engine(&m, 1024, 1, 512);
    let running = e.submit(spec(PROMPTS[0], greedy(), 900)).unwrap();
    let queued = e.submit(spec(PROMPTS[1], greedy(), 10)).unwrap();
    let _ = running.next(Some(Duration::from_secs(30)));
    let t0 = Instant::now();
    drop(e);
    assert!(t0.elapsed() < Duration::from_secs(5));
    for r in [&running, &queued] {
        let end = loop {
            if let Event::Finished(f) = r.next(Some(Duration::from_secs(5))) {
                break f;
            }
        };
        assert_eq!(end, FinishReason::Cancelled);
    }
}

/// The texts examples/batched.c prints after its "--- request i: ..." lines.
fn printed_texts(out: &str) -> Vec<String> {
    let body = out.split("\n=== engine").next().unwrap();
    body.split("--- request ")
        .skip(1)
        .map(|part| {
            let (_, text) = part.split_once('\n').unwrap();
            text.strip_suffix('\n').unwrap_or(text).to_string()
        })
        .collect()
}

/// examples/batched.c: under valgrind on the zoo's tiny llama (memory errors, leaks, the
/// threads' shutdown), then on SmolLM2, where every streamed text must be what the request
/// gives alone.
#[test]
fn batched_example_streams_what_each_request_gives_alone() {
    use std::ffi::OsStr;
    let dir = tempfile::tempdir().unwrap();
    let exe = common::build_c(&common::root().join("examples/batched.c"), dir.path());
    if let Some(zoo) = common::zoo_model("llama.F32.gguf") {
        let args = ["-n", "6", "-t", "2", "-s", "2", "one", "two three", "four"].map(OsStr::new);
        let args: Vec<&OsStr> = std::iter::once(zoo.as_os_str()).chain(args).collect();
        let out = common::run_checked(&exe, &args);
        assert!(
            out.status.success(),
            "batched failed under valgrind:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            printed_texts(&String::from_utf8_lossy(&out.stdout)).len(),
            3
        );
    }
    let Some(m) = smollm2() else { return };
    let path = model(SMOLLM2).unwrap();
    let out = std::process::Command::new(&exe)
        .arg(&path)
        .args(["-n", "20", "-t", "2", "-s", "3"])
        .args(&PROMPTS[..5])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expect: Vec<String> = alone(
        &m,
        PROMPTS[..5].iter().map(|p| spec(p, greedy(), 20)).collect(),
    )
    .into_iter()
    .map(|o| o.0)
    .collect();
    assert_eq!(printed_texts(&stdout), expect);
}
