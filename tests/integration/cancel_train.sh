#!/usr/bin/env bash
# Ctrl-C (SIGINT to the CLI) during `train`: the CLI cancels the stream,
# says at which epoch the model stands and exits 130; the model is at a
# completed epoch, no longer training, and can be trained again.
source "$(dirname "$0")/lib.sh" "$@"
require_fashion_mnist
start_server

upload_subset train5k "$TRAIN_IMAGES" "$TRAIN_LABELS" 5000
cli models create --id c --layers 784,30,10 --seed 5 >/dev/null

# Long enough (200 epochs) that it is always interrupted mid-run.
"$CLI_BIN" train c --dataset train5k --epochs 200 --batch 10 --eta 3.0 \
  >"$WORK/train.out" 2>"$WORK/train.err" &
cli_pid=$!
# Wait (bounded) until the first epoch row is out, then interrupt.
for _ in $(seq 600); do
  if awk '$1 ~ /^[0-9]+$/ { found = 1 } END { exit !found }' "$WORK/train.out"; then
    break
  fi
  kill -0 "$cli_pid" 2>/dev/null || break
  sleep 0.1
done
kill -INT "$cli_pid"
rc=0
wait "$cli_pid" || rc=$?
cat "$WORK/train.out" "$WORK/train.err" >&2
[[ $rc == 130 ]] || fail "train exited $rc after SIGINT, want 130"
rows=$(awk '$1 ~ /^[0-9]+$/' "$WORK/train.out" | wc -l)
((rows >= 1)) || fail "no epoch row before the interrupt"
expect_contains "$WORK/train.err" "interrupted: training cancelled; model c stands at epoch [0-9]+"
reported=$(sed -nE 's/.*stands at epoch ([0-9]+).*/\1/p' "$WORK/train.err")

# The server stops within one mini-batch; wait (bounded) for it to say so.
for _ in $(seq 100); do
  cli --json models get c >"$WORK/model.json"
  [[ $(jq .training "$WORK/model.json") == false ]] && break
  sleep 0.1
done
[[ $(jq .training "$WORK/model.json") == false ]] || fail "model still training"
epochs=$(jq .epochs_trained "$WORK/model.json")
echo "rows seen: $rows, CLI reported epoch $reported, server now says $epochs" >&2
# A completed epoch: at least every row we saw, at most one more that
# finished while the cancel travelled, and far from all 200.
((epochs >= rows && epochs <= rows + 1 && epochs < 200)) || fail "epochs_trained $epochs"
((epochs >= reported && epochs <= reported + 1)) || fail "reported $reported vs $epochs"

# The weights of that epoch answer, and the model can train again.
[[ $(cli --json predict c --images "$TEST_IMAGES" --limit 5 | jq .epochs_trained) == "$epochs" ]] ||
  fail "predict epochs_trained"
expect_exit 0 "$WORK/out" "$WORK/err" -- train c --dataset train5k --epochs 1 --batch 10 --eta 3.0
[[ $(cli --json models get c | jq .epochs_trained) == $((epochs + 1)) ]] ||
  fail "second training did not add one epoch"

stop_server
echo "PASS" >&2
