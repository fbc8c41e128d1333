#!/usr/bin/env bash
# Issue 4, GPU half: the three memory modes side by side on ONE real GPU
# (the card is the cluster: --gpus 1, its memory after the weights is the KV
# pool), synthetic real-size weights in bf16, measured step times.
#
# Prepare here (no GPU needed):
#   cmake -S . -B build-s-cuda -G Ninja -DCROSSPOOL_BUILD_COMPILER=OFF \
#         -DCROSSPOOL_ENABLE_CUDA=ON
#   ninja -C build-s-cuda crosspool-bench
#   scripts/gpu-serve.sh --stage build-s-cuda   # -> build-gpu/serve, build-gpu/plans
# then, with build-gpu/ carried, on the GPU machine from the repository root:
#   scripts/gpu-serve.sh [OUT_DIR]              # default $OUT, else build-gpu/out
# and back here: python3 tools/plot_serving.py OUT/serve-*.json -o docs/serving-plots
#
# Models by free card memory: >= 130 GB (H200): qwen3-30b-a3b + qwen1.5-moe-a2.7b
# + olmoe-1b-7b (about 103 GB of bf16 weights); otherwise (H100): qwen1.5-moe-a2.7b
# + olmoe-1b-7b + a second olmoe-1b-7b with other weights (seed 2; about 56 GB).
#
# Two replays, each `--mode all` in one process (models loaded once, reused by
# every mode and probe; every replay starts from an empty pool):
#  (i)  bursty: the first 100 rows of the Azure conversation trace (bursty
#       arrivals as recorded), time-scaled to 5 requests/s, Zipf 1.2 over the
#       models, prompts <= 1024, outputs <= 64 tokens;
#  (ii) long context: 8 requests at 0.5/s on the trace's arrivals, prompts
#       uniform in 4096-32768 tokens, each capped by its model's own positions
#       less the 32-token output cap (OLMoE 4065, Qwen1.5-MoE 8161, Qwen3-30B
#       not capped: 40929), outputs <= 32.
# Both: --slo-tbt-ms 100 and --search-rate LO:HI:0, HI being the main rate, so
# the main replay is the HI probe (reused) and at most one more replay (LO)
# runs per mode: <= 6 replays per workload.
#
# Time estimate (docs/perf.md decode steps: Qwen3-30B-A3B 7/17/32 ms at
# B 1/8/32, OLMoE 2.7/7/10.5 ms; prefill assumed 5-10k tokens/s per model).
# The clock is measured but idle gaps are skipped, so a replay costs its work,
# not its arrival span, whatever the probed rate:
#  load: synthetic weights are generated on the GPU; plan setup, warm-up and
#        creating ~10-17k 2 MiB KV chunks: about 10-30 s per process.
#  (i)  ~70k prompt tokens (100 x <= 1024) -> 7-14 s of prefill; 6.4k output
#       tokens in batches of ~10 at 7-17 ms a step -> ~5-10 s: 12-25 s per
#       replay, 6 replays -> 75-150 s (cap: --max-wall-s 25, hard stop at
#       1.25 x: worst 6 x 31 s = 187 s).
#  (ii) H200: ~100k prompt tokens (Qwen3 up to 32K) -> 10-20 s per replay
#       (H100: ~50k tokens, 5-10 s); 6 replays -> 60-120 s (cap 20 s: worst
#       6 x 25 = 150 s).
#  Total: typically 3-5 minutes; worst case by the caps ~6.5 minutes. A replay
#  stopped by its cap is printed as STOPPED and never counts as sustainable.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build-gpu/serve
PLANS=$ROOT/build-gpu/plans

if [ "${1:-}" = "--stage" ]; then
  BUILD=${2:?usage: gpu-serve.sh --stage CUDA_BUILD_DIR [COMPILER]}
  COMPILE=${3:-$ROOT/build/bin/crosspool-compile}
  TRACE=${TRACE:-$ROOT/../shared/traces/azure_conv_2023.csv}
  mkdir -p "$BIN" "$PLANS"
  cp "$BUILD/bin/crosspool-bench" "$BIN/" || exit 1
  for m in qwen3-30b-a3b qwen1.5-moe-a2.7b olmoe-1b-7b; do
    "$COMPILE" --synthetic "$ROOT/test/data/configs/$m" -o "$PLANS/$m.cpplan" || exit 1
  done
  # The same shapes with other weights: a third model on the 80 GB card.
  "$COMPILE" --synthetic --seed=2 "$ROOT/test/data/configs/olmoe-1b-7b" \
    -o "$PLANS/olmoe-1b-7b-seed2.cpplan" || exit 1
  # The GPU machine gets the repository without ../shared: the rows used.
  head -n 201 "$TRACE" > "$BIN/azure_conv_head200.csv" || exit 1
  ls -la "$BIN" "$PLANS"
  exit 0
fi

OUT=${1:-${OUT:-$ROOT/build-gpu/out}}
mkdir -p "$OUT"
CUBLAS=$(python3 -c 'import nvidia.cublas as m;print(m.__path__[0]+"/lib")' 2>/dev/null)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${CUBLAS}:${LD_LIBRARY_PATH:-}
nvidia-smi -L > "$OUT/device.txt" 2>&1
FREE_MB=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits | head -1)
echo "free MiB: $FREE_MB" >> "$OUT/device.txt"
if [ "${FREE_MB:-0}" -ge 124000 ]; then   # >= 130 GB
  MODELS="$PLANS/qwen3-30b-a3b.cpplan $PLANS/qwen1.5-moe-a2.7b.cpplan $PLANS/olmoe-1b-7b.cpplan"
else
  MODELS="$PLANS/qwen1.5-moe-a2.7b.cpplan $PLANS/olmoe-1b-7b.cpplan $PLANS/olmoe-1b-7b-seed2.cpplan"
fi
echo "models: $MODELS" | tee -a "$OUT/device.txt"

COMMON="--mode all --device cuda --precision bf16 --gpus 1 --clock measured
  --popularity zipf:1.2 --slo-tbt-ms 100 --max-step-tokens 128 --max-batch-seqs 64
  --trace $BIN/azure_conv_head200.csv"
START=$(date +%s)

echo "== bursty ($(date +%T))" | tee "$OUT/summary.txt"
timeout 215 "$BIN/crosspool-bench" serve $MODELS $COMMON \
  --requests 100 --rate 5 --max-prompt 1024 --max-output 64 \
  --search-rate 1:5:0 --max-wall-s 25 \
  --json-out "$OUT/serve-bursty.json" > "$OUT/serve-bursty.log" 2> "$OUT/serve-bursty.err"
echo "rc=$? after $(( $(date +%s) - START )) s" | tee -a "$OUT/summary.txt"

echo "== long context ($(date +%T))" | tee -a "$OUT/summary.txt"
timeout 175 "$BIN/crosspool-bench" serve $MODELS $COMMON \
  --requests 8 --rate 0.5 --long-context 4096:32768 --max-output 32 \
  --search-rate 0.1:0.5:0 --max-wall-s 20 \
  --json-out "$OUT/serve-long.json" > "$OUT/serve-long.log" 2> "$OUT/serve-long.err"
echo "rc=$? after $(( $(date +%s) - START )) s" | tee -a "$OUT/summary.txt"

for f in bursty long; do
  echo "==== $f" >> "$OUT/summary.txt"
  cat "$OUT/serve-$f.log" >> "$OUT/summary.txt"
  grep -v "^\[" "$OUT/serve-$f.err" | tail -5 >> "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
