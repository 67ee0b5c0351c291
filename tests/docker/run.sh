#!/usr/bin/env bash
# End-to-end test of the Docker image: build it, run it, use it with the CLI
# from the host, restart it, stop it.
#
# Usage: tests/docker/run.sh [PATH_TO_CLI]   (default: build/client/backprop)
# Environment:
#   BACKPROP_IMAGE        image tag to build and test (default backprop:test)
#   BACKPROP_SKIP_BUILD=1 test an already built image as is
#   HEALTH_TIMEOUT        seconds to wait for "healthy" (default 120)
#
# Prints PASS/FAIL per step; exits non-zero when any step fails. Everything it
# creates (container, volume, temporary files) is removed on exit.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

cli="${1:-$root/build/client/backprop}"
image="${BACKPROP_IMAGE:-backprop:test}"
health_timeout="${HEALTH_TIMEOUT:-120}"
fmnist=/usr/share/datasets/fashion-mnist
name="backprop-test-$$-$RANDOM"
volume="$name-state"
model="docker-test"
tmp=$(mktemp -d)

failures=0
pass() { echo "PASS: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
# Stops the test at a step that later steps depend on.
fatal() {
  fail "$*"
  if docker container inspect "$name" >/dev/null 2>&1; then
    echo "--- container log (last 40 lines)"
    docker logs --tail 40 "$name" 2>&1 | sed 's/^/    /'
  fi
  echo "docker image test: FAILED ($failures failed steps)"
  exit 1
}

cleanup() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm -f "$volume" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ preconditions
command -v docker >/dev/null || fatal "docker is not installed"
docker info >/dev/null 2>&1 || fatal "the Docker engine does not answer (docker info)"
[[ -x $cli ]] || fatal "CLI not found at $cli (build it, or pass its path as \$1)"
[[ -f $fmnist/t10k-images-idx3-ubyte.gz ]] ||
  fatal "Fashion-MNIST is not installed on the host ($fmnist; apt-get install dataset-fashion-mnist)"

# ------------------------------------------------------------ build
if [[ ${BACKPROP_SKIP_BUILD:-0} != 1 ]]; then
  t0=$SECONDS
  if bash docker/build.sh "$image" >"$tmp/build.log" 2>&1; then
    pass "image $image built ($((SECONDS - t0)) s)"
  else
    tail -n 40 "$tmp/build.log" | sed 's/^/    /'
    fatal "docker build"
  fi
fi
docker image inspect "$image" >/dev/null 2>&1 || fatal "image $image does not exist"

# ------------------------------------------------------------ image checks
size=$(docker image inspect -f '{{.Size}}' "$image")
size_mb=$((size / 1000 / 1000))
if ((size <= 200 * 1000 * 1000)); then
  pass "image size ${size_mb} MB <= 200 MB"
else
  fail "image size ${size_mb} MB > 200 MB"
fi

user=$(docker image inspect -f '{{.Config.User}}' "$image")
uid=$(docker run --rm --entrypoint id "$image" -u)
if [[ -n $user && $user != root && $user != 0* && $uid != 0 ]]; then
  pass "runs as non-root user '$user' (uid $uid)"
else
  fail "runs as root (User='$user', uid '$uid')"
fi

if [[ -n $(docker image inspect -f '{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{end}}' "$image") ]] &&
  [[ $(docker image inspect -f '{{index .Config.Env}}' "$image") == *OPENBLAS_NUM_THREADS=1* ]]; then
  pass "HEALTHCHECK present, OPENBLAS_NUM_THREADS=1"
else
  fail "HEALTHCHECK or OPENBLAS_NUM_THREADS=1 missing"
fi

# No toolchain and no development headers in the runtime image.
found=$(docker run --rm --entrypoint sh "$image" -c '
  for t in cc gcc g++ c++ clang clang++ ld cmake make; do
    command -v "$t" >/dev/null 2>&1 && echo "$t"
  done
  ls /usr/include/grpcpp /usr/include/armadillo /usr/include/stdio.h 2>/dev/null | head -n 3
  true')
if [[ -z $found ]]; then
  pass "no compiler or headers in the runtime image"
else
  fail "runtime image contains build tools/headers: $(echo $found)"
fi

# ------------------------------------------------------------ run
# Docker picks a free host port (127.0.0.1::50051); the root filesystem is
# read-only, state goes to the named volume, /tmp is a tmpfs. The health check
# interval is shortened so the wait below is short.
if ! docker run -d --name "$name" \
  -p 127.0.0.1::50051 \
  -v "$volume:/var/lib/backprop" \
  --read-only --tmpfs /tmp \
  --health-interval 1s --health-start-period 60s \
  "$image" >/dev/null; then
  fatal "docker run"
fi
# The host port Docker picked; it picks again at every (re)start.
published_server() {
  local port
  port=$(docker port "$name" 50051/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -n1)
  [[ -n $port ]] || return 1
  server="127.0.0.1:$port"
}
published_server || fatal "no host port published for 50051"
pass "container $name started, published on $server"

# Bounded wait for Docker's own health status (the image's HEALTHCHECK runs
# the CLI's health command inside the container).
wait_healthy() {
  local t0=$SECONDS status
  while ((SECONDS - t0 < health_timeout)); do
    status=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$name" 2>/dev/null)
    case $status in
      "running healthy") return 0 ;;
      running*) ;;
      *) echo "    container state: $status"; return 1 ;;
    esac
    sleep 0.5
  done
  echo "    still '$status' after $health_timeout s"
  return 1
}
t0=$SECONDS
wait_healthy || fatal "container became healthy"
pass "container healthy after $((SECONDS - t0)) s"

bp() { "$cli" --server "$server" --deadline 60 "$@"; }

# ------------------------------------------------------------ use it
if bp datasets list >"$tmp/datasets.txt" 2>&1 &&
  grep -q 'fashion-mnist-train' "$tmp/datasets.txt" &&
  grep -q 'fashion-mnist-test' "$tmp/datasets.txt"; then
  pass "datasets list shows the preloaded fashion-mnist-train and fashion-mnist-test"
else
  sed 's/^/    /' "$tmp/datasets.txt"
  fail "datasets list shows the preloaded Fashion-MNIST"
fi

if bp models create --id "$model" --layers 784,30,10 --seed 7 >"$tmp/create.txt" 2>&1; then
  pass "models create $model [784,30,10]"
else
  sed 's/^/    /' "$tmp/create.txt"
  fatal "models create"
fi

# Two epochs of Nielsen's setting (mini-batch 10, eta 3.0) with validation on
# the test set; the CLI prints one line per epoch as the metrics stream in.
t0=$SECONDS
if bp train "$model" --dataset fashion-mnist-train --validation fashion-mnist-test \
  --epochs 2 --batch 10 --eta 3.0 --shuffle-seed 1 >"$tmp/train.txt" 2>&1; then
  pass "train 2 epochs ($((SECONDS - t0)) s)"
  sed 's/^/    /' "$tmp/train.txt" | tail -n 6
else
  sed 's/^/    /' "$tmp/train.txt"
  fail "train 2 epochs"
fi

if bp --json models get "$model" >"$tmp/model.json" 2>&1 &&
  grep -Eq '"epochs_trained": *"?2"?[,}[:space:]]' "$tmp/model.json"; then
  pass "model reports epochs_trained = 2"
else
  sed 's/^/    /' "$tmp/model.json"
  fail "model reports epochs_trained = 2"
fi

# Predictions for the first 200 test images, with every output activation, so
# that the comparison after the restart is exact.
predict() {
  bp --json predict "$model" --images "$fmnist/t10k-images-idx3-ubyte.gz" \
    --labels "$fmnist/t10k-labels-idx1-ubyte.gz" --limit 200 --probabilities --rows
}
# Chance is 10 %. This setting (Nielsen's network.py: sigmoid, quadratic
# cost, batch 10, eta 3) gave 83 % on these 200 images and 82.5 % on the whole
# test set after 2 epochs when this test was written (and 86 % after 30 epochs
# in BENCHMARKS.md), so 50 % separates "trained" from "not trained" with a
# wide margin whatever the seed.
accuracy() { tr -d ' \n' <"$1" | sed -n 's/.*"accuracy":\([0-9.eE+-]*\).*/\1/p'; }
if predict >"$tmp/predict1.json" 2>"$tmp/predict1.err"; then
  acc=$(accuracy "$tmp/predict1.json")
  if [[ -n $acc ]] && awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }'; then
    pass "predict 200 test images: accuracy $acc > 0.5"
  else
    fail "predict 200 test images: accuracy '$acc' not > 0.5"
  fi
else
  sed 's/^/    /' "$tmp/predict1.err"
  fail "predict 200 test images"
fi

# ------------------------------------------------------------ restart
if docker restart -t 20 "$name" >/dev/null; then
  # The port mapping survives a restart; wait for health again.
  t0=$SECONDS
  if wait_healthy && published_server; then
    pass "restarted and healthy again after $((SECONDS - t0)) s, now on $server"
  else
    fatal "healthy after restart"
  fi
else
  fatal "docker restart"
fi

if bp --json models get "$model" >"$tmp/model2.json" 2>&1 &&
  grep -Eq '"epochs_trained": *"?2"?[,}[:space:]]' "$tmp/model2.json"; then
  pass "model $model still there after restart (epochs_trained = 2)"
else
  sed 's/^/    /' "$tmp/model2.json"
  fail "model still there after restart"
fi

if predict >"$tmp/predict2.json" 2>"$tmp/predict2.err" &&
  [[ -s $tmp/predict1.json ]] && cmp -s "$tmp/predict1.json" "$tmp/predict2.json"; then
  pass "same predictions after restart (identical output)"
else
  diff "$tmp/predict1.json" "$tmp/predict2.json" | head -n 10 | sed 's/^/    /'
  fail "same predictions after restart"
fi

# ------------------------------------------------------------ stop
t0=$SECONDS
docker stop -t 20 "$name" >/dev/null || fail "docker stop"
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
if [[ $code == 0 ]]; then
  pass "docker stop: exit code 0 after $((SECONDS - t0)) s"
else
  fail "docker stop: exit code $code (0 expected; 137 means SIGTERM was not handled)"
  docker logs --tail 20 "$name" 2>&1 | sed 's/^/    /'
fi

# The model file is on the volume, owned by the unprivileged user.
if docker run --rm -v "$volume:/var/lib/backprop" --entrypoint sh "$image" -c \
  'ls -A /var/lib/backprop/models' >"$tmp/files.txt" 2>&1 &&
  grep -q "$model" "$tmp/files.txt"; then
  pass "model file on the volume: $(tr '\n' ' ' <"$tmp/files.txt")"
else
  sed 's/^/    /' "$tmp/files.txt"
  fail "model file on the volume"
fi

if ((failures == 0)); then
  echo "docker image test: PASSED"
  exit 0
fi
echo "docker image test: FAILED ($failures failed steps)"
exit 1
