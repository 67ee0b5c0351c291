# Shared helpers of the integration scenarios. Source it with the server and
# CLI binaries as $1 and $2:  source lib.sh "$@"
set -euo pipefail

SERVER_BIN=${1:?usage: scenario.sh SERVER_BINARY CLI_BINARY}
CLI_BIN=${2:?usage: scenario.sh SERVER_BINARY CLI_BINARY}
FMNIST=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
TRAIN_IMAGES=$FMNIST/train-images-idx3-ubyte.gz
TRAIN_LABELS=$FMNIST/train-labels-idx1-ubyte.gz
TEST_IMAGES=$FMNIST/t10k-images-idx3-ubyte.gz
TEST_LABELS=$FMNIST/t10k-labels-idx1-ubyte.gz

WORK=$(mktemp -d "${TMPDIR:-/tmp}/backprop-it.XXXXXX")
SERVER_PID=""
SERVER_EXIT=""
# The server's output goes to files, so the test log can show it on failure.
SERVER_LOG=$WORK/server.log

cleanup() {
  local rc=$?
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if ((rc != 0)) && [[ -f $SERVER_LOG ]]; then
    echo "--- server log (last 40 lines)" >&2
    tail -n 40 "$SERVER_LOG" >&2 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

require_fashion_mnist() {
  if [[ ! -f $TRAIN_IMAGES || ! -f $TEST_LABELS ]]; then
    echo "FAIL: Fashion-MNIST not found in $FMNIST (scripts/install-deps.sh installs dataset-fashion-mnist)" >&2
    exit 1
  fi
}

# start_server [EXTRA_FLAGS...]: starts backprop-server on an ephemeral port
# with $WORK/models and $WORK/data, waits for its "listening on" line and
# exports BACKPROP_SERVER for the CLI.
start_server() {
  mkdir -p "$WORK/models" "$WORK/data"
  local fifo=$WORK/server.stdout
  rm -f "$fifo"
  mkfifo "$fifo"
  # One BLAS thread, as in the Docker image: no oversubscription of a
  # small machine, and the same kernels on every run.
  OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
    "$SERVER_BIN" --listen 127.0.0.1:0 --model_dir "$WORK/models" \
      --data_dir "$WORK/data" "$@" >"$fifo" 2>>"$SERVER_LOG" &
  SERVER_PID=$!
  # Block on the pipe until the server says where it listens (or exits).
  local line=""
  exec 9<"$fifo"
  if ! read -r -t 60 line <&9; then
    exec 9<&-
    fail "server printed no 'listening on' line within 60 s"
  fi
  # Keep draining the server's stdout so that it can never block on it.
  cat <&9 >>"$SERVER_LOG" &
  exec 9<&-
  [[ $line == "listening on "* ]] || fail "unexpected first line: $line"
  export BACKPROP_SERVER=${line#listening on }
  echo "server $SERVER_PID listening on $BACKPROP_SERVER" >&2
}

# stop_server: SIGTERM, then wait for exit; its exit code in SERVER_EXIT.
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID"
  SERVER_EXIT=0
  wait "$SERVER_PID" || SERVER_EXIT=$?
  SERVER_PID=""
}

# cli ARGS...: the backprop CLI (stdout and stderr as they are).
cli() {
  "$CLI_BIN" "$@"
}

# expect_exit CODE OUT_FILE ERR_FILE -- ARGS...: runs the CLI, checks the
# exit code, keeps stdout/stderr in the two files.
expect_exit() {
  local want=$1 out=$2 err=$3
  shift 4
  local got=0
  "$CLI_BIN" "$@" >"$out" 2>"$err" || got=$?
  if [[ $got != "$want" ]]; then
    echo "--- stdout" >&2
    cat "$out" >&2
    echo "--- stderr" >&2
    cat "$err" >&2
    fail "backprop $* exited $got, want $want"
  fi
}

expect_contains() {  # FILE PATTERN (grep -E)
  grep -Eq -- "$2" "$1" || {
    cat "$1" >&2
    fail "$1 does not match /$2/"
  }
}

# float comparison with awk: expect_true "1.5 > 1"
expect_true() {
  awk "BEGIN { exit !($1) }" || fail "expected $1"
}

# upload_subset ID IMAGES LABELS N: uploads the first N examples.
upload_subset() {
  cli upload --id "$1" --images "$2" --labels "$3" --limit "$4" --classes 10 \
    --description "first $4 examples of $(basename "$2")" >/dev/null
}
