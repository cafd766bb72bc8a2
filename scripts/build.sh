#!/usr/bin/env bash
# build.sh: configure and build chatd into build/ (or $BUILD_DIR).
# Extra arguments go to cmake's configure step, e.g. -DCHATD_SANITIZE=ON.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
