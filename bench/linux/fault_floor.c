// The host's floor for one first-touch fault of a shadow-paged guest, run
// natively on the host by measure.sh. In bt86 a guest's first write to a
// page it has not mapped yet is at least: a host page fault delivered as
// SIGSEGV, one change to the host mapping of that page (mprotect), and the
// host's own first access fault once it is accessible. This does exactly
// that to a memfd, with nothing of bt86 or of a guest kernel, and prints it
// beside a plain anonymous first touch (what the same program costs
// natively).
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_segv(int sig, siginfo_t* si, void* uc) {
  (void)sig;
  (void)uc;
  char* page = (char*)((unsigned long)si->si_addr & ~4095ul);
  if (mprotect(page, 4096, PROT_READ | PROT_WRITE) != 0) _exit(2);
}

int main(void) {
  const size_t n = 64u << 20, pages = n / 4096;
  const int fd = memfd_create("fault-floor", 0);
  if (fd < 0 || ftruncate(fd, (off_t)n) != 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &sa, NULL);
  char* all = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (all == MAP_FAILED) return 1;
  memset(all, 1, n);  // the memfd's pages exist, as a guest's RAM mostly does
  double best_shadow = 1e9, best_native = 1e9;
  for (int r = 0; r < 3; ++r) {
    char* p = mmap(NULL, n, PROT_NONE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return 1;
    double t = now();
    for (size_t i = 0; i < n; i += 4096) p[i] = 2;
    t = now() - t;
    if (t < best_shadow) best_shadow = t;
    munmap(p, n);
    p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    t = now();
    for (size_t i = 0; i < n; i += 4096) p[i] = 2;
    t = now() - t;
    if (t < best_native) best_native = t;
    munmap(p, n);
  }
  printf("fault floor: %.3f us per page (SIGSEGV + mprotect + first access); anonymous first touch %.3f us per page\n",
         best_shadow * 1e6 / pages, best_native * 1e6 / pages);
  return 0;
}
