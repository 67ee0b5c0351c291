#!/usr/bin/env bash
# The README's first command: builds backprop, starts a server with
# Debian's Fashion-MNIST preloaded, and drives it with the `backprop` CLI —
# create [784,30,10] (sigmoid, quadratic; Nielsen's network.py setup), train
# 5 epochs with live metrics, predict the 10,000 test images (accuracy and
# confusion matrix) — then stops the server. About 1-2 minutes after the
# build on 2 cores. DEMO_OUT (default build/demo) receives the learning
# curves as an SVG. BACKPROP_DEMO_BUILD_DIR=DIR skips scripts/build.sh and
# uses the binaries already built in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build_dir=${BACKPROP_DEMO_BUILD_DIR:-}
if [[ -z $build_dir ]]; then
  bash scripts/build.sh
  build_dir=$root/build
fi
server_bin=$build_dir/server/backprop-server
cli=$build_dir/client/backprop
fmnist=/usr/share/datasets/fashion-mnist
out_dir=${DEMO_OUT:-$root/build/demo}
mkdir -p "$out_dir"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/backprop-demo.XXXXXX")
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting backprop-server (Fashion-MNIST preloaded)"
mkfifo "$tmp/server.stdout"
# One BLAS thread per job, as in the Docker image (docker/Dockerfile).
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
  "$server_bin" --listen 127.0.0.1:0 --model_dir "$tmp/models" \
  --data_dir "$tmp/data" --preload_fashion_mnist \
  >"$tmp/server.stdout" 2>"$tmp/server.log" &
server_pid=$!
exec 9<"$tmp/server.stdout"
if ! read -r -t 120 line <&9 || [[ $line != "listening on "* ]]; then
  cat "$tmp/server.log" >&2
  echo "demo: the server did not start" >&2
  exit 1
fi
cat <&9 >/dev/null &
exec 9<&-
export BACKPROP_SERVER=${line#listening on }
echo "server pid $server_pid, $line"

step "backprop health"
"$cli" health

step "backprop datasets list"
"$cli" datasets list

step "backprop models create --id demo --layers 784,30,10 ..."
"$cli" models create --id demo --layers 784,30,10 --hidden sigmoid \
  --output sigmoid --cost quadratic --init standard_normal --seed 1

step "backprop train demo (5 epochs, mini-batch 10, eta 3.0, validation on the test set)"
"$cli" train demo --dataset fashion-mnist-train \
  --validation fashion-mnist-test --epochs 5 --batch 10 --eta 3.0 \
  --progress-ms 200 --plot "$out_dir/learning-curves.svg"

step "backprop predict demo on the 10,000 test images"
"$cli" predict demo --images "$fmnist/t10k-images-idx3-ubyte.gz" \
  --labels "$fmnist/t10k-labels-idx1-ubyte.gz"

step "stopping the server"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
echo "done. Learning curves: $out_dir/learning-curves.svg"
