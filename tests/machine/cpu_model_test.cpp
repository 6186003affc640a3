// CPUID values and MSRs of the virtual 686 (SDM vol. 2A CPUID, vol. 4).
#include "machine/cpu_model.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace bt86::machine {
namespace {

std::string regs_string(std::initializer_list<uint32_t> regs) {
  std::string s;
  for (uint32_t r : regs) s.append(reinterpret_cast<const char*>(&r), 4);
  return s;
}

TEST(CpuModel, VendorAndMaxLeaf) {
  const CpuidLeaf l0 = cpuid(0, 0);
  EXPECT_EQ(l0.eax, 2u);
  EXPECT_EQ(regs_string({l0.ebx, l0.edx, l0.ecx}), "GenuineIntel");
}

TEST(CpuModel, FamilySixWithThe686FeaturesOnly) {
  const CpuidLeaf l1 = cpuid(1, 0);
  EXPECT_EQ((l1.eax >> 8) & 0xf, 6u) << "family";
  EXPECT_EQ(l1.ecx, 0u);
  for (uint32_t bit : {cpuid_edx1::FPU, cpuid_edx1::PSE, cpuid_edx1::TSC, cpuid_edx1::MSR, cpuid_edx1::CX8,
                       cpuid_edx1::PGE, cpuid_edx1::CMOV, cpuid_edx1::MMX, cpuid_edx1::FXSR, cpuid_edx1::SSE,
                       cpuid_edx1::SSE2})
    EXPECT_TRUE(l1.edx & bit) << std::hex << bit;
  for (uint32_t bit : {cpuid_edx1::VME, cpuid_edx1::DE, cpuid_edx1::PAE, cpuid_edx1::APIC, cpuid_edx1::SEP,
                       cpuid_edx1::MCE, cpuid_edx1::MTRR, cpuid_edx1::PAT})
    EXPECT_FALSE(l1.edx & bit) << std::hex << bit;
}

TEST(CpuModel, ExtendedLeavesAndBrandString) {
  EXPECT_EQ(cpuid(0x80000000u, 0).eax, 0x80000004u);
  const CpuidLeaf ext1 = cpuid(0x80000001u, 0);
  EXPECT_EQ(ext1.edx, 0u) << "no NX, no long mode";
  std::string brand;
  for (uint32_t leaf = 0x80000002u; leaf <= 0x80000004u; ++leaf) {
    const CpuidLeaf l = cpuid(leaf, 0);
    brand += regs_string({l.eax, l.ebx, l.ecx, l.edx});
  }
  ASSERT_EQ(brand.size(), 48u);
  EXPECT_EQ(std::string(brand.c_str()), kBrandString);
  // Leaves above the maximum answer like the highest basic leaf (Intel).
  EXPECT_EQ(cpuid(0x40000000u, 0), cpuid(2, 0));
  EXPECT_EQ(cpuid(7, 0), cpuid(2, 0));
}

TEST(CpuModel, TscMsrMovesTheOffset) {
  VcpuState s;
  EXPECT_EQ(read_msr(s, msr::kTsc, 5000), 5000u);
  ASSERT_TRUE(write_msr(s, msr::kTsc, 100, 5000));
  EXPECT_EQ(read_msr(s, msr::kTsc, 5000), 100u);
  EXPECT_EQ(read_msr(s, msr::kTsc, 5100), 200u) << "keeps ticking with the host";
  EXPECT_EQ(guest_tsc(s, 5100), 200u);
}

TEST(CpuModel, OtherMsrs) {
  VcpuState s;
  EXPECT_EQ(read_msr(s, msr::kApicBase, 0), 0xfee00900u);
  EXPECT_FALSE(write_msr(s, msr::kApicBase, 0xfee00001u, 0)) << "reserved bit";
  EXPECT_EQ(s.sys.apic_base, 0xfee00900u);
  EXPECT_TRUE(write_msr(s, msr::kApicBase, 0xfec00800u, 0));
  EXPECT_EQ(read_msr(s, msr::kApicBase, 0), 0xfec00800u);
  EXPECT_TRUE(write_msr(s, msr::kSysenterCs, 0x10, 0));
  EXPECT_TRUE(write_msr(s, msr::kSysenterEsp, 0x1234, 0));
  EXPECT_TRUE(write_msr(s, msr::kSysenterEip, 0xc0001000u, 0));
  EXPECT_EQ(read_msr(s, msr::kSysenterCs, 0), 0x10u);
  EXPECT_EQ(read_msr(s, msr::kSysenterEsp, 0), 0x1234u);
  EXPECT_EQ(read_msr(s, msr::kSysenterEip, 0), 0xc0001000u);
  EXPECT_EQ(read_msr(s, 0x277, 0), std::nullopt) << "PAT is not on this CPU";
  EXPECT_EQ(read_msr(s, 0xc0000080u, 0), std::nullopt) << "no EFER";
  EXPECT_FALSE(write_msr(s, 0xc0000080u, 0, 0));
}

}  // namespace
}  // namespace bt86::machine
