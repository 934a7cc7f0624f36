//! The Python package (bindings/python) against this build's library: its pytest suite
//! (load, tokenizer and greedy text against llama.cpp's reference, logits bit for bit,
//! streaming, sampling, errors, the engine from Python threads, the example program and a
//! pip install). Needs python3 with pytest (.ci/run installs it); skipped with a message
//! when run by hand without it.

mod common;

use std::process::Command;

#[test]
fn python_package_passes_its_tests() {
    let has_pytest = Command::new("python3")
        .args(["-c", "import pytest"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pytest {
        assert!(
            !common::in_ci(),
            "pytest is missing under CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: python3 -c 'import pytest' failed (pip install pytest)");
        return;
    }
    let dir = common::root().join("bindings/python");
    let lib = common::lib_dir().join("librocmforge.so");
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&dir)
        .env("ROCMFORGE_LIBRARY", &lib)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "pytest failed:\n{text}");
    assert!(
        !text.contains("skipped") || !common::in_ci(),
        "tests were skipped under CI"
    );
}
