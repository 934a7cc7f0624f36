//! Compute backends. `cpu` is always available: a persistent thread pool and the quantized
//! matrix multiply over `quant`'s SIMD dot products. `gpu` runs the offloaded layers on a
//! GPU (CUDA with the `cuda` feature), the CPU taking the rest.

pub mod cpu;
pub mod gpu;
