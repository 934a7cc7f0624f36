#!/usr/bin/env bash
# Fills .dev/ (git-ignored) with what a GPU run needs: the GPU test binary and the CLI built
# with --features cuda (stripped), the zoo models, synth_gguf.py and the gguf wheel.
# Then: the device tool runs `bash scripts/gpu/device.sh STAGES` with carry [".dev"].
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >> .git/info/exclude
mkdir -p .dev/zoo .dev/whl
cargo build --release --features cuda --bin rocmforge
exe=$(cargo test --release --features cuda --test gpu --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu": print(m["executable"])')
cp "$exe" .dev/gpu
cp target/release/rocmforge .dev/rocmforge
strip .dev/gpu .dev/rocmforge
cp ../shared/reference/zoo/*.gguf .dev/zoo/
cp ../shared/tools/synth_gguf.py .dev/
ls .dev/whl/gguf-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d .dev/whl gguf
du -sh .dev
