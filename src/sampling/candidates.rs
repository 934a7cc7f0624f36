//! The candidates a sampler chain works on, and the operations of each sampler on them.
//!
//! Candidates start as every token of the vocabulary in id order with its logit (NaN becomes
//! -inf, so it is never chosen; +inf becomes the largest finite float, so softmax stays
//! defined). That starting set is not copied: while it is whole ("full"), the row of logits is
//! read in place, penalties and biases are a short sorted list of overridden logits, and a
//! temperature is a pending divisor. Top-k, greedy and min-p then read the row once and keep
//! only what they select; filters that need every probability (top-p, typical, XTC, the
//! draw) copy the set out first. Nothing ever sorts the whole vocabulary when fewer tokens
//! are wanted: top-k keeps the k best through a bounded heap, top-p sorts a growing prefix
//! only until it holds p of the mass. "Best" is a total order: higher logit first, lower
//! token id on ties, so every result is deterministic.

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

/// The `k` best candidates offered so far, in a min-heap on `better`'s order (`k` >= 1).
struct Best {
    k: usize,
    heap: BinaryHeap<Reverse<(Rank, u32)>>,
}

impl Best {
    fn new(k: usize) -> Best {
        Best {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    fn is_full(&self) -> bool {
        self.heap.len() == self.k
    }

    /// The worst logit held (meaningful once full).
    fn worst(&self) -> f32 {
        self.heap
            .peek()
            .map_or(f32::NEG_INFINITY, |w| f32::from_bits(w.0.1))
    }

    fn offer(&mut self, c: Cand) {
        let r = rank(&c);
        if self.heap.len() < self.k {
            self.heap.push(Reverse((r, c.logit.to_bits())));
        } else if self.heap.peek().is_some_and(|w| r > w.0.0) {
            self.heap.pop();
            self.heap.push(Reverse((r, c.logit.to_bits())));
        }
    }

    fn into_sorted(self) -> Vec<Cand> {
        let mut kept: Vec<Cand> = self
            .heap
            .into_iter()
            .map(|Reverse(((_, Reverse(token)), bits))| Cand {
                token,
                logit: f32::from_bits(bits),
            })
            .collect();
        kept.sort_unstable_by(better);
        kept
    }
}

/// The `k` best of `items`, sorted: a bounded heap for small `k` (one pass, nearly every item
/// rejected by one comparison), a selection for large.
fn heap_best(items: impl Iterator<Item = Cand>, k: usize) -> Vec<Cand> {
    if k == 0 {
        return Vec::new();
    }
    if k > 4096 {
        let mut all: Vec<Cand> = items.collect();
        if k < all.len() {
            all.select_nth_unstable_by(k - 1, better);
            all.truncate(k);
        }
        all.sort_unstable_by(better);
        return all;
    }
    let mut best = Best::new(k);
    items.for_each(|c| best.offer(c));
    best.into_sorted()
}

/// The row's logits as candidates in id order.
fn row_cands(row: &[f32]) -> impl Iterator<Item = Cand> + '_ {
    row.iter().enumerate().map(|(t, &l)| Cand {
        token: t as u32,
        logit: clean(l),
    })
}

/// `heap_best` of a whole row of raw logits, skipping every run of 64 whose largest logit
/// cannot enter the full heap (a vectorised max instead of 64 comparisons). A skipped logit
/// equal to the heap's worst loses the tie anyway: its token id is higher.
fn row_best(row: &[f32], k: usize) -> Vec<Cand> {
    const RUN: usize = 64;
    if k == 0 || k > 4096 || row.len() <= k {
        return heap_best(row_cands(row), k);
    }
    let mut best = Best::new(k);
    for (r, run) in row.chunks(RUN).enumerate() {
        // f32::max ignores NaN, which is -inf here and never enters a full heap.
        let top = run.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        if best.is_full() && clean(top) <= best.worst() {
            continue;
        }
        row_cands(run).for_each(|c| {
            best.offer(Cand {
                token: c.token + (r * RUN) as u32,
                ..c
            })
        });
    }
    best.into_sorted()
}

#[derive(Debug, Clone)]
pub(crate) struct Candidates {
    /// The candidates once copied out of the row (`full` false).
    pub c: Vec<Cand>,
    /// `c` is in `better` order.
    sorted: bool,
    /// The candidates are every token of the row, read in place, with `overrides` and
    /// `scale` applied.
    full: bool,
    /// While full: (token, logit before `scale`) of the tokens whose logit changed, sorted by
    /// token.
    overrides: Vec<(u32, f32)>,
    /// While full: the product of the temperatures applied (every logit is divided by it).
    scale: f32,
    /// Softmax of the logits, in `c`'s order (scratch).
    probs: Vec<f32>,
}

impl Default for Candidates {
    fn default() -> Self {
        Candidates {
            c: Vec::new(),
            sorted: false,
            full: true,
            overrides: Vec::new(),
            scale: 1.0,
            probs: Vec::new(),
        }
    }
}

/// A row's logit as a candidate's: NaN is -inf, +inf the largest float.
fn clean(l: f32) -> f32 {
    if l.is_nan() {
        f32::NEG_INFINITY
    } else {
        l.min(f32::MAX)
    }
}

impl Candidates {
    /// Starts over: every token of the next row.
    pub fn reset(&mut self) {
        self.c.clear();
        self.sorted = false;
        self.full = true;
        self.overrides.clear();
        self.scale = 1.0;
    }

    #[cfg(test)]
    pub fn len(&self, row: &[f32]) -> usize {
        if self.full { row.len() } else { self.c.len() }
    }

    /// Where token `t` is (`Ok`) or would go (`Err`) in `overrides`.
    fn find_override(&self, t: u32) -> std::result::Result<usize, usize> {
        self.overrides.binary_search_by_key(&t, |o| o.0)
    }

    /// While full: token `t`'s logit before the pending divisor.
    fn base(&self, row: &[f32], t: u32) -> f32 {
        match self.find_override(t) {
            Ok(i) => self.overrides[i].1,
            Err(_) => clean(row[t as usize]),
        }
    }

    /// Copies the whole set out of the row (it stops being full).
    fn materialize(&mut self, row: &[f32]) {
        if !self.full {
            return;
        }
        let scale = self.scale;
        self.c.clear();
        self.c.extend(row_cands(row));
        for &(t, l) in &self.overrides {
            self.c[t as usize].logit = l;
        }
        if scale != 1.0 {
            self.c.iter_mut().for_each(|c| c.logit /= scale);
        }
        self.full = false;
        self.sorted = false;
    }

    /// Sets the logit of each listed token still present to `f(logit, x)` for its `(token,
    /// x)`; tokens outside the row are ignored.
    pub fn adjust(&mut self, row: &[f32], list: &[(u32, f32)], f: impl Fn(f32, f32) -> f32) {
        if self.full {
            for &(t, x) in list {
                if t as usize >= row.len() {
                    continue;
                }
                let now = f(self.base(row, t) / self.scale, x) * self.scale;
                match self.find_override(t) {
                    Ok(i) => self.overrides[i].1 = now,
                    Err(i) => self.overrides.insert(i, (t, now)),
                }
            }
            return;
        }
        let mut sorted: Vec<(u32, f32)> = list.to_vec();
        sorted.sort_by_key(|e| e.0);
        for c in &mut self.c {
            let from = sorted.partition_point(|e| e.0 < c.token);
            for &(_, x) in sorted[from..].iter().take_while(|e| e.0 == c.token) {
                c.logit = f(c.logit, x);
            }
        }
        self.sorted = false;
    }

    /// While full: the `k` best (by logit), sorted, read from the row in one pass.
    fn best_of_row(&self, row: &[f32], k: usize) -> Vec<Cand> {
        // Ranked by the row's own logits, the k + m best surely hold every token that is
        // among the k best after the m overrides (at most m overridden tokens rank above
        // it); the overridden tokens themselves are added with their new logits.
        let m = self.overrides.len();
        let mut pool = row_best(row, k + m);
        pool.retain(|c| self.find_override(c.token).is_err());
        pool.extend(
            self.overrides
                .iter()
                .map(|&(token, logit)| Cand { token, logit }),
        );
        pool.sort_unstable_by(better);
        pool.truncate(k);
        let scale = self.scale;
        if scale != 1.0 {
            pool.iter_mut().for_each(|c| c.logit /= scale);
        }
        pool
    }

    /// Keeps the `k` best, sorted (`k` at least the set's size: off, nothing moves).
    pub fn top_k(&mut self, row: &[f32], k: usize) {
        if self.full {
            if k < row.len() {
                self.c = self.best_of_row(row, k);
                self.full = false;
                self.sorted = true;
            }
            return;
        }
        if k >= self.c.len() {
            return;
        }
        self.c = heap_best(self.c.iter().copied(), k);
        self.sorted = true;
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.c.sort_unstable_by(better);
            self.sorted = true;
        }
    }

    fn max_logit(&self) -> f32 {
        if self.sorted {
            return self.c.first().map_or(f32::NEG_INFINITY, |c| c.logit);
        }
        self.c.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit))
    }

    /// Softmax of the current logits into `self.probs`, in `c`'s order (all zero when every
    /// logit is -inf).
    pub fn softmax(&mut self, row: &[f32]) -> &[f32] {
        self.materialize(row);
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
    pub fn top_p(&mut self, row: &[f32], p: f32, min_keep: usize) {
        if p >= 1.0 {
            return;
        }
        self.materialize(row);
        if self.c.len() <= min_keep {
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
    pub fn min_p(&mut self, row: &[f32], p: f32, min_keep: usize) {
        if p <= 0.0 {
            return;
        }
        if self.full {
            return self.min_p_of_row(row, p, min_keep);
        }
        if self.c.len() <= min_keep {
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
            }
        } else {
            self.top_k(row, min_keep);
        }
    }

    /// `min_p` while full: one pass over the row, keeping only what passes (in id order).
    fn min_p_of_row(&mut self, row: &[f32], p: f32, min_keep: usize) {
        let Some(best) = self.best_of_row(row, 1).first().copied() else {
            return;
        };
        if best.logit == f32::NEG_INFINITY || row.len() <= min_keep {
            return;
        }
        let threshold = (best.logit + p.ln()) * self.scale; // before the pending divisor
        let overridden = |t: u32| self.find_override(t).is_ok();
        let mut kept: Vec<Cand> = row_cands(row)
            .filter(|c| c.logit >= threshold && !overridden(c.token))
            .collect();
        for &(token, logit) in &self.overrides {
            if logit >= threshold {
                let at = kept.partition_point(|c| c.token < token);
                kept.insert(at, Cand { token, logit });
            }
        }
        if kept.len() == row.len() {
            return;
        }
        if kept.len() < min_keep {
            return self.top_k(row, min_keep);
        }
        let scale = self.scale;
        kept.iter_mut().for_each(|c| c.logit /= scale);
        self.c = kept;
        self.full = false;
        self.sorted = false;
    }

    /// Locally typical sampling: keeps the candidates whose surprise is closest to the
    /// distribution's entropy until they hold `p` of the mass (at least `min_keep`), in that
    /// order.
    pub fn typical(&mut self, row: &[f32], p: f32, min_keep: usize) {
        if p >= 1.0 {
            return;
        }
        self.materialize(row);
        if self.c.len() <= min_keep {
            return;
        }
        if self.max_logit() == f32::NEG_INFINITY {
            return;
        }
        let probs = self.softmax(row).to_vec();
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
    }

    /// Divides the logits by `t`; `t <= 0` keeps only the best candidate (greedy).
    pub fn temperature(&mut self, row: &[f32], t: f32) {
        if self.full {
            if t <= 0.0 {
                self.c = self.best_of_row(row, 1);
                self.full = false;
                self.sorted = true;
            } else {
                self.scale *= t;
            }
            return;
        }
        if t <= 0.0 {
            if let Some(best) = self.c.iter().copied().min_by(better) {
                self.c.clear();
                self.c.push(best);
                self.sorted = true;
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
    pub fn xtc(&mut self, row: &[f32], threshold: f32, min_keep: usize) {
        let probs = self.softmax(row).to_vec();
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
    }

    /// The best candidate, or an error when every logit is -inf (or NaN).
    pub fn greedy(&self, row: &[f32]) -> Result<u32> {
        let best;
        let list = if self.full {
            best = self.best_of_row(row, 1);
            &best
        } else {
            &self.c
        };
        list.iter()
            .filter(|c| c.logit > f32::NEG_INFINITY)
            .min_by(|a, b| better(a, b))
            .map(|c| c.token)
            .ok_or_else(all_excluded)
    }

    /// Draws a candidate with probability softmax(logit), from `u` uniform in `[0, 1)`.
    pub fn draw(&mut self, row: &[f32], u: f64) -> Result<u32> {
        self.materialize(row);
        if self.max_logit() == f32::NEG_INFINITY {
            return Err(all_excluded());
        }
        self.softmax(row);
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

    fn tokens(c: &Candidates, row: &[f32]) -> Vec<u32> {
        if c.full {
            return (0..row.len() as u32).collect();
        }
        c.c.iter().map(|c| c.token).collect()
    }

    #[test]
    fn filters_keep_what_they_promise() {
        let row = [1.0, 3.0, f32::NAN, 3.0, -1.0, 2.0, f32::NEG_INFINITY, 0.5];
        let mut c = Candidates::default();
        c.top_k(&row, 3);
        assert_eq!(tokens(&c, &row), [1, 3, 5], "ties by lower id");
        c.reset();
        c.top_k(&row, 100);
        assert_eq!(
            tokens(&c, &row),
            (0..8).collect::<Vec<_>>(),
            "off: unchanged"
        );
        // min_p 0.3: keep p >= 0.3 * p_max, i.e. logit >= 3 + ln 0.3 = 1.796, in id order.
        c.reset();
        c.min_p(&row, 0.3, 1);
        assert_eq!(tokens(&c, &row), [1, 3, 5]);
        // top_p: 1 and 3 hold 2 * e^3 / sum; with p just above that, 5 joins.
        c.reset();
        let probs = c.softmax(&row).to_vec();
        let two = probs[1] + probs[3];
        c.reset();
        c.top_p(&row, two - 1e-4, 1);
        assert_eq!(tokens(&c, &row), [1, 3]);
        c.reset();
        c.top_p(&row, two + 1e-4, 1);
        assert_eq!(tokens(&c, &row), [1, 3, 5]);
        c.reset();
        c.temperature(&row, 0.0);
        assert_eq!(tokens(&c, &row), [1]);
        c.reset();
        assert_eq!(c.greedy(&row).unwrap(), 1);
        let dead = [f32::NAN, f32::NEG_INFINITY];
        c.reset();
        assert!(c.greedy(&dead).unwrap_err().to_string().contains("-inf"));
        c.reset();
        assert!(c.draw(&[f32::NEG_INFINITY; 3], 0.5).is_err());
        // +inf is the top choice, not a NaN in softmax.
        c.reset();
        assert_eq!(c.draw(&[0.0, f32::INFINITY, 1.0], 0.99).unwrap(), 1);
        // XTC: 1 and 3 are above 0.3; 3 (the later in order) stays.
        c.reset();
        c.xtc(&row, 0.3, 1);
        assert_eq!(tokens(&c, &row), [0, 2, 3, 4, 5, 6, 7]);
        // Typical with p small keeps the most typical token.
        c.reset();
        c.typical(&[2.0, 1.0, 0.0], 0.01, 1);
        assert_eq!(c.len(&[2.0, 1.0, 0.0]), 1);
    }

    /// Every operation gives the same result on the row read in place (with overrides and a
    /// pending temperature) as on the same set copied out first.
    #[test]
    fn the_full_set_read_in_place_equals_its_copy() {
        let row: Vec<f32> = (0..3000)
            .map(|i| ((i * 7919 % 3000) as f32 / 300.0).sin() * 4.0)
            .collect();
        let bias: Vec<(u32, f32)> =
            vec![(5, 9.0), (17, -3.0), (2999, 2.0), (40, f32::NEG_INFINITY)];
        type Op = fn(&mut Candidates, &[f32]);
        let ops: [(&str, Op); 4] = [
            ("top_k 10", |c, r| c.top_k(r, 10)),
            ("min_p 0.2", |c, r| c.min_p(r, 0.2, 1)),
            ("min_p 0.9 min_keep 5", |c, r| c.min_p(r, 0.9, 5)),
            ("temperature 0", |c, r| c.temperature(r, 0.0)),
        ];
        for (name, op) in ops {
            let prep = |c: &mut Candidates, copy: bool| {
                c.reset();
                c.adjust(&row, &bias, |l, b| l + b);
                c.temperature(&row, 0.7);
                if copy {
                    c.materialize(&row);
                }
                op(c, &row);
            };
            let (mut lazy, mut copied) = (Candidates::default(), Candidates::default());
            prep(&mut lazy, false);
            prep(&mut copied, true);
            assert!(!lazy.full, "{name}");
            let mut a = lazy.c.clone();
            let mut b = copied.c.clone();
            a.sort_by(better);
            b.sort_by(better);
            assert_eq!(a, b, "{name}");
            assert_eq!(
                lazy.greedy(&row).unwrap(),
                copied.greedy(&row).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn the_skipping_row_scan_equals_the_plain_heap() {
        let mut row: Vec<f32> = (0..1000).map(|i| ((i * 31 % 17) as f32) - 8.0).collect();
        row[3] = f32::NAN;
        row[500] = f32::INFINITY;
        row[900] = f32::NEG_INFINITY;
        for k in [1, 2, 7, 64, 65, 300, 999, 1000, 5000] {
            let plain = heap_best(row_cands(&row), k);
            assert_eq!(row_best(&row, k), plain, "k {k}");
        }
    }

    #[test]
    fn top_p_over_a_large_list_sorts_only_a_prefix_and_agrees_with_a_full_sort() {
        let logits: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919 % 5000) as f32 / 500.0).sin() * 4.0)
            .collect();
        for p in [0.1f32, 0.5, 0.9, 0.999] {
            let mut c = Candidates::default();
            c.top_p(&logits, p, 1);
            let mut full = Candidates::default();
            full.materialize(&logits);
            full.sort();
            let probs = full.softmax(&logits).to_vec();
            let mut cum = 0f64;
            let keep = probs
                .iter()
                .position(|&q| {
                    cum += f64::from(q);
                    cum >= f64::from(p) - 1e-6
                })
                .unwrap()
                + 1;
            let n = c.len(&logits);
            assert!(n.abs_diff(keep) <= 1, "p {p}: kept {n} vs {keep}");
            let m = n.min(keep);
            assert_eq!(tokens(&c, &logits)[..m], tokens(&full, &logits)[..m]);
        }
    }
}
