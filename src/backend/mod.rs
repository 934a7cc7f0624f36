//! Compute backends. `cpu` is always available: a persistent thread pool and the quantized
//! matrix multiply over `quant`'s SIMD dot products.

pub mod cpu;
