// host_floors: what the host itself charges for the pieces a nanobenchmark
// row is made of under bt86, so that each row can be read against its
// floor (top README, "Nanobenchmarks"). Every figure is the minimum over
// five runs of a loop (the machine may be shared; noise only adds).
//
//   signal_sigreturn  #DE in host code, SIGFPE, the handler skips the div,
//                     rt_sigreturn: a host signal round trip
//   signal_jump_out   the same, but the handler jumps out (SA_NODEFER, no
//                     rt_sigreturn), as bt86's handler does
//   syscall64         syscall(SYS_getppid)
//   int80             int $0x80 getppid (i386 number 64) from 64-bit code:
//                     the host's 32-bit system-call entry, which a guest's
//                     int 0x80 takes before seccomp traps it
//   mmap_page         mmap(MAP_FIXED) of one memfd page into a PROT_NONE
//                     reservation (bt86's shadow map)
//   first_touch       the first read of that page (the host's own fault)
//   remap_none        mmap(MAP_FIXED, PROT_NONE) over a page (bt86's shadow
//                     drop)
//   fxsave_fxrstor    fxsave64 + fxrstor64 (x87/SSE state across a switch)
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int divide(int by) {
  int r;
  __asm__ volatile("mov $1, %%eax\n xor %%edx, %%edx\n .byte 0xf7, 0xf1" : "=a"(r) : "c"(by) : "rdx");
  return r;
}

static void skip_div(int sig, siginfo_t* si, void* ucv) {
  (void)sig, (void)si;
  ((ucontext_t*)ucv)->uc_mcontext.gregs[REG_RIP] += 2;
}

static sigjmp_buf g_out;
static void jump_out(int sig, siginfo_t* si, void* ucv) {
  (void)sig, (void)si, (void)ucv;
  __builtin_longjmp((void**)g_out, 1);
}

#define N 20000
#define BEST(name, setup, body)                                         \
  do {                                                                  \
    double best = 1e18;                                                 \
    for (int run = 0; run < 5; ++run) {                                 \
      setup;                                                            \
      uint64_t t0 = now_ns();                                           \
      for (int i = 0; i < N; ++i) { body; }                             \
      double ns = (double)(now_ns() - t0) / N;                          \
      if (ns < best) best = ns;                                         \
    }                                                                   \
    printf("host_floors: %-17s %8.1f ns\n", name, best);                \
  } while (0)

int main(void) {
  struct sigaction sa = {0};
  sa.sa_sigaction = skip_div;
  sa.sa_flags = SA_SIGINFO;
  sigfillset(&sa.sa_mask);
  sigaction(SIGFPE, &sa, NULL);
  BEST("signal_sigreturn", (void)0, divide(0));

  sa.sa_sigaction = jump_out;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGFPE, &sa, NULL);
  BEST("signal_jump_out", (void)0, if (!__builtin_setjmp((void**)g_out)) divide(0));

  BEST("syscall64", (void)0, syscall(SYS_getppid));
  BEST("int80", (void)0, {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(64L) : "memory");
  });

  int fd = memfd_create("host_floors", 0);
  if (fd < 0 || ftruncate(fd, 1 << 20) != 0) return 1;
  char* w = mmap(NULL, 1ul << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (w == MAP_FAILED) return 1;
  char* page = w + (512ul << 20);
  double map = 1e18, touch = 1e18, drop = 1e18;
  for (int run = 0; run < 5; ++run) {
    uint64_t tm = 0, tt = 0, td = 0;
    for (int i = 0; i < N / 4; ++i) {
      uint64_t t0 = now_ns();
      mmap(page, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fd, (i & 1) << 12);
      uint64_t t1 = now_ns();
      (void)*(volatile char*)page;
      uint64_t t2 = now_ns();
      mmap(page, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
      uint64_t t3 = now_ns();
      tm += t1 - t0, tt += t2 - t1, td += t3 - t2;
    }
    if (tm < map) map = tm;
    if (tt < touch) touch = tt;
    if (td < drop) drop = td;
  }
  printf("host_floors: %-17s %8.1f ns\n", "mmap_page", map / (N / 4));
  printf("host_floors: %-17s %8.1f ns\n", "first_touch", touch / (N / 4));
  printf("host_floors: %-17s %8.1f ns\n", "remap_none", drop / (N / 4));

  static char a[512] __attribute__((aligned(64))), b[512] __attribute__((aligned(64)));
  __asm__ volatile("fxsave64 %0" : "=m"(b));
  BEST("fxsave_fxrstor", (void)0, __asm__ volatile("fxsave64 %0\n fxrstor64 %1" : "=m"(a) : "m"(b)));
  return 0;
}
