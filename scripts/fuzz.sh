#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) in build-fuzz with clang-14, libFuzzer,
# ASan and UBSan, and runs each on a copy of its seed corpus (fuzz/corpus/):
#   FUZZ_SECONDS=30   seconds per target (default), or
#   FUZZ_RUNS=N       exactly N executions per target instead (0: replay the
#                     corpus only, a quick regression check)
#   FUZZ_TARGETS="idx_fuzzer csv_fuzzer"   a subset
# A crash, sanitizer report, leak, timeout or oversized allocation makes the
# script exit non-zero; the crashing input is kept in fuzz-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build-fuzz
out=$root/fuzz-out
targets=(${FUZZ_TARGETS:-idx_fuzzer csv_fuzzer model_file_fuzzer dataset_file_fuzzer})
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_CXX_FLAGS="$san" \
  -DBACKPROP_BUILD_FUZZERS=ON -DBACKPROP_BUILD_SERVICE=OFF \
  -DBACKPROP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --parallel "${FUZZ_JOBS:-2}" --target "${targets[@]}"

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -n "${FUZZ_RUNS:-}" ]]; then
  budget=(-runs="$FUZZ_RUNS")
else
  budget=(-max_total_time="${FUZZ_SECONDS:-30}")
fi

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
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    "$build/fuzz/$t" "$corpus" "${budget[@]}" -max_len=65536 \
    -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=10 \
    -artifact_prefix="$out/$t-" -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    tail -n 40 "$log" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  summary+=("$t: $status, ${execs:-?} executions")
done

printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
  echo "fuzz targets failed: ${failed[*]} (inputs and logs in $out)" >&2
  exit 1
fi
