//! DRY ("don't repeat yourself", p-e-w's sampler, as text-generation-webui defines it): a
//! token that would extend a repetition of the text's tail is penalised by
//! `multiplier * base^(n - allowed_length)`, `n` the length of the repeated run it would
//! continue (when `n >= allowed_length`). Runs never cross a sequence breaker (a token whose
//! text holds one of the breaker strings, by default newline, colon, quote, asterisk), a
//! breaker is never penalised, and a breaker as the last token turns the penalty off.
//!
//! The longest run for every earlier position comes from one Z-function pass over the
//! reversed history, O(n) for a window of n tokens however repetitive the text is.

use crate::Model;

/// The breakers text-generation-webui and llama.cpp use by default.
pub const DEFAULT_BREAKERS: [&str; 4] = ["\n", ":", "\"", "*"];

/// The tokens of `model` whose text contains one of `strings` (sorted, for `penalties`).
pub fn breaker_tokens(model: &Model, strings: &[&str]) -> Vec<u32> {
    let tok = model.tokenizer();
    let n = model.hparams().n_vocab;
    let mut piece = Vec::new();
    let mut out = Vec::new();
    for t in 0..n {
        piece.clear();
        if tok.token_to_piece(t, false, &mut piece).is_err() {
            continue;
        }
        if strings
            .iter()
            .any(|s| !s.is_empty() && memchr::memmem::find(&piece, s.as_bytes()).is_some())
        {
            out.push(t);
        }
    }
    out
}

/// z[k]: the length of the longest common prefix of `s` and `s[k..]` (z[0] = len).
fn z_function(s: &[u32]) -> Vec<usize> {
    let n = s.len();
    let mut z = vec![0; n];
    if n == 0 {
        return z;
    }
    z[0] = n;
    let (mut l, mut r) = (0, 0);
    for k in 1..n {
        if k < r {
            z[k] = z[k - l].min(r - k);
        }
        while k + z[k] < n && s[z[k]] == s[k + z[k]] {
            z[k] += 1;
        }
        if k + z[k] > r {
            l = k;
            r = k + z[k];
        }
    }
    z
}

/// (token, penalty) for every token that would continue a repeat of `history`'s tail at
/// least `allowed_length` long. `breakers` is sorted.
pub(crate) fn penalties(
    history: &[u32],
    breakers: &[u32],
    multiplier: f32,
    base: f32,
    allowed_length: usize,
) -> Vec<(u32, f32)> {
    let is_breaker = |t: u32| breakers.binary_search(&t).is_ok();
    let n = history.len();
    // The tail a run may cover: the tokens after the last breaker.
    let tail = history
        .iter()
        .rev()
        .take_while(|&&t| !is_breaker(t))
        .count();
    if multiplier == 0.0 || tail == 0 || n < 2 {
        return Vec::new();
    }
    let rev: Vec<u32> = history.iter().rev().copied().collect();
    let z = z_function(&rev);
    // rev[k..] starts at history[n - 1 - k]: z[k] tokens ending there repeat the tail, and
    // history[n - k] is the token that followed them.
    let mut best: Vec<(u32, usize)> = z
        .iter()
        .enumerate()
        .skip(1)
        .map(|(k, &zk)| (history[n - k], zk.min(tail)))
        .filter(|&(next, run)| run >= allowed_length.max(1) && !is_breaker(next))
        .collect();
    // The longest run per token: sorted by token, longest first, one entry each.
    best.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    best.dedup_by_key(|e| e.0);
    best.into_iter()
        .map(|(t, run)| {
            let p = f64::from(multiplier)
                * f64::from(base).powi((run - allowed_length).min(1000) as i32);
            (t, p.min(f64::from(f32::MAX)) as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, directly: for every earlier position, extend the match backwards.
    fn naive(h: &[u32], breakers: &[u32], allowed: usize) -> Vec<(u32, usize)> {
        let br = |t: u32| breakers.contains(&t);
        let n = h.len();
        let mut best: Vec<(u32, usize)> = Vec::new();
        if n < 2 || br(h[n - 1]) {
            return best;
        }
        for i in 0..n - 1 {
            if h[i] != h[n - 1] || br(h[i + 1]) {
                continue;
            }
            let mut len = 1;
            while len <= i && !br(h[n - 1 - len]) && h[i - len] == h[n - 1 - len] {
                len += 1;
            }
            if len >= allowed.max(1) {
                match best.iter_mut().find(|b| b.0 == h[i + 1]) {
                    Some(b) => b.1 = b.1.max(len),
                    None => best.push((h[i + 1], len)),
                }
            }
        }
        best
    }

    #[test]
    fn runs_equal_the_definition() {
        let mut x = 12345u64;
        for case in 0..300 {
            let n = 1 + case % 60;
            let alphabet = 2 + (case % 5) as u64;
            let h: Vec<u32> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % alphabet) as u32
                })
                .collect();
            let breakers: Vec<u32> = if case % 3 == 0 { vec![0] } else { vec![] };
            for allowed in [1, 2, 3] {
                let mut want = naive(&h, &breakers, allowed);
                // Penalty with base 2, multiplier 1: 2^(run - allowed) names the run.
                let mut got: Vec<(u32, usize)> = penalties(&h, &breakers, 1.0, 2.0, allowed)
                    .into_iter()
                    .map(|(t, p)| (t, allowed + p.log2().round() as usize))
                    .collect();
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(
                    got, want,
                    "history {h:?}, breakers {breakers:?}, allowed {allowed}"
                );
            }
        }
    }

    #[test]
    fn a_repeated_phrase_is_penalised_by_its_length() {
        // "a b c d X a b c" -> d would repeat a run of 3: 0.8 * 1.75^(3 - 2).
        let h = [1, 2, 3, 4, 9, 1, 2, 3];
        let p = penalties(&h, &[], 0.8, 1.75, 2);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, 4);
        assert!((p[0].1 - 1.4).abs() < 1e-6, "{p:?}");
        // A breaker inside the tail cuts the run to 2: 0.8 * 1.75^0.
        let p = penalties(&h, &[1], 0.8, 1.75, 2);
        assert_eq!(p, vec![(4, 0.8)]);
        // A breaker last: no penalty.
        assert!(penalties(&[1, 2, 1, 2, 7], &[7], 1.0, 2.0, 1).is_empty());
        assert!(
            penalties(&h, &[], 0.0, 1.75, 2).is_empty(),
            "multiplier 0 is off"
        );
    }
}
