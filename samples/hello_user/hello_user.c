// hello_user: the default bt86 guest. A freestanding 32-bit Linux-style
// program that walks through the exits direct execution produces; each step
// says which exit it causes. Build flags: see samples/CMakeLists.txt.
#include <stdint.h>

// Entry point: the stack pointer is bt86's stack top (16-byte aligned), so
// "call main" leaves the i386 SysV alignment main expects. main's return
// value becomes the exit status.
__asm__(
    ".globl _start\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  call main\n"
    "  mov %eax, %ebx\n"
    "  mov $1, %eax\n"       // exit
    "  int $0x80\n"
    "  hlt\n");              // not reached; would be a #GP (guest error)

// int 0x80 -> exit kind software-interrupt, vector 0x80 (bt86 answers it).
static int32_t syscall3(uint32_t nr, uint32_t a, uint32_t b, uint32_t c) {
  int32_t ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return ret;
}

static uint32_t length(const char* s) {
  uint32_t n = 0;
  while (s[n]) ++n;
  return n;
}

static void print(const char* s) { syscall3(4 /* write */, 1, (uint32_t)s, length(s)); }

// cpuid: exit kind cpuid on hosts with CPUID faulting (bt86 answers with its
// virtual CPU); elsewhere it runs natively and shows the host CPU.
static void print_vendor(void) {
  uint32_t eax = 0, ebx, ecx, edx;
  __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx));
  char line[] = "cpuid vendor: ............\n";
  const uint32_t parts[3] = {ebx, edx, ecx};
  for (int i = 0; i < 12; ++i) line[14 + i] = (char)(parts[i / 4] >> (8 * (i % 4)));
  print(line);
}

// rdtsc: exit kind rdtsc with TSC faulting (bt86's 1 GHz virtual TSC).
static uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (uint64_t)hi << 32 | lo;
}

// Only 16 KiB of stack are mapped at start: every further page this touches
// is a page-fault exit that bt86 answers by mapping a fresh zeroed page.
static __attribute__((noinline)) uint32_t touch_stack(void) {
  volatile uint8_t buf[64 * 1024];
  uint32_t sum = 0;
  for (int i = sizeof buf - 1; i >= 0; i -= 4096) {
    buf[i] = (uint8_t)i;
    sum += buf[i];
  }
  return sum;
}

int main(void) {
  print("hello from guest user mode\n");

  print_vendor();

  const uint64_t t0 = rdtsc();
  const uint64_t t1 = rdtsc();
  print(t1 > t0 ? "rdtsc: time advanced\n" : "rdtsc: time did NOT advance\n");

  // int3 -> exit kind breakpoint; bt86 logs it and continues after it.
  __asm__ volatile("int3");
  print("int3: breakpoint passed\n");

  // A system call the personality does not know (getpid) -> -ENOSYS (-38).
  print(syscall3(20, 0, 0, 0) == -38 ? "getpid: -ENOSYS as expected\n" : "getpid: unexpected result\n");

  touch_stack();
  print("stack: touched 64 KiB deep\n");

  // Spin ~50 ms (50M ticks of bt86's 1 GHz virtual TSC; shorter where rdtsc
  // runs natively on a faster host TSC): the 4 ms preemption tick interrupts
  // it several times -> exit kind preempted.
  volatile uint32_t spins = 0;
  const uint64_t start = rdtsc();
  while (rdtsc() - start < 50000000ull)
    for (int i = 0; i < 1000000; ++i) spins = spins + 1;
  print("spin: done\n");

  print("goodbye from guest user mode\n");
  return 0;  // exit(0) via _start
}
