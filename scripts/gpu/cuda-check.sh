#!/usr/bin/env bash
# Compiles the kernel source as NVRTC gets it (src/backend/gpu/source.rs order) for NVIDIA
# targets with clang's CUDA front end: no CUDA toolkit and no GPU needed. It catches what
# only the CUDA branches of kernels/compat.h contain (inline PTX such as the int8 mma of
# sm_80+) before a device run does. sm_75 takes the portable branches, sm_80 the tensor-core
# ones, sm_90 also the grid-dependency waits of programmatic dependent launch
# (where the clang knows sm_90). Skips with a message when no clang with CUDA support is
# installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
clang=$(command -v clang-19 || command -v clang-15 || command -v clang || true)
if [ -z "$clang" ]; then
  echo "SKIPPED: CUDA dialect check (no clang)"
  exit 0
fi
res=$("$clang" -print-resource-dir)
if [ ! -f "$res/include/__clang_cuda_builtin_vars.h" ]; then
  echo "SKIPPED: CUDA dialect check ($clang has no CUDA headers)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The files of source.rs's SOURCE, in its order (all.cu is its test's, which includes them).
grep -o 'include_str!("../../../kernels/[a-z0-9_.]*")' src/backend/gpu/source.rs \
  | grep -o 'kernels/[a-z0-9_.]*' | grep -vx 'kernels/all.cu' | xargs cat >"$tmp/all.cu"
for arch in sm_75 sm_80 sm_90; do
  if ! "$clang" -x cuda --cuda-gpu-arch=$arch --cuda-device-only -nocudainc -nocudalib -std=c++17 \
    -Werror=implicit-function-declaration -S -o "$tmp/$arch.ptx" \
    -include "$res/include/__clang_cuda_builtin_vars.h" -include scripts/gpu/cuda-shim/prelude.h \
    "$tmp/all.cu" 2>"$tmp/err"; then
    # An older clang (15) knows no sm_90: the sm_90 branches then wait for a newer one.
    if grep -q "unsupported CUDA gpu architecture: $arch" "$tmp/err"; then
      echo "SKIPPED: CUDA kernels for $arch ($clang does not know it)"
      continue
    fi
    cat "$tmp/err" >&2
    exit 1
  fi
  echo "CUDA kernels compiled for $arch: $(wc -c <"$tmp/$arch.ptx") bytes of PTX, $(grep -c 'mma.sync' "$tmp/$arch.ptx" || true) mma instructions, $(grep -c 'griddepcontrol.wait' "$tmp/$arch.ptx" || true) grid waits"
done
