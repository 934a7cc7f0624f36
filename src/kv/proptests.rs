//! Property tests of the cache's bookkeeping against a plain model: random sequences of
//! appends (some rolled back, some too big), copies, removals, keeps, frees and clears, with
//! invalid ids and ranges mixed in. After every step the cache's invariants hold
//! (`KvCache::check`: counts equal the tables holding each block, used + free = total, no
//! empty sequence holds a block), every sequence holds exactly the positions the model says,
//! and reading them back gives exactly the values written for them, so no copy-on-write ever
//! let one sequence's write reach another's positions.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const N_SEQ: usize = 4;
const N_LAYER: usize = 2;
const DIM: usize = 4;
const BS: usize = 4;
const N_CTX: usize = 64;

#[derive(Debug, Clone)]
enum Op {
    /// (sequence, tokens) for one batch; `start` for sequences that are empty; `fail` rolls
    /// the batch back as a failed forward pass would.
    Append {
        seqs: Vec<(usize, usize)>,
        start: i32,
        fail: bool,
    },
    Copy(usize, usize, i32, i32),
    Remove(usize, i32, i32),
    /// Removes `len` positions starting `offset` after the sequence's first.
    Hole(usize, i32, i32),
    Keep(usize),
    Free(usize),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    let seq = 0..N_SEQ + 1; // N_SEQ itself is an invalid id
    let pos = prop_oneof![1 => Just(-1i32), 4 => 0i32..30];
    prop_oneof![
        4 => (prop::collection::vec((0..N_SEQ, 1usize..10), 1..4), 0i32..20, prop::bool::weighted(0.15))
            .prop_map(|(seqs, start, fail)| Op::Append { seqs, start, fail }),
        3 => (seq.clone(), seq.clone(), pos.clone(), pos.clone()).prop_map(|(a, b, p, q)| Op::Copy(a, b, p, q)),
        2 => (seq.clone(), pos.clone(), pos).prop_map(|(a, p, q)| Op::Remove(a, p, q)),
        2 => (0..N_SEQ, 0..N_SEQ).prop_map(|(a, b)| Op::Copy(a, b, -1, -1)),
        2 => (0..N_SEQ, 1i32..12, 1i32..6).prop_map(|(a, o, n)| Op::Hole(a, o, n)),
        1 => seq.clone().prop_map(Op::Keep),
        1 => seq.prop_map(Op::Free),
        1 => Just(Op::Clear),
    ]
}

/// What each sequence holds: position -> the value written there.
type Held = Vec<BTreeMap<i32, f32>>;

/// The model's `[p0, p1)` with the C conventions, or None for an invalid range.
fn range(p0: i32, p1: i32) -> Option<(i32, i32)> {
    let (a, b) = (p0.max(0), if p1 < 0 { i32::MAX } else { p1 });
    (a <= b).then_some((a, b))
}

fn row(tag: f32, layer: usize) -> Vec<f32> {
    (0..DIM)
        .map(|i| tag + (layer * DIM + i) as f32 / 16.0)
        .collect()
}

/// The cache says what the model says, holds together, and reads back what was written.
fn agrees(kv: &KvCache, held: &Held) -> std::result::Result<(), String> {
    kv.check()?;
    let st = kv.stats();
    if st.n_seqs != held.iter().filter(|h| !h.is_empty()).count() {
        return Err(format!("n_seqs {} for {held:?}", st.n_seqs));
    }
    let (mut ks, mut vs, mut pos) = (Vec::new(), Vec::new(), Vec::new());
    for (s, h) in held.iter().enumerate() {
        let want: Vec<i32> = h.keys().copied().collect();
        let (first, last) = (want.first().copied(), want.last().copied());
        if kv.pos_range(s) != first.zip(last) {
            return Err(format!("sequence {s}: range {:?}", kv.pos_range(s)));
        }
        for layer in 0..N_LAYER {
            kv.gather(layer, s, (0, i32::MAX - 1), &mut ks, &mut vs, &mut pos)
                .map_err(|e| e.to_string())?;
            if pos != want {
                return Err(format!(
                    "sequence {s} holds {pos:?}, the model says {want:?}"
                ));
            }
            for (i, (_, &tag)) in h.iter().enumerate() {
                let (k, v) = (row(tag, layer), row(-tag, layer));
                if ks[i * DIM..][..DIM] != k[..] || vs[i * DIM..][..DIM] != v[..] {
                    return Err(format!(
                        "sequence {s} position {} reads wrong values",
                        want[i]
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Applies `op` to both; returns whether the cache accepted it.
fn apply(kv: &mut KvCache, held: &mut Held, next_tag: &mut f32, op: &Op) -> bool {
    let valid = |s: usize| s < N_SEQ;
    match *op {
        Op::Append {
            ref seqs,
            start,
            fail,
        } => {
            let mut appends: Vec<(usize, i32, usize)> = Vec::new();
            for &(s, n) in seqs {
                if appends.iter().all(|a| a.0 != s) {
                    let pos = held[s].keys().next_back().map_or(start, |p| p + 1);
                    appends.push((s, pos, n));
                }
            }
            let r = match kv.reserve(&appends) {
                Ok(r) => r,
                Err(Error::KvFull(_)) => {
                    let slots: usize = appends
                        .iter()
                        .map(|&(s, p, n)| kv.seqs[s].append_slots(p, n, BS).len())
                        .sum();
                    assert!(
                        kv.stats().n_blocks_total - kv.stats().n_blocks_used < slots,
                        "KvFull with enough free blocks"
                    );
                    return false;
                }
                Err(e) => panic!("reserve: {e}"),
            };
            let mut written = Vec::new();
            for &(s, p0, n) in &appends {
                for p in p0..p0 + n as i32 {
                    *next_tag += 1.0;
                    for layer in 0..N_LAYER {
                        kv.write(layer, s, p, &row(*next_tag, layer), &row(-*next_tag, layer))
                            .expect("write");
                    }
                    written.push((s, p, *next_tag));
                }
            }
            if fail {
                kv.rollback(r).expect("rollback");
                return false;
            }
            kv.commit(r).expect("commit");
            for (s, p, tag) in written {
                held[s].insert(p, tag);
            }
            true
        }
        Op::Copy(src, dst, p0, p1) => {
            let ok = valid(src) && valid(dst) && src != dst && range(p0, p1).is_some();
            let res = kv.copy(src, dst, p0, p1);
            assert_eq!(res.is_ok(), ok, "{op:?}: {res:?}");
            if let (true, Some((a, b))) = (ok, range(p0, p1)) {
                held[dst] = held[src].range(a..b).map(|(&p, &t)| (p, t)).collect();
            }
            ok
        }
        Op::Remove(s, p0, p1) => {
            let ok = valid(s) && range(p0, p1).is_some();
            let res = kv.remove(s, p0, p1);
            assert_eq!(res.is_ok(), ok, "{op:?}: {res:?}");
            if let (true, Some((a, b))) = (ok, range(p0, p1)) {
                held[s].retain(|&p, _| p < a || p >= b);
            }
            ok
        }
        Op::Hole(s, offset, len) => {
            let p0 = held[s].keys().next().map_or(0, |p| p + offset);
            apply(kv, held, next_tag, &Op::Remove(s, p0, p0 + len))
        }
        Op::Keep(s) => {
            let ok = valid(s);
            assert_eq!(kv.keep(s).is_ok(), ok);
            if ok {
                (0..N_SEQ).filter(|&o| o != s).for_each(|o| held[o].clear());
            }
            ok
        }
        Op::Free(s) => {
            let ok = valid(s);
            assert_eq!(kv.free_seq(s).is_ok(), ok);
            if ok {
                held[s].clear();
            }
            ok
        }
        Op::Clear => {
            kv.clear();
            held.iter_mut().for_each(BTreeMap::clear);
            true
        }
    }
}

fn new_cache() -> KvCache {
    KvCache::new(KvShape {
        n_layer: N_LAYER,
        k_dim: DIM,
        v_dim: DIM,
        n_ctx: N_CTX,
        block_size: BS,
        n_seq_max: N_SEQ,
        ty: KvType::F32,
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn the_cache_follows_the_model_and_never_leaks(ops in prop::collection::vec(op(), 1..80)) {
        let mut kv = new_cache();
        let mut held: Held = vec![BTreeMap::new(); N_SEQ];
        let mut tag = 0f32;
        for op in &ops {
            let before = (kv.stats(), (0..N_SEQ).map(|s| kv.seqs[s].clone()).collect::<Vec<_>>());
            let accepted = apply(&mut kv, &mut held, &mut tag, op);
            if !accepted {
                // Refused (or rolled back): exactly as before.
                prop_assert_eq!(&before.0, &kv.stats(), "{:?}", op);
                prop_assert_eq!(&before.1, &kv.seqs, "{:?}", op);
            }
            if let Err(why) = agrees(&kv, &held) {
                return Err(TestCaseError::fail(format!("after {op:?}: {why}")));
            }
        }
        for s in 0..N_SEQ {
            kv.free_seq(s).unwrap();
        }
        prop_assert_eq!(kv.stats().n_blocks_used, 0, "freeing every sequence frees every block");
    }
}
