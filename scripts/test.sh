#!/usr/bin/env bash
# The test command (README.md, .ci/run): fetch the test models if missing, then check
# formatting and lints and run every test. Tests that need a model or valgrind skip with a
# message when run by hand without them; under CI (CI=true) they fail instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/fetch-models.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets "$@"
