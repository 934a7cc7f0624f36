#!/usr/bin/env bash
# The main job (README.md): fetch the default model if missing, build the library in release
# mode, build examples/simple.c against the C header and the shared library, and generate
# text with it (greedy, streamed as it is decoded).
# Usage: scripts/run.sh [MODEL.gguf [PROMPT]]   (default: SmolLM2-135M-Instruct Q4_1)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

model="${1:-}"
prompt="${2:-The capital of France is}"
if [ -z "$model" ]; then
  scripts/fetch-models.sh smollm2 >&2
  model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
fi

cargo build --release --quiet
lib="$root/target/release"
mkdir -p "$root/target/examples"
for ex in simple model_info; do
  cc -std=c99 -O2 -Wall -Wextra -Werror -I "$root/include" "$root/examples/$ex.c" \
    -L "$lib" -Wl,-rpath,"$lib" -lrocmforge -o "$root/target/examples/$ex"
done
exec "$root/target/examples/simple" "$model" -p "$prompt" -n 32
