#!/usr/bin/env bash
# The test command (README.md, .ci/run): fetch the test models if missing, then check
# formatting and lints and run every test. Tests that need a model or valgrind skip with a
# message when run by hand without them; under CI (CI=true) they fail instead.
#
# When the aarch64 cross tools are present (rustup target aarch64-unknown-linux-gnu,
# aarch64-linux-gnu-gcc, qemu-aarch64; .ci/run installs them), the NEON kernels are also linted
# and tested under qemu.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/fetch-models.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets "$@"

# The GPU backend: builds with CUDA support anywhere (CUDA is opened at run time); without a
# GPU its tests skip with a message (docs/GPU.md says how they run on one).
cargo clippy --features cuda,gpu-emulator --all-targets --quiet -- -D warnings
cargo test --features cuda,gpu-emulator --lib --test gpu
# The same GPU tests on an emulated GPU (x86-64 only): the library's kernels compiled for the
# CPU with the host's C++ compiler, threads run as fibers with real barriers and shuffles,
# guard pages behind every device buffer (docs/GPU.md, "The emulator"). Once as NVIDIA's
# GPUs run (32-lane warps, the f16 GEMM), once as the HIP backend runs AMD CDNA ones (64-lane
# wavefronts, no BLAS: batches through the matrix-vector and tiled int8 kernels). The real
# models take minutes each there and run on the GPU machine instead.
if [ "$(uname -m)" = x86_64 ]; then
  for warp in wave32 wave64; do
    ROCMFORGE_GPU_EMULATOR=$warp RF_REQUIRE_GPU=1 cargo test --features cuda,gpu-emulator \
      --test gpu -- --test-threads 1 --skip smollm2 --skip gemma3
  done
else
  echo "SKIPPED: the GPU tests on the emulated GPU (it runs on x86-64 hosts)"
fi
# The same kernels in the AMD dialect, compiled with hipcc when it is installed; the HIP host
# code against ROCm's headers and libamdhip64 (Debian's libamdhip64-dev, which hipcc pulls
# in), and hipRTC compiling the library's kernel source for an AMD target (no GPU needed).
scripts/gpu/hip-check.sh
# The CUDA branches of the same source (inline PTX) through clang's CUDA front end.
scripts/gpu/cuda-check.sh
if command -v hipconfig >/dev/null && [ -f "$(hipconfig -p)/include/hip/hip_runtime_api.h" ]; then
  cargo clippy --features hip --all-targets --quiet -- -D warnings
  cargo test --features hip --lib backend::gpu
else
  echo "SKIPPED: HIP host code build and hipRTC test (ROCm's HIP headers not installed)"
fi

# The fuzz targets (fuzz/, docs/SECURITY.md): formatted, linted, and each run for
# FUZZ_SECONDS (60 by default) under AddressSanitizer from the committed seeds. They need
# cargo-fuzz and a nightly toolchain (.ci/run installs cargo-fuzz).
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --quiet -- -D warnings
if ! cargo +nightly --version >/dev/null 2>&1; then
  # The sanitizer builds need nightly Rust, which this machine's image may lack and cannot fetch.
  echo "SKIPPED: fuzzing (no nightly toolchain: rustup toolchain install nightly)"
elif command -v cargo-fuzz >/dev/null; then
  scripts/fuzz.sh
elif [ "${CI:-}" = true ]; then
  echo "FAILED: the fuzz targets need cargo-fuzz (.ci/run installs it)" >&2
  exit 1
else
  echo "SKIPPED: fuzzing (needs cargo-fuzz: cargo install cargo-fuzz)"
fi

aarch64=aarch64-unknown-linux-gnu
if rustup target list --installed 2>/dev/null | grep -qx "$aarch64" \
  && command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; then
  cargo clippy --target "$aarch64" --all-targets --quiet -- -D warnings
  # The quant layer's tests; the C-API tests build host C programs and stay host-only.
  cargo test --target "$aarch64" --lib --test quant_simd --test quant_reference
else
  echo "SKIPPED: aarch64 NEON tests (needs rustup target $aarch64, aarch64-linux-gnu-gcc, qemu-aarch64)"
fi
