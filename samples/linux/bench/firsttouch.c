// First-touch page faults: malloc 16 MiB (a fresh anonymous mapping), then
// memset it, so that every 4 KiB page takes one page fault in the kernel
// that runs this program; five rounds, each with a fresh mapping. Prints the
// median time per page. This is the part of the sieve benchmark that a
// shadow-paging VMM cannot run at native speed: each fault is a host
// signal, the guest kernel's handler, and a change to the host's mappings.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  const size_t n = (size_t)(argc > 1 ? atoi(argv[1]) : 16) << 20;
  enum { kRounds = 5 };
  double us[kRounds];
  for (int r = 0; r < kRounds; ++r) {
    unsigned char* p = malloc(n);
    if (!p) return 1;
    const double t = now();
    memset(p, r + 1, n);
    __asm__ volatile("" : : "r"(p) : "memory");  // keep the memset
    us[r] = (now() - t) * 1e6 / (double)(n / 4096);
    free(p);
  }
  qsort(us, kRounds, sizeof us[0], cmp);
  printf("firsttouch: %.3f us per page\n", us[kRounds / 2]);
  return 0;
}
