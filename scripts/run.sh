#!/usr/bin/env bash
# The main job (README.md): fetch the default model if missing, build the library in release
# mode, build examples/model_info.c against the C header and the shared library, and run it.
# Usage: scripts/run.sh [MODEL.gguf]   (default: SmolLM2-135M-Instruct Q4_1)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

model="${1:-}"
if [ -z "$model" ]; then
  scripts/fetch-models.sh smollm2 >&2
  model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
fi

cargo build --release --quiet
lib="$root/target/release"
mkdir -p "$root/target/examples"
cc -std=c99 -O2 -Wall -Wextra -Werror -I "$root/include" "$root/examples/model_info.c" \
  -L "$lib" -Wl,-rpath,"$lib" -lrocmforge -o "$root/target/examples/model_info"
exec "$root/target/examples/model_info" "$model"
