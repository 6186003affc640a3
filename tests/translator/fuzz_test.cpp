#include <gtest/gtest.h>

#include "tests/translator/fuzz.h"

namespace bt86::test {
namespace {

// The default run: a fixed seed, 30,000 random guest pages (each translated
// from a random start; blocks end at the first thing that stops them).
TEST(TranslatorFuzz, RandomBytesEndInACleanStop) {
  FuzzSummary s = run_fuzz(/*seed=*/1, /*count=*/30000);
  EXPECT_EQ(s.failures, 0u) << s.first_failure;
  EXPECT_EQ(s.runs, 30000u);
  EXPECT_GE(s.blocks, 30000u);
  std::string stops;
  for (auto& [k, v] : s.stops) stops += " " + k + " " + std::to_string(v);
  std::printf("fuzz: %llu runs, %llu blocks, %llu instructions; stops:%s\n", (unsigned long long)s.runs,
              (unsigned long long)s.blocks, (unsigned long long)s.guest_insns, stops.c_str());
}

}  // namespace
}  // namespace bt86::test
