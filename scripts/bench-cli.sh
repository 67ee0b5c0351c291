#!/usr/bin/env bash
# The speed goals of the CLI issue (issue 4), measured with `backprop bench`
# against a fresh Release server, each case repeated, with the median beside
# the goal it must meet:
#   1. one caller, config A ([784,30,10] float64, one example per call):
#      Predict p50 / health-Check p50 in the same run        goal <= 1.2
#   2. 8 callers, config A, --schedule rounds:
#      Predict QPS / health-Check QPS                        goal >= 80%
#   3. 256-row float32 Predicts ([784,30,10] float32), 2 callers, rounds:
#      examples/s end to end                                 goal >= 200,000
# and, as the control that separates the payload from the model's work, the
# same first two cases on `tiny` = [784,1] float64: the same 784-double
# request, almost no arithmetic.
# The cases run interleaved (run 1 of every case, then run 2, ...), so slow
# drift of the machine lands on all of them. It is a measurement, not a test:
# it fails only when a call fails or a tool is missing, never on a figure.
# Run it on a machine that does nothing else (2 cores: client and server
# share them).
# Usage: bash scripts/bench-cli.sh [BUILD_DIR]      (default: build)
#   BENCH_CLI_RUNS     repetitions of each case (default 5)
#   BENCH_CLI_SECONDS  measured seconds per run (default 5; +1 s warm-up)
#   BENCH_CLI_OUT      folder for the per-run JSON (default: a temp folder)
source "$(dirname "$0")/../tests/fault/lib.sh" "${1:-build}"
RUNS=${BENCH_CLI_RUNS:-5}
SECS=${BENCH_CLI_SECONDS:-5}
OUT=${BENCH_CLI_OUT:-$WORK/out}
mkdir -p "$OUT"

start_server
cli models create --id a --layers 784,30,10 --seed 1 >/dev/null
cli models create --id a32 --layers 784,30,10 --seed 1 --dtype float32 >/dev/null
cli models create --id tiny --layers 784,1 --seed 1 >/dev/null

# case NAME MODEL BENCH_FLAGS...: one run, its JSON in $OUT/NAME.RUN.json.
run_case() {
  local name=$1 model=$2
  shift 2
  timeout $((SECS * 4 + 30)) "$CLI_BIN" --json bench "$model" \
    --duration "$SECS" "$@" >"$OUT/$name.$r.json" ||
    fail "bench $name (run $r) failed"
  jq -e '.health.errors == 0 and .predict.errors == 0' \
    "$OUT/$name.$r.json" >/dev/null || fail "bench $name (run $r) had errors"
}

echo "backprop bench, $RUNS runs of $SECS s per case; CPU: $(
  lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores;" \
  "commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null ||
    echo unknown); server $SERVER_BIN" >&2
for ((r = 1; r <= RUNS; r++)); do
  echo "run $r of $RUNS" >&2
  run_case single_a a
  run_case single_tiny tiny
  run_case c8_a a --concurrency 8 --schedule rounds
  run_case c8_tiny tiny --concurrency 8 --schedule rounds
  run_case batch256 a32 --batch 256 --dtype float32 --concurrency 2 \
    --schedule rounds
done

# row CASE JQ_EXPR FORMAT GOAL_TEST GOAL_TEXT LABEL: one table row; the
# median of the runs (the middle one, or the mean of the middle two).
row() {
  local name=$1 expr=$2 fmt=$3 test=$4 goal=$5 label=$6
  local values
  values=$(for ((r = 1; r <= RUNS; r++)); do
    jq -r "$expr" "$OUT/$name.$r.json"
  done)
  local sorted
  sorted=$(sort -g <<<"$values" | tr '\n' ' ')
  awk -v fmt="$fmt" -v test="$test" -v goal="$goal" -v label="$label" \
    -v sorted="$sorted" '
    { list = list (NR > 1 ? ", " : "") sprintf(fmt, $1) }
    END {
      n = split(sorted, v, " ")
      med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      split(test, t, " ")
      met = "-"
      if (t[1] == "<=") met = med <= t[2] ? "yes" : "NO"
      if (t[1] == ">=") met = med >= t[2] ? "yes" : "NO"
      printf "| %s | %s | %s | %s | %s |\n", label, list, sprintf(fmt, med), goal, met
    }' <<<"$values"
}

echo
echo "| case | runs | median | goal | met |"
echo "|---|---|---|---|---|"
row single_a '.predict_over_health_p50' '%.2f' '<= 1.2' '<= 1.2x' \
  '1 caller, a: p50 Predict / p50 Check'
row single_a '.health.p50_us' '%.0f' '' '' \
  '1 caller, a: Check p50 (us)'
row single_a '.predict.p50_us' '%.0f' '' '' \
  '1 caller, a: Predict p50 (us)'
row single_tiny '.predict_over_health_p50' '%.2f' '' '' \
  '1 caller, tiny: p50 Predict / p50 Check'
row c8_a '.predict_over_health_qps * 100' '%.1f%%' '>= 80' '>= 80%' \
  '8 callers, a: QPS Predict / Check'
row c8_a '.health.qps' '%.0f' '' '' \
  '8 callers, a: Check QPS'
row c8_a '.predict.qps' '%.0f' '' '' \
  '8 callers, a: Predict QPS'
row c8_tiny '.predict_over_health_qps * 100' '%.1f%%' '' '' \
  '8 callers, tiny: QPS Predict / Check'
row batch256 '.predict.examples_per_second' '%.0f' '>= 200000' '>= 200,000' \
  '256-row float32 batches, 2 callers: examples/s'
echo
echo "per-run JSON: $OUT$([[ -z ${BENCH_CLI_OUT:-} ]] && echo ' (deleted on exit; set BENCH_CLI_OUT to keep it)')"
stop_server
