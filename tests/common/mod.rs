//! Helpers shared by the integration tests: where the models and the built library are,
//! building the C programs, and running them under valgrind.
#![allow(dead_code)] // each test binary uses a different subset

pub mod corpus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True under CI, where a missing model or tool is a failure instead of a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns None, with a message) when a required input is absent, except under CI.
fn require(what: &str, found: bool, hint: &str) -> Option<()> {
    if found {
        return Some(());
    }
    assert!(!in_ci(), "{what} is missing under CI: {hint}");
    eprintln!("SKIPPED: {what} is missing ({hint})");
    None
}

/// The path of a test model, or None (skip) when it has not been fetched.
pub fn model(name: &str) -> Option<PathBuf> {
    let dir =
        std::env::var_os("RF_MODELS_DIR").map_or_else(|| root().join("models"), PathBuf::from);
    let path = dir.join(name);
    require(
        &format!("model {}", path.display()),
        path.is_file(),
        "run scripts/fetch-models.sh",
    )?;
    Some(path)
}

/// A model of ../shared/reference/zoo, or None (skip) when it is absent, except under CI.
pub fn zoo_model(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("RF_ZOO_DIR")
        .map_or_else(|| root().join("../shared/reference/zoo"), PathBuf::from);
    let path = dir.join(file);
    require(
        &format!("zoo model {}", path.display()),
        path.is_file(),
        "../shared/reference/zoo",
    )?;
    Some(path)
}

/// The folder holding the librocmforge.so of this build: `cargo test` builds the library
/// with all its crate types in the test binaries' own deps/ folder (a plain `cargo build`
/// puts it one level up).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps folder");
    [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .find(|d| d.join("librocmforge.so").is_file())
        .unwrap_or_else(|| panic!("librocmforge.so not found next to {}", exe.display()))
        .to_path_buf()
}

/// With RF_C_SANITIZE=1 (scripts/sanitize.sh asan), the C programs are built with
/// AddressSanitizer and UndefinedBehaviorSanitizer and run without valgrind (the two do not
/// mix); LeakSanitizer takes valgrind's place for leaks.
fn sanitize_c() -> bool {
    std::env::var("RF_C_SANITIZE").is_ok_and(|v| v == "1")
}

/// Compiles a C program against include/rocmforge.h and the shared library, with warnings as
/// errors. Returns the executable's path inside `out_dir`.
pub fn build_c(src: &Path, out_dir: &Path) -> PathBuf {
    let sanitizers: &[&str] = if sanitize_c() {
        &["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    } else {
        &[]
    };
    compile("cc", &["-std=c99"], sanitizers, src, out_dir)
}

/// Compiles a C++17 program (examples/cpp) against the header, the C++ wrapper's folder (the
/// source's own) and the shared library, with warnings as errors. Returns the executable.
pub fn build_cpp(src: &Path, out_dir: &Path) -> PathBuf {
    let folder = format!("-I{}", src.parent().expect("source folder").display());
    compile("c++", &["-std=c++17"], &[&folder], src, out_dir)
}

fn compile(compiler: &str, std: &[&str], extra: &[&str], src: &Path, out_dir: &Path) -> PathBuf {
    let exe = out_dir.join(src.file_stem().expect("source name"));
    let lib = lib_dir();
    let out = Command::new(compiler)
        .args(std)
        .args(["-Wall", "-Wextra", "-Werror", "-g", "-O1"])
        .args(extra)
        .arg("-I")
        .arg(root().join("include"))
        .arg(src)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        // RPATH, not RUNPATH: cargo test's LD_LIBRARY_PATH also names target/<profile>,
        // whose librocmforge.so may be an older build, and RUNPATH would yield to it.
        .arg("-Wl,--disable-new-dtags")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lrocmforge")
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Valgrind's exit code when it found a memory error or a leak.
const VALGRIND_ERROR: i32 = 97;

/// Runs a program under valgrind memcheck (zero errors and zero definite, indirect or possible
/// leaks required); without valgrind it runs the program directly, except under CI.
pub fn run_checked(exe: &Path, args: &[&std::ffi::OsStr]) -> Output {
    run_checked_with_input(exe, args, b"")
}

/// As `run_checked`, with `input` as the program's standard input.
pub fn run_checked_with_input(exe: &Path, args: &[&std::ffi::OsStr], input: &[u8]) -> Output {
    use std::io::Write;
    let mut cmd = if sanitize_c() {
        // Every sanitizer's finding exits with valgrind's error code, caught below.
        let mut c = Command::new(exe);
        c.env("ASAN_OPTIONS", "exitcode=97:detect_leaks=1")
            .env("LSAN_OPTIONS", "exitcode=97")
            .env(
                "UBSAN_OPTIONS",
                "halt_on_error=1:exitcode=97:print_stacktrace=1",
            );
        c
    } else if have_valgrind() {
        let mut c = Command::new("valgrind");
        c.arg(format!(
            "--suppressions={}",
            root().join("tests/c/valgrind.supp").display()
        ))
        .args([
            "--quiet",
            "--error-exitcode=97",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
        ])
        .arg(exe);
        c
    } else {
        assert!(
            !in_ci(),
            "valgrind is required under CI (.ci/run installs it)"
        );
        eprintln!(
            "NOTE: valgrind not found; running {} without it",
            exe.display()
        );
        Command::new(exe)
    };
    let mut child = cmd
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run program");
    // A program that stops reading early closes the pipe: not an error here.
    let _ = child.stdin.take().expect("stdin").write_all(input);
    let out = child.wait_with_output().expect("wait for program");
    assert_ne!(
        out.status.code(),
        Some(VALGRIND_ERROR),
        "valgrind (or a sanitizer) found errors or leaks in {}:\n{}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A JSON array of token ids (reference files) as `u32`s.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// A context on `model` for tests: `n_seq` sequences, 2 threads, the given cache type.
pub fn context(
    model: &std::sync::Arc<rocmforge::Model>,
    n_seq: usize,
    kv_type: rocmforge::KvType,
) -> rocmforge::Context {
    context_with(model, n_seq, kv_type, rocmforge::Numerics::default())
}

/// A context whose products round as llama.cpp's CPU backend does (`Numerics::LlamaCpp`):
/// for comparisons with the reference data.
pub fn reference_context(
    model: &std::sync::Arc<rocmforge::Model>,
    kv_type: rocmforge::KvType,
) -> rocmforge::Context {
    context_with(model, 1, kv_type, rocmforge::Numerics::LlamaCpp)
}

fn context_with(
    model: &std::sync::Arc<rocmforge::Model>,
    n_seq: usize,
    kv_type: rocmforge::KvType,
    numerics: rocmforge::Numerics,
) -> rocmforge::Context {
    rocmforge::Context::new(
        std::sync::Arc::clone(model),
        rocmforge::ContextParams {
            n_ctx: 2048,
            n_seq_max: n_seq,
            n_threads: 2,
            kv_type,
            numerics,
            ..rocmforge::ContextParams::default()
        },
    )
    .expect("context")
}

/// Decodes `tokens` as one batch continuing sequence `seq` of `ctx` and returns the logits of
/// every row (all flagged for output), `n_vocab` per row.
pub fn decode_rows(ctx: &mut rocmforge::Context, tokens: &[u32], seq: i32) -> Vec<f32> {
    let start = ctx.kv_pos_range(seq).unwrap().map_or(0, |(_, hi)| hi + 1);
    let mut b = rocmforge::Batch::new();
    for (i, &t) in tokens.iter().enumerate() {
        b.add(t as i32, start + i as i32, &[seq], true).unwrap();
    }
    ctx.decode(&b).expect("decode");
    (0..tokens.len())
        .flat_map(|i| ctx.logits(i as i32).unwrap().to_vec())
        .collect()
}

/// Decodes `tokens` continuing sequence `seq` and returns the last row's logits.
pub fn decode_last(ctx: &mut rocmforge::Context, tokens: &[u32], seq: i32) -> Vec<f32> {
    let start = ctx.kv_pos_range(seq).unwrap().map_or(0, |(_, hi)| hi + 1);
    let b = rocmforge::Batch::from_tokens(tokens, start, seq).unwrap();
    ctx.decode(&b).expect("decode");
    ctx.logits(-1).unwrap().to_vec()
}

pub fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold(0, |b, (t, &v)| if v > logits[b] { t } else { b }) as u32
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// A model loaded for decoding, shared the way contexts share it.
pub fn load(path: &Path) -> std::sync::Arc<rocmforge::Model> {
    std::sync::Arc::new(rocmforge::Model::load(path, rocmforge::ModelParams::default()).unwrap())
}

/// Prompt `i` of `<name>/logits.jsonl` and llama.cpp's full logits at its last position
/// (`logits.<i>.f32`); `None` (skip) when the reference is absent outside CI.
pub fn reference_last_logits(name: &str, i: usize) -> Option<(Vec<u32>, Vec<f32>)> {
    let dir = root().join(format!("../shared/reference/{name}"));
    let (Ok(text), Ok(bytes)) = (
        std::fs::read_to_string(dir.join("logits.jsonl")),
        std::fs::read(dir.join(format!("logits.{i}.f32"))),
    ) else {
        require("the reference data", false, "../shared/reference")?;
        return None;
    };
    let rec: serde_json::Value = serde_json::from_str(text.lines().nth(i)?).unwrap();
    let logits = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some((ids(&rec["tokens"]), logits))
}

/// The zoo model `file` with every weight of its output norm made NaN, so every logit comes
/// out NaN (in an F32 model: a Q8 rounding of the products' inputs would turn NaN into
/// zeros); `None` (skip) when the zoo is absent outside CI.
pub fn zoo_with_nan_logits(file: &str) -> Option<rocmforge::gguf::GgufFile> {
    use rocmforge::gguf::{GgufFile, GgufWriter};
    let src = GgufFile::open(&zoo_model(file)?).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata() {
        w.add(k, v.clone());
    }
    for t in src.tensors() {
        let mut data = src.tensor_data(t).unwrap().to_vec();
        if t.name == "output_norm.weight" {
            for c in data.chunks_exact_mut(4) {
                c.copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
        w.add_tensor(&t.name, t.ty, &t.dims[..t.n_dims as usize], data)
            .unwrap();
    }
    Some(GgufFile::from_bytes(w.to_bytes().0).unwrap())
}
