// bt86_difftest --seed N --count M [--all]: runs M generated sequences of the
// differential test and prints the first mismatch with both disassemblies.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/translator/difftest.h"

int main(int argc, char** argv) {
  uint64_t seed = 1, count = 10000;
  bool all = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 0);
    else if (!std::strcmp(argv[i], "--count") && i + 1 < argc) count = std::strtoull(argv[++i], nullptr, 0);
    else if (!std::strcmp(argv[i], "--all")) all = true;
    else {
      std::fprintf(stderr, "usage: %s [--seed N] [--count M] [--all]\n", argv[0]);
      return 2;
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  bt86::test::DiffSummary s = bt86::test::run_difftest(seed, count, !all);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("seed %llu: %llu sequences (%llu ending in a fault), %llu instructions, %llu mismatches, %.2f s\n",
              (unsigned long long)seed, (unsigned long long)s.sequences, (unsigned long long)s.faults,
              (unsigned long long)s.instructions, (unsigned long long)s.mismatches, secs);
  std::printf("translated as: %s\n", s.translated_kinds.c_str());
  if (!s.first_mismatch.empty()) std::printf("%s\n", s.first_mismatch.c_str());
  return s.mismatches ? 1 : 0;
}
