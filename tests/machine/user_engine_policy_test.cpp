// UserEnginePolicy: which engine runs guest user code, from how long its
// stints between kernel entries last.
#include "machine/user_engine_policy.h"

#include <gtest/gtest.h>

namespace bt86::machine {
namespace {

constexpr uint32_t kCr3a = 0x1000, kCr3b = 0x2000;

// A stint of `ns` in address space cr3, starting at *now.
void stint(UserEnginePolicy& p, uint32_t cr3, uint64_t ns, uint64_t& now) {
  p.user_entered(cr3, now);
  now += ns;
  p.user_left(now);
}

TEST(UserEnginePolicy, NewAddressSpacesStartTranslated) {
  UserEnginePolicy p;
  p.user_entered(kCr3a, 0);
  EXPECT_TRUE(p.translate(1000));
}

// A loop that never enters the kernel (no system call, no interrupt) is a
// compute phase once it has run past reset_above_ns: asked again (after the
// host tick stopped the translator), the policy says direct.
TEST(UserEnginePolicy, ALongStintGoesDirectWithoutLeavingUserMode) {
  UserEnginePolicy p;
  p.user_entered(kCr3a, 0);
  EXPECT_TRUE(p.translate(100'000));
  EXPECT_FALSE(p.translate(UserEnginePolicyConfig{}.reset_above_ns + 1));
}

TEST(UserEnginePolicy, AComputePhaseGoesDirectAfterOneLongStint) {
  UserEnginePolicy p;
  uint64_t now = 0;
  stint(p, kCr3a, 1'000'000, now);  // ran a whole timer tick without a system call
  p.user_entered(kCr3a, now);
  EXPECT_FALSE(p.translate(now));
  EXPECT_EQ(p.average_ns(kCr3a), 1'000'000u);
}

TEST(UserEnginePolicy, FrequentTrapsBringTranslationBack) {
  UserEnginePolicy p;
  uint64_t now = 0;
  stint(p, kCr3a, 1'000'000, now);
  int stints = 0;
  for (;;) {
    p.user_entered(kCr3a, now);
    if (p.translate(now)) break;
    now += 1000;  // 1 µs between system calls
    p.user_left(now);
    ASSERT_LT(++stints, 40) << "never switched back to translation";
  }
  EXPECT_GT(stints, 3);  // an average, not the last sample
}

TEST(UserEnginePolicy, AddressSpacesAreTrackedApart) {
  UserEnginePolicy p;
  uint64_t now = 0;
  stint(p, kCr3a, 1'000'000, now);
  stint(p, kCr3b, 500, now);
  p.user_entered(kCr3b, now);
  EXPECT_TRUE(p.translate(now));
  p.user_left(now + 10);
  p.user_entered(kCr3a, now);
  EXPECT_FALSE(p.translate(now));
}

TEST(UserEnginePolicy, ModesOverrideTheMeasurement) {
  UserEnginePolicy direct({.enabled = false});
  direct.user_entered(kCr3a, 0);
  EXPECT_FALSE(direct.translate(0));
  UserEnginePolicy always({.always = true});
  uint64_t now = 0;
  stint(always, kCr3a, 10'000'000, now);
  always.user_entered(kCr3a, now);
  EXPECT_TRUE(always.translate(now));
}

// Page faults and interrupts cost the same in both engines: a compute
// phase that takes many of them (first touches of its memory) is still one
// long stint, and goes direct once it is long enough.
TEST(UserEnginePolicy, PageFaultsDoNotEndAStint) {
  UserEnginePolicy p;
  uint64_t now = 0;
  for (int i = 0; i < 200; ++i) {
    p.user_entered(kCr3a, now);
    now += 5000;  // 5 µs of user code, then a page fault
    p.user_left(now, /*ends_stint=*/false);
    now += 10000;  // the guest kernel's fault handler
  }
  p.user_entered(kCr3a, now);
  EXPECT_FALSE(p.translate(now));
  EXPECT_GE(p.average_ns(kCr3a), UserEnginePolicyConfig{}.translate_below_ns);
}

TEST(UserEnginePolicy, SystemCallsBetweenFaultsStillCount) {
  UserEnginePolicy p;
  uint64_t now = 0;
  stint(p, kCr3a, 1'000'000, now);
  for (int i = 0; i < 40; ++i) {
    p.user_entered(kCr3a, now);
    now += 1000;
    p.user_left(now, false);  // a fault
    p.user_entered(kCr3a, now + 5000);
    now += 6000;
    p.user_left(now, true);  // a system call: 2 µs of user time since the last one
  }
  p.user_entered(kCr3a, now);
  EXPECT_TRUE(p.translate(now));
  EXPECT_LT(p.average_ns(kCr3a), UserEnginePolicyConfig{}.translate_below_ns);
}

}  // namespace
}  // namespace bt86::machine
