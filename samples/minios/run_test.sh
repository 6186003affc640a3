#!/usr/bin/env bash
# Runs minios under QEMU or bt86 and checks its serial output against the
# golden file. Process lines ("[pid name] ...") may interleave differently
# from run to run, so they are compared per process: stable-sorted by their
# prefix, each process's own lines stay in order. Kernel lines are compared
# as they come, except the timer line, whose counts vary; it must show
# timer ticks that interrupted user mode and at least one preemption.
#
#   run_test.sh qemu|bt86 RUNNER MINIOS_ELF EXPECTED
#   RUNNER: path of qemu-system-i386 or bt86 ("" = find qemu-system-i386 in PATH)
#   MINIOS_UPDATE_GOLDEN=1 rewrites EXPECTED from this run instead of checking.
set -u
mode=$1 runner=$2 elf=$3 expected=$4

case $mode in
  qemu)
    if [ -z "$runner" ]; then runner=$(command -v qemu-system-i386 || true); fi
    if [ -z "$runner" ] || [ ! -x "$runner" ]; then
      echo "SKIP: qemu-system-i386 not found${runner:+ at $runner} (apt-get install qemu-system-x86)"
      exit 77
    fi
    # TCG explicitly: the point is a reference that does not depend on KVM.
    cmd=("$runner" -accel tcg -kernel "$elf" -display none -serial stdio -monitor none
         -device isa-debug-exit,iobase=0xf4,iosize=0x04 -no-reboot -m 32) ;;
  bt86)
    cmd=("$runner" "$elf") ;;
  *)
    echo "usage: $0 qemu|bt86 RUNNER MINIOS_ELF EXPECTED" >&2
    exit 2 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
timeout 60 "${cmd[@]}" </dev/null >"$tmp/raw" 2>"$tmp/stderr"
status=$?
tr -d '\r' <"$tmp/raw" >"$tmp/out"

fail() {
  echo "FAIL: $*"
  echo "--- command: ${cmd[*]}"
  echo "--- serial output:"
  cat "$tmp/out"
  echo "--- stderr:"
  cat "$tmp/stderr"
  exit 1
}

# Kernel lines in order (minus the timer line), then each process's lines.
{
  grep -v '^\[' "$tmp/out" | grep -v '^minios: timer:'
  grep '^\[' "$tmp/out" | LC_ALL=C sort -s -t ']' -k1,1
} >"$tmp/normalized"

if [ "${MINIOS_UPDATE_GOLDEN:-0}" = 1 ]; then
  cp "$tmp/normalized" "$expected"
  echo "wrote $expected (exit status was $status)"
  exit 0
fi

[ "$status" -eq 124 ] && fail "timed out after 60 s"
[ "$status" -eq 1 ] || fail "exit status $status, expected 1 (debug-exit value 0)"
diff -u "$expected" "$tmp/normalized" >"$tmp/diff" || { cat "$tmp/diff"; fail "output differs from $expected"; }

timer=$(grep '^minios: timer:' "$tmp/out") || fail "no timer line"
# minios: timer: T ticks, U in user mode, I idle, P preemptions, S switches, peak F frames
read -r ticks user preempt <<<"$(sed -E 's/^minios: timer: ([0-9]+) ticks, ([0-9]+) in user mode, [0-9]+ idle, ([0-9]+) preemptions.*/\1 \2 \3/' <<<"$timer")"
[[ "$user" =~ ^[0-9]+$ ]] || fail "cannot parse: $timer"
[ "$user" -gt 0 ] || fail "no timer interrupt hit user mode: $timer"
[ "$preempt" -gt 0 ] || fail "no process was preempted: $timer"
echo "PASS ($mode): golden output matches; $timer"
