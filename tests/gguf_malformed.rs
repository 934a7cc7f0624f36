//! Every file of the malformed corpus is rejected through the Rust API with the right status
//! and a message that names the problem; the valid file it is derived from loads.

mod common;

use common::corpus;
use rocmforge::gguf::{GgufFile, Value};
use rocmforge::{Model, ModelParams};

#[test]
fn base_file_of_the_corpus_is_valid() {
    let (bytes, _) = corpus::base();
    let file = GgufFile::from_bytes(bytes).expect("base file parses");
    assert_eq!(file.metadata().len(), corpus::base_metadata().len());
    for (key, value) in corpus::base_metadata() {
        assert_eq!(file.get(&key), Some(&value), "{key}");
    }
    let model = Model::from_gguf(file, ModelParams::default()).expect("base model loads");
    let d = model.describe();
    assert_eq!(
        (d.arch.as_str(), d.n_layer, d.n_vocab),
        ("llama", 1, corpus::N_VOCAB as u32)
    );
    assert_eq!(
        (d.n_embd, d.n_head, d.n_head_kv, d.n_ctx_train),
        (64, 4, 2, 128)
    );
    assert_eq!(d.file_type_name, "Q8_0");
    let n_params: u64 = corpus::base_tensors()
        .iter()
        .map(|t| t.dims.iter().product::<u64>())
        .sum();
    assert_eq!(d.n_params, n_params);
    assert_eq!(
        n_params,
        64 * 8 + 64 + 64 * 64 * 2 + 64 * 32 * 2 + 64 + 3 * 64 * 128 + 64
    );
}

/// Every case of the corpus is rejected with its status and message, through a path and
/// through bytes, within a second a load, and the library loads a valid file afterwards.
#[test]
fn every_malformed_file_is_rejected_with_status_and_message() {
    let cases = corpus::cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.gguf"));
        std::fs::write(&path, &case.bytes).unwrap();
        // Through the file path (mmap) and through bytes in memory: same verdict, each
        // within a second.
        let t0 = std::time::Instant::now();
        let from_path = Model::load(&path, ModelParams::default());
        let from_bytes = GgufFile::from_bytes(case.bytes.clone())
            .map_err(rocmforge::Error::from)
            .and_then(|f| Model::from_gguf(f, ModelParams::default()));
        let took = t0.elapsed();
        if took > std::time::Duration::from_secs(2) {
            failures.push(format!("{}: rejected in {took:?} (two loads)", case.name));
        }
        for result in [from_path, from_bytes] {
            match result {
                Ok(_) => failures.push(format!("{}: loaded", case.name)),
                Err(e) => {
                    let msg = e.to_string();
                    if e.status() != case.status {
                        failures.push(format!(
                            "{}: status {:?}, expected {:?} ({msg})",
                            case.name,
                            e.status(),
                            case.status
                        ));
                    }
                    for part in &case.message {
                        if !msg.contains(part.as_str()) {
                            failures.push(format!("{}: message {msg:?} lacks {part:?}", case.name));
                        }
                    }
                }
            }
        }
    }
    // Nothing of the rejected loads lingers: the valid base file loads next, in this process.
    let (base, _) = corpus::base();
    if let Err(e) = GgufFile::from_bytes(base)
        .map_err(rocmforge::Error::from)
        .and_then(|f| Model::from_gguf(f, ModelParams::default()))
    {
        failures.push(format!("the valid file after the rejections: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_value_type_round_trips_through_writer_and_reader() {
    let (bytes, layout) = corpus::base();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.data_offset() % 32, 0);
    for (i, t) in file.tensors().iter().enumerate() {
        let data = layout.field(&format!("tensor[{i}].data")).unwrap();
        assert_eq!(t.file_offset as usize, data.offset, "{}", t.name);
        assert_eq!(
            file.tensor_data(t).unwrap(),
            &bytes[data.offset..data.offset + data.len]
        );
        assert_eq!(t.file_offset % 32, 0);
    }
    assert_eq!(file.get("test.u64"), Some(&Value::U64(u64::MAX)));
}

#[test]
fn version_2_and_custom_alignment_are_read() {
    let mut w = rocmforge::gguf::GgufWriter::new();
    w.version(2).add("general.alignment", Value::U32(256));
    w.add_tensor("a", rocmforge::gguf::GgmlType::F32, &[3], vec![1; 12])
        .unwrap();
    w.add_tensor("b", rocmforge::gguf::GgmlType::Q4K, &[256, 2], vec![2; 288])
        .unwrap();
    let (bytes, _) = w.to_bytes();
    let file = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!((file.version(), file.alignment()), (2, 256));
    let b = file.tensor("b").unwrap();
    assert_eq!((b.offset, b.n_bytes, b.n_elements), (256, 288, 512));
    assert_eq!(b.shape(), &[256, 2]);
    assert_eq!(file.tensor_data(b).unwrap(), &[2u8; 288][..]);
}

/// The GGUF fuzz targets' seeds (fuzz/seeds/gguf) are the base file and every sixth case of
/// this corpus as built now (RF_FUZZ_SEEDS=write rewrites them after a corpus change).
#[test]
fn fuzz_seeds_are_the_corpus_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/gguf");
    let mut want = vec![("base.gguf".to_string(), corpus::base().0)];
    for c in corpus::cases().into_iter().step_by(6) {
        let name: String = c
            .name
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect();
        want.push((format!("{name}.gguf"), c.bytes));
    }
    if std::env::var("RF_FUZZ_SEEDS").as_deref() == Ok("write") {
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        for (name, bytes) in &want {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let on_disk = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    assert_eq!(
        on_disk,
        want.len(),
        "seed files in {dir:?}; rerun with RF_FUZZ_SEEDS=write"
    );
    for (name, bytes) in &want {
        let got = std::fs::read(dir.join(name)).unwrap_or_default();
        assert!(
            got == *bytes,
            "{name} differs from the corpus; rerun with RF_FUZZ_SEEDS=write"
        );
    }
}

/// Duplicate token strings are tolerated (some official vocabularies carry them): the file
/// loads, text lookup takes the lowest id, and each id keeps its own text.
#[test]
fn duplicate_token_strings_load_and_lookup_takes_the_lowest_id() {
    use rocmforge::gguf::{Array, Value};
    let mut meta = corpus::base_metadata();
    let texts: Vec<Box<[u8]>> = (0..corpus::N_VOCAB)
        .map(|i| {
            format!("tok{}", if i == 5 { 3 } else { i })
                .into_bytes()
                .into()
        })
        .collect();
    meta.iter_mut()
        .find(|(k, _)| k == "tokenizer.ggml.tokens")
        .unwrap()
        .1 = Value::Array(Array::String(texts));
    let (bytes, _) = corpus::build(&meta, &corpus::base_tensors());
    let file = GgufFile::from_bytes(bytes).unwrap();
    let model = Model::from_gguf(file, ModelParams::default()).unwrap();
    let vocab = model.tokenizer().vocab();
    assert_eq!(vocab.token(b"tok3"), Some(3));
    assert_eq!(vocab.text(5), Some(&b"tok3"[..]));
    assert_eq!(vocab.text(3), Some(&b"tok3"[..]));
}
