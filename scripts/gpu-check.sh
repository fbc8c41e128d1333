#!/usr/bin/env bash
# CUDA backend check on the GPU machine, one call: backend tests (goldens in
# fp32 and bf16, VMM KV pool), crosspool-run --device cuda vs the CPU backend,
# the decode benchmark, and compute-sanitizer memcheck on the backend tests.
#
# Prepare here (no GPU needed):
#   cmake -S . -B build-cuda -G Ninja -DCROSSPOOL_BUILD_COMPILER=OFF \
#         -DCROSSPOOL_ENABLE_CUDA=ON
#   ninja -C build-cuda CudaBackendTest crosspool-run crosspool-decode-bench
#   scripts/gpu-check.sh --stage build-cuda   # copies into build-gpu/
# then run `scripts/gpu-check.sh` on the GPU machine with build-gpu/ carried
# logs go to $OUT (default build-gpu/out).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build-gpu/h8
PLANS=$ROOT/build-gpu/plans

if [ "${1:-}" = "--stage" ]; then
  BUILD=${2:?usage: gpu-check.sh --stage BUILD_DIR [COMPILER]}
  COMPILE=${3:-$ROOT/build/bin/crosspool-compile}
  mkdir -p "$BIN" "$PLANS"
  cp "$BUILD/unittests/CudaBackendTest" "$BUILD/unittests/KernelsCudaTest" \
     "$BUILD/unittests/SyntheticFillCudaTest" "$BUILD/bin/crosspool-run" \
     "$BUILD/bin/crosspool-decode-bench" "$BUILD/bin/crosspool-kbench" "$BIN/" || exit 1
  for d in "$ROOT"/test/data/models/*/; do
    m=$(basename "$d")
    "$COMPILE" "$d" -o "$PLANS/$m.cpplan" || exit 1
  done
  exit 0
fi

OUT=${OUT:-$ROOT/build-gpu/out}
mkdir -p "$OUT"
CUBLAS=$(python3 -c 'import nvidia.cublas as m;print(m.__path__[0]+"/lib")' 2>/dev/null)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${CUBLAS}:${LD_LIBRARY_PATH:-}
export CROSSPOOL_TEST_MODELS=$ROOT/test/data/models
export CROSSPOOL_TEST_PLANS=$PLANS
nvidia-smi -L > "$OUT/device.txt" 2>&1

echo "== KernelsCudaTest (PDL on, then off)" | tee "$OUT/summary.txt"
timeout 120 "$BIN/KernelsCudaTest" > "$OUT/kernels-test.log" 2>&1
echo "rc=$?" >> "$OUT/summary.txt"
grep -E "PASSED|FAILED|SKIPPED \]" "$OUT/kernels-test.log" | tail -20 >> "$OUT/summary.txt"
CROSSPOOL_PDL=0 timeout 120 "$BIN/KernelsCudaTest" > "$OUT/kernels-test-nopdl.log" 2>&1
echo "rc=$? (CROSSPOOL_PDL=0)" >> "$OUT/summary.txt"
grep -E "PASSED|FAILED  \]" "$OUT/kernels-test-nopdl.log" | tail -10 >> "$OUT/summary.txt"
timeout 60 "$BIN/SyntheticFillCudaTest" > "$OUT/synthetic-fill-test.log" 2>&1
echo "SyntheticFillCudaTest rc=$?" >> "$OUT/summary.txt"

echo "== CudaBackendTest" | tee -a "$OUT/summary.txt"
timeout 150 "$BIN/CudaBackendTest" > "$OUT/cuda-backend-test.log" 2>&1
echo "rc=$?" >> "$OUT/summary.txt"
grep -E "^\[cuda|PASSED|FAILED|SKIPPED \]" "$OUT/cuda-backend-test.log" | tail -60 >> "$OUT/summary.txt"

echo "== crosspool-run cpu vs cuda (olmoe_tiny, qwen2_moe_tiny)" >> "$OUT/summary.txt"
for m in olmoe_tiny qwen2_moe_tiny; do
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$ROOT/test/data/models/$m/golden.json'))['prompts'][1]['prompt_ids'])))")
  gold=$(python3 -c "import json;print(json.load(open('$ROOT/test/data/models/$m/golden.json'))['prompts'][1]['generated_ids'])")
  echo "$m golden: $gold" >> "$OUT/summary.txt"
  for dev in "cpu" "cuda --precision fp32" "cuda --precision bf16"; do
    echo -n "$m --device $dev: " >> "$OUT/summary.txt"
    timeout 60 "$BIN/crosspool-run" "$PLANS/$m.cpplan" --checkpoint "$ROOT/test/data/models/$m" \
      --prompt-ids "$ids" --max-new-tokens 24 --device $dev >> "$OUT/summary.txt" 2>&1
  done
done
echo -n "bad precision: " >> "$OUT/summary.txt"
"$BIN/crosspool-run" "$PLANS/olmoe_tiny.cpplan" --prompt-ids 3 --device cuda --precision fp16 >> "$OUT/summary.txt" 2>&1
echo "rc=$?" >> "$OUT/summary.txt"

if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== decode bench A/B: PDL x fused MoE routing (Qwen3-30B-A3B, B 1 and 8, C 1K)" >> "$OUT/summary.txt"
  timeout 150 "$BIN/crosspool-decode-bench" --model qwen3-30b-a3b --batches 1,8 --contexts 1024 \
    --reps ${BENCH_REPS:-20} --pdl both --moe-fused both --json "$OUT/decode-bench-ab.json" \
    > "$OUT/decode-bench-ab.md" 2> "$OUT/decode-bench-ab.log"
  echo "rc=$?" >> "$OUT/summary.txt"
  cat "$OUT/decode-bench-ab.md" >> "$OUT/summary.txt"
  echo "== kernel microbenchmarks" >> "$OUT/summary.txt"
  timeout 90 "$BIN/crosspool-kbench" --reps 50 > "$OUT/kbench.md" 2> "$OUT/kbench.log"
  echo "rc=$?" >> "$OUT/summary.txt"
  cat "$OUT/kbench.md" >> "$OUT/summary.txt"
  echo "== decode bench" >> "$OUT/summary.txt"
  timeout ${BENCH_TIMEOUT:-240} "$BIN/crosspool-decode-bench" --reps ${BENCH_REPS:-20} \
    --json "$OUT/decode-bench.json" > "$OUT/decode-bench.md" 2> "$OUT/decode-bench.log"
  echo "rc=$?" >> "$OUT/summary.txt"
  cat "$OUT/decode-bench.md" >> "$OUT/summary.txt"
fi

SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$SAN" ]; then
  echo "== compute-sanitizer memcheck (CudaBackendTest)" >> "$OUT/summary.txt"
  timeout ${SAN_TIMEOUT:-150} "$SAN" --tool memcheck --error-exitcode 3 "$BIN/CudaBackendTest" \
    --gtest_filter="${SAN_FILTER:-*}" > "$OUT/memcheck.log" 2>&1
  echo "rc=$?" >> "$OUT/summary.txt"
  grep -E "ERROR SUMMARY|tests ran|PASSED|FAILED  \] [0-9]" "$OUT/memcheck.log" >> "$OUT/summary.txt"
else
  echo "compute-sanitizer: not found" >> "$OUT/summary.txt"
fi

cat "$OUT/summary.txt"
