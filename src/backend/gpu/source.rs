//! The kernel source embedded in the library, and the on-disk cache of what the run-time
//! compiler made of it.
//!
//! The files of `kernels/` are concatenated in `kernels/all.cu`'s order (no includes: the
//! run-time compilers then need no include path). A compiled module is cached under
//! `$ROCMFORGE_CACHE_DIR`, else `$XDG_CACHE_HOME/rocmforge`, else `~/.cache/rocmforge`, in a
//! file named for a hash of the source, the device architecture and the compiler version,
//! so a change to any of the three compiles afresh. A cache that cannot be read or written
//! is skipped (the module is compiled in memory).

use std::path::PathBuf;

/// The kernels, in dependency order.
pub const SOURCE: &[&str] = &[
    include_str!("../../../kernels/compat.h"),
    include_str!("../../../kernels/quant.cuh"),
    include_str!("../../../kernels/matvec.cu"),
    include_str!("../../../kernels/matvec_q8.cu"),
    include_str!("../../../kernels/matvec_q8k.cu"),
    include_str!("../../../kernels/mmq.cu"),
    include_str!("../../../kernels/mmq_k.cu"),
    include_str!("../../../kernels/ops.cu"),
    include_str!("../../../kernels/fused.cu"),
    include_str!("../../../kernels/attention.cu"),
    include_str!("../../../kernels/attention_mma.cu"),
    include_str!("../../../kernels/moe.cu"),
];

pub fn full_source() -> String {
    SOURCE.concat()
}

/// Whether the run-time compilers may contract `a * b + c` into one fused multiply-add.
/// Off by default: the CPU backend's float arithmetic is not contracted (explicit `fmaf`
/// calls stay fused either way), and the models amplify the difference: SmolLM2's
/// last-position logits moved by 0.14 to 0.26 in the emulator when the same kernels were
/// compiled with contraction (docs/GPU.md). RF_GPU_FMAD=1 turns it on (to measure its cost).
#[cfg_attr(
    not(any(feature = "cuda", feature = "hip", feature = "gpu-emulator")),
    allow(dead_code)
)]
pub fn contract() -> bool {
    std::env::var("RF_GPU_FMAD").is_ok_and(|v| v == "1")
}

/// The part of a module's cache key that the compile options make (`cache_path`'s `arch`).
#[cfg_attr(
    not(any(feature = "cuda", feature = "hip", feature = "gpu-emulator")),
    allow(dead_code)
)]
pub fn variant(arch: &str) -> String {
    if contract() {
        format!("{arch}-fmad")
    } else {
        arch.to_string()
    }
}

/// FNV-1a, 64 bits: stable across builds and Rust versions (a cache key, not a defence).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separates the parts: ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("ROCMFORGE_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("rocmforge")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("rocmforge")))
}

/// The cache file of a module for `arch` built by compiler `compiler`.
pub fn cache_path(src: &str, arch: &str, compiler: &str, ext: &str) -> Option<PathBuf> {
    let h = fnv1a(&[src.as_bytes(), arch.as_bytes(), compiler.as_bytes()]);
    Some(cache_dir()?.join(format!("kernels-{arch}-{h:016x}.{ext}")))
}

/// A cached module, when there is one.
#[cfg_attr(not(any(feature = "cuda", feature = "hip")), allow(dead_code))]
pub fn load_cached(path: &Option<PathBuf>) -> Option<Vec<u8>> {
    std::fs::read(path.as_ref()?).ok().filter(|b| !b.is_empty())
}

/// Stores a module (written to a temporary name, then renamed: readers never see half a
/// file). Failures only cost a compile next time.
pub fn store_cached(path: &Option<PathBuf>, image: &[u8]) {
    let Some(path) = path else { return };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let ok = path
        .parent()
        .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
        && std::fs::write(&tmp, image).is_ok()
        && std::fs::rename(&tmp, path).is_ok();
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        crate::log::debug(&format!("could not cache kernels at {}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_is_every_kernel_file_of_all_cu() {
        let all = include_str!("../../../kernels/all.cu");
        let included = all.lines().filter(|l| l.starts_with("#include \"")).count();
        assert_eq!(included, SOURCE.len());
        assert!(full_source().contains("attend_f16("));
    }

    /// The index in `s` of the bracket that closes the one `s` begins with.
    fn closing(s: &str, open: char, close: char) -> usize {
        let mut depth = 0;
        for (i, c) in s.char_indices() {
            if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
        }
        panic!("unbalanced {open}{close}");
    }

    /// The body of each `__global__` function: the text between the opening brace after
    /// its parameter list and the matching closing brace.
    fn kernel_bodies(src: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = src;
        while let Some(at) = rest.find("__global__") {
            rest = &rest[at..];
            let params = rest.find('(').unwrap();
            let after = &rest[params + closing(&rest[params..], '(', ')')..];
            let open = after.find('{').unwrap();
            let end = open + closing(&after[open..], '{', '}');
            out.push(&after[open + 1..end]);
            rest = &after[end..];
        }
        out
    }

    /// Kernels launch with programmatic dependent launch on sm_90 (compat.h): one that
    /// touched a buffer before `rf_grid_wait` could read what the kernel before it has not
    /// written yet. So every kernel begins with `rf_grid_start()`, or with `rf_grid_go()`
    /// and then a call to a product whose only work before its `rf_grid_wait()` is a
    /// prefetch.
    #[test]
    fn every_kernel_waits_for_the_one_before() {
        let src = full_source();
        let bodies = kernel_bodies(&src);
        assert!(bodies.len() >= 30, "{} kernels found", bodies.len());
        for body in bodies {
            let first = body
                .trim_start_matches(|c: char| c.is_whitespace() || c == '\\')
                .split(';')
                .next()
                .unwrap();
            match first {
                "rf_grid_start()" => {}
                "rf_grid_go()" => {
                    let callee = body
                        .split(';')
                        .nth(1)
                        .unwrap()
                        .trim_start_matches(|c: char| c.is_whitespace() || c == '\\');
                    let name = callee.split('<').next().unwrap();
                    let def = src
                        .find(&format!("void {name}("))
                        .unwrap_or_else(|| panic!("{name} is not defined"));
                    let helper = &src[def..];
                    let wait = helper.find("rf_grid_wait();").unwrap();
                    let before = &helper[..wait];
                    assert!(
                        !before.contains("y[") && !before.contains("xq["),
                        "{name} touches its activations or outputs before rf_grid_wait"
                    );
                }
                other => panic!("a kernel begins with `{other}`, not rf_grid_start()"),
            }
        }
    }

    #[test]
    fn cache_round_trip_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = Some(dir.path().join("sub").join("k.cubin"));
        assert_eq!(load_cached(&path), None);
        store_cached(&path, b"image");
        assert_eq!(load_cached(&path).as_deref(), Some(&b"image"[..]));
        if let (Some(a), Some(b)) = (
            cache_path("src", "sm_90", "nvrtc-13.0", "cubin"),
            cache_path("src", "sm_80", "nvrtc-13.0", "cubin"),
        ) {
            assert_ne!(a, b);
        }
    }

    #[test]
    fn cache_key_separates_parts() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(fnv1a(&[b"x"]), fnv1a(&[b"x"]));
    }
}
