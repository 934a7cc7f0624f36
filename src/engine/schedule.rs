//! The scheduler's arithmetic, apart from the worker so it can be tested alone: how many KV
//! blocks the running sequences claim, which to preempt when they do not fit, whether a
//! waiting request may start, and how a step's token budget is shared out.
//!
//! A sequence's claim is the blocks its tokens need once all of them are in the cache
//! (positions `0..n_tokens`, whole blocks). Admission and preemption use the same claim, so
//! a sequence that was admitted always has room for its prompt; only growth (one token a step)
//! can run the cache out, and then the newest sequence gives way.

/// A running sequence as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqView {
    /// Admission order: larger is newer.
    pub id: u64,
    /// Tokens the cache must hold for the next sample (prompt + generated).
    pub n_tokens: usize,
    /// Tokens already in the cache.
    pub in_kv: usize,
}

pub(crate) fn claim(n_tokens: usize, block_size: usize) -> usize {
    n_tokens.div_ceil(block_size)
}

pub(crate) fn claims(running: &[SeqView], block_size: usize) -> usize {
    running.iter().map(|s| claim(s.n_tokens, block_size)).sum()
}

/// Indices of the sequences to preempt, newest first, until the rest fit in `total` blocks.
pub(crate) fn preempt(running: &[SeqView], total: usize, block_size: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..running.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(running[i].id));
    let mut need = claims(running, block_size);
    let mut out = Vec::new();
    for i in order {
        if need <= total {
            break;
        }
        need -= claim(running[i].n_tokens, block_size);
        out.push(i);
    }
    out
}

/// Whether a request of `n_tokens` may start beside `running` in `total` blocks.
pub(crate) fn admits(running: &[SeqView], n_tokens: usize, total: usize, bs: usize) -> bool {
    claims(running, bs) + claim(n_tokens, bs) <= total
}

/// Tokens each running sequence feeds this step, as `(index, count)`: first one for every
/// sequence that is generating (one token left to feed), then prompt chunks in admission
/// order while the budget lasts.
pub(crate) fn plan(running: &[SeqView], budget: usize) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..running.len()).collect();
    order.sort_by_key(|&i| running[i].id);
    let left = |s: &SeqView| s.n_tokens - s.in_kv;
    let mut out = Vec::new();
    let mut budget = budget;
    for &i in order.iter().filter(|&&i| left(&running[i]) == 1) {
        if budget == 0 {
            break;
        }
        out.push((i, 1));
        budget -= 1;
    }
    for &i in order.iter().filter(|&&i| left(&running[i]) > 1) {
        if budget == 0 {
            break;
        }
        let n = left(&running[i]).min(budget);
        out.push((i, n));
        budget -= n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(id: u64, n_tokens: usize, in_kv: usize) -> SeqView {
        SeqView {
            id,
            n_tokens,
            in_kv,
        }
    }

    #[test]
    fn claims_count_whole_blocks() {
        assert_eq!(claim(0, 16), 0);
        assert_eq!(claim(1, 16), 1);
        assert_eq!(claim(16, 16), 1);
        assert_eq!(claim(17, 16), 2);
        assert_eq!(claims(&[seq(0, 17, 0), seq(1, 3, 2)], 16), 3);
    }

    #[test]
    fn the_newest_gives_way_first() {
        let r = [seq(5, 32, 31), seq(9, 17, 16), seq(7, 16, 15)];
        // 2 + 2 + 1 = 5 blocks.
        assert_eq!(preempt(&r, 5, 16), Vec::<usize>::new());
        assert_eq!(preempt(&r, 4, 16), vec![1]);
        assert_eq!(preempt(&r, 2, 16), vec![1, 2]);
        assert_eq!(preempt(&r, 0, 16), vec![1, 2, 0]);
    }

    #[test]
    fn admission_uses_the_same_claims() {
        let r = [seq(0, 20, 20)];
        assert!(admits(&r, 32, 4, 16));
        assert!(!admits(&r, 33, 4, 16));
        assert!(admits(&[], 64, 4, 16));
    }

    #[test]
    fn decodes_first_then_prompt_chunks_in_order() {
        let r = [seq(3, 100, 0), seq(1, 9, 8), seq(2, 50, 10), seq(0, 5, 4)];
        assert_eq!(plan(&r, 512), vec![(3, 1), (1, 1), (2, 40), (0, 100)]);
        assert_eq!(plan(&r, 30), vec![(3, 1), (1, 1), (2, 28)]);
        assert_eq!(plan(&r, 1), vec![(3, 1)]);
        assert_eq!(plan(&r, 0), vec![]);
    }
}
