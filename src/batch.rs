//! A batch of tokens for one decode: each with its position, the sequences it belongs to and
//! whether its logits are wanted. `Batch` only collects; `Plan::new` checks a batch against a
//! context before any work (tokens in the vocabulary, sequence ids in range, positions that
//! continue each sequence, a size the context accepts) and groups its rows by sequence for
//! attention. A batch that fails the check changes nothing.

use crate::kv::KvCache;
use crate::{Error, Result};

/// The most sequences one token may belong to.
pub const MAX_SEQS_PER_TOKEN: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct Batch {
    tokens: Vec<i32>,
    pos: Vec<i32>,
    /// Token i belongs to `seq_ids[seq_start[i]..seq_start[i + 1]]`.
    seq_start: Vec<usize>,
    seq_ids: Vec<i32>,
    output: Vec<bool>,
    /// The most tokens `add` accepts (`None`: no limit).
    capacity: Option<usize>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            seq_start: vec![0],
            ..Batch::default()
        }
    }

    /// A batch that holds at most `capacity` tokens (the C API's fixed-size batches).
    pub fn with_capacity(capacity: usize) -> Batch {
        Batch {
            capacity: Some(capacity),
            ..Batch::new()
        }
    }

    /// `tokens` of sequence `seq` at positions `pos0..`, with logits for the last one only.
    pub fn from_tokens(tokens: &[u32], pos0: i32, seq: i32) -> Result<Batch> {
        let mut b = Batch::new();
        for (i, &t) in tokens.iter().enumerate() {
            let t = i32::try_from(t).map_err(|_| Error::InvalidArg(format!("token {t}")))?;
            let pos = i32::try_from(i)
                .ok()
                .and_then(|i| pos0.checked_add(i))
                .ok_or_else(|| Error::Overflow("a batch position".into()))?;
            b.add(t, pos, &[seq], i + 1 == tokens.len())?;
        }
        Ok(b)
    }

    /// Appends a token. Only the batch's own limits are checked here (its capacity, one to
    /// `MAX_SEQS_PER_TOKEN` sequence ids); everything else is checked at decode.
    pub fn add(&mut self, token: i32, pos: i32, seq_ids: &[i32], output: bool) -> Result<()> {
        if let Some(cap) = self.capacity
            && self.tokens.len() >= cap
        {
            return Err(Error::InvalidArg(format!(
                "the batch is full (capacity {cap} tokens)"
            )));
        }
        if seq_ids.is_empty() || seq_ids.len() > MAX_SEQS_PER_TOKEN {
            return Err(Error::InvalidArg(format!(
                "a token belongs to 1 to {MAX_SEQS_PER_TOKEN} sequences, not {}",
                seq_ids.len()
            )));
        }
        self.tokens.push(token);
        self.pos.push(pos);
        self.seq_ids.extend_from_slice(seq_ids);
        self.seq_start.push(self.seq_ids.len());
        self.output.push(output);
        Ok(())
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pos.clear();
        self.seq_ids.clear();
        self.seq_start.truncate(1);
        self.output.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn seqs(&self, i: usize) -> &[i32] {
        &self.seq_ids[self.seq_start[i]..self.seq_start[i + 1]]
    }
}

/// The rows of one sequence's attention: rows whose first sequence id is `seq`.
#[derive(Debug)]
pub(crate) struct Group {
    pub seq: usize,
    pub rows: Vec<usize>,
}

/// A checked batch, ready for the forward pass.
#[derive(Debug)]
pub(crate) struct Plan {
    pub tokens: Vec<u32>,
    pub positions: Vec<i32>,
    /// Sequences of each row (checked), as in `Batch`.
    seq_start: Vec<usize>,
    seq_ids: Vec<usize>,
    /// Rows grouped by their first sequence, in order of first appearance.
    pub groups: Vec<Group>,
    /// Per sequence touched: (sequence, first new position, new positions).
    pub appends: Vec<(usize, i32, usize)>,
    /// Rows whose logits are wanted, in batch order.
    pub outputs: Vec<usize>,
}

impl Plan {
    /// Checks `b` for a context with `n_vocab` tokens, at most `n_batch` tokens per decode,
    /// and the cache `kv`.
    pub fn new(b: &Batch, n_vocab: usize, n_batch: usize, kv: &KvCache) -> Result<Plan> {
        let n = b.len();
        if n == 0 || n > n_batch {
            return Err(Error::InvalidArg(format!(
                "a batch holds 1 to {n_batch} tokens (the context's n_batch), not {n}"
            )));
        }
        let n_seq_max = kv.n_seq_max();
        let mut tokens = Vec::with_capacity(n);
        let mut seq_ids = Vec::with_capacity(b.seq_ids.len());
        // Next expected position per sequence (None: empty, anything goes) and new positions.
        let mut next: Vec<Option<i32>> = (0..n_seq_max).map(|s| kv.next_pos(s)).collect();
        let mut first_new: Vec<Option<(i32, usize)>> = vec![None; n_seq_max];
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of: Vec<Option<usize>> = vec![None; n_seq_max];
        for i in 0..n {
            let (t, pos) = (b.tokens[i], b.pos[i]);
            let t = u32::try_from(t)
                .ok()
                .filter(|&t| (t as usize) < n_vocab)
                .ok_or_else(|| {
                    Error::InvalidArg(format!(
                        "token {t} at batch row {i} is out of range (vocabulary of {n_vocab})"
                    ))
                })?;
            if !(0..i32::MAX).contains(&pos) {
                return Err(Error::InvalidArg(format!(
                    "position {pos} at batch row {i} is out of range (0 to {})",
                    i32::MAX - 1
                )));
            }
            tokens.push(t);
            let row_seqs = b.seqs(i);
            for (j, &s) in row_seqs.iter().enumerate() {
                let s = usize::try_from(s).ok().filter(|&s| s < n_seq_max).ok_or_else(|| {
                    Error::InvalidArg(format!(
                        "sequence id {s} at batch row {i} is out of range (the context has n_seq_max {n_seq_max})"
                    ))
                })?;
                if row_seqs[..j].contains(&row_seqs[j]) {
                    return Err(Error::InvalidArg(format!(
                        "sequence id {s} is listed twice at batch row {i}"
                    )));
                }
                if let Some(want) = next[s]
                    && want != pos
                {
                    return Err(Error::InvalidArg(format!(
                        "position {pos} at batch row {i} does not continue sequence {s} (expected {want})"
                    )));
                }
                next[s] = Some(pos + 1);
                match &mut first_new[s] {
                    Some((_, count)) => *count += 1,
                    slot @ None => *slot = Some((pos, 1)),
                }
                seq_ids.push(s);
            }
            let primary = seq_ids[seq_ids.len() - row_seqs.len()];
            match group_of[primary] {
                Some(g) => groups[g].rows.push(i),
                None => {
                    group_of[primary] = Some(groups.len());
                    groups.push(Group {
                        seq: primary,
                        rows: vec![i],
                    });
                }
            }
        }
        let appends = first_new
            .iter()
            .enumerate()
            .filter_map(|(s, f)| f.map(|(pos, count)| (s, pos, count)))
            .collect();
        Ok(Plan {
            tokens,
            positions: b.pos.clone(),
            seq_start: b.seq_start.clone(),
            seq_ids,
            groups,
            appends,
            outputs: (0..n).filter(|&i| b.output[i]).collect(),
        })
    }

    /// The sequences row `i` belongs to.
    pub fn row_seqs(&self, i: usize) -> &[usize] {
        &self.seq_ids[self.seq_start[i]..self.seq_start[i + 1]]
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvShape, KvType};

    fn kv() -> KvCache {
        KvCache::new(KvShape {
            n_layer: 1,
            k_dim: 8,
            v_dim: 8,
            n_ctx: 64,
            block_size: 16,
            n_seq_max: 2,
            ty: KvType::F32,
        })
        .unwrap()
    }

    #[test]
    fn rows_are_grouped_by_sequence_and_appends_counted() {
        let mut b = Batch::new();
        b.add(1, 0, &[0], false).unwrap();
        b.add(2, 5, &[1], true).unwrap();
        b.add(3, 1, &[0, 1], true).unwrap();
        let kv = kv();
        // Row 2 says position 1 for sequence 1, which expects 6.
        let err = Plan::new(&b, 10, 8, &kv).unwrap_err();
        assert!(err.to_string().contains("expected 6"), "{err}");
        let mut b = Batch::new();
        b.add(1, 0, &[0, 1], false).unwrap();
        b.add(2, 1, &[1], false).unwrap();
        b.add(3, 1, &[0], true).unwrap();
        let p = Plan::new(&b, 10, 8, &kv).unwrap();
        assert_eq!(p.groups.len(), 2);
        assert_eq!((p.groups[0].seq, &p.groups[0].rows[..]), (0, &[0, 2][..]));
        assert_eq!((p.groups[1].seq, &p.groups[1].rows[..]), (1, &[1][..]));
        assert_eq!(p.appends, vec![(0, 0, 2), (1, 0, 2)]);
        assert_eq!(p.outputs, vec![2]);
        assert_eq!(p.row_seqs(0), &[0, 1]);
    }

    #[test]
    fn every_bad_batch_is_refused_with_its_reason() {
        let kv = kv();
        let one = |t: i32, pos: i32, seqs: &[i32]| {
            let mut b = Batch::new();
            b.add(t, pos, seqs, true).map(|()| b)
        };
        for (b, why) in [
            (Batch::new(), "1 to 4 tokens"),
            (one(10, 0, &[0]).unwrap(), "out of range (vocabulary"),
            (one(-1, 0, &[0]).unwrap(), "token -1"),
            (one(1, -1, &[0]).unwrap(), "position -1"),
            (one(1, i32::MAX, &[0]).unwrap(), "position 2147483647"),
            (one(1, 0, &[2]).unwrap(), "n_seq_max 2"),
            (one(1, 0, &[0, 0]).unwrap(), "listed twice"),
        ] {
            let err = Plan::new(&b, 10, 4, &kv).unwrap_err().to_string();
            assert!(err.contains(why), "{err} (wanted {why})");
        }
        assert!(one(1, 0, &[]).is_err());
        let mut b = Batch::with_capacity(1);
        b.add(1, 0, &[0], true).unwrap();
        assert!(b.add(1, 1, &[0], true).is_err());
        let too_long = Batch::from_tokens(&[1; 5], 0, 0).unwrap();
        assert!(Plan::new(&too_long, 10, 4, &kv).is_err());
    }
}
