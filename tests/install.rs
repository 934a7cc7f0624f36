//! Installing the C library (scripts/install.sh, docs/INSTALL.md) into a temporary prefix:
//! the versioned shared library with its soname and links, the static library, the header and
//! the pkg-config file; `examples/simple.c` built with nothing but
//! `cc $(pkg-config --cflags --libs rocmforge)` and run; the same program linked statically
//! with the .pc file's private libraries; and the CMake consumer (examples/cmake) configured,
//! built and run through pkg-config.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{in_ci, lib_dir, root};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A shell command with PKG_CONFIG_PATH naming the prefix's pkg-config folder.
fn sh(prefix: &Path, cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(root())
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("run sh")
}

/// Runs a program built against the installed library on the zoo's tiny llama: it must
/// generate and exit 0.
fn generates(exe: &Path, zoo: &Path) {
    let out = Command::new(exe)
        .arg(zoo)
        .args(["-n", "4", "-t", "1"])
        .output()
        .expect("run the program");
    ok(out, &format!("{}", exe.display()));
}

#[test]
fn install_then_build_with_pkg_config_and_cmake() {
    let missing: Vec<_> = ["patchelf", "pkg-config"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "{missing:?} required under CI (.ci/run installs them)"
        );
        eprintln!("SKIPPED: install test needs {missing:?}");
        return;
    }
    let Some(zoo) = common::zoo_model("llama.F32.gguf") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let from = lib_dir();
    let out = Command::new(root().join("scripts/install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--from")
        .arg(&from)
        .output()
        .unwrap();
    ok(out, "scripts/install.sh");

    // The layout, the soname and the links.
    let lib = prefix.join("lib");
    let version = env!("CARGO_PKG_VERSION");
    let abi = format!("0.{}", env!("CARGO_PKG_VERSION_MINOR"));
    for f in [
        format!("librocmforge.so.{version}"),
        format!("librocmforge.so.{abi}"),
        "librocmforge.so".into(),
        "librocmforge.a".into(),
        "pkgconfig/rocmforge.pc".into(),
    ] {
        assert!(lib.join(&f).is_file(), "{f} not installed");
    }
    assert!(prefix.join("include/rocmforge.h").is_file());
    assert_eq!(
        std::fs::read_link(lib.join("librocmforge.so")).unwrap(),
        Path::new(&format!("librocmforge.so.{abi}"))
    );
    let soname = ok(
        Command::new("patchelf")
            .arg("--print-soname")
            .arg(lib.join(format!("librocmforge.so.{version}")))
            .output()
            .unwrap(),
        "patchelf --print-soname",
    );
    assert_eq!(soname.trim(), format!("librocmforge.so.{abi}"));
    let modversion = ok(
        sh(&prefix, "pkg-config --modversion rocmforge"),
        "pkg-config",
    );
    assert_eq!(modversion.trim(), version);

    // A C program with nothing but pkg-config's flags; it runs against the installed library
    // through its soname.
    let exe = tmp.path().join("simple");
    ok(
        sh(
            &prefix,
            &format!(
                "cc -std=c99 -Wall -Werror examples/simple.c -o {} $(pkg-config --cflags --libs rocmforge)",
                exe.display()
            ),
        ),
        "cc with pkg-config",
    );
    let needed = ok(
        Command::new("patchelf")
            .arg("--print-needed")
            .arg(&exe)
            .output()
            .unwrap(),
        "patchelf --print-needed",
    );
    assert!(
        needed
            .lines()
            .any(|l| l == format!("librocmforge.so.{abi}")),
        "the program needs {needed:?}"
    );
    let out = Command::new(&exe)
        .arg(&zoo)
        .args(["-n", "4", "-t", "1"])
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .unwrap();
    ok(out, "simple against the installed library");

    // Statically: the archive plus the .pc file's private libraries are enough.
    let exe_static = tmp.path().join("simple-static");
    ok(
        sh(
            &prefix,
            &format!(
                "cc -std=c99 examples/simple.c -o {} $(pkg-config --cflags rocmforge) {} \
                 $(pkg-config --static --libs-only-l rocmforge | sed 's/-lrocmforge//')",
                exe_static.display(),
                lib.join("librocmforge.a").display()
            ),
        ),
        "static link",
    );
    let needed = ok(
        Command::new("patchelf")
            .arg("--print-needed")
            .arg(&exe_static)
            .output()
            .unwrap(),
        "patchelf --print-needed",
    );
    assert!(
        !needed.contains("rocmforge"),
        "static program needs {needed:?}"
    );
    generates(&exe_static, &zoo);

    // CMake, through FindPkgConfig.
    if !have("cmake") {
        assert!(!in_ci(), "cmake is required under CI (.ci/run installs it)");
        eprintln!("SKIPPED: the CMake consumer (no cmake)");
        return;
    }
    let build = tmp.path().join("cmake-build");
    ok(
        Command::new("cmake")
            .arg("-S")
            .arg(root().join("examples/cmake"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
            .output()
            .unwrap(),
        "cmake configure",
    );
    ok(
        Command::new("cmake")
            .arg("--build")
            .arg(&build)
            .output()
            .unwrap(),
        "cmake build",
    );
    // BUILD_RPATH names the installed library: no LD_LIBRARY_PATH needed.
    generates(&build.join("simple"), &zoo);
}
