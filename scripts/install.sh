#!/usr/bin/env bash
# Installs the C library the way C and C++ build systems expect (docs/INSTALL.md):
#   PREFIX/lib/librocmforge.so.0.1.0      the shared library, soname librocmforge.so.0.1
#   PREFIX/lib/librocmforge.so.0.1 -> librocmforge.so.0.1.0
#   PREFIX/lib/librocmforge.so     -> librocmforge.so.0.1
#   PREFIX/lib/librocmforge.a             the static library
#   PREFIX/include/rocmforge.h
#   PREFIX/lib/pkgconfig/rocmforge.pc     for pkg-config (and CMake's FindPkgConfig)
#
# Usage: scripts/install.sh --prefix DIR [--libdir DIR] [--from DIR] [-- CARGO_BUILD_ARGS...]
#   --from DIR   install the libraries already built in DIR (librocmforge.so and .a) instead
#                of building them (`cargo build --release --lib` plus CARGO_BUILD_ARGS, e.g.
#                -- --features cuda)
#   DESTDIR      staged installs for packagers: files go under $DESTDIR$PREFIX, and the .pc
#                file still names PREFIX
# Needs patchelf (the soname is set on the installed copy only, so programs built against
# the build tree keep linking librocmforge.so there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

prefix="" libdir="" from=""
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --libdir) libdir=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "install.sh: unknown argument $1 (--prefix DIR [--libdir DIR] [--from DIR] [-- CARGO_ARGS])" >&2; exit 2 ;;
  esac
done
if [ -z "$prefix" ]; then
  echo "install.sh: --prefix DIR is required" >&2
  exit 2
fi
case $prefix in
  /*) ;;
  *) echo "install.sh: the prefix must be an absolute path (pkg-config files name it)" >&2; exit 2 ;;
esac
libdir=${libdir:-$prefix/lib}
command -v patchelf >/dev/null || { echo "install.sh: patchelf is required (apt-get install patchelf)" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
# cargo-c's rule: before 1.0 the minor version breaks compatibility, after it the major.
if [ "$major" = 0 ]; then abi="0.$minor"; else abi=$major; fi

if [ -z "$from" ]; then
  cargo build --release --lib "$@"
  from=target/release
fi
for f in librocmforge.so librocmforge.a; do
  [ -f "$from/$f" ] || { echo "install.sh: $from/$f not found" >&2; exit 1; }
done

# What a program linking the static library needs besides it: Rust's standard library's
# system libraries for this target (the crate's own dependencies link none).
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
echo 'pub fn f() {}' > "$empty/e.rs"
native=$(rustc --crate-type staticlib --print native-static-libs -o "$empty/libe.a" "$empty/e.rs" 2>&1 |
  sed -n 's/.*native-static-libs: //p')

d=${DESTDIR:-}
install -d "$d$libdir" "$d$libdir/pkgconfig" "$d$prefix/include"
real=librocmforge.so.$version
install -m 755 "$from/librocmforge.so" "$d$libdir/$real"
patchelf --set-soname "librocmforge.so.$abi" "$d$libdir/$real"
ln -sf "$real" "$d$libdir/librocmforge.so.$abi"
ln -sf "librocmforge.so.$abi" "$d$libdir/librocmforge.so"
install -m 644 "$from/librocmforge.a" "$d$libdir/librocmforge.a"
install -m 644 include/rocmforge.h "$d$prefix/include/rocmforge.h"
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -1)
cat > "$d$libdir/pkgconfig/rocmforge.pc" <<EOF
prefix=$prefix
libdir=$libdir
includedir=\${prefix}/include

Name: rocmforge
Description: $description
Version: $version
Libs: -L\${libdir} -lrocmforge
Libs.private: $native
Cflags: -I\${includedir}
EOF
echo "installed rocmforge $version into $d$prefix (soname librocmforge.so.$abi)"
