// nanobench_native: the host's own cost for the nanobenchmarks it can do
// itself, as the reference column of run.sh (bench/nanobench/README.md).
// Same loop shapes and timing policy (grow to 20 ms, best of five) as the
// guest; "in" and "ptemod" need ring 0 and print n/a.
//
//   syscall  getppid() through syscall(2) (glibc does not cache it)
//   callret  call + ret
//   pgfault  two pages ping-pong through PROT_NONE: each touch is SIGSEGV,
//            and the handler mprotects the page in and the other one out
//   divzero  div by zero: SIGFPE, the handler skips the 2-byte div
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static char* g_pages;  // two pages
static long g_page_size;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_segv(int sig, siginfo_t* info, void* uc) {
  (void)sig;
  (void)uc;
  char* page = (char*)((uintptr_t)info->si_addr & ~(uintptr_t)(g_page_size - 1));
  char* other = page == g_pages ? g_pages + g_page_size : g_pages;
  mprotect(page, (size_t)g_page_size, PROT_READ | PROT_WRITE);
  mprotect(other, (size_t)g_page_size, PROT_NONE);
}

static void on_fpe(int sig, siginfo_t* info, void* ucv) {
  (void)sig;
  (void)info;
  ucontext_t* uc = ucv;
#if defined(__x86_64__)
  uc->uc_mcontext.gregs[REG_RIP] += 2;
#else
  uc->uc_mcontext.gregs[REG_EIP] += 2;
#endif
}

__asm__(".text\n nb_native_ret: ret\n");

static void loop_syscall(uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) syscall(SYS_getppid);
}

static void loop_callret(uint32_t n) {
  __asm__ volatile("1: call nb_native_ret\n dec %0\n jnz 1b" : "+c"(n)::"memory");
}

static void loop_pgfault(uint32_t n) {
  volatile char* a = g_pages;
  volatile char* b = g_pages + g_page_size;
  for (uint32_t i = 0; i < n; i += 2) {
    (void)*a;
    (void)*b;
  }
}

static void loop_divzero(uint32_t n) {
  uint32_t zero = 0;
  __asm__ volatile(
      "1: xor %%edx, %%edx\n mov $1, %%eax\n .byte 0xF7, 0xF3\n"  // div %ebx (2 bytes)
      " dec %0\n jnz 1b"
      : "+c"(n)
      : "b"(zero)
      : "eax", "edx", "memory");
}

static void run(const char* name, void (*loop)(uint32_t)) {
  uint32_t n = 256;
  uint64_t t0 = now_ns();
  loop(n);
  uint64_t best = now_ns() - t0;
  while (best < 20000000u && n < (1u << 26)) {
    n *= 4;
    t0 = now_ns();
    loop(n);
    best = now_ns() - t0;
  }
  for (int i = 0; i < 4; ++i) {
    t0 = now_ns();
    loop(n);
    uint64_t t = now_ns() - t0;
    if (t < best) best = t;
  }
  uint64_t tenth_ns = (best * 10 + n / 2) / n;
  printf("native: %s %llu.%llu ns n=%u\n", name, (unsigned long long)(tenth_ns / 10),
         (unsigned long long)(tenth_ns % 10), n);
}

int main(void) {
  g_page_size = sysconf(_SC_PAGESIZE);
  g_pages = mmap(0, 2 * (size_t)g_page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g_pages == MAP_FAILED) {
    perror("nanobench_native: mmap");
    return 1;
  }
  mprotect(g_pages, (size_t)g_page_size, PROT_NONE);  // the first touch of A faults
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_flags = SA_SIGINFO;
  sa.sa_sigaction = on_segv;
  sigaction(SIGSEGV, &sa, 0);
  sa.sa_sigaction = on_fpe;
  sigaction(SIGFPE, &sa, 0);

  run("syscall", loop_syscall);
  printf("native: in n/a\n");
  run("callret", loop_callret);
  run("pgfault", loop_pgfault);
  run("divzero", loop_divzero);
  printf("native: ptemod n/a\n");
  return 0;
}
