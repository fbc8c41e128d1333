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
# Two workloads, each `--mode all` in one process (models loaded once, reused
# by every mode and probe; every replay starts from an empty pool). Both use
# --clock measured (the clock advances by all host wall time while the
# engine is busy: scheduling, KV reservation and chunk mapping, the step,
# sampling, releases; idle gaps between arrivals are skipped, CUDA graph
# captures are logged but not on the clock) and --max-step-tokens 1024:
# decode tokens of every running request join each step first, prefill
# chunks fill the rest, so a Qwen1.5-MoE chunk reads its 26.6 GB of experts
# once per ~1000 prompt tokens instead of per 128.
#  (i)  bursty: the first 48 rows of the Azure conversation trace (bursty
#       arrivals as recorded), time-scaled to 16 requests/s, Zipf 1.2 over the
#       models, prompts <= 1024, outputs <= 64; rate search 2-16 req/s with
#       two bisections (probes 16 = the main replay, 2, ~5.7, then 4 or 8)
#       at the 100 ms P99 TBT SLO; --max-wall-s 20.
#  (ii) long context: 24 requests arriving in a burst (trace arrivals scaled
#       to 50 req/s), prompts uniform in 4096-32768 capped per model (OLMoE
#       3969, Qwen1.5-MoE 8129, Qwen3-30B 40897), outputs <= 64, uniform
#       popularity (static partitions are then equal thirds): ~8 Qwen1.5
#       requests of ~8K tokens want ~12.5 GB of KV against a static third of
#       ~6.5 GB, while the shared pool has ~19.5 GB for all 24 requests.
#       One replay per mode, --max-wall-s 70.
#
# Time estimate from the third H100 run (2026-11-25, docs/serving.md, after
# decode rows got their own attention pass): decode-only steps 4-6 ms median,
# steps with a ~450-token prefill chunk ~32-43 ms, with a ~1000-token chunk at
# 4-8K context ~140 ms. Each process first runs one unmeasured warm-up replay
# in the first mode (--warm-replays, default 1 on CUDA):
#  setup per process: models 0.3 s each, KV pool 0.3 s, warm-up step: < 20 s.
#  (i)  ~4.5 s per replay, 1 + 3 x (1-4) replays -> ~40-75 s.
#  (ii) ~115k prompt tokens at ~7k tokens/s -> ~23 s per replay, 4 replays ->
#       ~100 s (cap: 4 x 87.5 s; on an H200 with Qwen3-30B-A3B its 32K
#       prompts hit the 70 s cap: prompt attention is the bottleneck there).
#  Total: ~3 minutes on an H100, up to ~9 on an H200. A replay stopped by its
#  cap is printed as STOPPED and never counts as sustainable.
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
  --max-step-tokens 1024 --max-batch-seqs 64 --trace $BIN/azure_conv_head200.csv"
START=$(date +%s)

echo "== bursty ($(date +%T))" | tee "$OUT/summary.txt"
timeout 270 "$BIN/crosspool-bench" serve $MODELS $COMMON --popularity zipf:1.2 \
  --requests 48 --rate 16 --max-prompt 1024 --max-output 64 \
  --slo-tbt-ms 100 --search-rate 2:16:2 --max-wall-s 20 \
  --json-out "$OUT/serve-bursty.json" > "$OUT/serve-bursty.log" 2> "$OUT/serve-bursty.err"
echo "rc=$? after $(( $(date +%s) - START )) s" | tee -a "$OUT/summary.txt"

echo "== long context ($(date +%T))" | tee -a "$OUT/summary.txt"
timeout 360 "$BIN/crosspool-bench" serve $MODELS $COMMON --popularity uniform \
  --requests 24 --rate 50 --long-context 4096:32768 --max-output 64 \
  --max-wall-s 70 \
  --json-out "$OUT/serve-long.json" > "$OUT/serve-long.log" 2> "$OUT/serve-long.err"
echo "rc=$? after $(( $(date +%s) - START )) s" | tee -a "$OUT/summary.txt"

for f in bursty long; do
  echo "==== $f" >> "$OUT/summary.txt"
  cat "$OUT/serve-$f.log" >> "$OUT/summary.txt"
  grep -v "^\[" "$OUT/serve-$f.err" | tail -5 >> "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
