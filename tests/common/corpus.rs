//! A corpus of malformed GGUF files, each derived from one small valid model file, with the
//! status and message each must be rejected with. Used by tests/gguf_malformed.rs (Rust API)
//! and tests/c_api.rs (through rf_model_load from C, under valgrind).

use rocmforge::error::Status;
use rocmforge::gguf::{Array, GgmlType, GgufWriter, Layout, Value};

pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub status: Status,
    /// Every one of these must appear in the error message.
    pub message: Vec<String>,
}

pub struct Tensor {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
}

impl Tensor {
    fn new(name: &str, ty: GgmlType, dims: &[u64]) -> Tensor {
        Tensor {
            name: name.into(),
            ty,
            dims: dims.to_vec(),
        }
    }
}

pub const N_VOCAB: usize = 8;

/// The metadata of the valid base model: a 1-layer llama with a tiny vocabulary, plus keys of
/// every value type.
pub fn base_metadata() -> Vec<(String, Value)> {
    let tokens: Vec<Box<[u8]>> = (0..N_VOCAB)
        .map(|i| format!("tok{i}").into_bytes().into())
        .collect();
    let kv: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::string("llama")),
        ("general.name", Value::string("tiny test model")),
        ("general.file_type", Value::U32(7)),
        ("llama.block_count", Value::U32(1)),
        ("llama.context_length", Value::U32(128)),
        ("llama.embedding_length", Value::U32(64)),
        ("llama.feed_forward_length", Value::U32(128)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::string("llama")),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        (
            "tokenizer.ggml.scores",
            Value::Array(Array::F32(vec![0.0; N_VOCAB])),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![1; N_VOCAB])),
        ),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("test.u8", Value::U8(200)),
        ("test.i8", Value::I8(-100)),
        ("test.u16", Value::U16(60000)),
        ("test.i16", Value::I16(-30000)),
        ("test.i32", Value::I32(-2_000_000_000)),
        ("test.u64", Value::U64(u64::MAX)),
        ("test.i64", Value::I64(i64::MIN)),
        ("test.f64", Value::F64(-0.25)),
        ("test.bools", Value::Array(Array::Bool(vec![true, false]))),
    ];
    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Every tensor a 1-layer llama needs (heads of 16, 2 KV heads: K and V are 32 wide).
pub fn base_tensors() -> Vec<Tensor> {
    vec![
        Tensor::new("token_embd.weight", GgmlType::Q8_0, &[64, N_VOCAB as u64]),
        Tensor::new("blk.0.attn_norm.weight", GgmlType::F32, &[64]),
        Tensor::new("blk.0.attn_q.weight", GgmlType::F16, &[64, 64]),
        Tensor::new("blk.0.attn_k.weight", GgmlType::F16, &[64, 32]),
        Tensor::new("blk.0.attn_v.weight", GgmlType::F16, &[64, 32]),
        Tensor::new("blk.0.attn_output.weight", GgmlType::F16, &[64, 64]),
        Tensor::new("blk.0.ffn_norm.weight", GgmlType::F32, &[64]),
        Tensor::new("blk.0.ffn_gate.weight", GgmlType::Q8_0, &[64, 128]),
        Tensor::new("blk.0.ffn_up.weight", GgmlType::Q8_0, &[64, 128]),
        Tensor::new("blk.0.ffn_down.weight", GgmlType::Q8_0, &[128, 64]),
        Tensor::new("output_norm.weight", GgmlType::F32, &[64]),
    ]
}

/// Deterministic filler bytes for a tensor (the reader never interprets them).
fn filler(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + seed * 7) % 251) as u8).collect()
}

pub fn build(metadata: &[(String, Value)], tensors: &[Tensor]) -> (Vec<u8>, Layout) {
    let mut w = GgufWriter::new();
    for (k, v) in metadata {
        w.add(k, v.clone());
    }
    for (i, t) in tensors.iter().enumerate() {
        let n: u64 = t.dims.iter().product();
        let bytes = t.ty.bytes_for(n).expect("valid base tensor") as usize;
        w.add_tensor(&t.name, t.ty, &t.dims, filler(bytes, i))
            .expect("tensor data size");
    }
    w.to_bytes()
}

/// The valid base file and its layout.
pub fn base() -> (Vec<u8>, Layout) {
    build(&base_metadata(), &base_tensors())
}

fn span(layout: &Layout, field: &str) -> (usize, usize) {
    let f = layout
        .field(field)
        .unwrap_or_else(|| panic!("no field {field}"));
    (f.offset, f.len)
}

fn kv_index(field_key: &str) -> usize {
    base_metadata()
        .iter()
        .position(|(k, _)| k == field_key)
        .unwrap_or_else(|| panic!("no key {field_key}"))
}

fn tensor_index(name: &str) -> usize {
    base_tensors()
        .iter()
        .position(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

/// The base file with one field replaced by `value` (same width).
fn patched(field: &str, value: &[u8]) -> Vec<u8> {
    let (mut bytes, layout) = base();
    let (off, len) = span(&layout, field);
    assert_eq!(len, value.len(), "field {field} is {len} bytes");
    bytes[off..off + len].copy_from_slice(value);
    bytes
}

fn kv_field(key: &str, field: &str) -> String {
    format!("kv[{}].{field}", kv_index(key))
}

fn tensor_field(name: &str, field: &str) -> String {
    format!("tensor[{}].{field}", tensor_index(name))
}

fn with_metadata(f: impl FnOnce(&mut Vec<(String, Value)>)) -> Vec<u8> {
    let mut m = base_metadata();
    f(&mut m);
    build(&m, &base_tensors()).0
}

fn with_tensors(f: impl FnOnce(&mut Vec<Tensor>)) -> Vec<u8> {
    let mut t = base_tensors();
    f(&mut t);
    build(&base_metadata(), &t).0
}

fn set(m: &mut [(String, Value)], key: &str, value: Value) {
    m.iter_mut().find(|(k, _)| k == key).expect("key").1 = value;
}

fn remove(m: &mut Vec<(String, Value)>, key: &str) {
    m.retain(|(k, _)| k != key);
}

/// Every malformed case: named mutations, then the base truncated at every field boundary.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, status: Status, message: &[&str]| {
        cases.push(Case {
            name: name.into(),
            bytes,
            status,
            message: message.iter().map(|s| s.to_string()).collect(),
        });
    };
    use Status::ModelFormat as F;
    let u32le = |v: u32| v.to_le_bytes().to_vec();
    let u64le = |v: u64| v.to_le_bytes().to_vec();

    // Header.
    add("empty file", vec![], F, &["not a GGUF file"]);
    add(
        "bad magic",
        patched("magic", b"GGUX"),
        F,
        &["not a GGUF file", "47, 47, 55, 58"],
    );
    add(
        "version 1",
        patched("version", &u32le(1)),
        F,
        &["unsupported GGUF version 1"],
    );
    add(
        "version 4",
        patched("version", &u32le(4)),
        F,
        &["unsupported GGUF version 4"],
    );
    add(
        "big-endian",
        patched("version", &3u32.to_be_bytes()),
        F,
        &["big-endian", "0x03000000"],
    );
    add(
        "2^60 tensors",
        patched("n_tensors", &u64le(1 << 60)),
        F,
        &["tensor count", "offset 8", "1152921504606846976"],
    );
    add(
        "2^40 metadata pairs",
        patched("n_kv", &u64le(1 << 40)),
        F,
        &["metadata count", "offset 16"],
    );

    // Metadata.
    let tokens = "tokenizer.ggml.tokens";
    let (_, layout) = base();
    let (tok_value, _) = span(&layout, &kv_field(tokens, "value"));
    let mut b = base().0;
    b[tok_value + 4..tok_value + 12].copy_from_slice(&u64le(1 << 40));
    add(
        "2^40 array elements",
        b,
        F,
        &["array of key \"tokenizer.ggml.tokens\"", "1099511627776"],
    );
    let (name_value, _) = span(&layout, &kv_field("general.name", "value"));
    let mut b = base().0;
    b[name_value..name_value + 8].copy_from_slice(&u64le(1 << 62));
    add(
        "huge string length",
        b,
        F,
        &["truncated", "string in key \"general.name\""],
    );
    add(
        "huge key length",
        patched(&kv_field("general.name", "key_len"), &u64le(1 << 20)),
        F,
        &["key", "1048576 bytes long"],
    );
    add(
        "empty key",
        with_metadata(|m| m.push((String::new(), Value::U8(1)))),
        F,
        &["the key is empty"],
    );
    let mut key = b"general.name".to_vec();
    key[3] = 0xff;
    add(
        "key not UTF-8",
        patched(&kv_field("general.name", "key"), &key),
        F,
        &["not ASCII"],
    );
    add(
        "key not ASCII",
        with_metadata(|m| m.push(("test.caf\u{e9}".into(), Value::U8(1)))),
        F,
        &["not ASCII (byte 8 is 0xc3)"],
    );
    add(
        "unknown value type",
        patched(&kv_field("general.name", "type"), &u32le(99)),
        F,
        &["\"general.name\"", "unknown value type 99"],
    );
    let mut b = base().0;
    b[tok_value..tok_value + 4].copy_from_slice(&u32le(13));
    add(
        "unknown array element type",
        b,
        F,
        &["\"tokenizer.ggml.tokens\"", "unknown value type 13"],
    );
    add(
        "duplicate key",
        with_metadata(|m| m.push(("general.name".into(), Value::string("again")))),
        F,
        &["duplicate metadata key \"general.name\""],
    );
    let (bools, _) = span(&layout, &kv_field("test.bools", "value"));
    let mut b = base().0;
    b[bools + 12] = 2;
    add("bool byte 2", b, F, &["\"test.bools\"", "bool byte 2"]);
    let nested = Array::Array(vec![Array::U16(vec![1, 2]), Array::String(vec![])]);
    add(
        "array of arrays",
        with_metadata(|m| m.push(("test.nested".into(), Value::Array(nested)))),
        F,
        &["\"test.nested\"", "an array of arrays"],
    );
    add(
        "alignment 48",
        with_metadata(|m| m.push(("general.alignment".into(), Value::U32(48)))),
        F,
        &["general.alignment is 48"],
    );
    add(
        "alignment 0",
        with_metadata(|m| m.push(("general.alignment".into(), Value::U32(0)))),
        F,
        &["general.alignment is 0"],
    );
    add(
        "alignment 2^20",
        with_metadata(|m| m.push(("general.alignment".into(), Value::U32(1 << 20)))),
        F,
        &["general.alignment is 1048576"],
    );
    add(
        "alignment as u64",
        with_metadata(|m| m.push(("general.alignment".into(), Value::U64(32)))),
        F,
        &["\"general.alignment\" has type u64, expected u32"],
    );

    // Tensor table.
    let embd = "token_embd.weight";
    add(
        "empty tensor name",
        with_tensors(|t| t[1].name = String::new()),
        F,
        &["tensor name", "0 bytes long"],
    );
    add(
        "64-byte tensor name",
        with_tensors(|t| t[1].name = "x".repeat(64)),
        F,
        &["tensor name", "64 bytes long"],
    );
    let mut name = embd.as_bytes().to_vec();
    name[0] = 0xc3;
    add(
        "tensor name not UTF-8",
        patched(&tensor_field(embd, "name"), &name),
        F,
        &["tensor name", "not valid UTF-8"],
    );
    add(
        "duplicate tensor",
        with_tensors(|t| t[2].name = t[1].name.clone()),
        F,
        &["duplicate tensor name \"blk.0.attn_norm.weight\""],
    );
    add(
        "0 dimensions",
        patched(&tensor_field(embd, "n_dims"), &u32le(0)),
        F,
        &["\"token_embd.weight\"", "0 dimensions"],
    );
    add(
        "5 dimensions",
        patched(&tensor_field(embd, "n_dims"), &u32le(5)),
        F,
        &["\"token_embd.weight\"", "5 dimensions"],
    );
    add(
        "zero dimension",
        patched(&tensor_field(embd, "dim[1]"), &u64le(0)),
        F,
        &["dimension 1 is 0", "empty"],
    );
    add(
        "dimension over 2^63",
        patched(&tensor_field(embd, "dim[1]"), &u64le(1 << 63)),
        F,
        &["dimension 1", "larger than 2^63"],
    );
    let mut b = patched(&tensor_field(embd, "dim[0]"), &u64le(1 << 40));
    let (d1, _) = span(&layout, &tensor_field(embd, "dim[1]"));
    b[d1..d1 + 8].copy_from_slice(&u64le(1 << 40));
    add(
        "element count overflow",
        b,
        F,
        &["\"token_embd.weight\"", "element count overflows"],
    );
    let norm = "blk.0.attn_norm.weight";
    let mut b = patched(&tensor_field(norm, "type"), &u32le(GgmlType::F64.id()));
    let (d0, _) = span(&layout, &tensor_field(norm, "dim[0]"));
    b[d0..d0 + 8].copy_from_slice(&u64le(1 << 62));
    add(
        "byte size overflow",
        b,
        F,
        &["\"blk.0.attn_norm.weight\"", "byte size overflows"],
    );
    add(
        "retired tensor type 4",
        patched(&tensor_field(embd, "type"), &u32le(4)),
        F,
        &["unknown ggml type 4"],
    );
    add(
        "unknown tensor type 1000",
        patched(&tensor_field(embd, "type"), &u32le(1000)),
        F,
        &["unknown ggml type 1000"],
    );
    add(
        "row not a block multiple",
        patched(&tensor_field(embd, "dim[0]"), &u64le(48)),
        F,
        &["first dimension 48", "Q8_0 block size 32"],
    );

    // Data section.
    let (off0, _) = span(&layout, &tensor_field(norm, "offset"));
    let norm_off = u64::from_le_bytes(base().0[off0..off0 + 8].try_into().unwrap());
    add(
        "misaligned data",
        patched(&tensor_field(norm, "offset"), &u64le(norm_off + 4)),
        F,
        &[
            "\"blk.0.attn_norm.weight\"",
            "not a multiple of the alignment 32",
        ],
    );
    add(
        "data past the end",
        patched(&tensor_field(norm, "offset"), &u64le(1 << 30)),
        F,
        &["\"blk.0.attn_norm.weight\"", "outside the file"],
    );
    add(
        "data offset overflow",
        patched(&tensor_field(norm, "offset"), &u64le(u64::MAX - 31)),
        F,
        &["\"blk.0.attn_norm.weight\"", "data range overflows"],
    );
    add(
        "overlapping tensors",
        patched(&tensor_field(norm, "offset"), &u64le(0)),
        F,
        &[
            "overlap",
            "\"token_embd.weight\"",
            "\"blk.0.attn_norm.weight\"",
        ],
    );
    let mut b = base().0;
    b.pop();
    add(
        "last byte missing",
        b,
        F,
        &["\"output_norm.weight\"", "outside the file"],
    );

    // Model metadata (valid GGUF, inconsistent model).
    add(
        "no architecture",
        with_metadata(|m| remove(m, "general.architecture")),
        F,
        &["missing metadata key \"general.architecture\""],
    );
    add(
        "architecture not a string",
        with_metadata(|m| set(m, "general.architecture", Value::U32(1))),
        F,
        &["\"general.architecture\" has type u32"],
    );
    add(
        "architecture with spaces",
        with_metadata(|m| set(m, "general.architecture", Value::string("ll ama\n"))),
        F,
        &["not an architecture name"],
    );
    add(
        "zero layers",
        with_metadata(|m| set(m, "llama.block_count", Value::U32(0))),
        F,
        &["\"llama.block_count\"", "0 is out of range"],
    );
    add(
        "2^20 layers",
        with_metadata(|m| set(m, "llama.block_count", Value::U64(1 << 20))),
        F,
        &["\"llama.block_count\"", "1048576 is out of range"],
    );
    add(
        "layer count as string",
        with_metadata(|m| set(m, "llama.block_count", Value::string("1"))),
        F,
        &["\"llama.block_count\"", "expected an integer"],
    );
    add(
        "negative context",
        with_metadata(|m| set(m, "llama.context_length", Value::I32(-1))),
        F,
        &["\"llama.context_length\"", "-1 is out of range"],
    );
    add(
        "no embedding length",
        with_metadata(|m| remove(m, "llama.embedding_length")),
        F,
        &["missing metadata key \"llama.embedding_length\""],
    );
    add(
        "kv heads do not divide heads",
        with_metadata(|m| set(m, "llama.attention.head_count_kv", Value::U32(3))),
        F,
        &["3 KV heads do not divide 4"],
    );
    add(
        "more kv heads than heads",
        with_metadata(|m| set(m, "llama.attention.head_count_kv", Value::U32(8))),
        F,
        &["\"llama.attention.head_count_kv\"", "8 is out of range"],
    );
    add(
        "head counts per layer, wrong length",
        with_metadata(|m| {
            set(
                m,
                "llama.attention.head_count",
                Value::Array(Array::U32(vec![4, 4])),
            )
        }),
        F,
        &["one per layer"],
    );
    add(
        "tokens not strings",
        with_metadata(|m| set(m, tokens, Value::Array(Array::U32(vec![1; N_VOCAB])))),
        F,
        &["\"tokenizer.ggml.tokens\"", "array of strings"],
    );
    add(
        "empty vocabulary",
        with_metadata(|m| set(m, tokens, Value::Array(Array::String(vec![])))),
        F,
        &["vocabulary size 0"],
    );
    add(
        "negative file type",
        with_metadata(|m| set(m, "general.file_type", Value::I32(-5))),
        F,
        &["\"general.file_type\""],
    );

    // Hyperparameters that disagree with each other or with the tensors.
    add(
        "heads do not divide the embedding",
        with_metadata(|m| {
            set(m, "llama.attention.head_count", Value::U32(6));
            set(m, "llama.attention.head_count_kv", Value::U32(2));
        }),
        F,
        &["6 heads do not divide the embedding of 64"],
    );
    add(
        "vocab_size key differs from the tokens",
        with_metadata(|m| m.push(("llama.vocab_size".into(), Value::U32(9)))),
        F,
        &[
            "\"llama.vocab_size\"",
            "9 differs from the vocabulary's 8 tokens",
        ],
    );
    add(
        "embedding rows differ from the vocabulary",
        with_tensors(|t| t[0].dims = vec![64, N_VOCAB as u64 + 1]),
        F,
        &["tensor token_embd.weight", "expected [64, 8]"],
    );
    add(
        "a tensor shape disagrees with the heads",
        with_tensors(|t| t[tensor_index("blk.0.attn_k.weight")].dims = vec![64, 48]),
        F,
        &["tensor blk.0.attn_k.weight", "expected [64, 32]"],
    );
    add(
        "rope base zero",
        with_metadata(|m| set(m, "llama.rope.freq_base", Value::F32(0.0))),
        F,
        &["\"llama.rope.freq_base\"", "must be positive"],
    );
    add(
        "RMS epsilon NaN",
        with_metadata(|m| {
            set(
                m,
                "llama.attention.layer_norm_rms_epsilon",
                Value::F32(f32::NAN),
            )
        }),
        F,
        &["\"llama.attention.layer_norm_rms_epsilon\"", "not finite"],
    );

    // Vocabularies.
    add(
        "special token id out of range",
        with_metadata(|m| set(m, "tokenizer.ggml.eos_token_id", Value::U32(N_VOCAB as u32))),
        F,
        &[
            "\"tokenizer.ggml.eos_token_id\"",
            "token id 8 is out of range",
        ],
    );
    add(
        "special token id past 2^32",
        with_metadata(|m| set(m, "tokenizer.ggml.bos_token_id", Value::U64(1 << 32))),
        F,
        &["\"tokenizer.ggml.bos_token_id\"", "out of range"],
    );
    add(
        "no tokenizer model",
        with_metadata(|m| remove(m, "tokenizer.ggml.model")),
        F,
        &["missing metadata key \"tokenizer.ggml.model\""],
    );
    add(
        "unknown tokenizer model",
        with_metadata(|m| set(m, "tokenizer.ggml.model", Value::string("bert"))),
        F,
        &["unsupported tokenizer model \"bert\""],
    );
    add(
        "byte token not two hex digits",
        with_metadata(|m| {
            let mut texts: Vec<Box<[u8]>> = (0..N_VOCAB)
                .map(|i| format!("tok{i}").into_bytes().into())
                .collect();
            texts[3] = b"<0x+F>".to_vec().into();
            let mut types = vec![1; N_VOCAB];
            types[3] = 6;
            set(m, tokens, Value::Array(Array::String(texts)));
            set(
                m,
                "tokenizer.ggml.token_type",
                Value::Array(Array::I32(types)),
            );
        }),
        F,
        &["byte token 3 is \"<0x+F>\", not <0xHH>"],
    );
    let bpe = |merges: &[&str]| {
        with_metadata(|m| {
            set(m, "tokenizer.ggml.model", Value::string("gpt2"));
            let list = merges.iter().map(|s| s.as_bytes().into()).collect();
            m.push((
                "tokenizer.ggml.merges".into(),
                Value::Array(Array::String(list)),
            ));
        })
    };
    add(
        "merge without a space",
        bpe(&["tok0tok1"]),
        F,
        &["\"tokenizer.ggml.merges\"", "merge 0 has no space"],
    );
    add(
        "merge of an unknown token",
        bpe(&["tok0 tok9"]),
        F,
        &["merge 0", "right half \"tok9\" is not a token"],
    );
    add(
        "merge whose result is not a token",
        bpe(&["tok0 tok1"]),
        F,
        &["merge 0", "result \"tok0tok1\" is not a token"],
    );

    // Truncation at every field boundary of the valid file.
    let (bytes, layout) = base();
    let first_data = layout
        .fields
        .iter()
        .find(|f| f.name == "padding" || f.name.ends_with(".data"))
        .expect("data section")
        .offset;
    for f in &layout.fields {
        let expect: &[&str] = if f.offset < 4 {
            &["not a GGUF file"]
        } else if f.offset < first_data {
            // Either a read runs past the end ("needs N bytes, M remain") or a count is caught
            // first because the rest cannot hold it ("the M remaining bytes hold at most").
            &["remain"]
        } else {
            &["outside the file"]
        };
        add(
            &format!("truncated at {} (before {})", f.offset, f.name),
            bytes[..f.offset].to_vec(),
            F,
            expect,
        );
    }
    cases
}
