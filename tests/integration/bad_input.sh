#!/usr/bin/env bash
# Bad input gives a non-zero exit and a clear message: bad flags (exit 2),
# an unknown model (NOT_FOUND), a file with the wrong feature count
# (INVALID_ARGUMENT from the server), malformed files (caught by the CLI),
# and an unreachable server.
source "$(dirname "$0")/lib.sh" "$@"
start_server

# Bad flags: CLI11's message, exit 2.
expect_exit 2 "$WORK/out" "$WORK/err" -- frobnicate
expect_exit 2 "$WORK/out" "$WORK/err" -- models create --layers 784,30,10 --hidden softmax
expect_contains "$WORK/err" "--hidden"
expect_exit 2 "$WORK/out" "$WORK/err" -- models create
expect_contains "$WORK/err" "--layers is required"
expect_exit 2 "$WORK/out" "$WORK/err" -- train m --dataset d --eta -1
expect_exit 2 "$WORK/out" "$WORK/err" -- predict
expect_exit 0 "$WORK/out" "$WORK/err" -- train --help
expect_contains "$WORK/out" "--shuffle-seed"

# Unknown model / data set.
expect_exit 1 "$WORK/out" "$WORK/err" -- models get nope
expect_contains "$WORK/err" "^error: NOT_FOUND: .*nope"
expect_exit 1 "$WORK/out" "$WORK/err" -- predict nope --values 1,2,3
expect_contains "$WORK/err" "^error: NOT_FOUND: "
expect_exit 1 "$WORK/out" "$WORK/err" -- datasets delete nope
expect_contains "$WORK/err" "^error: NOT_FOUND: "

# A spec the server refuses (softmax output with the quadratic cost).
expect_exit 1 "$WORK/out" "$WORK/err" -- models create --id bad --layers 4,3 --output softmax --cost quadratic
expect_contains "$WORK/err" "^error: INVALID_ARGUMENT: "

# Wrong feature count: a 5-column CSV against a 784-input model.
cli models create --id m --layers 784,30,10 >/dev/null
printf '0.1,0.2,0.3,0.4,0.5,1\n0.5,0.4,0.3,0.2,0.1,0\n' >"$WORK/five.csv"
expect_exit 1 "$WORK/out" "$WORK/err" -- predict m --csv "$WORK/five.csv" --label-column -1
expect_contains "$WORK/err" "^error: INVALID_ARGUMENT: "
expect_exit 0 "$WORK/out" "$WORK/err" -- upload --id five --csv "$WORK/five.csv" --label-column -1
expect_exit 1 "$WORK/out" "$WORK/err" -- train m --dataset five --epochs 1 --eta 1
expect_contains "$WORK/err" "^error: INVALID_ARGUMENT: "
expect_exit 1 "$WORK/out" "$WORK/err" -- gradients m --csv "$WORK/five.csv" --label-column -1
expect_contains "$WORK/err" "^error: INVALID_ARGUMENT: "

# Malformed files are refused by the CLI before anything is sent.
printf '1,2,3\n4,x,6\n' >"$WORK/bad.csv"
expect_exit 1 "$WORK/out" "$WORK/err" -- predict m --csv "$WORK/bad.csv"
expect_contains "$WORK/err" "line 2, column 2: 'x' is not a number"
printf '1,2,3\n4,5\n' >"$WORK/ragged.csv"
expect_exit 1 "$WORK/out" "$WORK/err" -- predict m --csv "$WORK/ragged.csv"
expect_contains "$WORK/err" "line 2: 2 features"
expect_exit 1 "$WORK/out" "$WORK/err" -- predict m --values 1,nan,3
expect_contains "$WORK/err" "not finite"
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c' >"$WORK/short-idx"
expect_exit 1 "$WORK/out" "$WORK/err" -- predict m --images "$WORK/short-idx"
expect_contains "$WORK/err" "IDX header promises more data than the file holds"
expect_exit 1 "$WORK/out" "$WORK/err" -- predict m --images "$WORK/missing-file"
expect_contains "$WORK/err" "missing-file: cannot open"
expect_exit 2 "$WORK/out" "$WORK/err" -- upload --id x --csv "$WORK/five.csv"
expect_contains "$WORK/err" "upload needs labels"

# Nothing above was created by mistake.
[[ $(cli --json models list | jq -c '[.models[].model_id]') == '["m"]' ]] || fail "models list"

stop_server
# An unreachable server: UNAVAILABLE, exit 1.
expect_exit 1 "$WORK/out" "$WORK/err" -- --deadline 5 health
expect_contains "$WORK/err" "^error: (UNAVAILABLE|DEADLINE_EXCEEDED): "
echo "PASS" >&2
