#!/usr/bin/env bash
# SIGTERM while 10 Train streams and a Predict load run: the server exits 0
# within a few seconds (SIGTERM_LIMIT, default 8 s; it shuts down with a 5 s
# grace), Predicts complete or are refused as UNAVAILABLE (or CANCELLED:
# see below), every Train stream ends, no temp file is left,
# and after a restart every model stands at a completed epoch: the last one
# its client saw acknowledged, or the one after it (finished while the
# shutdown travelled).
# Usage: sigterm.sh BUILD_DIR
source "$(dirname "$0")/lib.sh" "$@"
LIMIT=${SIGTERM_LIMIT:-8}
N=10
make_csv "$WORK/train.csv" 300 20 4 7
make_csv "$WORK/predict.csv" 50 20 4 8

start_server --max_concurrent_trainings "$N"
cli upload --id t --csv "$WORK/train.csv" --label-column -1 --classes 4 >/dev/null
for ((k = 1; k <= N; k++)); do
  cli models create --id "s$k" --layers 20,30,4 --seed "$k" >/dev/null
done
for ((k = 1; k <= N; k++)); do
  timeout 60 "$CLI_BIN" train "s$k" --dataset t --epochs 100000 --batch 10 --eta 0.5 \
    >"$WORK/train.$k.out" 2>"$WORK/train.$k.err" &
  BG_PIDS+=($!)
done
train_pids=("${BG_PIDS[@]}")
# Predict load: 4 loops of CLI calls (each call's outcome is kept), plus the
# bench client for call volume (4 callers, each alternating a health Check
# and a Predict call by call; its outcome is not checked: the SIGTERM ends
# it with failed calls).
STOP=$WORK/stop
for ((k = 1; k <= 4; k++)); do
  (
    for ((c = 0; c < 10000; c++)); do
      [[ -e $STOP ]] && break
      rc=0
      timeout 30 "$CLI_BIN" predict "s$k" --csv "$WORK/predict.csv" --label-column -1 \
        >/dev/null 2>"$WORK/predict.$k.err.tmp" || rc=$?
      if ((rc == 0)); then
        echo ok
      else
        echo "rc=$rc $(head -c 200 "$WORK/predict.$k.err.tmp")"
        # The server is gone: stop after the first refusal.
        break
      fi
    done >"$WORK/predict.$k.log"
  ) &
  BG_PIDS+=($!)
done
timeout 60 "$CLI_BIN" --json bench s1 --concurrency 4 --warmup 0 --duration 30 --batch 1 \
  >"$WORK/bench.json" 2>"$WORK/bench.err" &
BG_PIDS+=($!)

# Wait (bounded) until every model has acknowledged an epoch and the
# predict loops have answers, then a little more.
for ((w = 0; w < 300; w++)); do
  ready=1
  for ((k = 1; k <= N; k++)); do
    [[ $(last_acked "$WORK/train.$k.out") -ge 1 ]] || ready=0
  done
  for ((k = 1; k <= 4; k++)); do
    grep -q '^ok' "$WORK/predict.$k.log" 2>/dev/null || ready=0
  done
  ((ready)) && break
  sleep 0.1
done
((ready)) || fail "the load did not get going within 30 s"
sleep 1
server_pid=$SERVER_PID
stop_server "$LIMIT"
stop_seconds=$SERVER_STOP_SECONDS
echo "server exit code $SERVER_EXIT after ${stop_seconds}s" >&2
touch "$STOP"
[[ $SERVER_EXIT == 0 ]] || fail "server exited $SERVER_EXIT after SIGTERM (124: still running after ${LIMIT}s)"
# Every client ends by itself (bounded: timeout 60 each).
for p in "${train_pids[@]}"; do wait "$p" 2>/dev/null || true; done
for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
BG_PIDS=()

calls_ok=0
calls_cancelled=0
for ((k = 1; k <= 4; k++)); do
  calls_ok=$((calls_ok + $(grep -c '^ok' "$WORK/predict.$k.log" || true)))
  calls_cancelled=$((calls_cancelled + $(grep -c 'CANCELLED' "$WORK/predict.$k.log" || true)))
  bad=$(grep -v '^ok' "$WORK/predict.$k.log" | grep -Ev 'UNAVAILABLE|CANCELLED' || true)
  [[ -z $bad ]] || fail "a Predict ended with something other than OK, UNAVAILABLE or CANCELLED: $bad"
done
# A CANCELLED Predict is one that reached the server after Shutdown began:
# gRPC core drops calls that arrive on an open connection during shutdown
# (the client sees RST_STREAM -> CANCELLED, not UNAVAILABLE). From outside it
# cannot be told apart from an in-flight call cut off, so it is counted and
# reported; SIGTERM_STRICT=1 makes it a failure.
if ((calls_cancelled > 0)); then
  echo "note: $calls_cancelled Predict(s) ended CANCELLED around the SIGTERM" >&2
  [[ ${SIGTERM_STRICT:-0} == 0 ]] || fail "$calls_cancelled Predict(s) CANCELLED (SIGTERM_STRICT=1)"
fi
[[ -z $(temp_files "$MODEL_DIR" "$DATA_DIR") ]] || fail "temp files after shutdown: $(temp_files "$MODEL_DIR" "$DATA_DIR")"

start_server
cli --json models list >"$WORK/list.json"
summary=""
for ((k = 1; k <= N; k++)); do
  a=$(last_acked "$WORK/train.$k.out")
  e=$(jq ".models[] | select(.model_id == \"s$k\") | .epochs_trained" "$WORK/list.json")
  [[ -n $e ]] || fail "model s$k missing after restart"
  ((e >= a && e <= a + 1)) || fail "model s$k at epoch $e after restart, acknowledged $a"
  grep -Eq 'UNAVAILABLE|CANCELLED' "$WORK/train.$k.err" ||
    fail "train s$k ended without UNAVAILABLE/CANCELLED: $(cat "$WORK/train.$k.err")"
  summary+=" s$k=$e/$a"
done

# An in-flight Predict finishes: a Predict of 8,000 rows through a
# 20,980,980,4 model (985,884 parameters, under the 1,000,000 cap; about
# 1 s of CPU for the server here), and SIGTERM
# once the otherwise idle server has burnt 0.2 s of CPU on it.
make_csv "$WORK/rows.csv" 8000 20 4 9
cli models create --id wide --layers 20,980,980,4 --seed 1 >/dev/null
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
timeout 60 "$CLI_BIN" --json predict wide --csv "$WORK/rows.csv" --label-column -1 \
  --batch 8000 >"$WORK/slow.json" 2>"$WORK/slow.err" &
slow_pid=$!
BG_PIDS+=("$slow_pid")
# Its connection (the only one to the idle server) first, then CPU burnt.
port=${BACKPROP_SERVER##*:}
idle=""
for ((w = 0; w < 600; w++)); do
  kill -0 "$slow_pid" 2>/dev/null || break
  if [[ -z $idle ]]; then
    ss -Htn state established "( dport = :$port )" | grep -q . && idle=$(cpu_ticks)
  elif (($(cpu_ticks) - idle >= 20)); then
    break
  fi
  sleep 0.05
done
kill -0 "$slow_pid" 2>/dev/null || fail "the slow Predict ended before SIGTERM: $(cat "$WORK/slow.err")"
stop_server "$LIMIT"
[[ $SERVER_EXIT == 0 ]] || fail "server exited $SERVER_EXIT after SIGTERM during a Predict"
slow_rc=0
wait "$slow_pid" || slow_rc=$?
BG_PIDS=()
((slow_rc == 0)) || fail "the in-flight Predict failed ($slow_rc): $(cat "$WORK/slow.err")"
[[ $(jq '.labels | length' "$WORK/slow.json") == 8000 ]] || fail "the in-flight Predict's answer: $(head -c 300 "$WORK/slow.json")"
echo "in-flight Predict (8,000 rows) finished OK across SIGTERM; server exit 0 in ${SERVER_STOP_SECONDS}s" >&2
echo "sigterm: exit 0 in ${stop_seconds}s; models (on disk/acked):$summary; $calls_ok CLI Predicts OK, $calls_cancelled CANCELLED, the last of each loop UNAVAILABLE" >&2
echo "PASS sigterm" >&2
