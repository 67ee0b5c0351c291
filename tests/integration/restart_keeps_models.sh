#!/usr/bin/env bash
# Models survive a server restart on the same --model_dir: same list, same
# epoch count, bitwise-equal predictions.
source "$(dirname "$0")/lib.sh" "$@"
require_fashion_mnist
start_server

upload_subset train1k "$TRAIN_IMAGES" "$TRAIN_LABELS" 1000
cli models create --id keep --layers 784,16,10 --seed 2 >/dev/null
cli models create --id keep32 --layers 784,16,10 --seed 2 --dtype float32 >/dev/null
cli train keep --dataset train1k --epochs 2 --batch 10 --eta 3.0 >/dev/null
cli --json predict keep --images "$TEST_IMAGES" --limit 100 --probabilities >"$WORK/before.json"
cli --json predict keep32 --images "$TEST_IMAGES" --limit 100 --probabilities >"$WORK/before32.json"

stop_server
[[ $SERVER_EXIT == 0 ]] || fail "server exited $SERVER_EXIT on SIGTERM"
start_server

cli --json models list >"$WORK/list.json"
[[ $(jq -c '[.models[].model_id] | sort' "$WORK/list.json") == '["keep","keep32"]' ]] ||
  fail "models after restart: $(jq -c '[.models[].model_id]' "$WORK/list.json")"
[[ $(jq '.models[] | select(.model_id == "keep") | .epochs_trained' "$WORK/list.json") == 2 ]] ||
  fail "epochs_trained after restart"
[[ $(jq -r '.models[] | select(.model_id == "keep32") | .spec.dtype' "$WORK/list.json") == float32 ]] ||
  fail "dtype after restart"
cli --json predict keep --images "$TEST_IMAGES" --limit 100 --probabilities >"$WORK/after.json"
cli --json predict keep32 --images "$TEST_IMAGES" --limit 100 --probabilities >"$WORK/after32.json"
jq -e --slurpfile a "$WORK/before.json" '.outputs == $a[0].outputs and .epochs_trained == 2' \
  "$WORK/after.json" >/dev/null || fail "predictions of keep changed across the restart"
jq -e --slurpfile a "$WORK/before32.json" '.outputs == $a[0].outputs' \
  "$WORK/after32.json" >/dev/null || fail "predictions of keep32 changed across the restart"

stop_server
[[ $SERVER_EXIT == 0 ]] || fail "server exited $SERVER_EXIT on SIGTERM"
echo "PASS" >&2
