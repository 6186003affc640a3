// System-call round trip: getppid() through the raw system call (no libc
// caching), many times. Prints the time per call.
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000000;
  long sum = 0;
  double start = now();
  for (int i = 0; i < n; ++i) sum += syscall(SYS_getppid);
  double secs = now() - start;
  printf("getppid: %d calls, %.3f s, %.1f ns per call (%ld)\n", n, secs, secs * 1e9 / n, sum & 1);
  return 0;
}
