#include <gtest/gtest.h>

#include "tests/translator/difftest.h"

namespace bt86::test {
namespace {

// The default run: a fixed seed, 20000 sequences of 1..16 instructions.
TEST(Difftest, TranslatedSequencesMatchTheHostCpu) {
  DiffSummary s = run_difftest(/*seed=*/1, /*count=*/20000);
  EXPECT_EQ(s.mismatches, 0u) << s.first_mismatch;
  EXPECT_EQ(s.sequences, 20000u);
  EXPECT_GT(s.faults, 1000u);  // precise faults are compared too
  std::printf("difftest: %llu sequences, %llu instructions\n", (unsigned long long)s.sequences,
              (unsigned long long)s.instructions);
}

}  // namespace
}  // namespace bt86::test
