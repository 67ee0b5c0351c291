#!/usr/bin/env bash
# Upload a Fashion-MNIST subset, create [784,30,10], train 3 epochs with
# validation, then predict: 3 epoch rows, accuracy well above chance, and
# the printed accuracy equal to --json's and to the last epoch's validation
# accuracy (same weights, same 1,000 examples).
source "$(dirname "$0")/lib.sh" "$@"
require_fashion_mnist
start_server

expect_exit 0 "$WORK/out" "$WORK/err" -- health
expect_contains "$WORK/out" "SERVING"

upload_subset train5k "$TRAIN_IMAGES" "$TRAIN_LABELS" 5000
upload_subset test1k "$TEST_IMAGES" "$TEST_LABELS" 1000
cli --json datasets get train5k >"$WORK/ds.json"
[[ $(jq .example_count "$WORK/ds.json") == 5000 ]] || fail "train5k size"
[[ $(jq .feature_count "$WORK/ds.json") == 784 ]] || fail "train5k width"
expect_exit 0 "$WORK/out" "$WORK/err" -- datasets list
expect_contains "$WORK/out" "^test1k +1000 +784 +10"

expect_exit 0 "$WORK/out" "$WORK/err" -- models create --id fm --layers 784,30,10 \
  --hidden sigmoid --output sigmoid --cost quadratic --init standard_normal --seed 7
expect_contains "$WORK/out" "created model fm \(784,30,10, 23860 parameters\)"

expect_exit 0 "$WORK/train.out" "$WORK/train.err" -- train fm --dataset train5k \
  --validation test1k --epochs 3 --batch 10 --eta 3.0 --monitor-training \
  --plot "$WORK/curves.svg"
cat "$WORK/train.out" >&2
# Rows: EPOCH TOTAL TRAIN_COST TRAIN_ACC VAL_COST VAL_ACC SECONDS EXAMPLES/S
rows=$(awk '$1 ~ /^[0-9]+$/' "$WORK/train.out")
[[ $(wc -l <<<"$rows") == 3 ]] || fail "want 3 epoch rows"
[[ $(awk '{print $1}' <<<"$rows" | tr '\n' ' ') == "1 2 3 " ]] || fail "epoch numbers"
last_val=$(tail -n1 <<<"$rows" | awk '{sub("%", "", $6); print $6}')
echo "last validation accuracy: $last_val%" >&2
# Chance is 10%; [784,30,10] reaches ~75-80% on this subset in 3 epochs.
expect_true "$last_val > 50"

# The learning curves: a complete SVG with both series in both panels.
expect_contains "$WORK/curves.svg" "^<svg "
expect_contains "$WORK/curves.svg" "</svg>"
[[ $(grep -c "<polyline points=\"[0-9]" "$WORK/curves.svg") -ge 4 ]] ||
  fail "curves.svg lacks the 4 learning curves"

cli --json models get fm >"$WORK/model.json"
[[ $(jq .epochs_trained "$WORK/model.json") == 3 ]] || fail "epochs_trained"
[[ $(jq .training "$WORK/model.json") == false ]] || fail "still training"

expect_exit 0 "$WORK/pred.out" "$WORK/pred.err" -- predict fm --images "$TEST_IMAGES" \
  --labels "$TEST_LABELS" --limit 1000
cat "$WORK/pred.out" >&2
expect_contains "$WORK/pred.out" "^accuracy: [0-9.]+% \([0-9]+/1000\)"
expect_contains "$WORK/pred.out" "confusion matrix"
text_acc=$(awk '/^accuracy:/ {sub("%", "", $2); print $2}' "$WORK/pred.out")
[[ $text_acc == "$last_val" ]] ||
  fail "predict accuracy $text_acc% != last validation accuracy $last_val%"

cli --json predict fm --images "$TEST_IMAGES" --labels "$TEST_LABELS" \
  --limit 1000 >"$WORK/pred.json"
json_acc=$(jq -r '.accuracy * 100 | . * 100 | round / 100' "$WORK/pred.json")
expect_true "($json_acc - $text_acc) < 0.006 && ($text_acc - $json_acc) < 0.006"
[[ $(jq '.labels | length' "$WORK/pred.json") == 1000 ]] || fail "label count"
[[ $(jq '[.confusion_matrix[][]] | add' "$WORK/pred.json") == 1000 ]] ||
  fail "confusion matrix does not sum to 1000"
[[ $(jq '[range(0; 10) as $i | .confusion_matrix[$i][$i]] | add' "$WORK/pred.json") == \
  $(jq .correct "$WORK/pred.json") ]] || fail "confusion diagonal != correct"
[[ $(jq .epochs_trained "$WORK/pred.json") == 3 ]] || fail "predict epochs"

# One example inline: 784 values give one label in 0..9.
values=$(awk 'BEGIN { for (i = 0; i < 784; i++) printf "%s%s", (i ? "," : ""), (i % 7) / 7 }')
cli --json predict fm --values "$values" >"$WORK/one.json"
label=$(jq '.labels[0]' "$WORK/one.json")
[[ $(jq '.labels | length' "$WORK/one.json") == 1 && $label -ge 0 && $label -le 9 ]] ||
  fail "inline predict"

stop_server
[[ $SERVER_EXIT == 0 ]] || fail "server exited $SERVER_EXIT on SIGTERM"
echo "PASS" >&2
