//! Random corruptions of a valid file never panic the reader or the model loader, and whatever
//! they accept is self-consistent (every tensor's data is a slice of the file). A deterministic
//! generator (xorshift) keeps failures reproducible; the case number is in the message.

mod common;

use rocmforge::gguf::GgufFile;
use rocmforge::{Model, ModelParams};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values that stress bounds checks when written over a field.
const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    31,
    32,
    255,
    u32::MAX as u64,
    1 << 32,
    i64::MAX as u64,
    u64::MAX,
];

fn mutate(base: &[u8], field_starts: &[usize], rng: &mut XorShift) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(4) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            2 => {
                // An interesting value over a field start (as u32 or u64).
                let at = field_starts[rng.below(field_starts.len())].min(b.len() - 1);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let end = (at + width).min(b.len());
                b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            _ => {
                let n = rng.below(b.len());
                b.truncate(n.max(1));
            }
        }
    }
    b
}

#[test]
fn random_corruptions_never_panic() {
    let (base, layout) = common::corpus::base();
    let starts: Vec<usize> = layout.fields.iter().map(|f| f.offset).collect();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..20_000 {
        let bytes = mutate(&base, &starts, &mut rng);
        let len = bytes.len() as u64;
        let result = std::panic::catch_unwind(|| match GgufFile::from_bytes(bytes) {
            Err(_) => false,
            Ok(file) => {
                for t in file.tensors() {
                    let data = file
                        .tensor_data(t)
                        .expect("accepted tensor lies in the file");
                    assert_eq!(data.len() as u64, t.n_bytes);
                    assert!(t.file_offset + t.n_bytes <= len);
                }
                let _ = Model::from_gguf(file, ModelParams::default());
                true
            }
        });
        match result {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("case {case} panicked"),
        }
    }
    // Both outcomes occur: the mutations are neither all fatal nor all harmless.
    assert!(
        accepted > 100 && rejected > 100,
        "accepted {accepted}, rejected {rejected}"
    );
}
