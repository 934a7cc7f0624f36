//! The reader allocates in proportion to the file, never to the counts a file claims: a 1 KB
//! file that claims 2^40 array elements or 2^60 tensors is rejected without allocating for
//! them. Measured with a counting global allocator (this binary holds one test so nothing else
//! allocates concurrently).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rocmforge::gguf::{Array, GgufWriter, Value, parse};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated (above what was live before) while parsing `bytes`.
fn peak_while_parsing(bytes: &[u8]) -> usize {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let result = parse(bytes);
    let peak = PEAK.load(Ordering::SeqCst) - base;
    drop(result);
    peak
}

fn one_kb_file_with(key: &str, value: Value) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::string("llama"));
    w.add(key, value);
    let (mut bytes, _) = w.to_bytes();
    bytes.resize(1024, 0);
    bytes
}

#[test]
fn allocation_is_bounded_by_the_file_not_by_claimed_counts() {
    // 2^40 array elements claimed in a 1 KB file.
    let (mut bytes, layout) = {
        let mut w = GgufWriter::new();
        w.add("big", Value::Array(Array::U64(vec![7; 4])));
        w.to_bytes()
    };
    let v = layout.field("kv[0].value").unwrap().offset;
    bytes[v + 4..v + 12].copy_from_slice(&(1u64 << 40).to_le_bytes());
    bytes.resize(1024, 0);
    assert!(parse(&bytes).is_err());
    let peak = peak_while_parsing(&bytes);
    assert!(peak < 16 * 1024, "2^40 elements: {peak} bytes allocated");

    // 2^60 tensors claimed.
    let mut bytes = one_kb_file_with("x", Value::U8(1));
    bytes[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(parse(&bytes).is_err());
    let peak = peak_while_parsing(&bytes);
    assert!(peak < 16 * 1024, "2^60 tensors: {peak} bytes allocated");

    // A count that does fit is allocated for, but never beyond a small multiple of the file.
    let strings = Array::String(vec![Box::from(&b""[..]); 100]);
    let bytes = one_kb_file_with("s", Value::Array(strings));
    assert!(parse(&bytes).is_ok());

    // Every case of the malformed corpus: peak allocation within 4x the file plus 64 KiB.
    for case in common::corpus::cases() {
        let peak = peak_while_parsing(&case.bytes);
        let bound = 4 * case.bytes.len() + 64 * 1024;
        assert!(
            peak <= bound,
            "{}: {peak} bytes allocated for a {}-byte file",
            case.name,
            case.bytes.len()
        );
    }
}
