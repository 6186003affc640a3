#!/bin/sh
# Runs one test kernel under qemu-system-i386 and checks its verdict: the
# kernel writes 0 to the debug-exit port (qemu exits with status 1) after a
# "PASS:" line on COM1 (verdict.sh). Usage: run_qemu.sh KERNEL [extra qemu options...]
# Exit 77 (ctest SKIP_RETURN_CODE) when qemu is not installed.
kernel=$1
shift
if ! command -v qemu-system-i386 >/dev/null 2>&1; then
  echo "SKIP: qemu-system-i386 is not installed, cannot run $kernel under qemu"
  exit 77
fi
. "$(dirname "$0")/verdict.sh"
# The CPU model matches bt86's virtual CPU (machine/cpu_model.cpp): a
# family-6 part with SSE2 but without SEP, VME, PAE, APIC.
check_verdict qemu qemu-system-i386 -kernel "$kernel" -nographic -serial stdio -monitor none \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 -no-reboot -m 64 -net none \
  -cpu pentium3,+sse2,-sep,-vme,-pae,-apic "$@"
