#!/usr/bin/env bash
# Sanitizer and checker runs beyond the test command (docs/SECURITY.md): by hand, as each
# takes minutes to build (the standard library is rebuilt instrumented).
#   scripts/sanitize.sh tsan   ThreadSanitizer on the concurrency tests: eight threads with
#                              contexts of their own on one model (RF_STRESS_SECONDS, 10 here),
#                              a context used from two threads, the engine's requests from
#                              many threads
#   scripts/sanitize.sh miri   Miri on the unit tests of the modules with unsafe code that
#                              Miri can run (KV cache, C boundary, batches, GGUF values,
#                              scalar quantization)
#   scripts/sanitize.sh asan   AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer)
#                              on the C programs the C-API tests build and run (gcc instruments
#                              the C side and intercepts every allocation; the Rust library
#                              itself is checked by the fuzzers' ASan builds and by Miri)
# Needs rustup's nightly toolchain with the rust-src and miri components.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=x86_64-unknown-linux-gnu
for what in "${@:-tsan miri asan}"; do
  for w in $what; do
    case $w in
      tsan)
        export RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS="halt_on_error=1"
        export RF_STRESS_SECONDS=${RF_STRESS_SECONDS:-10}
        CARGO_TARGET_DIR=target/tsan cargo +nightly test -Zbuild-std --target $target \
          --no-default-features --test context_threads --test engine -- --test-threads 1 \
          --skip batched_example
        unset RUSTFLAGS TSAN_OPTIONS ;;
      miri)
        cargo +nightly miri test --lib --no-default-features -- \
          kv::pool kv::seq kv::tests capi:: batch:: gguf::value quant::kquants quant::legacy ;;
      asan)
        # The C-API tests and examples with their C programs instrumented (tests/common).
        RF_C_SANITIZE=1 cargo test --test c_api --test engine ;;
      *) echo "unknown run $w (tsan, miri, asan)"; exit 2 ;;
    esac
  done
done
