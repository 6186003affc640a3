// The virtual CPUID leaves and virtual TSC bt86 shows the guest.
#include "monitor/virtual_cpu.h"

#include <ctime>

namespace bt86::monitor {
namespace {

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// CPUID.01H:EDX feature bits (Intel SDM vol. 2A, CPUID, table 3-11).
namespace edx1 {
constexpr uint32_t FPU = 1u << 0, PSE = 1u << 3, TSC = 1u << 4, CX8 = 1u << 8, PGE = 1u << 13,
                   CMOV = 1u << 15, MMX = 1u << 23, FXSR = 1u << 24, SSE = 1u << 25, SSE2 = 1u << 26;
}

constexpr uint32_t chars(const char (&s)[5]) {
  return uint32_t(uint8_t(s[0])) | uint32_t(uint8_t(s[1])) << 8 | uint32_t(uint8_t(s[2])) << 16 |
         uint32_t(uint8_t(s[3])) << 24;
}

}  // namespace

VirtualCpu::VirtualCpu() : m_start_ns(monotonic_ns()) {}

CpuidResult VirtualCpu::cpuid(uint32_t leaf, uint32_t /*subleaf*/) const {
  CpuidResult r;
  switch (leaf) {
    case 0:
      // Max basic leaf 1; "GenuineIntel" is spread over EBX, EDX, ECX.
      r.eax = 1;
      r.ebx = chars("Genu");
      r.edx = chars("ineI");
      r.ecx = chars("ntel");
      break;
    case 1:
      // Family 6, model 15 (0xF), stepping 1: a Core 2 era part.
      r.eax = (6u << 8) | (0xfu << 4) | 1u;
      r.edx = edx1::FPU | edx1::PSE | edx1::TSC | edx1::CX8 | edx1::PGE | edx1::CMOV | edx1::MMX |
              edx1::FXSR | edx1::SSE | edx1::SSE2;
      break;
    default:
      break;  // everything else, including 0x80000000 and up, reads as zeros
  }
  return r;
}

uint64_t VirtualCpu::tsc() const { return monotonic_ns() - m_start_ns; }

}  // namespace bt86::monitor
