#!/usr/bin/env bash
# export -> delete -> import gives a model that predicts exactly as before
# (bitwise-equal outputs), under the old id or a new one.
source "$(dirname "$0")/lib.sh" "$@"
require_fashion_mnist
start_server

upload_subset train1k "$TRAIN_IMAGES" "$TRAIN_LABELS" 1000
cli models create --id ex --layers 784,20,10 --output softmax \
  --cost cross_entropy --seed 11 >/dev/null
cli train ex --dataset train1k --epochs 1 --batch 20 --eta 0.5 >/dev/null

predict() {  # MODEL OUT.json
  cli --json predict "$1" --images "$TEST_IMAGES" --labels "$TEST_LABELS" \
    --limit 300 --probabilities >"$2"
}
predict ex "$WORK/before.json"

expect_exit 0 "$WORK/out" "$WORK/err" -- export ex "$WORK/ex.model"
expect_contains "$WORK/out" "exported model ex \(epoch 1, 15910 parameters\)"
[[ -s $WORK/ex.model ]] || fail "empty export file"

expect_exit 0 "$WORK/out" "$WORK/err" -- models delete ex
expect_exit 1 "$WORK/out" "$WORK/err" -- models get ex
expect_contains "$WORK/err" "^error: NOT_FOUND: "

expect_exit 0 "$WORK/out" "$WORK/err" -- import "$WORK/ex.model"
expect_contains "$WORK/out" "imported model ex \(784,20,10, 15910 parameters\)"
predict ex "$WORK/after.json"
expect_exit 0 "$WORK/out" "$WORK/err" -- import "$WORK/ex.model" --id ex-copy
predict ex-copy "$WORK/copy.json"

for f in after copy; do
  jq -e --slurpfile a "$WORK/before.json" \
    '.labels == $a[0].labels and .outputs == $a[0].outputs' \
    "$WORK/$f.json" >/dev/null || fail "$f: predictions differ from before export"
done
[[ $(jq '.outputs[0] | length' "$WORK/after.json") == 10 ]] || fail "outputs width"

# Importing over an existing id is refused; a file that is not a model too.
expect_exit 1 "$WORK/out" "$WORK/err" -- import "$WORK/ex.model"
expect_contains "$WORK/err" "^error: ALREADY_EXISTS: "
printf "not a model\n" >"$WORK/junk.model"
expect_exit 1 "$WORK/out" "$WORK/err" -- import "$WORK/junk.model"
expect_contains "$WORK/err" "^error: .*junk.model"

stop_server
echo "PASS" >&2
