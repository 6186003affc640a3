// bt86_fuzz --seed N --count M: runs M random guest pages through the
// translator (see fuzz.h); exits 1 on the first failure, with the bytes.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/translator/fuzz.h"

int main(int argc, char** argv) {
  uint64_t seed = 1, count = 100000;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 0);
    else if (!std::strcmp(argv[i], "--count") && i + 1 < argc) count = std::strtoull(argv[++i], nullptr, 0);
    else {
      std::fprintf(stderr, "usage: %s [--seed N] [--count M]\n", argv[0]);
      return 2;
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  bt86::test::FuzzSummary s = bt86::test::run_fuzz(seed, count);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("seed %llu: %llu runs, %llu blocks, %llu guest instructions translated, %llu failures, %.2f s\n",
              (unsigned long long)seed, (unsigned long long)s.runs, (unsigned long long)s.blocks,
              (unsigned long long)s.guest_insns, (unsigned long long)s.failures, secs);
  std::printf("stops:");
  for (auto& [k, v] : s.stops) std::printf(" %s %llu", k.c_str(), (unsigned long long)v);
  std::printf("\n%s", s.first_failure.c_str());
  return s.failures ? 1 : 0;
}
