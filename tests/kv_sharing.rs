//! The paged KV cache's sharing and truncation, end to end through `Context`: a system prompt
//! decoded once and shared by eight sequences gives each the logits of decoding its whole
//! text alone with a fraction of the blocks; truncating and re-decoding equals a fresh
//! context given the final text; a batch whose copy-on-writes do not fit is `KvFull` and
//! changes nothing; all of it holds for F16, F32 and Q8_0 storage, whose reported size is the
//! allocation; and a soak of 10,000 random operations with decodes in between leaks no
//! block and keeps every intact sequence's logits equal to a fresh decode of its tokens.

mod common;

use std::sync::Arc;

use common::{GEMMA3, SMOLLM2, decode_rows, load, max_abs_diff, model};
use rocmforge::{Batch, Context, ContextParams, Error, KvStats, KvType, Model};

const SYSTEM: &str = "You are a careful assistant for a small public library in a river town. \
    You answer questions about opening hours, borrowing rules, the reading room, the local \
    history archive and the children's story hour. Keep every answer short, friendly and \
    exact, and say so plainly when you do not know something. The library opens at nine in     the morning on weekdays and at ten on Saturdays, and it is closed on Sundays and public     holidays. Members may borrow up to eight items for three weeks and renew them twice     unless someone else has reserved them. The reading room on the first floor is for quiet     study; the archive in the basement holds maps, parish records and old newspapers, and     it can be visited by appointment with the archivist on Tuesdays and Thursdays.";

const QUESTIONS: [&str; 8] = [
    " When does the library open on Saturdays?",
    " Can I borrow ten books at once?",
    " Is the reading room quiet in the afternoon?",
    " Where is the history archive?",
    " How old must a child be for story hour?",
    " Do you lend films or only books?",
    " What happens when a book comes back late?",
    " May I bring my dog inside?",
];

fn ctx_for(m: &Arc<Model>, n_ctx: usize, n_seq: usize) -> Context {
    Context::new(
        Arc::clone(m),
        ContextParams {
            n_ctx,
            n_seq_max: n_seq,
            n_threads: 2,
            ..ContextParams::default()
        },
    )
    .expect("context")
}

fn tokens(m: &Model, text: &str, bos: bool) -> Vec<u32> {
    m.tokenizer().tokenize(text.as_bytes(), bos, false)
}

fn prefix_sharing(name: &str) {
    let Some(path) = model(name) else { return };
    let m = load(&path);
    let nv = m.hparams().n_vocab as usize;
    let system = tokens(&m, SYSTEM, true);
    let questions: Vec<Vec<u32>> = QUESTIONS.iter().map(|q| tokens(&m, q, false)).collect();
    let mut ctx = ctx_for(&m, 2048, 8);
    let bs = ctx.kv_stats().block_size;
    assert!(
        !system.len().is_multiple_of(bs),
        "the prompt should end inside a block"
    );
    decode_rows(&mut ctx, &system, 0);
    for s in 1..8 {
        ctx.kv_seq_copy(0, s, 0, -1).unwrap();
    }
    let shared = ctx.kv_stats();
    let prompt_blocks = system.len().div_ceil(bs);
    assert_eq!(shared.n_blocks_used, prompt_blocks, "copies take no block");
    assert_eq!(shared.n_blocks_shared, prompt_blocks);
    assert_eq!(shared.n_seqs, 8);
    // Every sequence continues with its own question, all in one batch.
    let mut batch = Batch::new();
    for (s, q) in questions.iter().enumerate() {
        for (i, &t) in q.iter().enumerate() {
            let pos = (system.len() + i) as i32;
            batch.add(t as i32, pos, &[s as i32], true).unwrap();
        }
    }
    ctx.decode(&batch).unwrap();
    let mut row = 0;
    let mut worst = 0f32;
    let mut alone_ctx = ctx_for(&m, 2048, 1);
    let mut full_copies = 0;
    for q in &questions {
        let full: Vec<u32> = system.iter().chain(q).copied().collect();
        alone_ctx.kv_clear();
        let alone = decode_rows(&mut alone_ctx, &full, 0);
        full_copies += full.len().div_ceil(bs);
        for i in 0..q.len() {
            let want = &alone[(system.len() + i) * nv..][..nv];
            worst = worst.max(max_abs_diff(ctx.logits(row).unwrap(), want));
            row += 1;
        }
    }
    let st = ctx.kv_stats();
    eprintln!(
        "{name}: 8 sequences sharing a {}-token prompt: max |diff| to each alone {worst}; \
         {} blocks used ({} shared) vs {full_copies} for 8 full copies",
        system.len(),
        st.n_blocks_used,
        st.n_blocks_shared
    );
    assert!(worst < 1e-2, "{name}: shared prefix differs by {worst}");
    // The full blocks of the prompt stay shared; each sequence copied the prompt's last,
    // partial block when it wrote into it, and holds its own blocks after that.
    let whole = system.len() / bs;
    let own: usize = questions
        .iter()
        .map(|q| (system.len() + q.len()).div_ceil(bs) - whole)
        .sum();
    assert_eq!(st.n_blocks_shared, whole);
    assert_eq!(st.n_blocks_used, whole + own);
    assert!(
        st.n_blocks_used * 2 < full_copies,
        "sharing saved too little"
    );
    for s in 0..8 {
        ctx.kv_free(s).unwrap();
    }
    assert_eq!(ctx.kv_stats().n_blocks_used, 0);
}

#[test]
fn smollm2_a_shared_prompt_gives_each_sequence_its_own_logits() {
    prefix_sharing(SMOLLM2);
}

#[test]
fn gemma3_a_shared_prompt_gives_each_sequence_its_own_logits() {
    prefix_sharing(GEMMA3);
}

/// Logits of the rows of `tail` decoded after `head` in a fresh context.
fn fresh(m: &Arc<Model>, head: &[u32], tail: &[u32]) -> Vec<f32> {
    let mut c = ctx_for(m, 512, 1);
    decode_rows(&mut c, head, 0);
    decode_rows(&mut c, tail, 0)
}

#[test]
fn truncating_and_redecoding_equals_a_fresh_context() {
    let Some(path) = model(SMOLLM2) else { return };
    let m = load(&path);
    let text = tokens(&m, SYSTEM, true);
    let other = tokens(&m, QUESTIONS[3], false);
    let mut ctx = ctx_for(&m, 512, 2);
    // Cuts inside a block, at a block boundary, and one position after the start.
    for keep in [37usize, 32, 1] {
        ctx.kv_clear();
        decode_rows(&mut ctx, &text, 0);
        ctx.kv_seq_remove(0, keep as i32, -1).unwrap();
        assert_eq!(ctx.kv_pos_range(0).unwrap(), Some((0, keep as i32 - 1)));
        assert_eq!(ctx.kv_stats().n_blocks_used, keep.div_ceil(16));
        let got = decode_rows(&mut ctx, &other, 0);
        let d = max_abs_diff(&got, &fresh(&m, &text[..keep], &other));
        eprintln!("truncated to {keep}, re-decoded: max |diff| to a fresh context {d}");
        assert!(d < 1e-2, "truncated to {keep}: {d}");
    }
    // A copy of a prefix continues on its own while the original continues unchanged:
    // neither sees the other's writes.
    ctx.kv_clear();
    decode_rows(&mut ctx, &text[..50], 0);
    ctx.kv_seq_copy(0, 1, 0, 37).unwrap();
    assert_eq!(ctx.kv_stats().n_blocks_shared, 3);
    let branch = decode_rows(&mut ctx, &other, 1);
    let main = decode_rows(&mut ctx, &text[50..60], 0);
    let d1 = max_abs_diff(&branch, &fresh(&m, &text[..37], &other));
    let d0 = max_abs_diff(&main, &fresh(&m, &text[..50], &text[50..60]));
    eprintln!("branch of a prefix: {d1}; the original continued: {d0}");
    assert!(d1 < 1e-2 && d0 < 1e-2, "{d1} {d0}");
    // Dropping the original leaves the branch whole.
    ctx.kv_seq_keep(1).unwrap();
    assert_eq!(ctx.kv_stats().n_blocks_shared, 0);
    assert_eq!(ctx.kv_pos_range(0).unwrap(), None);
    let more = decode_rows(&mut ctx, &text[..3], 1);
    let full: Vec<u32> = text[..37].iter().chain(&other).copied().collect();
    assert!(max_abs_diff(&more, &fresh(&m, &full, &text[..3])) < 1e-2);
}

#[test]
fn copy_on_write_that_does_not_fit_is_kv_full_and_changes_nothing() {
    let Some(path) = model(SMOLLM2) else { return };
    let m = load(&path);
    let text = tokens(&m, SYSTEM, true);
    let mut ctx = ctx_for(&m, 64, 3); // 4 blocks of 16
    decode_rows(&mut ctx, &text[..40], 0); // 3 blocks, the last partial
    ctx.kv_seq_copy(0, 1, 0, -1).unwrap();
    ctx.kv_seq_copy(0, 2, 0, -1).unwrap();
    let before: (KvStats, Vec<Vec<(i32, i32)>>) = (
        ctx.kv_stats(),
        (0..3).map(|s| ctx.kv_seq_spans(s).unwrap()).collect(),
    );
    let last = ctx.logits(-1).unwrap().to_vec();
    // All three write into the shared partial block: three copies, one block free.
    let mut batch = Batch::new();
    for s in 0..3 {
        batch.add(text[40] as i32, 40, &[s], true).unwrap();
    }
    let err = ctx.decode(&batch).unwrap_err();
    assert!(matches!(err, Error::KvFull(_)), "{err}");
    let after = (
        ctx.kv_stats(),
        (0..3)
            .map(|s| ctx.kv_seq_spans(s).unwrap())
            .collect::<Vec<_>>(),
    );
    assert_eq!(after, before);
    assert_eq!(ctx.logits(-1).unwrap(), &last[..]);
    // One sequence fits; it continues exactly as a fresh decode of its text.
    let got = decode_rows(&mut ctx, &text[40..41], 2);
    assert!(max_abs_diff(&got, &fresh(&m, &text[..40], &text[40..41])) < 1e-2);
    assert_eq!(ctx.kv_stats().n_blocks_used, 4);
}

/// xorshift64*: the soak's operations are reproducible from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the soak knows of each sequence: (position, token) held, and whether its keys and
/// values are those of a fresh decode of exactly those tokens (no head or middle was ever
/// removed under positions computed later).
#[derive(Clone, Default)]
struct Track {
    held: Vec<(i32, u32)>,
    intact: bool,
}

#[test]
fn a_soak_of_random_operations_leaks_nothing() {
    let Some(zoo) = common::zoo_model("llama.Q8_0.gguf") else {
        return;
    };
    let m = load(&zoo);
    let n_vocab = m.hparams().n_vocab as usize;
    const N_SEQ: usize = 6;
    let mut ctx = Context::new(
        Arc::clone(&m),
        ContextParams {
            n_ctx: 256,
            block_size: 8, // 32 blocks: full often enough to matter
            n_seq_max: N_SEQ,
            n_batch: 64,
            n_threads: 2,
            ..ContextParams::default()
        },
    )
    .unwrap();
    let mut check_ctx = ctx_for(&m, 256, 1);
    let seed = 0x5eed_2026_1202u64;
    eprintln!("soak seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut track = vec![Track::default(); N_SEQ];
    let (mut decodes, mut full, mut checked, mut worst) = (0, 0, 0, 0f32);
    for step in 0..10_000 {
        let s = rng.below(N_SEQ);
        match rng.below(10) {
            0..=4 => {
                // A batch continuing one to three sequences.
                let mut batch = Batch::new();
                let mut added: Vec<(usize, Vec<(i32, u32)>)> = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    let s = rng.below(N_SEQ);
                    if added.iter().any(|a| a.0 == s) {
                        continue;
                    }
                    let start = track[s].held.last().map_or(0, |h| h.0 + 1);
                    let new: Vec<(i32, u32)> = (0..1 + rng.below(12))
                        .map(|i| (start + i as i32, rng.below(n_vocab) as u32))
                        .collect();
                    for &(p, t) in &new {
                        batch.add(t as i32, p, &[s as i32], true).unwrap();
                    }
                    added.push((s, new));
                }
                let before = ctx.kv_stats();
                match ctx.decode(&batch) {
                    Ok(()) => {
                        decodes += 1;
                        for (s, new) in added {
                            let tr = &mut track[s];
                            if tr.held.is_empty() {
                                tr.intact = true;
                            }
                            tr.held.extend(new);
                        }
                    }
                    Err(Error::KvFull(_)) => {
                        full += 1;
                        assert_eq!(
                            ctx.kv_stats(),
                            before,
                            "step {step}: KvFull changed the cache"
                        );
                    }
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
            5 => {
                // Truncate the tail, or cut a hole / the head.
                let n = track[s].held.len();
                if n == 0 {
                    continue;
                }
                let i = rng.below(n);
                let p0 = track[s].held[i].0;
                let tail = rng.below(2) == 0;
                let p1 = if tail {
                    -1
                } else {
                    p0 + 1 + rng.below(6) as i32
                };
                ctx.kv_seq_remove(s as i32, p0, p1).unwrap();
                let tr = &mut track[s];
                tr.held.retain(|h| h.0 < p0 || (p1 >= 0 && h.0 >= p1));
                if tr.held.len() > i {
                    tr.intact = false; // positions after the cut were computed with it
                }
            }
            6 => {
                let d = rng.below(N_SEQ);
                let n = track[s].held.len();
                let p1 = if n > 0 && rng.below(2) == 0 {
                    track[s].held[rng.below(n)].0
                } else {
                    -1
                };
                let res = ctx.kv_seq_copy(s as i32, d as i32, 0, p1);
                if s == d {
                    assert!(res.is_err());
                    continue;
                }
                res.unwrap();
                let mut t = track[s].clone();
                t.held.retain(|h| p1 < 0 || h.0 < p1);
                track[d] = t;
            }
            7 => {
                ctx.kv_free(s as i32).unwrap();
                track[s] = Track::default();
            }
            8 if rng.below(8) == 0 => {
                ctx.kv_seq_keep(s as i32).unwrap();
                for (o, t) in track.iter_mut().enumerate() {
                    if o != s {
                        *t = Track::default();
                    }
                }
            }
            _ => {
                // An intact sequence's next-token logits equal a fresh decode of its tokens.
                let tr = &track[s];
                if !tr.intact || tr.held.is_empty() || step % 5 != 0 {
                    continue;
                }
                let t = rng.below(n_vocab) as u32;
                let pos = tr.held.last().unwrap().0 + 1;
                let b = Batch::from_tokens(&[t], pos, s as i32).unwrap();
                if ctx.decode(&b).is_err() {
                    continue; // full: the next free makes room
                }
                let got = ctx.logits(-1).unwrap().to_vec();
                track[s].held.push((pos, t));
                let toks: Vec<u32> = track[s].held.iter().map(|h| h.1).collect();
                let first = track[s].held[0].0;
                check_ctx.kv_clear();
                check_ctx
                    .decode(&Batch::from_tokens(&toks, first, 0).unwrap())
                    .unwrap();
                let d = max_abs_diff(&got, check_ctx.logits(-1).unwrap());
                worst = worst.max(d);
                checked += 1;
                assert!(
                    d < 1e-3,
                    "step {step}: sequence {s} differs by {d} from a fresh decode"
                );
            }
        }
        for (s, tr) in track.iter().enumerate() {
            let want = tr.held.first().map(|f| (f.0, tr.held.last().unwrap().0));
            assert_eq!(
                ctx.kv_pos_range(s as i32).unwrap(),
                want,
                "step {step}, sequence {s}"
            );
        }
        let st = ctx.kv_stats();
        assert!(st.n_blocks_used <= st.n_blocks_total);
        assert_eq!(
            st.n_seqs,
            track.iter().filter(|t| !t.held.is_empty()).count()
        );
    }
    eprintln!(
        "soak: 10000 operations, {decodes} decodes, {full} refused as full, {checked} \
         sequences checked against a fresh decode (max |diff| {worst})"
    );
    assert!(
        decodes > 1000 && full > 10 && checked > 50,
        "the soak did too little"
    );
    for s in 0..N_SEQ {
        ctx.kv_free(s as i32).unwrap();
    }
    assert_eq!(
        ctx.kv_stats().n_blocks_used,
        0,
        "freeing every sequence frees every block"
    );
    ctx.kv_clear();
    let st = ctx.kv_stats();
    assert_eq!((st.n_blocks_used, st.n_blocks_shared, st.n_seqs), (0, 0, 0));
}

#[test]
fn sharing_and_truncation_work_for_every_kv_type() {
    let Some(zoo) = common::zoo_model("llama.Q8_0.gguf") else {
        return;
    };
    let m = load(&zoo);
    let text: Vec<u32> = (0..60).map(|i| (i * 7 + 3) % 317).collect();
    for ty in [KvType::F16, KvType::F32, KvType::Q8_0] {
        let params = || ContextParams {
            n_ctx: 256,
            n_seq_max: 3,
            n_threads: 2,
            kv_type: ty,
            ..ContextParams::default()
        };
        let mut ctx = Context::new(Arc::clone(&m), params()).unwrap();
        let mut alone = Context::new(Arc::clone(&m), params()).unwrap();
        decode_rows(&mut ctx, &text[..45], 0);
        ctx.kv_seq_copy(0, 1, 0, -1).unwrap();
        ctx.kv_seq_copy(0, 2, 0, 30).unwrap();
        ctx.kv_seq_remove(0, 40, -1).unwrap();
        let got: Vec<Vec<f32>> = [(0, 40), (1, 45), (2, 30)]
            .iter()
            .map(|&(s, _)| decode_rows(&mut ctx, &text[50..55], s))
            .collect();
        for (&(s, keep), got) in [(0, 40), (1, 45), (2, 30)].iter().zip(&got) {
            alone.kv_clear();
            decode_rows(&mut alone, &text[..keep], 0);
            let want = decode_rows(&mut alone, &text[50..55], 0);
            let d = max_abs_diff(got, &want);
            assert!(
                d < 1e-4,
                "{ty:?}: sequence {s} (kept {keep}) differs by {d}"
            );
        }
        // The reported size is the allocation: layers x (K + V) x cells x bytes per row.
        let p = &m.transformer().unwrap().params;
        let st = ctx.kv_stats();
        let row = |dim: usize| match ty {
            KvType::F16 => 2 * dim,
            KvType::F32 => 4 * dim,
            KvType::Q8_0 => dim / 32 * 34,
        };
        let cells = st.n_blocks_total * st.block_size;
        assert_eq!(
            st.bytes_total,
            p.n_layer * cells * (row(p.k_dim()) + row(p.v_dim())),
            "{ty:?}"
        );
    }
}
