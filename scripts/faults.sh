#!/usr/bin/env bash
# Fault tests of backprop-server, blackbox against the built binaries
# (tests/fault/*.sh):
#   kill9      kill -9 at FAULT_ITERATIONS (20) random moments during training
#              and uploads; every restart loads every model at an epoch no
#              older than the last acknowledged one, no temp file remains
#   disk_full  a save into a full (ENOSPC) or read-only (EROFS) model dir
#              fails with a clear status, the old file stays byte-identical,
#              the server keeps serving (needs root: unshare -m + tmpfs;
#              skipped otherwise)
#   sigterm    SIGTERM during 10 Train streams and a Predict load: exit 0 in
#              a few seconds, Predicts OK or UNAVAILABLE, models at completed
#              epochs
# Usage: bash scripts/faults.sh [BUILD_DIR]   (default: build)
# Exit code 0 when every scenario passed or was skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
[[ $build == /* ]] || build=$PWD/$build
passed=0
failed=0
skipped=0
summary=()
t_all=$SECONDS
for name in kill9 disk_full sigterm; do
  t0=$SECONDS
  echo "=== fault: $name" >&2
  rc=0
  # A hard bound on each scenario, whatever happens inside it.
  timeout -k 5 300 bash "tests/fault/$name.sh" "$build" || rc=$?
  case $rc in
    0) passed=$((passed + 1)); result=PASS ;;
    77) skipped=$((skipped + 1)); result=SKIP ;;
    *) failed=$((failed + 1)); result="FAIL (exit $rc)" ;;
  esac
  summary+=("$(printf '%-10s %-14s %4d s' "$name" "$result" $((SECONDS - t0)))")
done
printf '%s\n' "${summary[@]}" >&2
echo "faults: $passed passed, $failed failed, $skipped skipped in $((SECONDS - t_all)) s"
((failed == 0))
