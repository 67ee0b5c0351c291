#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, fuzz/README.md) in build-fuzz with
# clang-14, libFuzzer, ASan and UBSan (the service too, against Debian's
# gRPC), and runs each on a copy of its seed corpus (fuzz/corpus/), one
# target after the other:
#   FUZZ_SECONDS=30          seconds per file-decoder target (default 30)
#   FUZZ_SERVICE_SECONDS=5   seconds per service target (default 5; CI runs
#                            this script with FUZZ_SECONDS=20: ~3 min of
#                            fuzzing for all 16 targets), or
#   FUZZ_RUNS=N              exactly N executions per target instead (0:
#                            replay the corpus only; 1000000: the full run of
#                            RELIABILITY.md F1/F2, see fuzz/README.md)
#   FUZZ_TARGETS="idx_fuzzer train_fuzzer"   a subset
#   FUZZ_TIMEOUT=S           seconds one input may take before it counts as
#                            a hang (default 10; a long run that shares the
#                            machine, or is paused, wants more)
#   FUZZ_ASAN_OPTIONS=...    more ASan options, e.g. malloc_context_size=0
#                            for long runs (see fuzz/README.md)
#   FUZZ_WORKERS=N           run N processes per target side by side, with
#                            seeds 1..N, sharing the corpus; with FUZZ_RUNS
#                            they split the N runs between them (the counts
#                            printed are the sums), so a 2-core machine does
#                            the full run in half the time
# A crash, sanitizer report, broken invariant, leak, timeout or oversized
# allocation makes the script exit non-zero; the crashing input is kept in
# fuzz-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build-fuzz
out=$root/fuzz-out
file_targets=(idx_fuzzer csv_fuzzer model_file_fuzzer dataset_file_fuzzer)
service_targets=(create_model_fuzzer get_model_fuzzer list_models_fuzzer
  delete_model_fuzzer upload_dataset_fuzzer get_dataset_fuzzer
  list_datasets_fuzzer delete_dataset_fuzzer train_fuzzer predict_fuzzer
  get_gradients_fuzzer service_sequence_fuzzer)
targets=(${FUZZ_TARGETS:-${file_targets[*]} ${service_targets[*]}})
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

# -O1 -gline-tables-only (as OSS-Fuzz builds): the service's protobuf and
# gRPC code compiles about twice as fast as with -O2 -g, and sanitizer
# reports still name file and line.
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_CXX_FLAGS="$san" \
  -DBACKPROP_BUILD_FUZZERS=ON -DBACKPROP_BUILD_SERVICE=ON \
  -DBACKPROP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --parallel "${FUZZ_JOBS:-2}" --target "${targets[@]}"

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
is_service() { [[ " ${service_targets[*]} " == *" $1 "* ]]; }
budget_of() {  # budget_of TARGET: the libFuzzer flag that bounds its run
  if [[ -n "${FUZZ_RUNS:-}" ]]; then
    echo "-runs=$FUZZ_RUNS"
  elif is_service "$1"; then
    echo "-max_total_time=${FUZZ_SERVICE_SECONDS:-5}"
  else
    echo "-max_total_time=${FUZZ_SECONDS:-30}"
  fi
}

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus=$work/$t
  mkdir -p "$corpus"
  cp "$root/fuzz/corpus/$t/"* "$corpus/"
  log=$out/$t.log
  echo "=== $t" >&2
  # -malloc_limit_mb turns any single allocation over 256 MiB into a failure:
  # no header may make a decoder allocate what the input cannot justify.
  # Leaks: LeakSanitizer checks every target at exit. The file targets are
  # also checked after each input (libFuzzer's -detect_leaks=1). The service
  # targets are not: the server ends a call on gRPC's threads after the
  # client already has its status (a Train reactor's status, a restarted
  # server's worker threads), and a check in that window reports memory that
  # is freed a moment later (both such reports were replayed: no leak at
  # exit).
  per_input_leaks=1
  # The service targets also use libFuzzer's plain schedule: with entropic
  # scheduling (the default) half of a service target's time went to
  # InputCorpus::UpdateFeatureFrequency over its ~40,000 features (perf),
  # and the sequence fuzzer ran 51 inputs/s instead of 125, at the same
  # coverage after 1,500 inputs.
  entropic=1
  if is_service "$t"; then per_input_leaks=0 entropic=0; fi
  t0=$(date +%s)
  workers=${FUZZ_WORKERS:-1}
  budget=$(budget_of "$t")
  if [[ -n "${FUZZ_RUNS:-}" ]]; then
    budget="-runs=$(((FUZZ_RUNS + workers - 1) / workers))"
  fi
  pids=()
  logs=()
  for ((w = 1; w <= workers; ++w)); do
    wlog=$log
    seed=()
    if ((workers > 1)); then
      wlog=$out/$t.$w.log
      seed=(-seed="$w")
    fi
    logs+=("$wlog")
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1${FUZZ_ASAN_OPTIONS:+:$FUZZ_ASAN_OPTIONS} \
      "$build/fuzz/$t" "$corpus" "$budget" "${seed[@]}" -max_len=65536 \
      -detect_leaks="$per_input_leaks" -entropic="$entropic" \
      -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout="${FUZZ_TIMEOUT:-10}" \
      -artifact_prefix="$out/$t-" -print_final_stats=1 >"$wlog" 2>&1 &
    pids+=($!)
  done
  status=ok
  for ((w = 0; w < workers; ++w)); do
    if ! wait "${pids[$w]}"; then
      status=FAILED
      tail -n 40 "${logs[$w]}" >&2
    fi
  done
  if [[ $status == FAILED ]]; then failed+=("$t"); fi
  execs=0
  for wlog in "${logs[@]}"; do
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$wlog" | tail -1)
    execs=$((execs + ${n:-0}))
  done
  summary+=("$t: $status, $execs executions in $workers process(es), $(($(date +%s) - t0)) s")
done

printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
  echo "fuzz targets failed: ${failed[*]} (inputs and logs in $out)" >&2
  exit 1
fi
