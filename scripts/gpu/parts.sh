#!/usr/bin/env bash
# Cuts a model that is too big for one device run (64 MiB a run, .dev included) into parts:
# the first (FIRST_MIB, default 24) into .dev/part/ (it travels with the first run, beside
# the binaries), the rest, 60 MiB each, into .parts2/, .parts3/, ... (git-ignored), each the
# only carry of a quick follow-up run whose `stash` stage adds it; with the last part
# `stash` reassembles the file under /tmp/rfm and checks its sha256 (docs/GPU.md).
# Usage: scripts/gpu/parts.sh MODEL [FIRST_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$1
first=${2:-24}
name=$(basename "$model")
for p in '/.dev/' '/.parts*/'; do
  grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
done
rm -rf .parts* .dev/part/"$name".*
mkdir -p .dev/part
size=$(stat -c %s "$model")
mib=$((1 << 20))
dd if="$model" of=".dev/part/$name.1" bs=1M count="$first" status=none
n=1
off=$((first * mib))
while [ "$off" -lt "$size" ]; do
  n=$((n + 1))
  mkdir -p ".parts$n"
  dd if="$model" of=".parts$n/$name.$n" bs=1M skip=$((off / mib)) count=60 status=none
  off=$((off + 60 * mib))
done
echo "$n" > ".dev/part/$name.count"
(cd "$(dirname "$model")" && sha256sum "$name") > ".dev/part/$name.sha256"
echo "$name: $n parts (.dev/part, then .parts2 .. .parts$n)"
