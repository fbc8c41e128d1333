#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs every test:
#  1. the full build (compiler + runtime): GoogleTest + lit + end-to-end goldens;
#  2. the runtime-only build under AddressSanitizer + UndefinedBehaviorSanitizer
#     (configured without MLIR/LLVM, which also proves the runtime needs neither),
#     running the runtime, kernel and end-to-end tests on plans compiled by step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=${CROSSPOOL_JOBS:-$(nproc)}
echo "== build (Release)"
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"
echo "== tests (Release)"
ctest --preset default -j "$jobs"
echo "== build (ASan + UBSan, runtime only)"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
echo "== tests (ASan + UBSan)"
ctest --preset asan -j "$jobs"
