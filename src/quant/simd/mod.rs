//! SIMD dot-product kernels. Each level's kernels compute exactly the integer sums of the
//! scalar reference (`quant::dot`), in a different float accumulation order; tests hold them to
//! the scalar results within float tolerance at every level the CPU supports.
//!
//! Kernels are reachable only through `quant::dot::kernel`, which never hands out a level
//! above `cpu::detected()`: that is the invariant every `unsafe` call into a
//! `#[target_feature]` function here relies on.

#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(target_arch = "aarch64")]
pub mod arm;
