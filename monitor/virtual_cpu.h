// VirtualCpu: what a user-program guest is told about "its" processor when
// cpuid or rdtsc exits (DESIGN.md §2): the machine's 686 model
// (machine::cpuid: family-6 Intel without SEP, VME, PAE or an APIC; the same
// leaves a machine guest sees), and a TSC that ticks at 1 GHz from bt86's
// start.
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
