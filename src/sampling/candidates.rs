//! The candidate list a sampler chain works on, and the operations of each sampler on it.
//!
//! A list starts as every token of the vocabulary in id order with its logit (NaN becomes
//! -inf, so it is never chosen; +inf becomes the largest finite float, so softmax stays
//! defined). Filters remove candidates or change logits; nothing ever sorts the whole
//! vocabulary when fewer tokens are wanted: top-k keeps the k best through a bounded heap in
//! one pass, top-p sorts a growing prefix only until it holds p of the mass, min-p is one
//! threshold in logit space. "Best" is a total order: higher logit first, lower token id on
//! ties, so every result is deterministic.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand {
    pub token: u32,
    pub logit: f32,
}

/// Higher logit first, then lower token id (logits are never NaN here).
fn better(a: &Cand, b: &Cand) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.token.cmp(&b.token))
}

/// A key whose order is `better`'s reverse ("greater is better"), for the heap.
type Rank = (i32, Reverse<u32>);

fn rank(c: &Cand) -> Rank {
    let b = c.logit.to_bits() as i32;
    (b ^ (((b >> 31) as u32) >> 1) as i32, Reverse(c.token))
}

#[derive(Debug, Default)]
pub(crate) struct Candidates {
    pub c: Vec<Cand>,
    /// `c` is in `better` order.
    sorted: bool,
    /// `c[i].token == i` for every i (nothing removed or moved yet).
    identity: bool,
    /// Softmax of the logits, in `c`'s order, when `probs_valid`.
    probs: Vec<f32>,
}

impl Candidates {
    /// Starts over from a row of logits.
    pub fn reset(&mut self, logits: &[f32]) {
        self.c.clear();
        self.c.extend(logits.iter().enumerate().map(|(t, &l)| Cand {
            token: t as u32,
            logit: if l.is_nan() {
                f32::NEG_INFINITY
            } else {
                l.min(f32::MAX)
            },
        }));
        self.sorted = false;
        self.identity = true;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.c.len()
    }

    /// Sets the logit of each listed token still present to `f(logit, x)` for its `(token, x)`.
    pub fn adjust(&mut self, tokens: &[(u32, f32)], f: impl Fn(f32, f32) -> f32) {
        if self.identity {
            for &(t, x) in tokens {
                if let Some(c) = self.c.get_mut(t as usize) {
                    c.logit = f(c.logit, x);
                }
            }
        } else {
            for c in &mut self.c {
                for &(t, x) in tokens {
                    if t == c.token {
                        c.logit = f(c.logit, x);
                    }
                }
            }
        }
        self.sorted = false;
    }

    /// Keeps the `k` best, sorted.
    pub fn top_k(&mut self, k: usize) {
        let n = self.c.len();
        if k >= n {
            return; // off: not even reordered, so the draws are those of no filter
        }
        if k <= 4096 {
            let mut heap: BinaryHeap<Reverse<(Rank, usize)>> = BinaryHeap::with_capacity(k + 1);
            for (i, c) in self.c.iter().enumerate() {
                let r = rank(c);
                if heap.len() < k {
                    heap.push(Reverse((r, i)));
                } else if heap.peek().is_some_and(|w| r > w.0.0) {
                    heap.pop();
                    heap.push(Reverse((r, i)));
                }
            }
            let mut kept: Vec<Cand> = heap.into_iter().map(|w| self.c[w.0.1]).collect();
            kept.sort_unstable_by(better);
            self.c = kept;
        } else {
            self.c.select_nth_unstable_by(k - 1, better);
            self.c.truncate(k);
            self.c.sort_unstable_by(better);
        }
        self.sorted = true;
        self.identity = false;
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.c.sort_unstable_by(better);
            self.sorted = true;
            self.identity = false;
        }
    }

    fn max_logit(&self) -> f32 {
        if self.sorted {
            return self.c.first().map_or(f32::NEG_INFINITY, |c| c.logit);
        }
        self.c.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit))
    }

    /// Softmax of the current logits into `self.probs` (all zero when every logit is -inf).
    pub fn softmax(&mut self) -> &[f32] {
        let max = self.max_logit();
        self.probs.clear();
        if max == f32::NEG_INFINITY {
            self.probs.resize(self.c.len(), 0.0);
            return &self.probs;
        }
        let mut sum = 0f64;
        self.probs.extend(self.c.iter().map(|c| {
            let e = (c.logit - max).exp();
            sum += f64::from(e);
            e
        }));
        let inv = (1.0 / sum) as f32;
        self.probs.iter_mut().for_each(|p| *p *= inv);
        &self.probs
    }

    /// Keeps the smallest set of best candidates whose probability reaches `p` (at least
    /// `min_keep`). Sorts only as much of the list as that needs.
    pub fn top_p(&mut self, p: f32, min_keep: usize) {
        if p >= 1.0 || self.c.len() <= min_keep {
            return;
        }
        let max = self.max_logit();
        if max == f32::NEG_INFINITY {
            return;
        }
        let total: f64 = self
            .c
            .iter()
            .map(|c| f64::from((c.logit - max).exp()))
            .sum();
        let target = f64::from(p) * total;
        let n = self.c.len();
        let mut m = 256.min(n);
        loop {
            if m < n && !self.sorted {
                self.c.select_nth_unstable_by(m - 1, better);
                self.c[..m].sort_unstable_by(better);
            } else {
                self.sort();
            }
            let mut cum = 0f64;
            for (i, c) in self.c[..m].iter().enumerate() {
                cum += f64::from((c.logit - max).exp());
                if cum >= target && i + 1 >= min_keep {
                    self.c.truncate(i + 1);
                    self.sorted = true;
                    self.identity = false;
                    return;
                }
            }
            if m == n {
                return;
            }
            m = (m * 4).min(n);
        }
    }

    /// Keeps the candidates whose probability is at least `p` times the best one's (at
    /// least `min_keep`).
    pub fn min_p(&mut self, p: f32, min_keep: usize) {
        if p <= 0.0 || self.c.len() <= min_keep {
            return;
        }
        let max = self.max_logit();
        if max == f32::NEG_INFINITY {
            return;
        }
        let threshold = max + p.ln();
        let kept = self.c.iter().filter(|c| c.logit >= threshold).count();
        if kept >= min_keep {
            if kept < self.c.len() {
                self.c.retain(|c| c.logit >= threshold);
                self.identity = false;
            }
        } else {
            self.top_k(min_keep);
        }
    }

    /// Locally typical sampling: keeps the candidates whose surprise is closest to the
    /// distribution's entropy until they hold `p` of the mass (at least `min_keep`), in that
    /// order.
    pub fn typical(&mut self, p: f32, min_keep: usize) {
        if p >= 1.0 || self.c.len() <= min_keep {
            return;
        }
        if self.max_logit() == f32::NEG_INFINITY {
            return;
        }
        let probs = self.softmax().to_vec();
        let entropy: f64 = probs
            .iter()
            .filter(|&&q| q > 0.0)
            .map(|&q| -f64::from(q) * f64::from(q).ln())
            .sum();
        let score = |q: f32| {
            if q > 0.0 {
                (-f64::from(q).ln() - entropy).abs()
            } else {
                f64::INFINITY
            }
        };
        let mut order: Vec<usize> = (0..self.c.len()).collect();
        order.sort_by(|&a, &b| {
            score(probs[a])
                .total_cmp(&score(probs[b]))
                .then(better(&self.c[a], &self.c[b]))
        });
        let mut cum = 0f64;
        let mut keep = order.len();
        for (i, &j) in order.iter().enumerate() {
            cum += f64::from(probs[j]);
            if cum >= f64::from(p) && i + 1 >= min_keep {
                keep = i + 1;
                break;
            }
        }
        self.c = order[..keep].iter().map(|&j| self.c[j]).collect();
        self.sorted = false;
        self.identity = false;
    }

    /// Divides the logits by `t`; `t <= 0` keeps only the best candidate (greedy).
    pub fn temperature(&mut self, t: f32) {
        if t <= 0.0 {
            if let Some(best) = self.c.iter().copied().min_by(better) {
                self.c.clear();
                self.c.push(best);
                self.sorted = true;
                self.identity = false;
            }
            return;
        }
        if t != 1.0 {
            self.c.iter_mut().for_each(|c| c.logit /= t);
        }
    }

    /// XTC ("exclude top choices"), once `u < probability` was drawn: when two or more
    /// candidates have probability `threshold` or more, removes all of them but the least
    /// likely, unless that leaves fewer than `min_keep`.
    pub fn xtc(&mut self, threshold: f32, min_keep: usize) {
        let probs = self.softmax().to_vec();
        let above: Vec<usize> = (0..probs.len())
            .filter(|&i| probs[i] >= threshold)
            .collect();
        if above.len() < 2 || self.c.len() - (above.len() - 1) < min_keep.max(1) {
            return;
        }
        let last = above
            .iter()
            .copied()
            .max_by(|&a, &b| better(&self.c[a], &self.c[b]))
            .unwrap_or(above[0]);
        let drop: Vec<bool> = (0..self.c.len())
            .map(|i| i != last && probs[i] >= threshold)
            .collect();
        let mut i = 0;
        self.c.retain(|_| {
            i += 1;
            !drop[i - 1]
        });
        self.identity = false;
    }

    /// The best candidate, or an error when every logit is -inf (or NaN).
    pub fn greedy(&self) -> Result<u32> {
        self.c
            .iter()
            .filter(|c| c.logit > f32::NEG_INFINITY)
            .min_by(|a, b| better(a, b))
            .map(|c| c.token)
            .ok_or_else(all_excluded)
    }

    /// Draws a candidate with probability softmax(logit), from `u` uniform in `[0, 1)`.
    pub fn draw(&mut self, u: f64) -> Result<u32> {
        if self.max_logit() == f32::NEG_INFINITY {
            return Err(all_excluded());
        }
        self.softmax();
        let target = u * self.probs.iter().map(|&p| f64::from(p)).sum::<f64>();
        let mut cum = 0f64;
        let mut last = None;
        for (c, &p) in self.c.iter().zip(&self.probs) {
            if p > 0.0 {
                cum += f64::from(p);
                last = Some(c.token);
                if cum > target {
                    return Ok(c.token);
                }
            }
        }
        // Rounding left `target` a hair above the sum: the last possible candidate.
        last.ok_or_else(all_excluded)
    }
}

fn all_excluded() -> Error {
    Error::InvalidArg("no token can be sampled: every candidate's logit is -inf or NaN".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(logits: &[f32]) -> Candidates {
        let mut c = Candidates::default();
        c.reset(logits);
        c
    }

    fn tokens(c: &Candidates) -> Vec<u32> {
        c.c.iter().map(|c| c.token).collect()
    }

    #[test]
    fn filters_keep_what_they_promise() {
        let logits = [1.0, 3.0, f32::NAN, 3.0, -1.0, 2.0, f32::NEG_INFINITY, 0.5];
        let mut c = cands(&logits);
        c.top_k(3);
        assert_eq!(tokens(&c), [1, 3, 5], "ties by lower id");
        let mut c = cands(&logits);
        c.top_k(100);
        assert_eq!(tokens(&c), (0..8).collect::<Vec<_>>(), "off: unchanged");
        // min_p 0.3: keep p >= 0.3 * p_max, i.e. logit >= 3 + ln 0.3 = 1.796.
        let mut c = cands(&logits);
        c.min_p(0.3, 1);
        assert_eq!(tokens(&c), [1, 3, 5]);
        // top_p: 1 and 3 hold 2 * e^3 / sum; with p just above that, 5 joins.
        let mut c = cands(&logits);
        let probs = c.softmax().to_vec();
        let two = probs[1] + probs[3];
        c.top_p(two - 1e-4, 1);
        assert_eq!(tokens(&c), [1, 3]);
        let mut c = cands(&logits);
        c.top_p(two + 1e-4, 1);
        assert_eq!(tokens(&c), [1, 3, 5]);
        let mut c = cands(&logits);
        c.temperature(0.0);
        assert_eq!(tokens(&c), [1]);
        assert_eq!(cands(&logits).greedy().unwrap(), 1);
        assert!(
            cands(&[f32::NAN, f32::NEG_INFINITY])
                .greedy()
                .unwrap_err()
                .to_string()
                .contains("-inf")
        );
        assert!(cands(&[f32::NEG_INFINITY; 3]).draw(0.5).is_err());
        // +inf is the top choice, not a NaN in softmax.
        let mut c = cands(&[0.0, f32::INFINITY, 1.0]);
        assert_eq!(c.draw(0.99).unwrap(), 1);
        // XTC: 1 and 3 are above 0.3; 3 (the later in order) stays.
        let mut c = cands(&logits);
        c.xtc(0.3, 1);
        assert_eq!(tokens(&c), [0, 2, 3, 4, 5, 6, 7]);
        // Typical with p small keeps the most typical token.
        let mut c = cands(&[2.0, 1.0, 0.0]);
        c.typical(0.01, 1);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn top_p_over_a_large_list_sorts_only_a_prefix_and_agrees_with_a_full_sort() {
        let logits: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919 % 5000) as f32 / 500.0).sin() * 4.0)
            .collect();
        for p in [0.1f32, 0.5, 0.9, 0.999] {
            let mut c = cands(&logits);
            c.top_p(p, 1);
            let mut full = cands(&logits);
            full.sort();
            let probs = full.softmax().to_vec();
            let mut cum = 0f64;
            let keep = probs
                .iter()
                .position(|&q| {
                    cum += f64::from(q);
                    cum >= f64::from(p) - 1e-6
                })
                .unwrap()
                + 1;
            let d = c.len().abs_diff(keep);
            assert!(d <= 1, "p {p}: kept {} vs {keep}", c.len());
            assert_eq!(
                tokens(&c)[..c.len().min(keep)],
                tokens(&full)[..c.len().min(keep)]
            );
        }
    }
}
