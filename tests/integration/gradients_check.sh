#!/usr/bin/env bash
# GetGradients through the CLI: per-layer table, --full matrices of the
# right shapes, and the server's central-difference check: max relative
# error < 1e-6 for a float64 model.
#
# The server's numeric side evaluates the cost in long double (core's
# CheckGradients), so rounding noise no longer turns small gradients into
# large relative errors: both nets are held to the issue's bound.
source "$(dirname "$0")/lib.sh" "$@"
require_fashion_mnist
start_server

cli models create --id g --layers 784,30,10 --seed 3 >/dev/null

expect_exit 0 "$WORK/out" "$WORK/err" -- gradients g --images "$TRAIN_IMAGES" \
  --labels "$TRAIN_LABELS" --limit 20 --check 1e-4
cat "$WORK/out" >&2
expect_contains "$WORK/out" "^cost C = [0-9.e+-]+ over 20 examples"
expect_contains "$WORK/out" "^ *2 +30x784 "
expect_contains "$WORK/out" "^ *3 +10x30 "
expect_contains "$WORK/out" "gradient check \(central differences, eps = 1.000e-04\): [1-9][0-9]* parameters"

cli --json gradients g --images "$TRAIN_IMAGES" --labels "$TRAIN_LABELS" \
  --limit 20 --check 1e-4 --samples 200 --full >"$WORK/g.json"
rel=$(jq .check.max_rel_error "$WORK/g.json")
abs=$(jq .check.max_abs_error "$WORK/g.json")
checked=$(jq .check.parameters_checked "$WORK/g.json")
echo "[784,30,10]: checked $checked parameters, max abs error $abs, max rel error $rel" >&2
[[ $checked == 200 ]] || fail "parameters checked: $checked, want 200"
expect_true "$abs < 1e-9 && $rel < 1e-6"

cli models create --id lin --layers 784,10 --seed 3 >/dev/null
cli --json gradients lin --images "$TRAIN_IMAGES" --labels "$TRAIN_LABELS" \
  --limit 100 --check 1e-4 --samples 300 >"$WORK/lin.json"
rel=$(jq .check.max_rel_error "$WORK/lin.json")
abs=$(jq .check.max_abs_error "$WORK/lin.json")
echo "[784,10]: checked $(jq .check.parameters_checked "$WORK/lin.json") parameters, max abs error $abs, max rel error $rel" >&2
expect_true "$abs < 1e-9 && $rel < 1e-6"
[[ $(jq '.layers[0].weights | length' "$WORK/g.json") == 30 ]] || fail "dC/dw^2 rows"
[[ $(jq '.layers[0].weights[0] | length' "$WORK/g.json") == 784 ]] || fail "dC/dw^2 cols"
[[ $(jq '.layers[1].biases | length' "$WORK/g.json") == 10 ]] || fail "dC/db^3 size"
# The table's norm is the norm of the matrix the JSON carries.
norm=$(jq '[.layers[1].weights[][] | . * .] | add | sqrt' "$WORK/g.json")
reported=$(jq '.layers[1].weight_gradient_norm' "$WORK/g.json")
expect_true "($norm - $reported)^2 < 1e-20"

# Gradients change nothing: the model is still at epoch 0.
[[ $(cli --json models get g | jq .epochs_trained) == 0 ]] || fail "model changed"

stop_server
echo "PASS" >&2
