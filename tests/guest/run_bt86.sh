#!/bin/sh
# Runs one test kernel under bt86 and checks its verdict: exit status 1
# (debug-exit with value 0) and a "PASS:" line on COM1 (verdict.sh).
# Usage: run_bt86.sh BT86 KERNEL [extra bt86 options...]
bt86=$1
kernel=$2
shift 2
. "$(dirname "$0")/verdict.sh"
check_verdict bt86 "$bt86" "$@" "$kernel"
