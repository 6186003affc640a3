#!/bin/sh
# Runs one test kernel under bt86 and checks its verdict: exit status 1
# (debug-exit with value 0) and a "PASS:" line on COM1.
# Usage: run_bt86.sh BT86 KERNEL [extra bt86 options...]
bt86=$1
kernel=$2
shift 2
out=$(timeout 20 "$bt86" "$@" "$kernel" </dev/null 2>&1)
status=$?
printf '%s\n' "$out"
if [ "$status" -ne 1 ]; then
  echo "bt86 exit status $status, expected 1 (debug-exit with value 0)"
  exit 1
fi
printf '%s\n' "$out" | grep -q "PASS: " || { echo "no PASS line"; exit 1; }
exit 0
