#!/usr/bin/env bash
# Boots Debian's i386 kernel with the busybox initramfs under bt86, types
# commands into the serial console through a pipe (bt86's non-interactive
# console mode) and checks their output (issue 5 item 5).
# Usage: boot_test.sh BT86 GUEST_DIR
set -uo pipefail
bt86=$1
guest=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$guest"
if ! "$root/samples/linux/make-image.sh" "$guest" >/dev/null 2>"$guest/make.log"; then
  echo "SKIP: cannot build the guest image from Debian packages:"; tail -n 5 "$guest/make.log"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"; kill $pid 2>/dev/null' EXIT
out=$work/out
mkfifo "$work/in"
timeout 900 "$bt86" --memory 256 --initrd "$guest/initrd.cpio.gz" --append "console=ttyS0 quiet" \
  "$guest/vmlinuz" <"$work/in" >"$out" 2>&1 &
pid=$!
exec 3>"$work/in"
# Types one command once the previous one has finished (its end marker is
# in the output), so nothing is typed while the guest is not reading.
n=0
run() {
  n=$((n + 1))
  printf '%s; echo @@done %d@@\n' "$1" "$n" >&3
  for _ in $(seq 1 1800); do
    grep -a -q "^@@done $n@@" "$out" && return 0
    kill -0 $pid 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
for _ in $(seq 1 600); do grep -a -q "Enter 'help'" "$out" && break; kill -0 $pid 2>/dev/null || break; sleep 0.2; done
sleep 1
run "ls /"
run "cat /proc/cpuinfo | grep -m1 'model name'"
run "dmesg | grep -m1 'Linux version'"
run "ps | grep -c -w init"
run "top -n1 | grep -m1 -c Mem"
run "mount | grep -c proc"
run "echo abc def ghi | tr ' ' '\n' | sort -r | head -n1"
run "n=0; for i in \$(seq 1 20); do /bin/true && n=\$((n+1)); done; echo forks=\$n"
run "dd if=/dev/zero bs=64k count=64 2>/dev/null | wc -c"
printf 'poweroff -f\n' >&3
exec 3>&-
wait $pid
status=$?
fail=0
expect() {
  if grep -a -q -- "$1" "$out"; then echo "ok: $2"; else echo "FAIL: $2 (no '$1' in the output)"; fail=1; fi
}
expect "bt86-guest-ready" "the kernel booted and /init ran"
expect "bench.*dev.*init" "ls /"
expect "model name.*bt86 virtual 686 CPU" "/proc/cpuinfo shows the virtual CPU"
expect "Linux version 6.1" "dmesg"
expect "^ghi" "a pipeline"
expect "forks=20" "a shell loop forking 20 processes"
expect "^4194304" "dd of 4 MiB through a pipe"
expect "^@@done 9@@" "every command finished"
if [ "$status" -ne 0 ]; then echo "FAIL: bt86 exit status $status after poweroff -f (want 0)"; fail=1; fi
if [ "$fail" -ne 0 ]; then echo "--- guest output ---"; tail -n 60 "$out"; fi
exit $fail
