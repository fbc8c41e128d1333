#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build,
# compile the bundled tiny checkpoints into pool plans, and serve prompts to
# all of them at once on the CPU backend (one shared KV page pool).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
mkdir -p build/plans
plans=()
for model in mixtral_tiny qwen2_moe_tiny qwen3_moe_tiny olmoe_tiny; do
  echo "== crosspool-compile test/data/models/$model -> build/plans/$model.cpplan"
  build/bin/crosspool-compile "test/data/models/$model" -o "build/plans/$model.cpplan"
  plans+=("build/plans/$model.cpplan")
done
echo "== crosspool-serve ${plans[*]}"
build/bin/crosspool-serve "${plans[@]}"
