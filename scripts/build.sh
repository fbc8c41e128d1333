#!/usr/bin/env bash
# Configures and builds CrossPool into build/ (tools land in build/bin/).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${CROSSPOOL_JOBS:-$(nproc)}
[ -f build/build.ninja ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
