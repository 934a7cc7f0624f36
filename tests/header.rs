//! The committed C header is exactly what cbindgen generates from the sources, and it compiles
//! alone as C99 and as C++17 with every warning an error.
//!
//! To regenerate after changing the C API: `scripts/gen-header.sh` (sets RF_UPDATE_HEADER=1).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        // Only the C boundary: the crate's other public items are Rust API, not C API.
        .with_src(root().join("src/capi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

#[test]
fn header_is_fresh() {
    let path = root().join("include/rocmforge.h");
    let fresh = generate();
    if std::env::var_os("RF_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/rocmforge.h is stale: run scripts/gen-header.sh and commit the result"
    );
}

fn compile(compiler: &str, args: &[&str], header_dir: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let ext = if compiler.contains("++") { "cpp" } else { "c" };
    let src = dir.path().join(format!("only_header.{ext}"));
    std::fs::write(
        &src,
        "#include \"rocmforge.h\"\nint main(void) { return RF_OK; }\n",
    )
    .unwrap();
    let out = Command::new(compiler)
        .args(args)
        .arg("-I")
        .arg(header_dir)
        .arg("-fsyntax-only")
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} {args:?} rejects the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c99() {
    compile(
        "cc",
        &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        &root().join("include"),
    );
}

#[test]
fn header_compiles_as_cxx17() {
    compile(
        "c++",
        &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        &root().join("include"),
    );
}

/// Every function of the header is documented (issue 12): what it does, and for each one its
/// thread-safety; every function returning `rf_status` names the statuses it returns.
#[test]
fn every_function_documents_statuses_and_threads() {
    let header = std::fs::read_to_string(root().join("include/rocmforge.h")).unwrap();
    let mut n = 0;
    let mut missing = Vec::new();
    // A prototype is a line starting with a return type and naming `rf_...(`, after its doc
    // comment (`/** ... */`).
    let mut doc = String::new();
    for line in header.lines() {
        let t = line.trim_start();
        if t.starts_with("/**") {
            doc.clear();
        }
        if t.starts_with('*') || t.starts_with("/**") {
            doc.push_str(t);
            doc.push(' ');
            continue;
        }
        let Some(paren) = line.find('(') else {
            continue;
        };
        let head = &line[..paren];
        let Some(name) = head
            .split_whitespace()
            .last()
            .map(|w| w.trim_start_matches('*'))
        else {
            continue;
        };
        if !name.starts_with("rf_") || line.starts_with(' ') || line.starts_with("typedef") {
            continue;
        }
        n += 1;
        let returns_status = head.starts_with("rf_status ");
        if doc.trim().is_empty() {
            missing.push(format!("{name}: no doc comment"));
        }
        if returns_status && !(doc.contains("Statuses") || doc.contains("RF_OK")) {
            missing.push(format!("{name}: no statuses"));
        }
        if !doc.to_lowercase().contains("thread") {
            missing.push(format!("{name}: no thread-safety"));
        }
        doc.clear();
    }
    assert!(n >= 64, "found only {n} functions");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
