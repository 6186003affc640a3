// CPU-bound guest benchmark: the sieve of Eratosthenes over the 16 Mi odd
// numbers below 32 Mi (a 16 MiB array), repeated: 28 rounds by default,
// which run about 2 s natively on the development machines (an AMD EPYC:
// 2.0-2.3 s), the length issue 5 asks for. Every round clears the array;
// only the first touches its pages for the first time (the first-touch
// row of bench/linux/measure.sh measures that cost alone).
// Prints the prime count (a checksum) and the wall time it took.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  const unsigned n = 1u << 24;  // odd numbers 3..2n+1
  int rounds = argc > 1 ? atoi(argv[1]) : 28;
  unsigned char* composite = malloc(n);
  if (!composite) return 1;
  double start = now();
  unsigned count = 0;
  for (int r = 0; r < rounds; ++r) {
    memset(composite, 0, n);
    count = 1;  // 2
    for (unsigned i = 0; i < n; ++i) {
      if (composite[i]) continue;
      ++count;
      unsigned p = 2 * i + 3;
      for (unsigned long long j = (unsigned long long)p * p; j < 2ull * n + 3; j += 2ull * p)
        composite[(j - 3) / 2] = 1;
    }
  }
  double secs = now() - start;
  printf("sieve: %u primes below %u, %d rounds, %.3f s\n", count, 2 * n + 3, rounds, secs);
  return 0;
}
