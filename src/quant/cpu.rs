//! CPU feature detection: the one place that decides which SIMD level kernels run at.
//!
//! `detected()` is what this CPU supports; `level()` is what kernels use: the detected level,
//! lowered by the environment variable `RF_SIMD` (`scalar`, `neon`, `avx2`, `avx512`) or by
//! `set_level_cap`. No kernel above `detected()` is ever handed out, whatever is asked for:
//! that invariant is what makes the SIMD kernels sound.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// SIMD instruction-set levels, in increasing order. Each architecture uses its own: x86-64
/// Scalar < Avx2 < Avx512, aarch64 Scalar < Neon; asking for another architecture's level
/// gives the highest of this one's below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// Portable Rust, every CPU.
    Scalar = 0,
    /// aarch64 Advanced SIMD (baseline on every aarch64 CPU).
    Neon = 1,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2 = 2,
    /// x86-64 AVX-512 F, BW, VL and VNNI (plus AVX2, FMA, F16C).
    Avx512 = 3,
}

impl SimdLevel {
    pub const ALL: [SimdLevel; 4] = [
        SimdLevel::Scalar,
        SimdLevel::Neon,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Neon => "neon",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// Whether this level exists on the architecture the crate was built for.
    pub fn on_this_arch(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            SimdLevel::Neon => cfg!(target_arch = "aarch64"),
            SimdLevel::Avx2 | SimdLevel::Avx512 => cfg!(target_arch = "x86_64"),
        }
    }

    pub fn from_name(name: &str) -> Option<SimdLevel> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    fn from_u8(v: u8) -> SimdLevel {
        match v {
            0 => SimdLevel::Scalar,
            1 => SimdLevel::Neon,
            2 => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> SimdLevel {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma") && has!("f16c");
    let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni");
    match (avx2, avx512) {
        (true, true) => SimdLevel::Avx512,
        (true, false) => SimdLevel::Avx2,
        _ => SimdLevel::Scalar,
    }
}

#[cfg(target_arch = "aarch64")]
fn detect() -> SimdLevel {
    SimdLevel::Neon
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> SimdLevel {
    SimdLevel::Scalar
}

/// Every level of this architecture up to `detected()`, lowest first: what tests compare.
pub fn levels() -> Vec<SimdLevel> {
    SimdLevel::ALL
        .into_iter()
        .filter(|l| l.on_this_arch() && *l <= detected())
        .collect()
}

/// The highest level this CPU supports.
pub fn detected() -> SimdLevel {
    static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

const NO_CAP: u8 = u8::MAX;
static CAP: AtomicU8 = AtomicU8::new(NO_CAP);

fn env_cap() -> Option<SimdLevel> {
    static ENV: OnceLock<Option<SimdLevel>> = OnceLock::new();
    *ENV.get_or_init(|| {
        let v = std::env::var("RF_SIMD").ok()?;
        let level = SimdLevel::from_name(v.trim());
        if level.is_none() {
            crate::log::warn(&format!(
                "RF_SIMD={v:?} is not one of scalar, neon, avx2, avx512; ignored"
            ));
        }
        level
    })
}

/// Caps the level kernels use (`None`: no cap beyond `RF_SIMD`). For benchmarks and tests
/// that compare levels; affects all threads.
pub fn set_level_cap(cap: Option<SimdLevel>) {
    CAP.store(cap.map_or(NO_CAP, |l| l as u8), Ordering::Relaxed);
}

/// The level kernels use now: `detected()`, lowered by `RF_SIMD` and `set_level_cap`.
pub fn level() -> SimdLevel {
    let mut l = detected();
    if let Some(cap) = env_cap() {
        l = l.min(cap);
    }
    match CAP.load(Ordering::Relaxed) {
        NO_CAP => l,
        c => l.min(SimdLevel::from_u8(c)),
    }
}
