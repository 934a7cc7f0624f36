#!/usr/bin/env bash
# Regenerate include/rocmforge.h from the Rust sources (cbindgen, configured by cbindgen.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RF_UPDATE_HEADER=1 cargo test --quiet --test header header_is_fresh
echo "include/rocmforge.h regenerated"
