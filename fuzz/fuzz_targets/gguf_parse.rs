//! The GGUF reader on raw bytes: it parses or says why not, and what it accepts is
//! consistent (every tensor's bytes inside the file, of the size its type and shape give).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, v) in f.metadata() {
        assert!(f.get(key).is_some());
        let _ = v.render();
    }
    for t in f.tensors() {
        let bytes = f
            .tensor_data(t)
            .expect("an accepted tensor has its bytes in the file");
        assert_eq!(bytes.len() as u64, t.n_bytes, "{}", t.name);
        assert_eq!(
            t.ty.bytes_for(t.n_elements),
            Some(t.n_bytes),
            "{}: size for its type and shape",
            t.name
        );
    }
});
