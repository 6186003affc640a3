# Sourced by run_bt86.sh and run_qemu.sh.
# check_verdict WHO COMMAND...: runs COMMAND (20 s limit, no stdin), prints
# its output, and succeeds only on exit status 1 (the kernel wrote 0 to the
# debug-exit port) with a "PASS:" line on COM1.
check_verdict() {
  who=$1
  shift
  out=$(timeout 20 "$@" </dev/null 2>&1)
  status=$?
  printf '%s\n' "$out"
  if [ "$status" -ne 1 ]; then
    echo "$who exit status $status, expected 1 (debug-exit with value 0)"
    return 1
  fi
  printf '%s\n' "$out" | grep -q "PASS: " || { echo "no PASS line"; return 1; }
}
