//! The scheduler's arithmetic, apart from the worker so it can be tested alone: how many
//! more KV blocks the running sequences need, how a step's token budget is shared out, and
//! how much of a prompt a resident sequence already holds.
//!
//! A sequence holds positions `0..in_kv` in whole blocks and needs, to sample its next token,
//! positions `0..n_tokens`: its growth is `blocks(n_tokens) - blocks(in_kv)`. The worker
//! admits a request only when the growth of everything running plus the new request's fits in
//! the free blocks, and when growth alone outruns them the newest sequence gives way. Shared
//! prefix blocks are whole and never written again, so they need no copy.

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

pub(crate) fn blocks(n_tokens: usize, block_size: usize) -> usize {
    n_tokens.div_ceil(block_size)
}

/// Blocks the running sequences still need to hold all their tokens.
pub(crate) fn growth(running: &[SeqView], block_size: usize) -> usize {
    running
        .iter()
        .map(|s| blocks(s.n_tokens, block_size) - blocks(s.in_kv, block_size))
        .sum()
}

/// Tokens a new sequence may take from a resident one holding `held`: the common prefix in
/// whole blocks, leaving at least the prompt's last token to compute (its logits are needed).
pub(crate) fn shareable(prompt: &[u32], held: &[u32], block_size: usize) -> usize {
    let common = prompt.iter().zip(held).take_while(|(a, b)| a == b).count();
    let limit = common.min(prompt.len().saturating_sub(1));
    limit / block_size * block_size
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
    fn growth_counts_whole_blocks_still_missing() {
        assert_eq!(blocks(0, 16), 0);
        assert_eq!(blocks(16, 16), 1);
        assert_eq!(blocks(17, 16), 2);
        // 17 tokens, none held: 2; 33 needed with 32 held: 1; 20 with 17 held: 0.
        assert_eq!(
            growth(&[seq(0, 17, 0), seq(1, 33, 32), seq(2, 20, 17)], 16),
            3
        );
    }

    #[test]
    fn sharing_takes_whole_blocks_and_leaves_the_last_token() {
        let a: Vec<u32> = (0..40).collect();
        let mut b = a.clone();
        b[35] = 999;
        assert_eq!(shareable(&a, &b, 16), 32);
        assert_eq!(shareable(&a[..33], &a, 16), 32);
        // The whole prompt is held: the last token is computed again.
        assert_eq!(shareable(&a[..32], &a, 16), 16);
        assert_eq!(shareable(&a[..10], &a, 16), 0);
        assert_eq!(shareable(&[], &a, 16), 0);
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
