#!/usr/bin/env bash
# A save that cannot be written: the model directory is a 256 KiB tmpfs in the
# server's own mount namespace (unshare -m; needs root or CAP_SYS_ADMIN),
#   1. filled to the last byte (ENOSPC), then
#   2. made read-only with a read-only bind mount over it (EROFS).
# Each time: the Train stream ends with an error naming the problem, the
# previous model file is byte-identical (sha256), no temp file remains, and
# the server keeps serving (Predict answers from the last good epoch). Once
# the space is back, training works again.
# Usage: disk_full.sh BUILD_DIR
source "$(dirname "$0")/lib.sh" "$@"
if ! unshare -m sh -c "mount -t tmpfs -o size=64k tmpfs '$WORK'" 2>/dev/null; then
  echo "SKIP disk_full: cannot mount a tmpfs in a private mount namespace (not root?)" >&2
  exit 77
fi
make_csv "$WORK/train.csv" 200 20 4 5
SERVER_WRAP="mount -t tmpfs -o size=256k,mode=0700 tmpfs '$MODEL_DIR'"
start_server
# The model directory as the server sees it.
SEEN=/proc/$SERVER_PID/root$MODEL_DIR
cli upload --id t --csv "$WORK/train.csv" --label-column -1 --classes 4 >/dev/null
# 20*200+200 + 200*4+4 = 5,004 parameters: a file of about 40 KB.
cli models create --id m --layers 20,200,4 --seed 9 >/dev/null
cli train m --dataset t --epochs 2 --batch 10 --eta 0.5 >/dev/null
before=$(sha256sum <"$SEEN/m.model")

check_failed_save() {  # NAME PATTERN: the last train failed as expected
  local name=$1 pattern=$2
  local rc=0
  timeout 30 "$CLI_BIN" train m --dataset t --epochs 3 --batch 10 --eta 0.5 \
    >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  cat "$WORK/$name.err" >&2
  ((rc != 0)) || fail "$name: train succeeded"
  grep -Eq -- "$pattern" "$WORK/$name.err" || fail "$name: error does not match /$pattern/"
  [[ $(last_acked "$WORK/$name.out") == 0 ]] || fail "$name: an epoch was acknowledged"
  [[ $(sha256sum <"$SEEN/m.model") == "$before" ]] || fail "$name: model file changed"
  [[ -z $(temp_files "$SEEN") ]] || fail "$name: temp files left: $(temp_files "$SEEN")"
  local j
  j=$(cli --json models get m) || fail "$name: get model"
  [[ $(jq .epochs_trained <<<"$j") == 2 && $(jq .training <<<"$j") == false ]] ||
    fail "$name: model state after the failed save: $j"
  [[ $(cli --json predict m --csv "$WORK/train.csv" --label-column -1 | jq .epochs_trained) == 2 ]] ||
    fail "$name: predict after the failed save"
  echo "$name: OK (file unchanged, no temp file, Predict answers at epoch 2)" >&2
}

# 1. Disk full: fill the tmpfs up (dd stops at ENOSPC).
dd if=/dev/zero of="$SEEN/filler" bs=4k 2>/dev/null || true
check_failed_save enospc "RESOURCE_EXHAUSTED.*No space left on device"

# 2. Read-only model directory.
rm -f "$SEEN/filler"
# (A plain remount,ro is refused while the server holds its LOCK file open
# for writing; a read-only bind mount over the folder is not.)
nsenter -t "$SERVER_PID" -m sh -c "mount --bind '$MODEL_DIR' '$MODEL_DIR' &&
  mount -o remount,bind,ro '$MODEL_DIR'"
check_failed_save erofs "PERMISSION_DENIED.*Read-only file system"

# 3. Writable again: training resumes from epoch 2.
nsenter -t "$SERVER_PID" -m umount -l "$MODEL_DIR"
cli train m --dataset t --epochs 1 --batch 10 --eta 0.5 >/dev/null || fail "train after recovery"
[[ $(cli --json models get m | jq .epochs_trained) == 3 ]] || fail "epochs after recovery"
[[ $(sha256sum <"$SEEN/m.model") != "$before" ]] || fail "model file not rewritten after recovery"

stop_server
[[ $SERVER_EXIT == 0 ]] || fail "server exited $SERVER_EXIT on SIGTERM"
echo "PASS disk_full (mechanism: tmpfs size=256k in unshare -m; ENOSPC; read-only bind mount for EROFS)" >&2
