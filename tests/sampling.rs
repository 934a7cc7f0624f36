//! Sampler chains against the distributions they promise: for fixed logits, 100,000 seeded
//! draws after temperature / top-k / top-p / min-p (alone and chained) pass a chi-square test
//! against the distribution computed here independently (in f64, by full sorts), and a token
//! the filters exclude is never drawn. Plus reproducibility (same seed, same tokens; other
//! seeds differ), the edge cases (temperature 0 is greedy, top-k 0 / >= vocab and top-p 1
//! are off, NaN and -inf never drawn, all -inf an error) and a chain on a real model.

mod common;

use rocmforge::sampling::SEED_RANDOM;
use rocmforge::{Sampler, SamplerChain};

const DRAWS: usize = 100_000;

/// Logits with a spread of probabilities, some tied, over a small vocabulary.
fn logits() -> Vec<f32> {
    (0..64u32)
        .map(|i| {
            let x = (i.wrapping_mul(2_654_435_761) >> 7) % 1000;
            x as f32 / 250.0 - 1.0
        })
        .collect()
}

/// What the chain [top_k, top_p, min_p, temperature] then dist should draw from, computed
/// directly: full sort, llama.cpp's semantics (top-p and min-p on the probabilities of what
/// is left, temperature last).
fn expected(l: &[f32], top_k: usize, top_p: f64, min_p: f64, temp: f64) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..l.len()).collect();
    idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
    idx.truncate(top_k.min(l.len()));
    let softmax = |idx: &[usize], t: f64| -> Vec<f64> {
        let max = f64::from(l[idx[0]]);
        let e: Vec<f64> = idx
            .iter()
            .map(|&i| ((f64::from(l[i]) - max) / t).exp())
            .collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect()
    };
    if top_p < 1.0 {
        let p = softmax(&idx, 1.0);
        let mut cum = 0.0;
        let keep = p
            .iter()
            .position(|&q| {
                cum += q;
                cum >= top_p
            })
            .map_or(idx.len(), |i| i + 1);
        idx.truncate(keep);
    }
    if min_p > 0.0 {
        let p = softmax(&idx, 1.0);
        let keep = p.iter().filter(|&&q| q >= min_p * p[0]).count();
        idx.truncate(keep.max(1));
    }
    let p = softmax(&idx, temp);
    let mut out = vec![0.0; l.len()];
    for (&i, q) in idx.iter().zip(p) {
        out[i] = q;
    }
    out
}

/// The chi-square critical value at significance 0.001 for `dof` degrees of freedom
/// (Wilson-Hilferty; within 1% of the exact value from 3 degrees up).
fn critical(dof: usize) -> f64 {
    let k = dof as f64;
    let z = 3.090_232; // the standard normal's 0.999 quantile
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

fn draws(chain: &mut SamplerChain, l: &[f32]) -> Vec<usize> {
    let mut counts = vec![0usize; l.len()];
    for _ in 0..DRAWS {
        counts[chain.sample(l).unwrap() as usize] += 1;
    }
    counts
}

/// Chi-square of the counts against `want`; every token with probability 0 must have none.
fn chi_square(counts: &[usize], want: &[f64]) -> (f64, usize) {
    let (mut chi, mut cells) = (0.0, 0);
    for (t, (&c, &p)) in counts.iter().zip(want).enumerate() {
        if p == 0.0 {
            assert_eq!(c, 0, "token {t} was excluded but drawn {c} times");
            continue;
        }
        let e = p * DRAWS as f64;
        chi += (c as f64 - e).powi(2) / e;
        cells += 1;
    }
    (chi, cells)
}

#[test]
fn draws_follow_the_filtered_distribution() {
    let l = logits();
    let cases: [(&str, usize, f64, f64, f64); 6] = [
        ("temperature 1", 64, 1.0, 0.0, 1.0),
        ("temperature 0.7", 64, 1.0, 0.0, 0.7),
        ("top-k 10", 10, 1.0, 0.0, 1.0),
        ("top-p 0.8", 64, 0.8, 0.0, 1.0),
        ("min-p 0.2", 64, 1.0, 0.2, 1.0),
        (
            "top-k 40, top-p 0.95, min-p 0.05, temperature 1.3",
            40,
            0.95,
            0.05,
            1.3,
        ),
    ];
    for (seed, (name, k, p, min_p, t)) in cases.into_iter().enumerate() {
        let mut chain = SamplerChain::new(1000 + seed as u64);
        chain.add(Sampler::TopK(k as i32)).unwrap();
        chain
            .add(Sampler::TopP {
                p: p as f32,
                min_keep: 1,
            })
            .unwrap();
        chain
            .add(Sampler::MinP {
                p: min_p as f32,
                min_keep: 1,
            })
            .unwrap();
        chain.add(Sampler::Temperature(t as f32)).unwrap();
        chain.add(Sampler::Dist).unwrap();
        let want = expected(&l, k, p, min_p, t);
        let counts = draws(&mut chain, &l);
        let (chi, cells) = chi_square(&counts, &want);
        let crit = critical(cells - 1);
        eprintln!(
            "{name}: {cells} tokens possible, chi-square {chi:.1} (critical {crit:.1} at p = 0.001)"
        );
        assert!(cells >= 4, "{name}: the case should leave several tokens");
        assert!(chi < crit, "{name}: chi-square {chi} >= {crit}");
    }
}

#[test]
fn the_same_seed_gives_the_same_tokens_and_others_differ() {
    let l = logits();
    let run = |seed: u64| {
        let mut c = SamplerChain::new(seed);
        c.add(Sampler::Temperature(1.5)).unwrap();
        c.add(Sampler::Dist).unwrap();
        (0..200)
            .map(|_| c.sample(&l).unwrap())
            .collect::<Vec<u32>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    // reset replays the stream from the seed.
    let mut c = SamplerChain::new(7);
    c.add(Sampler::Temperature(1.5)).unwrap();
    c.add(Sampler::Dist).unwrap();
    let first: Vec<u32> = (0..50).map(|_| c.sample(&l).unwrap()).collect();
    c.reset();
    let again: Vec<u32> = (0..50).map(|_| c.sample(&l).unwrap()).collect();
    assert_eq!(first, again);
    // A random seed is drawn once and reported.
    let a = SamplerChain::new(SEED_RANDOM);
    let b = SamplerChain::new(SEED_RANDOM);
    assert_ne!(a.seed(), b.seed());
}

#[test]
fn edge_cases_behave_as_documented() {
    let l = logits();
    let best = common::argmax(&l);
    let one = |s: Vec<Sampler>, l: &[f32]| {
        let mut c = SamplerChain::new(3);
        for s in s {
            c.add(s).unwrap();
        }
        (0..200)
            .map(|_| c.sample(l).map_err(|e| e.to_string()))
            .collect::<Vec<_>>()
    };
    // Temperature 0 (or below) is greedy.
    for t in [0.0, -1.0] {
        assert!(
            one(vec![Sampler::Temperature(t), Sampler::Dist], &l)
                .iter()
                .all(|r| *r.as_ref().unwrap() == best)
        );
    }
    // top-k 0, top-k >= vocabulary and top-p 1 change nothing: the same draws as no filter.
    let plain = one(vec![Sampler::Dist], &l);
    for f in [
        Sampler::TopK(0),
        Sampler::TopK(-3),
        Sampler::TopK(64),
        Sampler::TopK(1000),
        Sampler::TopP {
            p: 1.0,
            min_keep: 1,
        },
        Sampler::MinP {
            p: 0.0,
            min_keep: 1,
        },
        Sampler::Typical {
            p: 1.0,
            min_keep: 1,
        },
    ] {
        assert_eq!(one(vec![f.clone(), Sampler::Dist], &l), plain, "{f:?}");
    }
    // NaN and -inf are never drawn, whatever the temperature.
    let mut l2 = l.clone();
    for t in (0..64).step_by(3) {
        l2[t] = if t % 2 == 0 {
            f32::NAN
        } else {
            f32::NEG_INFINITY
        };
    }
    for r in one(vec![Sampler::Temperature(50.0), Sampler::Dist], &l2) {
        assert!(r.unwrap() % 3 != 0, "a NaN or -inf token was drawn");
    }
    // All -inf (or NaN): a clear error, from either selector.
    let dead = vec![f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY];
    for sel in [Sampler::Greedy, Sampler::Dist] {
        let err = one(vec![Sampler::TopK(2), sel], &dead)[0]
            .clone()
            .unwrap_err();
        assert!(err.contains("-inf"), "{err}");
    }
    // Everything banned by logit bias is the same error, not a crash.
    let ban: Vec<(u32, f32)> = (0..64).map(|t| (t, f32::NEG_INFINITY)).collect();
    assert!(one(vec![Sampler::LogitBias(ban), Sampler::Dist], &l)[0].is_err());
}

#[test]
fn a_chain_samples_a_real_models_logits() {
    let Some(path) = common::model(common::SMOLLM2) else {
        return;
    };
    let m = common::load(&path);
    let mut ctx = common::context(&m, 1, rocmforge::KvType::F16);
    let prompt = m
        .tokenizer()
        .tokenize(b"The capital of France is", true, false);
    let logits = common::decode_last(&mut ctx, &prompt, 0);
    // Greedy through the chain is the argmax; a seeded chain is reproducible on the context.
    let mut g = SamplerChain::new(0);
    g.add(Sampler::Greedy).unwrap();
    assert_eq!(g.sample_context(&ctx, -1).unwrap(), common::argmax(&logits));
    let chain = || {
        let mut c = SamplerChain::new(99);
        for s in [
            Sampler::Penalties {
                last_n: 64,
                repeat: 1.1,
                frequency: 0.0,
                presence: 0.0,
            },
            Sampler::TopK(40),
            Sampler::TopP {
                p: 0.95,
                min_keep: 1,
            },
            Sampler::Temperature(0.8),
            Sampler::Dist,
        ] {
            c.add(s).unwrap();
        }
        c
    };
    let (mut a, mut b) = (chain(), chain());
    for &t in &prompt {
        a.accept(t);
        b.accept(t);
    }
    let ta: Vec<u32> = (0..20)
        .map(|_| a.sample_context(&ctx, -1).unwrap())
        .collect();
    let tb: Vec<u32> = (0..20)
        .map(|_| b.sample_context(&ctx, -1).unwrap())
        .collect();
    assert_eq!(ta, tb);
    let mut top40: Vec<u32> = (0..logits.len() as u32).collect();
    top40.sort_by(|&x, &y| logits[y as usize].total_cmp(&logits[x as usize]));
    assert!(
        ta.iter().all(|t| top40[..40].contains(t)),
        "a draw outside the top 40"
    );
    assert!(g.sample_context(&ctx, 5).is_err(), "row 5 does not exist");
}

/// The longest run of tokens that occurs twice in `t` (overlaps allowed).
fn longest_repeat(t: &[u32]) -> usize {
    let mut best = 0;
    for shift in 1..t.len() {
        let mut run = 0;
        for i in shift..t.len() {
            run = if t[i] == t[i - shift] { run + 1 } else { 0 };
            best = best.max(run);
        }
    }
    best
}

#[test]
fn dry_breaks_a_greedy_loop_on_a_real_model() {
    let Some(path) = common::model(common::SMOLLM2) else {
        return;
    };
    let m = common::load(&path);
    let breakers =
        rocmforge::sampling::dry::breaker_tokens(&m, &rocmforge::sampling::dry::DEFAULT_BREAKERS);
    let newline = m.tokenizer().tokenize(b"\n", false, false);
    assert!(
        newline.iter().all(|t| breakers.contains(t)),
        "newline is a breaker"
    );
    let generate = |dry: bool| {
        let mut ctx = common::context(&m, 1, rocmforge::KvType::F16);
        let prompt = m.tokenizer().tokenize(
            b"I like apples. I like apples. I like apples. I like",
            true,
            false,
        );
        let mut chain = SamplerChain::new(0);
        if dry {
            chain
                .add(Sampler::Dry {
                    multiplier: 0.8,
                    base: 1.75,
                    allowed_length: 2,
                    last_n: 256,
                    breakers: breakers.clone(),
                })
                .unwrap();
        }
        chain.add(Sampler::Greedy).unwrap();
        let mut toks = prompt.clone();
        for &t in &prompt {
            chain.accept(t);
        }
        let mut next = common::decode_last(&mut ctx, &prompt, 0);
        let mut out = Vec::new();
        for _ in 0..40 {
            let t = chain.sample(&next).unwrap();
            chain.accept(t);
            out.push(t);
            toks.push(t);
            next = common::decode_last(&mut ctx, &[t], 0);
        }
        (
            longest_repeat(&toks),
            m.tokenizer()
                .detokenize(&out, false, false)
                .unwrap_or_default(),
        )
    };
    let (plain, plain_text) = generate(false);
    let (with_dry, dry_text) = generate(true);
    eprintln!(
        "greedy: longest repeat {plain}: {:?}",
        String::from_utf8_lossy(&plain_text)
    );
    eprintln!(
        "with DRY: longest repeat {with_dry}: {:?}",
        String::from_utf8_lossy(&dry_text)
    );
    assert!(plain > 20, "the prompt should make greedy decoding loop");
    assert!(with_dry < plain / 2, "DRY should break the loop");
}

/// `argmax` (what `Context::decode_greedy` and the GPU's `argmax_rows` compute) picks what a
/// chain of `Greedy` alone picks: the highest logit in `total_cmp`'s order (+0 above -0),
/// the lowest id on ties, never NaN or -inf; on rows full of ties too.
#[test]
fn argmax_is_the_greedy_samplers_pick() {
    use rocmforge::sampling::argmax;
    assert_eq!(argmax(&[]), None);
    assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY]), None);
    assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
    assert_eq!(argmax(&[-0.0, 0.0]), Some(1));
    assert_eq!(argmax(&[0.0, -0.0, 0.0]), Some(0));
    assert_eq!(argmax(&[f32::NAN, -5.0, f32::NEG_INFINITY]), Some(1));
    let mut chain = SamplerChain::new(0);
    chain.add(Sampler::Greedy).unwrap();
    assert!(chain.is_greedy());
    let mut other = SamplerChain::new(0);
    other.add(Sampler::TopK(1)).unwrap();
    other.add(Sampler::Greedy).unwrap();
    assert!(!other.is_greedy());
    let mut state = 0x9e37_79b9_u32;
    for n in 0..500 {
        // Few distinct values (ties everywhere); the first 2 or 3 of them make rows whose
        // best is -0 or +0.
        let k = 2 + n % 5;
        let row: Vec<f32> = (0..300)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                [-1.5, -0.0, 0.0, 0.25, 2.0, 2.0][(state >> 24) as usize % k]
            })
            .collect();
        assert_eq!(argmax(&row), Some(chain.sample(&row).unwrap()));
    }
}
