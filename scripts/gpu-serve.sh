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
#       models, prompts <= 1024, outputs <= 64; rate search 4-16 req/s with
#       one bisection (probes 16 = the main replay, 4, 8) at the 100 ms P99
#       TBT SLO; --max-wall-s 20 (the 4 req/s probe spans 12 s of arrivals).
#  (ii) long context: 32 requests at 4 req/s (8 s of arrivals), prompts
#       uniform in 4096-32768 capped per model (OLMoE 3969, Qwen1.5-MoE 8065,
#       Qwen3-30B 40833), outputs <= 128, Zipf 1.2: ~19 Qwen1.5 requests of
#       ~8K tokens (~1.5 GB of KV each) against a static partition of ~13 GB
#       (H100) while the shared pool has ~21 GB: static queues / preempts
#       where the shared pool does not. One replay per mode, --max-wall-s 30.
#
# Time estimate (H100, conservative; lead's first run: decode kernels
# OLMoE 1.8/6.6/10.3 ms at B 1/8/32; a prefill chunk reads all expert
# weights, >= 9 ms Qwen1.5 / 4.3 ms OLMoE, assume 30-45 ms per 1024-token
# Qwen1.5 chunk, i.e. >= 20k prompt tokens/s):
#  setup per process: synthetic weights on the GPU, warm-up steps of 1024
#        rows, ~11k KV chunks: <= 20 s (lead's run: models 0.3 s each,
#        pool 0.3 s) -> 40 s for both.
#  (i)  ~38k prompt tokens (48 x ~800) -> ~2 s of prefill; ~2.6k output
#       tokens in rounds of 3 model steps (~10-40 ms each): the 16 req/s
#       replay ~6-10 s, 8 req/s ~8-12 s, 4 req/s ~13-16 s (its arrival
#       span, 12 s, plus the tail) -> ~35 s per mode, ~105 s. Worst case by
#       the caps (hard stop at 1.25 x 20 s): 9 x 25 s = 225 s.
#  (ii) ~220k prompt tokens (32 x ~7k) -> 7-11 s of prefill (plus attention
#       at 8K context), ~3.5k output tokens -> 12-20 s per replay, ~60 s.
#       Worst case by the cap: 3 x 37.5 s = 113 s.
#  Total: typically ~3.5 minutes; worst case ~6.3 minutes (timeouts below
#  only guard against a hang beyond that). A replay stopped by its cap is
#  printed as STOPPED and never counts as sustainable.
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
  --popularity zipf:1.2 --max-step-tokens 1024
  --max-batch-seqs 64 --trace $BIN/azure_conv_head200.csv"
START=$(date +%s)

echo "== bursty ($(date +%T))" | tee "$OUT/summary.txt"
timeout 270 "$BIN/crosspool-bench" serve $MODELS $COMMON \
  --requests 48 --rate 16 --max-prompt 1024 --max-output 64 \
  --slo-tbt-ms 100 --search-rate 4:16:1 --max-wall-s 20 \
  --json-out "$OUT/serve-bursty.json" > "$OUT/serve-bursty.log" 2> "$OUT/serve-bursty.err"
echo "rc=$? after $(( $(date +%s) - START )) s" | tee -a "$OUT/summary.txt"

echo "== long context ($(date +%T))" | tee -a "$OUT/summary.txt"
timeout 150 "$BIN/crosspool-bench" serve $MODELS $COMMON \
  --requests 32 --rate 4 --long-context 4096:32768 --max-output 128 \
  --max-wall-s 30 \
  --json-out "$OUT/serve-long.json" > "$OUT/serve-long.log" 2> "$OUT/serve-long.err"
echo "rc=$? after $(( $(date +%s) - START )) s" | tee -a "$OUT/summary.txt"

for f in bursty long; do
  echo "==== $f" >> "$OUT/summary.txt"
  cat "$OUT/serve-$f.log" >> "$OUT/summary.txt"
  grep -v "^\[" "$OUT/serve-$f.err" | tail -5 >> "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
