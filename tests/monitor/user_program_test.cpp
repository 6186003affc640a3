// Unit tests of the user-program layout checks (no guest is run here).
#include "monitor/user_program.h"

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
