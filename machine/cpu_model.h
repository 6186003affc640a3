// The processor bt86 shows the guest (DESIGN.md §2): a family-6 "686" with
// FPU, PSE, TSC, MSR, CX8, PGE, CMOV, MMX, FXSR, SSE and SSE2, and without
// VME, DE, PAE, APIC, SEP, MCE/MCA, MTRR, PAT or long mode. CPUID answers the
// same in kernel and user mode (user-mode cpuid traps to the monitor).
// MSRs: the few a 686 kernel touches; every other index raises #GP(0).
#pragma once

#include <cstdint>
#include <optional>

#include "machine/vcpu_state.h"

namespace bt86::machine {

struct CpuidLeaf {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  bool operator==(const CpuidLeaf&) const = default;
};

// CPUID.01H:EDX feature bits (SDM vol. 2A, CPUID, table 3-11).
namespace cpuid_edx1 {
inline constexpr uint32_t FPU = 1u << 0, VME = 1u << 1, DE = 1u << 2, PSE = 1u << 3, TSC = 1u << 4,
                          MSR = 1u << 5, PAE = 1u << 6, MCE = 1u << 7, CX8 = 1u << 8, APIC = 1u << 9,
                          SEP = 1u << 11, MTRR = 1u << 12, PGE = 1u << 13, MCA = 1u << 14,
                          CMOV = 1u << 15, PAT = 1u << 16, CLFSH = 1u << 19, MMX = 1u << 23,
                          FXSR = 1u << 24, SSE = 1u << 25, SSE2 = 1u << 26;
}
inline constexpr uint32_t kCpuidFeaturesEdx =
    cpuid_edx1::FPU | cpuid_edx1::PSE | cpuid_edx1::TSC | cpuid_edx1::MSR | cpuid_edx1::CX8 |
    cpuid_edx1::PGE | cpuid_edx1::CMOV | cpuid_edx1::MMX | cpuid_edx1::FXSR | cpuid_edx1::SSE |
    cpuid_edx1::SSE2;
// Family 6, model 15, stepping 1 (CPUID.01H:EAX).
inline constexpr uint32_t kCpuidSignature = (6u << 8) | (0xfu << 4) | 1u;
inline constexpr char kBrandString[] = "bt86 virtual 686 CPU";

// The CR4 bits this CPU accepts: those its CPUID advertises (SDM vol. 3, 2.5);
// VME, PVI, DE, PAE, MCE make MOV to CR4 raise #GP(0).
inline constexpr uint32_t kCr4Supported =
    cr4::TSD | cr4::PSE | cr4::PGE | cr4::PCE | cr4::OSFXSR | cr4::OSXMMEXCPT;

CpuidLeaf cpuid(uint32_t leaf, uint32_t subleaf);

// MSR indices the model implements (SDM vol. 4, table 2-2).
namespace msr {
inline constexpr uint32_t kTsc = 0x10, kApicBase = 0x1b, kUcodeRev = 0x8b, kSysenterCs = 0x174,
                          kSysenterEsp = 0x175, kSysenterEip = 0x176, kMiscEnable = 0x1a0;
}

// The guest TSC: host TSC + SystemRegs::tsc_offset.
inline uint64_t guest_tsc(const VcpuState& state, uint64_t host_tsc) {
  return host_tsc + uint64_t(state.sys.tsc_offset);
}
// RDMSR: the value, or nullopt for #GP(0).
std::optional<uint64_t> read_msr(const VcpuState& state, uint32_t index, uint64_t host_tsc);
// WRMSR: false for #GP(0) (unknown MSR or reserved bits set); nothing changes then.
bool write_msr(VcpuState& state, uint32_t index, uint64_t value, uint64_t host_tsc);

}  // namespace bt86::machine
