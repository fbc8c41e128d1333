#!/usr/bin/env bash
# Installs the Debian 12 packages CrossPool builds with (idempotent; needs root).
set -euo pipefail
pkgs=(cmake ninja-build g++ python3 git
      llvm-19-dev libmlir-19-dev mlir-19-tools llvm-19-tools
      libabsl-dev libgtest-dev libflatbuffers-dev flatbuffers-compiler nlohmann-json3-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
