#!/usr/bin/env bash
# kill -9 of the server at FAULT_ITERATIONS (default 20) random moments while
# 3 models train and a data set uploads. After every restart: every model
# created so far loads, at an epoch no older than the last one the CLI saw
# acknowledged (its streamed epoch rows); every acknowledged upload is there
# with all its rows; no temp file is left in model_dir / data_dir.
# Usage: kill9.sh BUILD_DIR
source "$(dirname "$0")/lib.sh" "$@"
ITER=${FAULT_ITERATIONS:-20}
MODELS=(k1 k2 k3)
declare -A ACKED

make_csv "$WORK/small.csv" 300 20 4 1
make_csv "$WORK/big.csv" 1500 20 4 2  # ~150 KB: ~150 chunks of 1 KiB

start_server --max_concurrent_trainings 4
cli upload --id small --csv "$WORK/small.csv" --label-column -1 --classes 4 >/dev/null
for m in "${MODELS[@]}"; do
  cli models create --id "$m" --layers 20,30,4 --seed 3 >/dev/null
  ACKED[$m]=0
done
uploads_acked=()
swept=0
kill_ms_list=()
for ((i = 1; i <= ITER; i++)); do
  pids=()
  for m in "${MODELS[@]}"; do
    timeout 60 "$CLI_BIN" train "$m" --dataset small --epochs 100000 --batch 10 \
      --eta 0.5 --shuffle-seed "$i" >"$WORK/train.$m.out" 2>"$WORK/train.$m.err" &
    pids+=($!)
  done
  timeout 60 "$CLI_BIN" upload --id "up$i" --csv "$WORK/big.csv" --label-column -1 \
    --classes 4 --chunk-bytes 1024 >"$WORK/upload.out" 2>"$WORK/upload.err" &
  pids+=($!)
  BG_PIDS=("${pids[@]}")
  # A uniformly random moment in [300, 2000) ms after the clients started.
  kill_ms=$((300 + RANDOM % 1700))
  kill_ms_list+=("$kill_ms")
  sleep "$(awk -v m="$kill_ms" 'BEGIN { printf "%.3f", m / 1000 }')"
  kill9_server
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  BG_PIDS=()
  for m in "${MODELS[@]}"; do
    a=$(last_acked "$WORK/train.$m.out")
    ((a > ACKED[$m])) && ACKED[$m]=$a
  done
  if grep -q "^uploaded dataset up$i" "$WORK/upload.out"; then
    uploads_acked+=("up$i")
  fi
  left=$(temp_files "$MODEL_DIR" "$DATA_DIR" | wc -l)
  swept=$((swept + left))

  start_server --max_concurrent_trainings 4
  left=$(temp_files "$MODEL_DIR" "$DATA_DIR")
  [[ -z $left ]] || fail "iteration $i: temp files after restart: $left"
  cli --json models list >"$WORK/list.json" || fail "iteration $i: models list"
  got=$(jq -c '[.models[].model_id] | sort' "$WORK/list.json")
  [[ $got == '["k1","k2","k3"]' ]] || fail "iteration $i: models after restart: $got"
  row="iter $i kill@${kill_ms}ms"
  for m in "${MODELS[@]}"; do
    e=$(jq ".models[] | select(.model_id == \"$m\") | .epochs_trained" "$WORK/list.json")
    ((e >= ACKED[$m])) || fail "iteration $i: $m at epoch $e, older than acknowledged ${ACKED[$m]}"
    row+=" $m=$e(acked ${ACKED[$m]})"
    ACKED[$m]=$e  # what survived a restart is acknowledged from now on
  done
  # One model per iteration (in turn) answers with the weights of its epoch.
  m=${MODELS[$((i % ${#MODELS[@]}))]}
  p=$(cli --json predict "$m" --csv "$WORK/small.csv" --label-column -1 | jq .epochs_trained) ||
    fail "iteration $i: predict $m"
  [[ $p == "${ACKED[$m]}" ]] || fail "iteration $i: predict $m answered epoch $p, list says ${ACKED[$m]}"
  cli --json datasets list >"$WORK/datasets.json" || fail "iteration $i: datasets list"
  for d in "${uploads_acked[@]}"; do
    n=$(jq ".datasets[] | select(.dataset_id == \"$d\") | .example_count" "$WORK/datasets.json")
    [[ $n == 1500 ]] || fail "iteration $i: acknowledged dataset $d has '$n' examples, want 1500"
  done
  # An upload cut by the kill is either absent or complete, never partial.
  partial=$(jq -c '[.datasets[] | select(.example_count != 1500 and .example_count != 300)
    | .dataset_id]' "$WORK/datasets.json")
  [[ $partial == '[]' ]] || fail "iteration $i: partial datasets after restart: $partial"
  echo "$row uploads_acked=${#uploads_acked[@]} (${SECONDS}s)" >&2
done
echo "kill9: $ITER/$ITER restarts OK; models k1..k3 at epochs ${ACKED[k1]},${ACKED[k2]},${ACKED[k3]};" \
  "${#uploads_acked[@]} uploads acknowledged and intact; $swept temp files seen after kills, 0 after restarts" >&2
echo "PASS kill9" >&2
