//! A sequence of context calls with arbitrary arguments on a tiny real model: decodes of
//! arbitrary batches (tokens, positions, sequence ids, output flags: the batch validator),
//! logits reads, and KV sequence operations. Each call succeeds or returns an error, and the
//! context stays usable: a valid one-token decode works at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::{Batch, Context, ContextParams};
use rocmforge_fuzz::{Bytes, tiny_model};

fuzz_target!(|data: &[u8]| {
    let model = tiny_model();
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 16,
        n_seq_max: 4,
        n_threads: 1,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model.clone(), params).expect("context");
    let n_vocab = model.describe().n_vocab as i32;
    let mut b = Bytes(data);
    let mut steps = 0;
    while !b.is_empty() && steps < 32 {
        steps += 1;
        let seq = i32::from(b.u8() % 6) - 1;
        let (p0, p1) = (i32::from(b.u8()) - 8, i32::from(b.u8()) - 8);
        match b.u8() % 8 {
            0..=3 => {
                let mut batch = Batch::new();
                for _ in 0..usize::from(b.u8() % 20) {
                    let token = match b.u8() % 8 {
                        0 => b.i32(),
                        _ => i32::from(b.u16()) % n_vocab,
                    };
                    let pos = i32::from(b.u8()) - 4;
                    let n_seqs = usize::from(b.u8() % 3);
                    let seqs: Vec<i32> = (0..n_seqs).map(|_| i32::from(b.u8() % 6) - 1).collect();
                    let _ = batch.add(token, pos, &seqs, b.u8() & 1 == 1);
                }
                if ctx.decode(&batch).is_ok() {
                    for i in 0..ctx.n_outputs() as i32 {
                        let l = ctx.logits(i).expect("an output row of the last decode");
                        assert_eq!(l.len(), n_vocab as usize);
                    }
                }
                let _ = ctx.logits(i32::from(b.u8()) - 2);
            }
            4 => {
                let _ = ctx.kv_seq_remove(seq, p0, p1);
            }
            5 => {
                let _ = ctx.kv_seq_copy(seq, i32::from(b.u8() % 6) - 1, p0, p1);
            }
            6 => {
                let _ = ctx.kv_free(seq);
            }
            _ => {
                let _ = ctx.kv_seq_keep(seq);
                let _ = ctx.kv_pos_range(seq);
            }
        }
    }
    ctx.kv_clear();
    let one = Batch::from_tokens(&[1], 0, 0).expect("batch");
    ctx.decode(&one).expect("the context is still usable");
});
