#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer, nightly Rust) for
# FUZZ_SECONDS each (default 60), from the committed seeds (fuzz/seeds/) plus what earlier
# local runs found (fuzz/corpus/, git-ignored). A crash, leak, timeout (10 s an input) or
# allocation past 2 GiB fails the run and leaves the input under fuzz/artifacts/<target>/.
# Usage: scripts/fuzz.sh [TARGET...]   (docs/SECURITY.md)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${FUZZ_SECONDS:-60}
all="gguf_parse model_load tokenize detokenize chat_template context_ops capi_ops"
targets=${*:-$all}
cargo +nightly fuzz build -O 2>&1 | grep -v "^ *Compiling" || true
for t in $targets; do
  case $t in
    gguf_parse | model_load) seeds=fuzz/seeds/gguf ;;
    *) seeds=fuzz/seeds/$t ;;
  esac
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" "$seeds" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "FUZZ FAILED: $t (the input is under fuzz/artifacts/$t/)"
    exit 1
  fi
  runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | grep -o "[0-9]*$" || echo "?")
  corpus=$(ls "fuzz/corpus/$t" | wc -l)
  echo "fuzz $t: $runs inputs in ${secs} s, no failure; corpus $corpus inputs"
  rm -f "$log"
done
