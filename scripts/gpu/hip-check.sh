#!/usr/bin/env bash
# Compiles kernels/ in the AMD dialect with hipcc (Debian's `hipcc` package, ROCm 5.2), for a
# wave32 (gfx1030) and a wave64 (gfx90a) target, warnings as errors. Skips with a message
# when hipcc is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! command -v hipcc >/dev/null; then
  echo "SKIPPED: HIP kernel compile check (hipcc not installed)"
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for arch in gfx1030 gfx90a; do
  hipcc -x hip --genco --offload-arch="$arch" -O3 -Werror kernels/all.cu -o "$out/kernels-$arch.co"
  echo "HIP kernels compiled for $arch: $(stat -c %s "$out/kernels-$arch.co") bytes"
done
