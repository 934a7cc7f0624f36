//! A batch that fails its checks (empty, a token outside the vocabulary, a position that does
//! not continue its sequence, an unknown sequence) is refused with its reason and changes
//! nothing: not the cache, not the last logits, not what later decodes compute.

mod common;

use common::{SMOLLM2, context, decode_last, decode_rows, load, model};
use rocmforge::{Batch, Error, KvType};

#[test]
fn an_invalid_batch_is_refused_and_changes_nothing() {
    let Some(path) = model(SMOLLM2) else { return };
    let m = load(&path);
    let mut ctx = context(&m, 2, KvType::F16);
    let first = decode_last(&mut ctx, &[1, 504], 0);
    let n_vocab = ctx.n_vocab() as i32;
    let stats = ctx.kv_stats();
    let bad = |f: &dyn Fn(&mut Batch)| {
        let mut b = Batch::new();
        f(&mut b);
        b
    };
    for (b, why) in [
        (Batch::new(), "1 to 512 tokens"),
        (
            bad(&|b| b.add(n_vocab, 2, &[0], true).unwrap()),
            "out of range",
        ),
        (bad(&|b| b.add(5, 3, &[0], true).unwrap()), "expected 2"),
        (bad(&|b| b.add(5, 2, &[2], true).unwrap()), "n_seq_max 2"),
        (
            bad(&|b| {
                b.add(5, 2, &[0], true).unwrap();
                b.add(6, 2, &[0], true).unwrap();
            }),
            "expected 3",
        ),
    ] {
        let err = ctx.decode(&b).unwrap_err();
        assert!(matches!(err, Error::InvalidArg(_)), "{err}");
        assert!(err.to_string().contains(why), "{err} (wanted {why})");
        assert_eq!(ctx.kv_pos_range(0).unwrap(), Some((0, 1)));
        assert_eq!(ctx.kv_stats(), stats);
        // The last logits are still those of the last successful decode.
        assert_eq!(ctx.logits(-1).unwrap(), &first[..]);
    }
    // The cache still holds exactly the two valid positions: the next token's logits equal
    // those of the same three tokens run on a fresh sequence.
    let next = decode_last(&mut ctx, &[330], 0);
    let want = decode_rows(&mut ctx, &[1, 504, 330], 1);
    let diff = common::max_abs_diff(&next, &want[2 * n_vocab as usize..]);
    assert!(diff < 1e-2, "logits after refused batches differ by {diff}");
}
