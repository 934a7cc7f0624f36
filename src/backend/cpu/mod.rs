//! The CPU backend: a persistent thread pool with cheap fork/join (`pool`) and the quantized
//! matrix multiply (`matmul`).

#[cfg(target_arch = "x86_64")]
mod attn_x86;
pub(crate) mod disjoint;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod two_pass;

pub use matmul::{MAX_GROUP, MatmulScratch, Numerics, Weights, matmul, matmul_group};
pub use pool::ThreadPool;
