// Unit tests of the user-program layout checks (no guest is run here).
#include "monitor/user_program.h"
#include "machine/cpu_model.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace bt86::monitor {
namespace {

Status layout(uint32_t vaddr, int64_t memsz_delta = 0, uint32_t memory_mib = 16) {
  test::ElfSpec spec;
  spec.vaddr = vaddr;
  spec.memsz_delta = memsz_delta;
  auto img = KernelImage::parse("img", test::build_elf(spec));
  EXPECT_TRUE(img.ok()) << img.error().message;
  return UserProgram::check_layout(*img, memory_mib);
}

TEST(UserProgramLayout, AcceptsUsualAddress) { EXPECT_TRUE(layout(0x08048000).ok()); }

TEST(UserProgramLayout, RefusesPageZero) {
  auto s = layout(0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("page 0"), std::string::npos) << s.error().message;
}

TEST(UserProgramLayout, RefusesStackAndKernelHalf) {
  EXPECT_FALSE(layout(0xc0000000).ok());
  EXPECT_FALSE(layout(UserProgram::kStackTop - 0x1000).ok());
  EXPECT_FALSE(layout(UserProgram::kStackLimit - 0x1000, 0x2000).ok());
}

TEST(UserProgramLayout, RefusesMoreThanGuestRam) {
  auto s = layout(0x08048000, 16 * 1024 * 1024);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("--memory 16"), std::string::npos) << s.error().message;
  EXPECT_TRUE(layout(0x08048000, 16 * 1024 * 1024, 64).ok());
}

}  // namespace
}  // namespace bt86::monitor

// The user-program personality describes the machine's 686 (one CPUID
// table for both): same leaves, and the bits the guests rely on.
TEST(VirtualCpuTest, CpuidIsTheMachineModel) {
  bt86::monitor::VirtualCpu vcpu;
  for (uint32_t leaf : {0u, 1u, 2u, 3u, 0x80000000u, 0x80000001u, 0x80000002u, 0x80000003u, 0x80000004u}) {
    const auto got = vcpu.cpuid(leaf, 0);
    const auto want = bt86::machine::cpuid(leaf, 0);
    EXPECT_EQ(got.eax, want.eax) << std::hex << leaf;
    EXPECT_EQ(got.ebx, want.ebx) << std::hex << leaf;
    EXPECT_EQ(got.ecx, want.ecx) << std::hex << leaf;
    EXPECT_EQ(got.edx, want.edx) << std::hex << leaf;
  }
  const auto l1 = vcpu.cpuid(1, 0);
  EXPECT_EQ((l1.eax >> 8) & 0xf, 6u);                       // family 6
  EXPECT_EQ(l1.edx & ((1u << 11) | (1u << 6) | (1u << 9)), 0u);  // no SEP, PAE, APIC
  EXPECT_NE(l1.edx & (1u << 26), 0u);                       // SSE2
  EXPECT_EQ(vcpu.cpuid(0, 0).ebx, 0x756e6547u);             // "Genu"
}
