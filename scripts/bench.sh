#!/usr/bin/env bash
# Seconds per training epoch on the full Fashion-MNIST training set: our
# engine (bench/engine_bench, Google Benchmark) against a numpy per-example
# loop like network.py, a whole-batch numpy variant and PyTorch, on the same
# configs (see bench/fmnist.py and bench/engine_bench.cc), then one table.
#
# One threading layer for everyone: OpenBLAS with BENCH_THREADS threads
# (default 1), the same for numpy (which calls the same OpenBLAS), and
# torch.set_num_threads(BENCH_THREADS) with OMP_NUM_THREADS to match.
#
# Environment: BENCH_THREADS (1), BENCH_BUILD_DIR (build; set it to use an
# existing build and skip scripts/build.sh), BENCH_LOOP_EXAMPLES_A (12000) and
# BENCH_LOOP_EXAMPLES_C (3000): how many examples the per-example numpy loop
# times before scaling to 60,000 (it is slow; the table notes the scaling),
# BENCH_OUT (a folder to keep the raw JSON in; default a temp folder).
set -euo pipefail
cd "$(dirname "$0")/.."

export BACKPROP_WITH_BENCH_REFS=1
if [[ -n "${BENCH_BUILD_DIR:-}" ]]; then
  build="$BENCH_BUILD_DIR"
  bash scripts/install-deps.sh
else
  bash scripts/build.sh
  build=build
fi
# Pinned after the build (GNU nproc, which build.sh uses for -j, honours
# OMP_NUM_THREADS).
threads="${BENCH_THREADS:-1}"
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
py=/usr/bin/python3
out="${BENCH_OUT:-$(mktemp -d)}"
mkdir -p "$out"

echo "== machine: $(getconf _NPROCESSORS_ONLN) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)," \
  "BLAS $(readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu)" \
  "($(OPENBLAS_VERBOSE=2 "$py" -c 'import numpy' 2>&1 | grep -m1 Core || echo 'core ?'))," \
  "threads $threads, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%F %T') UTC"

echo "== engine ($build/bench/engine_bench)"
"$build/bench/engine_bench" --benchmark_out="$out/engine.json" \
  --benchmark_out_format=json --benchmark_counters_tabular=true

refs="$out/refs.jsonl"
: >"$refs"
run_ref() {
  echo "-- $*" >&2
  (cd bench && "$py" "$@") | tee -a "$refs"
}
echo "== references"
run_ref ref_numpy_loop.py --config A --dtype float64 --examples "${BENCH_LOOP_EXAMPLES_A:-12000}"
run_ref ref_numpy_loop.py --config A --dtype float32 --examples "${BENCH_LOOP_EXAMPLES_A:-12000}"
run_ref ref_numpy_loop.py --config C --dtype float32 --examples "${BENCH_LOOP_EXAMPLES_C:-3000}"
for c in "A float64" "A float32" "C float32"; do
  set -- $c
  run_ref ref_numpy_loop.py --variant batch --config "$1" --dtype "$2" --repeats 2
  run_ref ref_torch.py --mode time --config "$1" --dtype "$2" --threads "$threads" --repeats 3
done

echo "== seconds per epoch (60,000 examples; engine: min of 3 repetitions;" \
  "references: fastest timed epoch)"
"$py" bench/report.py "$out/engine.json" "$refs"
echo "raw results in $out"
