#!/usr/bin/env bash
# Boots Debian's i386 kernel with the busybox initramfs under bt86, types
# commands into the serial console through a pipe (bt86's non-interactive
# console mode) and checks their output (issue 5 item 5).
# Usage: boot_test.sh BT86 GUEST_DIR [extra bt86 options...]
set -uo pipefail
bt86=$1
guest=$2
shift 2
extra=("$@")
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$guest"
if ! "$root/samples/linux/make-image.sh" "$guest" >/dev/null 2>"$guest/make.log"; then
  echo "SKIP: cannot build the guest image from Debian packages:"; tail -n 5 "$guest/make.log"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"; kill $pid 2>/dev/null' EXIT
# Boots the guest with MEMORY MiB, its console reading fifo IN and writing
# OUT; sets pid. Usage: boot MEMORY IN OUT TIMEOUT
boot() {
  mkfifo "$2"
  timeout "$4" "$bt86" "${extra[@]}" --stats --memory "$1" --initrd "$guest/initrd.cpio.gz" --append "console=ttyS0 quiet" \
    "$guest/vmlinuz" <"$2" >"$3" 2>&1 &
  pid=$!
}
# Waits (up to 2 min) for the shell's banner in OUT, or for bt86 to end.
wait_for_shell() {
  for _ in $(seq 1 600); do grep -a -q "Enter 'help'" "$1" && break; kill -0 $pid 2>/dev/null || break; sleep 0.2; done
}
out=$work/out
session_start=$SECONDS
boot 256 "$work/in" "$out" 900
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
wait_for_shell "$out"
sleep 1
run "ls /"
run "cat /proc/cpuinfo | grep -m1 'model name'"
run "/bench/cpuid"
run "dmesg | grep -m1 'Linux version'"
run "ps | grep -c -w init"
run "top -n1 | grep -m1 -c Mem"
run "mount | grep -c proc"
run "echo abc def ghi | tr ' ' '\n' | sort -r | head -n1"
run "n=0; for i in \$(seq 1 1000); do /bin/true && n=\$((n+1)); done; echo forks=\$n"
run "dd if=/dev/zero bs=64k count=1024 2>/dev/null | wc -c"
# A static program whose main shares its page with glibc's cpuid code: the
# page runs translated, and returns to it from the kernel go straight to the
# user translator (--stats: "known beforehand").
run "/bench/sieve 1"
# Ctrl-C: a byte 0x03 on the console is the guest's; its tty turns it into
# SIGINT for the foreground sleep, and the shell takes the next command long
# before the sleep would have ended.
printf 'sleep 60; echo sleep-not-interrupted\n' >&3
sleep 2
printf '\003' >&3
ctrl_c_start=$SECONDS
run "echo after-ctrl-c"
ctrl_c_secs=$((SECONDS - ctrl_c_start))
printf 'poweroff -f\n' >&3
exec 3>&-
wait $pid
status=$?
session_secs=$((SECONDS - session_start + 1))
fail=0
expect() {
  if grep -a -q -- "$1" "$out"; then echo "ok: $2"; else echo "FAIL: $2 (no '$1' in the output)"; fail=1; fi
}
expect "bt86-guest-ready" "the kernel booted and /init ran"
expect "bench.*dev.*init" "ls /"
expect "model name.*bt86 virtual 686 CPU" "/proc/cpuinfo shows the virtual CPU"
expect 'cpuid: brand "bt86 virtual 686 CPU"' "user-mode cpuid shows the virtual CPU too"
expect "cpuid: vendor GenuineIntel" "user-mode cpuid: the virtual vendor"
expect "sep=0 vme=0 pae=0" "user-mode cpuid: no SEP, VME or PAE"
expect "Linux version 6.1" "dmesg"
expect "^ghi" "a pipeline"
expect "forks=1000" "a shell loop forking 1,000 processes"
expect "^67108864" "dd of 64 MiB through a pipe"
expect "^after-ctrl-c" "the shell runs the command typed after Ctrl-C"
if grep -a -q "^sleep-not-interrupted" "$out" || [ "$ctrl_c_secs" -ge 50 ]; then
  echo "FAIL: Ctrl-C did not interrupt sleep 60 (${ctrl_c_secs} s)"; fail=1
else
  echo "ok: Ctrl-C interrupted the foreground process (${ctrl_c_secs} s)"
fi
expect "^sieve: 2063689 primes" "a CPU-bound static program"
expect "pages not executable by the host: refused [0-9]*, known beforehand [1-9]" \
  "returns to a page the host must not execute go straight to the user translator"
expect "^@@done 12@@" "every command finished"
# The host tick is armed one shot at the next device deadline (the guest's
# 250 Hz timer, console input every 10 ms at most), not periodically nor at
# every pass of the run loop: fewer than a periodic 1 kHz tick would make.
ticks=$(grep -a -o "host ticks armed [0-9]*" "$out" | grep -o "[0-9]*$")
if [ -z "$ticks" ]; then
  echo "FAIL: no 'host ticks armed' in --stats"; fail=1
elif [ "$ticks" -gt $((1000 * session_secs)) ]; then
  echo "FAIL: $ticks host ticks armed in ${session_secs} s (want fewer than the 1,000 per second of a periodic 1 kHz tick)"; fail=1
else
  echo "ok: $ticks host ticks armed in ${session_secs} s"
fi
# Each guest process has its own TLS base in GS, which glibc reaches through
# instructions whose translation folds it: switching processes drops those
# blocks, not the user translator's whole cache (it did once per process).
uflush=$(grep -a -o "user   TC flushes *[0-9]* (full) + [0-9]*" "$out" | grep -o "[0-9]*$")
if [ -z "$uflush" ]; then
  echo "FAIL: no user translator 'TC flushes' line in --stats"; fail=1
elif [ "$uflush" -ge 100 ]; then
  echo "FAIL: the user translator was flushed $uflush times while 1,000 processes ran (want fewer than 100)"; fail=1
else
  echo "ok: the user translator was flushed $uflush times while 1,000 processes ran"
fi
if [ "$status" -ne 0 ]; then echo "FAIL: bt86 exit status $status after poweroff -f (want 0)"; fail=1; fi
if [ "$fail" -ne 0 ]; then echo "--- guest output ---"; tail -n 60 "$out"; fi

# reboot -f: the kernel resets the machine through the i8042; bt86 ends with 0.
out2=$work/out2
boot 64 "$work/in2" "$out2" 300
exec 4>"$work/in2"
wait_for_shell "$out2"
printf 'reboot -f\n' >&4
exec 4>&-
wait $pid
status=$?
if [ "$status" -eq 0 ]; then
  echo "ok: reboot -f ends bt86 with status 0"
else
  echo "FAIL: bt86 exit status $status after reboot -f (want 0)"; tail -n 20 "$out2"; fail=1
fi
exit $fail
