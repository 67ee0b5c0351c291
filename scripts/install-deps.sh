#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, test and demo
# backprop. Idempotent: runs `apt-get update` at most once, and only when a
# package is missing. Needs root (or sudo) the first time.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libarmadillo-dev libopenblas-dev zlib1g-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
  clang-14 libclang-rt-14-dev
  dataset-fashion-mnist
  procps openssl
  nlohmann-json3-dev jq
  python3-numpy
)
if [[ "${BACKPROP_WITH_BENCH_REFS:-0}" == 1 ]]; then
  packages+=(python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=""
if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
