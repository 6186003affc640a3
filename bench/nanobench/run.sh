#!/usr/bin/env bash
# Runs the nanobenchmarks under bt86, under QEMU (TCG) when installed, and
# natively where the host can do the operation, and prints one table in ns
# per operation (bench/nanobench/README.md).
#
#   bench/nanobench/run.sh [BUILD_DIR]        (default: build)
#   bench/nanobench/run.sh --check-qemu BUILD_DIR     ctest smoke tests: every
#   bench/nanobench/run.sh --check-native BUILD_DIR   row present, exit 77 = skip
#   bench/nanobench/run.sh --check-bt86 BUILD_DIR
set -u
ops=(syscall in callret pgfault divzero ptemod)

mode=table
case "${1:-}" in
  --check-qemu | --check-native | --check-bt86) mode=$1; shift ;;
esac
build=${1:-build}
elf=$build/bench/nanobench.elf
native=$build/bench/nanobench_native
bt86=$build/bt86
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

qemu=$(command -v qemu-system-i386 || true)
qemu_cmd=("$qemu" -accel tcg -kernel "$elf" -display none -serial stdio -monitor none
          -device isa-debug-exit,iobase=0xf4,iosize=0x04 -no-reboot -m 32)

# run NAME PREFIX EXPECTED_STATUS CMD...: output in $tmp/NAME.out, and a
# one-line verdict in $tmp/NAME.why when the run did not give every row.
run() {
  local name=$1 prefix=$2 want=$3
  shift 3
  timeout 120 "$@" </dev/null >"$tmp/$name.raw" 2>"$tmp/$name.err"
  local status=$?
  tr -d '\r' <"$tmp/$name.raw" >"$tmp/$name.out"
  local missing=()
  for op in "${ops[@]}"; do
    grep -Eq "^$prefix: $op ([0-9]+\.[0-9] ns|n/a)" "$tmp/$name.out" || missing+=("$op")
  done
  if [ "$status" -ne "$want" ] || [ ${#missing[@]} -ne 0 ]; then
    local first
    first=$( (grep -h -m1 -E 'FAIL|error|bt86:' "$tmp/$name.out" "$tmp/$name.err"; head -n1 "$tmp/$name.err") | head -n1)
    echo "exit status $status${missing:+, missing rows: ${missing[*]}}${first:+: $first}" >"$tmp/$name.why"
    return 1
  fi
  return 0
}

value() {  # value NAME PREFIX OP
  [ -f "$tmp/$1.why" ] && { echo fail; return; }
  [ -f "$tmp/$1.out" ] || { echo -; return; }
  sed -nE "s/^$2: $3 ([0-9]+\.[0-9]) ns.*/\1/p; s/^$2: $3 n\/a.*/n\/a/p" "$tmp/$1.out" | head -n1
}

case $mode in
  --check-qemu)
    if [ -z "$qemu" ]; then echo "SKIP: qemu-system-i386 not installed"; exit 77; fi
    if run qemu nanobench 1 "${qemu_cmd[@]}"; then cat "$tmp/qemu.out"; echo PASS; exit 0; fi
    cat "$tmp/qemu.out" "$tmp/qemu.err"; echo "FAIL: $(cat "$tmp/qemu.why")"; exit 1 ;;
  --check-bt86)
    if run bt86 nanobench 1 "$bt86" "$elf"; then cat "$tmp/bt86.out"; echo PASS; exit 0; fi
    cat "$tmp/bt86.out" "$tmp/bt86.err"; echo "FAIL: $(cat "$tmp/bt86.why")"; exit 1 ;;
  --check-native)
    if run native native 0 "$native"; then cat "$tmp/native.out"; echo PASS; exit 0; fi
    cat "$tmp/native.out" "$tmp/native.err"; echo "FAIL: $(cat "$tmp/native.why")"; exit 1 ;;
esac

[ -f "$elf" ] || { echo "run.sh: $elf not found: build first (cmake --build $build)" >&2; exit 2; }

notes=()
if [ -x "$bt86" ]; then
  run bt86 nanobench 1 "$bt86" "$elf" || notes+=("bt86: did not complete ($(cat "$tmp/bt86.why"))")
else
  notes+=("bt86: $bt86 not built")
fi
if [ -n "$qemu" ]; then
  run qemu nanobench 1 "${qemu_cmd[@]}" || notes+=("qemu: did not complete ($(cat "$tmp/qemu.why"))")
else
  notes+=("qemu: qemu-system-i386 not installed")
fi
if [ -x "$native" ]; then
  run native native 0 "$native" || notes+=("native: did not complete ($(cat "$tmp/native.why"))")
else
  notes+=("native: $native not built")
fi

ratio() {  # ratio A B -> A/B with one decimal, or -
  if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }'; else echo -; fi
}

echo "nanobenchmarks, ns per operation (Adams & Agesen, ASPLOS 2006)"
for name in bt86 qemu; do
  tsc=$(sed -nE 's/^nanobench: tsc (.*)$/\1/p' "$tmp/$name.out" 2>/dev/null | head -n1)
  [ -n "$tsc" ] && echo "  $name guest TSC calibrated at $tsc"
done
printf '%-8s %10s %10s %10s %12s %12s\n' op native bt86 qemu-tcg bt86/native qemu/native
for op in "${ops[@]}"; do
  n=$(value native native "$op"); b=$(value bt86 nanobench "$op"); q=$(value qemu nanobench "$op")
  printf '%-8s %10s %10s %10s %12s %12s\n' "$op" "${n:--}" "${b:--}" "${q:--}" "$(ratio "$b" "$n")" "$(ratio "$q" "$n")"
done
for note in "${notes[@]}"; do echo "note: $note"; done
exit 0
