// CPUID leaves and MSRs of the virtual 686; see cpu_model.h.
#include "machine/cpu_model.h"

#include <cstring>

namespace bt86::machine {
namespace {

constexpr uint32_t chars(const char* s) {
  return uint32_t(uint8_t(s[0])) | uint32_t(uint8_t(s[1])) << 8 | uint32_t(uint8_t(s[2])) << 16 |
         uint32_t(uint8_t(s[3])) << 24;
}

constexpr uint32_t kMaxBasicLeaf = 2;
constexpr uint32_t kMaxExtendedLeaf = 0x80000004;

CpuidLeaf basic_leaf(uint32_t leaf) {
  CpuidLeaf r;
  switch (leaf) {
    case 0:
      // "GenuineIntel" is spread over EBX, EDX, ECX. Linux takes any vendor,
      // but only this one gets the family-6 Intel setup it was tested with.
      r.eax = kMaxBasicLeaf;
      r.ebx = chars("Genu");
      r.edx = chars("ineI");
      r.ecx = chars("ntel");
      break;
    case 1:
      // EBX: brand index 0, no CLFLUSH size, one logical CPU, APIC ID 0.
      r.eax = kCpuidSignature;
      r.edx = kCpuidFeaturesEdx;
      break;
    case 2:
      // One iteration (AL = 1) and only null descriptors: no cache
      // information, which Linux accepts (SDM vol. 2A, CPUID leaf 2).
      r.eax = 1;
      break;
  }
  return r;
}

}  // namespace

CpuidLeaf cpuid(uint32_t leaf, uint32_t /*subleaf*/) {
  if (leaf <= kMaxBasicLeaf) return basic_leaf(leaf);
  if (leaf >= 0x80000000u && leaf <= kMaxExtendedLeaf) {
    CpuidLeaf r;
    if (leaf == 0x80000000u) {
      r.eax = kMaxExtendedLeaf;
    } else if (leaf >= 0x80000002u) {
      // The brand string, 16 bytes per leaf, NUL-padded to 48 bytes.
      char brand[48] = {};
      std::memcpy(brand, kBrandString, sizeof kBrandString);
      const char* p = brand + 16 * (leaf - 0x80000002u);
      r.eax = chars(p);
      r.ebx = chars(p + 4);
      r.ecx = chars(p + 8);
      r.edx = chars(p + 12);
    }
    // 0x80000001 is all zeros: no NX, no long mode.
    return r;
  }
  // Intel answers any leaf above the maximum with the highest basic leaf.
  return basic_leaf(kMaxBasicLeaf);
}

std::optional<uint64_t> read_msr(const VcpuState& state, uint32_t index, uint64_t host_tsc) {
  switch (index) {
    case msr::kTsc: return guest_tsc(state, host_tsc);
    case msr::kApicBase: return state.sys.apic_base;
    // Linux reads the microcode revision of any family-6 Intel CPU with an
    // unchecked RDMSR; "no update loaded" is 0.
    case msr::kUcodeRev: return 0;
    // Fast strings enabled (bit 0), nothing else; read by Linux's Intel setup.
    case msr::kMiscEnable: return 1;
    case msr::kSysenterCs: return state.sys.sysenter_cs;
    case msr::kSysenterEsp: return state.sys.sysenter_esp;
    case msr::kSysenterEip: return state.sys.sysenter_eip;
    default: return std::nullopt;
  }
}

bool write_msr(VcpuState& state, uint32_t index, uint64_t value, uint64_t host_tsc) {
  switch (index) {
    case msr::kTsc:
      // Writing the TSC moves the offset, so the guest TSC goes on ticking from the value.
      state.sys.tsc_offset = int64_t(value - host_tsc);
      return true;
    case msr::kApicBase:
      // BSP (8), global enable (11), base (12..31); no x2APIC on this CPU.
      if (value & ~uint64_t(0xfffff900u)) return false;
      state.sys.apic_base = value;
      return true;
    case msr::kUcodeRev: return true;  // writing 0 before CPUID(1) is the read protocol
    case msr::kMiscEnable: return value == 1;
    case msr::kSysenterCs: state.sys.sysenter_cs = uint32_t(value); return true;
    case msr::kSysenterEsp: state.sys.sysenter_esp = uint32_t(value); return true;
    case msr::kSysenterEip: state.sys.sysenter_eip = uint32_t(value); return true;
    default: return false;
  }
}

}  // namespace bt86::machine
