# Shared helpers of the fault and soak scenarios (no CMake: plain bash).
# Source it with the build directory as $1:  source lib.sh BUILD_DIR
# The binaries are BUILD_DIR/server/backprop-server and
# BUILD_DIR/client/backprop; SERVER_BIN / CLI_BIN override them.
set -euo pipefail

BUILD_DIR=${1:-build}
SERVER_BIN=${SERVER_BIN:-$BUILD_DIR/server/backprop-server}
CLI_BIN=${CLI_BIN:-$BUILD_DIR/client/backprop}
[[ -x $SERVER_BIN ]] || { echo "no server binary at $SERVER_BIN" >&2; exit 2; }
[[ -x $CLI_BIN ]] || { echo "no CLI binary at $CLI_BIN" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is required" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/backprop-fault.XXXXXX")
MODEL_DIR=$WORK/models
DATA_DIR=$WORK/data
SERVER_PID=""
SERVER_EXIT=""
SERVER_LOG=$WORK/server.log
BG_PIDS=()  # every background client, killed by the trap

cleanup() {
  local rc=$?
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n $SERVER_PID ]]; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  for pid in "${BG_PIDS[@]}" $SERVER_PID; do
    wait "$pid" 2>/dev/null || true
  done
  if ((rc != 0)) && [[ -f $SERVER_LOG ]]; then
    echo "--- server log (last 30 lines)" >&2
    tail -n 30 "$SERVER_LOG" >&2 || true
  fi
  # A tmpfs mounted by a scenario lives in its own mount namespace and
  # disappears with the server, so plain rm is enough.
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# start_server [FLAGS...]: backprop-server on 127.0.0.1, ephemeral port, with
# MODEL_DIR and DATA_DIR; waits for its "listening on" line and exports
# BACKPROP_SERVER. SERVER_WRAP (a string run by sh -c before exec, e.g. a
# mount) runs the server in a private mount namespace (unshare -m).
start_server() {
  mkdir -p "$MODEL_DIR" "$DATA_DIR"
  local fifo=$WORK/server.stdout
  rm -f "$fifo"
  mkfifo "$fifo"
  if [[ -n ${SERVER_WRAP:-} ]]; then
    OPENBLAS_NUM_THREADS=1 unshare -m sh -c "$SERVER_WRAP"' && exec "$0" "$@"' \
      "$SERVER_BIN" --listen 127.0.0.1:0 --model_dir "$MODEL_DIR" \
      --data_dir "$DATA_DIR" "$@" >"$fifo" 2>>"$SERVER_LOG" &
  else
    OPENBLAS_NUM_THREADS=1 "$SERVER_BIN" --listen 127.0.0.1:0 \
      --model_dir "$MODEL_DIR" --data_dir "$DATA_DIR" "$@" \
      >"$fifo" 2>>"$SERVER_LOG" &
  fi
  SERVER_PID=$!
  local line=""
  exec 9<"$fifo"
  if ! read -r -t 30 line <&9; then
    exec 9<&-
    fail "server printed no 'listening on' line within 30 s"
  fi
  # Keep draining stdout so the server never blocks on it (ends with it).
  cat <&9 >>"$SERVER_LOG" &
  exec 9<&-
  [[ $line == "listening on "* ]] || fail "unexpected first line: $line"
  export BACKPROP_SERVER=${line#listening on }
}

# kill9_server: SIGKILL and reap.
kill9_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# stop_server [TIMEOUT_S]: SIGTERM, wait at most TIMEOUT_S (default 10);
# exit code in SERVER_EXIT (124 when it had to be killed), seconds taken in
# SERVER_STOP_SECONDS.
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  local limit=${1:-10} t0
  t0=$(date +%s.%N)
  kill -TERM "$SERVER_PID"
  local i
  for ((i = 0; i < limit * 20; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_EXIT=124
  else
    SERVER_EXIT=0
    wait "$SERVER_PID" || SERVER_EXIT=$?
  fi
  SERVER_STOP_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  SERVER_PID=""
}

# cli ARGS...: the CLI with a 30 s bound.
cli() {
  timeout 30 "$CLI_BIN" "$@"
}

# make_csv FILE ROWS FEATURES CLASSES SEED: synthetic labelled CSV, label in
# the last column; class k has its features centred at k/CLASSES.
make_csv() {
  awk -v n="$2" -v f="$3" -v c="$4" -v s="$5" 'BEGIN {
    srand(s)
    for (i = 0; i < n; i++) {
      k = i % c
      line = ""
      for (j = 0; j < f; j++) line = line sprintf("%.4f,", k / c + 0.3 * (rand() - 0.5))
      print line k
    }
  }' >"$1"
}

# temp_files DIR...: the writer's temp files (".NAME.tmp.XXXXXX") left there.
temp_files() {
  find "$@" -maxdepth 1 -name '*.tmp*' 2>/dev/null || true
}

# last_acked FILE: the lifetime epoch count (TOTAL column) of the last epoch
# row the CLI printed, 0 if none.
last_acked() {
  awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ { last = $2 } END { print last + 0 }' "$1"
}
