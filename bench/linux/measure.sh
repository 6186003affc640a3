#!/usr/bin/env bash
# Measures the Linux guest (issue 5 item 6) on bt86, natively and on
# qemu-system-i386 (TCG), and prints one markdown table of medians:
#   boot      seconds from start to the guest's /init saying it is ready
#   sieve     CPU-bound static i386 program (samples/linux/bench/sieve.c)
#   firsttouch  first-touch page faults (samples/linux/bench/firsttouch.c),
#             us per page; below the table, the host's floor for one such
#             fault under shadow paging (bench/linux/fault_floor.c, native)
#   forkwait  40,000 fork + waitpid (Adams and Agesen), us per fork
#   getppid   system-call round trip, ns per call
#   memory    bt86's own memory beyond guest RAM (MiB), from --stats
# Usage: bench/linux/measure.sh [RUNS] (default 3). Needs build/bt86 and the
# guest image (scripts/run.sh makes both); qemu rows need qemu-system-i386.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-3}
guest=${BT86_GUEST:-$root/build/guest}
bt86=${BT86:-$root/build/bt86}
mem=256
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$root/samples/linux/make-image.sh" "$guest" >/dev/null || { echo "measure: cannot build the guest image" >&2; exit 1; }

# One guest run: prints the console log with each line stamped by the
# seconds since start (bash's EPOCHREALTIME). $1: log file; rest: command.
stamped() {
  local log=$1; shift
  local t0=$EPOCHREALTIME
  timeout 600 "$@" 2>"$log.err" </dev/null | while IFS= read -r line; do
    printf '%.3f %s\n' "$(echo "$EPOCHREALTIME - $t0" | bc)" "$line"
  done >"$log"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else print a[int((NR + 1) / 2)]}'; }
field() {  # $1 log, $2 regex before the number, prints the number after it
  grep -a -o "$2[0-9.]*" "$1" | head -n 1 | grep -o '[0-9.]*$'
}

declare -A result
run_guest() {  # $1 name, $2 run number, rest: the command for one boot with bt86.script=bench
  local name=$1 i=$2; shift 2
  local log="$work/$name.$i"
  stamped "$log" "$@"
  if ! grep -q bt86-script-done "$log"; then
    echo "measure: $name run $i did not finish; last lines:" >&2
    tail -n 5 "$log" >&2; tail -n 3 "$log.err" >&2
    return
  fi
  awk '/bt86-guest-ready/ {print $1; exit}' "$log" >>"$work/$name.boot"
  grep -a -o 'beyond guest RAM: [0-9.]*' "$log.err" | grep -o '[0-9.]*$' >>"$work/$name.memory"
  collect "$name" "$log"
}
collect() {  # $1 name, $2 the output of the benchmark programs (guest console or native)
  field "$2" 'sieve: [0-9]* primes below [0-9]*, [0-9]* rounds, ' >>"$work/$1.sieve"
  grep -a -o 'firsttouch: [0-9.]*' "$2" | grep -o '[0-9.]*$' >>"$work/$1.firsttouch"
  grep -a -o '[0-9.]* us per fork' "$2" | grep -o '^[0-9.]*' >>"$work/$1.forkwait"
  grep -a -o '[0-9.]* ns per call' "$2" | grep -o '^[0-9.]*' >>"$work/$1.getppid"
}
run_native() {  # $1 run number: the same static binaries the initramfs holds, in its order
  local log="$work/native.$1"
  for p in sieve firsttouch forkwait getppid; do "$work/$p"; done >"$log"
  collect native "$log"
}

for p in sieve firsttouch forkwait getppid; do gcc -m32 -static -O2 -o "$work/$p" "$root/samples/linux/bench/$p.c"; done
append="console=ttyS0 bt86.script=bench"
have_qemu=0
if command -v qemu-system-i386 >/dev/null; then have_qemu=1; else echo "measure: qemu-system-i386 not installed: no qemu row" >&2; fi
# Runs interleave (native, bt86, qemu; then again) so that a host that
# drifts slower or faster over the minutes this takes moves every column
# alike: the same sieve binary varies by 5% natively within minutes here.
for i in $(seq "$runs"); do
  run_native "$i"
  run_guest bt86 "$i" "$bt86" --memory "$mem" --stats --initrd "$guest/initrd.cpio.gz" --append "$append" "$guest/vmlinuz"
  [ "$have_qemu" = 1 ] && run_guest qemu "$i" qemu-system-i386 -m "$mem" -nographic -monitor none -serial stdio -no-reboot \
    -kernel "$guest/vmlinuz" -initrd "$guest/initrd.cpio.gz" -append "$append"
done
for name in native bt86 qemu; do
  for m in boot sieve firsttouch forkwait getppid memory; do
    result[$name.$m]=$( (cat "$work/$name.$m" 2>/dev/null || true) | median)
  done
done
result[native.boot]="n/a"; result[native.memory]="n/a"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || a == "" || b == "" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
echo "Linux guest, $(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, medians of $runs runs"
echo
echo "| row | native | bt86 | qemu TCG | bt86/native | qemu/native |"
echo "|---|---|---|---|---|---|"
for m in boot sieve firsttouch forkwait getppid memory; do
  case $m in boot) label="boot to /init (s)";; sieve) label="sieve (s)";; firsttouch) label="first-touch fault (us/page)";; forkwait) label="forkwait (us/fork)";;
    getppid) label="getppid (ns/call)";; memory) label="bt86 memory beyond guest RAM (MiB)";; esac
  echo "| $label | ${result[native.$m]} | ${result[bt86.$m]} | ${result[qemu.$m]:-n/a} | $(ratio "${result[bt86.$m]}" "${result[native.$m]}") | $(ratio "${result[qemu.$m]:-n/a}" "${result[native.$m]}") |"
done
echo
echo "Every run, in the order they ran (the medians above come from these):"
for name in native bt86 qemu; do
  for m in sieve firsttouch forkwait getppid; do
    [ -s "$work/$name.$m" ] && echo "- $name $m: $(tr '\n' ' ' <"$work/$name.$m" | sed 's/ $//')"
  done
done
gcc -O2 -o "$work/fault_floor" "$root/bench/linux/fault_floor.c" && {
  echo
  echo "Host floor for one first-touch fault under shadow paging, measured natively: $("$work/fault_floor" | sed 's/^fault floor: //')"
}
