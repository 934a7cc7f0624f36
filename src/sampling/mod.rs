//! Sampler chains: turn a row of logits into one token, reproducibly from a seed.
//!
//! A chain applies its samplers in the order they were added, then its last one selects:
//! `Greedy` (the best candidate) or `Dist` (a draw from the softmax of what is left). Nothing
//! may follow a selector, and a chain without one is an error when it samples. Filters:
//! `Temperature` (<= 0 is greedy), `TopK` (<= 0 or >= the vocabulary is off), `TopP` (1 is
//! off), `MinP` (0 is off), `Typical` (1 is off), `Penalties` (repeat / frequency / presence
//! over the last n accepted tokens, as llama.cpp applies them), `LogitBias`, `Xtc` and `Dry`
//! (`dry.rs`).
//!
//! Randomness (`Dist`, `Xtc`) comes from the chain's one generator, xoshiro256** seeded
//! through splitmix64 (`rng.rs`): the same seed and the same logits give the same tokens on
//! every platform. `reset` returns the generator to its seed and forgets the accepted
//! tokens. `sample` does not accept the token it returns: call `accept` with each token the
//! caller keeps (prompt tokens too, for the penalties).

mod candidates;
pub mod dry;
mod rng;

use std::collections::VecDeque;

use candidates::Candidates;
use rng::Rng;

use crate::{Context, Error, Result};

/// Asks for a seed from the system's entropy (then `SamplerChain::seed` tells which one).
pub const SEED_RANDOM: u64 = u64::MAX;

/// The greedy token of a row of logits: the highest logit (in `f32::total_cmp`'s order, so
/// +0 is above -0), the lowest id on ties, as `Sampler::Greedy` picks it; `None` when every
/// logit is NaN or -inf (or the row is empty). The GPU's `argmax_rows` ranks alike.
pub fn argmax(row: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        if v > f32::NEG_INFINITY && best.is_none_or(|(_, b)| v.total_cmp(&b).is_gt()) {
            best = Some((i, v));
        }
    }
    best.and_then(|(i, _)| u32::try_from(i).ok())
}

/// One step of a chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Selects the best candidate (highest logit, lowest id on ties).
    Greedy,
    /// Selects by drawing from the softmax of the remaining candidates.
    Dist,
    /// Divides logits by `t`; `t <= 0` keeps only the best candidate.
    Temperature(f32),
    /// Keeps the `k` best; `k <= 0` is off.
    TopK(i32),
    /// Keeps the fewest best candidates holding probability `p` (0..=1), at least `min_keep`.
    TopP { p: f32, min_keep: usize },
    /// Keeps candidates with probability at least `p` (0..=1) times the best one's.
    MinP { p: f32, min_keep: usize },
    /// Locally typical sampling with mass `p` (0..=1).
    Typical { p: f32, min_keep: usize },
    /// Over the last `last_n` accepted tokens (0: off): a token seen `c` times gets its
    /// logit divided by `repeat` when positive (multiplied when negative), then
    /// `c * frequency + presence` subtracted.
    Penalties {
        last_n: usize,
        repeat: f32,
        frequency: f32,
        presence: f32,
    },
    /// Adds each bias to its token's logit (-inf bans it).
    LogitBias(Vec<(u32, f32)>),
    /// With chance `probability`, removes every candidate of probability `threshold` or more
    /// but the least likely of them (when there are two or more).
    Xtc {
        probability: f32,
        threshold: f32,
        min_keep: usize,
    },
    /// DRY over the last `last_n` accepted tokens (0: off): a token continuing a repeat of
    /// the tail `n >= allowed_length` tokens long loses `multiplier * base^(n -
    /// allowed_length)`; runs stop at the `breakers` tokens (`dry::breaker_tokens`).
    Dry {
        multiplier: f32,
        base: f32,
        allowed_length: usize,
        last_n: usize,
        breakers: Vec<u32>,
    },
}

impl Sampler {
    fn is_selector(&self) -> bool {
        matches!(self, Sampler::Greedy | Sampler::Dist)
    }

    /// The parameters' own limits.
    fn check(&self) -> Result<()> {
        let unit = |what: &str, p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(Error::InvalidArg(format!(
                    "{what} is {p}; it must be 0 to 1"
                )))
            }
        };
        let finite = |what: &str, v: f32| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(Error::InvalidArg(format!(
                    "{what} is {v}; it must be finite"
                )))
            }
        };
        match self {
            Sampler::Greedy | Sampler::Dist | Sampler::TopK(_) => Ok(()),
            Sampler::Temperature(t) => {
                if t.is_nan() {
                    return Err(Error::InvalidArg("temperature is NaN".into()));
                }
                Ok(())
            }
            Sampler::TopP { p, .. } => unit("top_p", *p),
            Sampler::MinP { p, .. } => unit("min_p", *p),
            Sampler::Typical { p, .. } => unit("typical p", *p),
            Sampler::Penalties {
                repeat,
                frequency,
                presence,
                ..
            } => {
                finite("the repeat penalty", *repeat)?;
                finite("the frequency penalty", *frequency)?;
                finite("the presence penalty", *presence)?;
                if *repeat <= 0.0 {
                    return Err(Error::InvalidArg(format!(
                        "the repeat penalty is {repeat}; it must be above 0 (1 is off)"
                    )));
                }
                Ok(())
            }
            Sampler::LogitBias(list) => {
                for &(t, b) in list {
                    if b.is_nan() || b == f32::INFINITY {
                        return Err(Error::InvalidArg(format!(
                            "the logit bias of token {t} is {b}; it must be finite or -inf"
                        )));
                    }
                }
                Ok(())
            }
            Sampler::Xtc {
                probability,
                threshold,
                ..
            } => {
                unit("the XTC probability", *probability)?;
                unit("the XTC threshold", *threshold)
            }
            Sampler::Dry {
                multiplier, base, ..
            } => {
                if !(multiplier.is_finite() && *multiplier >= 0.0) {
                    return Err(Error::InvalidArg(format!(
                        "the DRY multiplier is {multiplier}; it must be 0 (off) or more"
                    )));
                }
                if !(base.is_finite() && *base >= 1.0) {
                    return Err(Error::InvalidArg(format!(
                        "the DRY base is {base}; it must be 1 or more"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// A chain of samplers with its generator, accepted-token history and scratch.
#[derive(Debug, Clone)]
pub struct SamplerChain {
    samplers: Vec<Sampler>,
    seed: u64,
    rng: Rng,
    /// The last accepted tokens, as many as the longest penalty window.
    history: VecDeque<u32>,
    cands: Candidates,
    counts: Vec<(u32, f32)>,
}

impl SamplerChain {
    /// An empty chain; `seed` feeds `Dist` and `Xtc` (`SEED_RANDOM`: from the system).
    pub fn new(seed: u64) -> SamplerChain {
        let seed = if seed == SEED_RANDOM {
            rng::entropy_seed()
        } else {
            seed
        };
        SamplerChain {
            samplers: Vec::new(),
            seed,
            rng: Rng::new(seed),
            history: VecDeque::new(),
            cands: Candidates::default(),
            counts: Vec::new(),
        }
    }

    /// The seed in use (the drawn one when the chain was made with `SEED_RANDOM`).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn samplers(&self) -> &[Sampler] {
        &self.samplers
    }

    /// Whether the chain is `Greedy` alone: its token is the row's `argmax` (so a
    /// `Context::decode_greedy` can stand in for the logits).
    pub fn is_greedy(&self) -> bool {
        self.samplers == [Sampler::Greedy]
    }

    /// Appends a sampler. Refused (`InvalidArg`, chain unchanged): parameters outside their
    /// limits, or anything after a selector.
    pub fn add(&mut self, mut s: Sampler) -> Result<()> {
        s.check()?;
        if let Sampler::Dry { breakers, .. } = &mut s {
            breakers.sort_unstable();
            breakers.dedup();
        }
        if let Some(last) = self.samplers.last()
            && last.is_selector()
        {
            return Err(Error::InvalidArg(format!(
                "nothing may follow the chain's selector ({last:?})"
            )));
        }
        self.samplers.push(s);
        Ok(())
    }

    fn history_len(&self) -> usize {
        self.samplers
            .iter()
            .map(|s| match s {
                Sampler::Penalties { last_n, .. } | Sampler::Dry { last_n, .. } => *last_n,
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// Records a token the caller keeps (for the penalties).
    pub fn accept(&mut self, token: u32) {
        let n = self.history_len();
        if n == 0 {
            return;
        }
        if self.history.len() == n {
            self.history.pop_front();
        }
        self.history.push_back(token);
    }

    /// Back to the state after the last `add`: the generator at its seed, no history.
    pub fn reset(&mut self) {
        self.rng = Rng::new(self.seed);
        self.history.clear();
    }

    /// Samples output row `i` of the context's last decode (-1: the last row).
    pub fn sample_context(&mut self, ctx: &Context, i: i32) -> Result<u32> {
        self.sample(ctx.logits(i)?)
    }

    /// Runs the chain over one row of logits (one per vocabulary token).
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        match self.samplers.last() {
            Some(s) if s.is_selector() => {}
            _ => {
                return Err(Error::InvalidArg(
                    "the sampler chain has no final selector (add greedy or dist last)".into(),
                ));
            }
        }
        if logits.is_empty() || u32::try_from(logits.len()).is_err() {
            return Err(Error::InvalidArg(format!(
                "a row of {} logits cannot be sampled",
                logits.len()
            )));
        }
        let n_vocab = logits.len();
        self.cands.reset();
        let row = logits;
        for s in &self.samplers {
            let c = &mut self.cands;
            match s {
                Sampler::Greedy => return c.greedy(row),
                Sampler::Dist => return c.draw(row, self.rng.uniform()),
                Sampler::Temperature(t) => c.temperature(row, *t),
                Sampler::TopK(k) => {
                    if let Ok(k @ 1..) = usize::try_from(*k) {
                        c.top_k(row, k);
                    }
                }
                Sampler::TopP { p, min_keep } => c.top_p(row, *p, (*min_keep).max(1)),
                Sampler::MinP { p, min_keep } => c.min_p(row, *p, (*min_keep).max(1)),
                Sampler::Typical { p, min_keep } => c.typical(row, *p, (*min_keep).max(1)),
                Sampler::Penalties {
                    last_n,
                    repeat,
                    frequency,
                    presence,
                } => {
                    // Occurrences per token of the window: sorted, then counted in runs
                    // (O(n log n) however long the window and however varied its tokens).
                    let counts = &mut self.counts;
                    counts.clear();
                    let skip = self.history.len().saturating_sub(*last_n);
                    counts.extend(self.history.iter().skip(skip).map(|&t| (t, 1.0)));
                    counts.sort_unstable_by_key(|e| e.0);
                    counts.dedup_by(|later, kept| {
                        let same = later.0 == kept.0;
                        if same {
                            kept.1 += 1.0;
                        }
                        same
                    });
                    let (r, f, p) = (*repeat, *frequency, *presence);
                    c.adjust(row, counts, |l, n| {
                        let l = if l > 0.0 { l / r } else { l * r };
                        l - n * f - p
                    });
                }
                Sampler::LogitBias(list) => {
                    if let Some(&(t, _)) = list.iter().find(|(t, _)| *t as usize >= n_vocab) {
                        return Err(Error::InvalidArg(format!(
                            "logit bias for token {t}, outside the vocabulary of {n_vocab}"
                        )));
                    }
                    c.adjust(row, list, |l, b| l + b);
                }
                Sampler::Dry {
                    multiplier,
                    base,
                    allowed_length,
                    last_n,
                    breakers,
                } => {
                    let skip = self.history.len().saturating_sub(*last_n);
                    let h: Vec<u32> = self.history.iter().skip(skip).copied().collect();
                    let pens = dry::penalties(&h, breakers, *multiplier, *base, *allowed_length);
                    c.adjust(row, &pens, |l, p| l - p);
                }
                Sampler::Xtc {
                    probability,
                    threshold,
                    min_keep,
                } => {
                    // One draw per sample whatever its outcome, so the stream stays aligned.
                    let u = self.rng.uniform();
                    if u < f64::from(*probability) && *threshold <= 0.5 {
                        c.xtc(row, *threshold, *min_keep);
                    }
                }
            }
        }
        Err(Error::Internal("the chain ended without a selector".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(seed: u64, s: &[Sampler]) -> SamplerChain {
        let mut c = SamplerChain::new(seed);
        for s in s {
            c.add(s.clone()).unwrap();
        }
        c
    }

    #[test]
    fn chains_check_their_shape_and_parameters() {
        let mut c = SamplerChain::new(1);
        assert!(
            c.sample(&[1.0, 2.0])
                .unwrap_err()
                .to_string()
                .contains("selector")
        );
        c.add(Sampler::TopK(5)).unwrap();
        assert!(c.sample(&[1.0, 2.0]).is_err(), "no selector");
        assert!(
            c.add(Sampler::TopP {
                p: 1.5,
                min_keep: 1
            })
            .is_err()
        );
        assert!(c.add(Sampler::Temperature(f32::NAN)).is_err());
        assert!(c.add(Sampler::LogitBias(vec![(0, f32::NAN)])).is_err());
        assert!(
            c.add(Sampler::Penalties {
                last_n: 4,
                repeat: 0.0,
                frequency: 0.0,
                presence: 0.0
            })
            .is_err()
        );
        c.add(Sampler::Greedy).unwrap();
        assert!(c.add(Sampler::Dist).is_err(), "nothing after a selector");
        assert_eq!(c.samplers().len(), 2);
        assert_eq!(c.sample(&[1.0, 2.0, 0.5]).unwrap(), 1);
        assert!(c.sample(&[]).is_err());
    }

    #[test]
    fn penalties_follow_the_accepted_tokens_and_reset_forgets_them() {
        let p = Sampler::Penalties {
            last_n: 2,
            repeat: 1.0,
            frequency: 0.0,
            presence: 10.0,
        };
        let mut c = chain(0, &[p, Sampler::Greedy]);
        let logits = [5.0, 4.0, 3.0];
        assert_eq!(c.sample(&logits).unwrap(), 0);
        c.accept(0);
        assert_eq!(c.sample(&logits).unwrap(), 1);
        c.accept(1);
        assert_eq!(c.sample(&logits).unwrap(), 2);
        c.accept(2); // the window of 2 forgets token 0
        assert_eq!(c.sample(&logits).unwrap(), 0);
        c.reset();
        assert_eq!(c.sample(&logits).unwrap(), 0);
        // The repeat penalty divides positive logits and multiplies negative ones.
        let mut c = chain(
            0,
            &[
                Sampler::Penalties {
                    last_n: 8,
                    repeat: 4.0,
                    frequency: 0.0,
                    presence: 0.0,
                },
                Sampler::Greedy,
            ],
        );
        c.accept(0);
        assert_eq!(c.sample(&[4.0, 1.5]).unwrap(), 1);
        c.accept(1);
        assert_eq!(c.sample(&[-1.0, -3.0]).unwrap(), 0);
    }

    #[test]
    fn dry_penalises_a_repeat_through_the_accepted_tokens() {
        let dry = Sampler::Dry {
            multiplier: 5.0,
            base: 1.75,
            allowed_length: 2,
            last_n: 64,
            breakers: vec![9, 9, 0],
        };
        let mut c = chain(0, &[dry, Sampler::Greedy]);
        assert_eq!(
            c.samplers()[0],
            Sampler::Dry {
                multiplier: 5.0,
                base: 1.75,
                allowed_length: 2,
                last_n: 64,
                breakers: vec![0, 9]
            }
        );
        // History 1 2 3 4 1 2 3: token 4 would repeat a run of 3 (penalty 8.75).
        for t in [1, 2, 3, 4, 1, 2, 3] {
            c.accept(t);
        }
        let logits = [0.0, 0.0, 0.0, 0.0, 8.0, 0.5];
        assert_eq!(c.sample(&logits).unwrap(), 5);
        c.accept(9); // a breaker last: no penalty
        assert_eq!(c.sample(&logits).unwrap(), 4);
        assert!(
            SamplerChain::new(0)
                .add(Sampler::Dry {
                    multiplier: 1.0,
                    base: 0.5,
                    allowed_length: 2,
                    last_n: 8,
                    breakers: vec![]
                })
                .is_err()
        );
    }

    #[test]
    fn logit_bias_bans_and_checks_its_tokens() {
        let mut c = chain(
            0,
            &[
                Sampler::LogitBias(vec![(1, f32::NEG_INFINITY)]),
                Sampler::Greedy,
            ],
        );
        assert_eq!(c.sample(&[1.0, 9.0, 2.0]).unwrap(), 2);
        let mut c = chain(0, &[Sampler::LogitBias(vec![(7, 1.0)]), Sampler::Greedy]);
        assert!(
            c.sample(&[1.0, 2.0])
                .unwrap_err()
                .to_string()
                .contains("token 7")
        );
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// The tokens a fixed chain draws from fixed logits with seed 42. The lib tests also run
    /// on aarch64 (under qemu): the same list there is what "same seed, same tokens on every
    /// platform" means. A change of this list changes every seeded run of every user.
    #[test]
    fn seed_42_draws_the_recorded_tokens() {
        let logits: Vec<f32> = (0..300)
            .map(|i| ((i * 37 % 101) as f32 / 17.0).sin() * 3.0)
            .collect();
        let mut c = SamplerChain::new(42);
        for s in [
            Sampler::Penalties {
                last_n: 8,
                repeat: 1.3,
                frequency: 0.1,
                presence: 0.2,
            },
            Sampler::TopK(50),
            Sampler::TopP {
                p: 0.9,
                min_keep: 1,
            },
            Sampler::MinP {
                p: 0.05,
                min_keep: 1,
            },
            Sampler::Xtc {
                probability: 0.5,
                threshold: 0.1,
                min_keep: 1,
            },
            Sampler::Temperature(0.9),
            Sampler::Dist,
        ] {
            c.add(s).unwrap();
        }
        let got: Vec<u32> = (0..24)
            .map(|_| {
                let t = c.sample(&logits).unwrap();
                c.accept(t);
                t
            })
            .collect();
        assert_eq!(got, GOLDEN);
    }

    const GOLDEN: [u32; 24] = [
        189, 208, 178, 6, 181, 39, 241, 36, 192, 252, 170, 249, 219, 6, 159, 148, 162, 121, 200,
        66, 77, 208, 69, 181,
    ];
}
