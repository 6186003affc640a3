// VirtualCpu: what the guest is told about "its" processor when cpuid or
// rdtsc exits (DESIGN.md §2): a plain family-6 Intel CPU without SEP (a
// sysenter from compatibility mode would lose EIP in the host kernel), VME,
// PAE or an APIC, and a TSC that ticks at 1 GHz from bt86's start.
#pragma once

#include <cstdint>

namespace bt86::monitor {

struct CpuidResult {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

class VirtualCpu {
 public:
  VirtualCpu();
  CpuidResult cpuid(uint32_t leaf, uint32_t subleaf) const;
  // Nanoseconds of host CLOCK_MONOTONIC since construction: a 1 GHz TSC.
  uint64_t tsc() const;

 private:
  uint64_t m_start_ns;
};

}  // namespace bt86::monitor
