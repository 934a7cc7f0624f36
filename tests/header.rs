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
