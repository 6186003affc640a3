// The virtual CPUID leaves and virtual TSC bt86 shows a user-program guest.
// The leaves are the machine's 686 model (machine/cpu_model.h), so the demo
// personality and the full machine describe the same CPU.
#include "monitor/virtual_cpu.h"

#include <ctime>

#include "machine/cpu_model.h"

namespace bt86::monitor {
namespace {

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

}  // namespace

VirtualCpu::VirtualCpu() : m_start_ns(monotonic_ns()) {}

CpuidResult VirtualCpu::cpuid(uint32_t leaf, uint32_t subleaf) const {
  const machine::CpuidLeaf l = machine::cpuid(leaf, subleaf);
  return CpuidResult{l.eax, l.ebx, l.ecx, l.edx};
}

uint64_t VirtualCpu::tsc() const { return monotonic_ns() - m_start_ns; }

}  // namespace bt86::monitor
