/* cpuid: the virtual CPU is a 686-class part. Present: FPU TSC PSE PGE CMOV
   FXSR SSE SSE2 CX8 MMX; absent: SEP (sysenter from compatibility mode loses
   EIP in the host kernel, DESIGN.md §2), VME, PAE, APIC. The same answer
   must come back at CPL 3. The features said present are also exercised:
   rdtsc advances, cmov, cmpxchg8b, MMX, and fxsave/SSE/SSE2 once CR4.OSFXSR
   is set. (Intel SDM vol. 2A, CPUID, table 3-11.) */
#include "guest.h"

const char test_name[] = "cpuid";

#define F_FPU (1u << 0)
#define F_VME (1u << 1)
#define F_PSE (1u << 3)
#define F_TSC (1u << 4)
#define F_PAE (1u << 6)
#define F_MSR (1u << 5)
#define F_CX8 (1u << 8)
#define F_APIC (1u << 9)
#define F_SEP (1u << 11)
#define F_PGE (1u << 13)
#define F_CMOV (1u << 15)
#define F_MMX (1u << 23)
#define F_FXSR (1u << 24)
#define F_SSE (1u << 25)
#define F_SSE2 (1u << 26)

static void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

/* Leaves 0, 1 and 0x80000002 as user mode sees them: four registers each. */
static const uint32_t compared_leaves[3] = {0, 1, 0x80000002};
static volatile uint32_t user_regs[3][4];
static void user_cpuid(void) {
  for (int i = 0; i < 3; i++) {
    uint32_t a, b, c, d;
    cpuid(compared_leaves[i], &a, &b, &c, &d);
    user_regs[i][0] = a;
    user_regs[i][1] = b;
    user_regs[i][2] = c;
    user_regs[i][3] = d;
  }
}

void test_main(uint32_t magic, const struct multiboot_info *mbi) {
  (void)magic; (void)mbi;
  uint32_t a, b, c, d;
  STEP("leaf 0: vendor and max leaf");
  cpuid(0, &a, &b, &c, &d);
  CHECK(a >= 1);
  char vendor[13];
  memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4); vendor[12] = 0;
  print("  vendor %s, max leaf %u\n", vendor, a);
  CHECK(memcmp(vendor, "GenuineIntel", 12) == 0);

  STEP("leaf 1: family 6 and the feature bits");
  cpuid(1, &a, &b, &c, &d);
  print("  leaf 1: eax %08x ebx %08x ecx %08x edx %08x\n", a, b, c, d);
  CHECK_EQ((a >> 8) & 0xf, 6);
  const uint32_t want = F_FPU | F_TSC | F_PSE | F_PGE | F_CMOV | F_FXSR | F_SSE | F_SSE2 | F_CX8 | F_MMX;
  const uint32_t forbid = F_SEP | F_VME | F_PAE | F_APIC;
  CHECK_EQ(d & want, want);
  CHECK_EQ(d & forbid, 0);

  if (!SKIP_ON_QEMU("the exact leaves are bt86's model, not qemu's pentium3")) {
    /* Exactly bt86's 686 (machine/cpu_model.cpp): brand index 0, no CLFLUSH
       line size, APIC ID 0; no SSE3 or later; these EDX bits and no other. */
    CHECK_EQ(b, 0);
    CHECK_EQ(c, 0);
    CHECK_EQ(d, F_FPU | F_PSE | F_TSC | F_MSR | F_CX8 | F_PGE | F_CMOV | F_MMX | F_FXSR | F_SSE | F_SSE2);
    cpuid(2, &a, &b, &c, &d);
    CHECK_EQ(a, 1);  /* one iteration, null descriptors */
    CHECK_EQ(b | c | d, 0);
    cpuid(0x80000000, &a, &b, &c, &d);
    CHECK_EQ(a, 0x80000004);
  }

  STEP("the extended leaves: no NX/LM, the brand string");
  cpuid(0x80000001, &a, &b, &c, &d);
  CHECK_EQ(d & ((1u << 20) | (1u << 29)), 0);  /* NX, LM */
  char brand[49];
  for (uint32_t i = 0; i < 3; i++)
    cpuid(0x80000002 + i, (uint32_t *)&brand[16 * i], (uint32_t *)&brand[16 * i + 4], (uint32_t *)&brand[16 * i + 8],
          (uint32_t *)&brand[16 * i + 12]);
  brand[48] = 0;
  print("  brand \"%s\"\n", brand);
  if (!on_qemu()) CHECK(strncmp(brand, "bt86 virtual 686 CPU", 21) == 0);

  STEP("cpuid at CPL 3 answers the same (leaves 0, 1, 0x80000002)");
  CHECK_EQ(run_user(user_cpuid, 0), 0);
  for (int i = 0; i < 3; i++) {
    cpuid(compared_leaves[i], &a, &b, &c, &d);
    CHECK_EQ(user_regs[i][0], a);
    CHECK_EQ(user_regs[i][1], b);
    CHECK_EQ(user_regs[i][2], c);
    CHECK_EQ(user_regs[i][3], d);
  }

  STEP("rdtsc advances");
  uint64_t t0 = rdtsc();
  for (volatile int i = 0; i < 1000; ++i) {}
  uint64_t t1 = rdtsc();
  CHECK(t1 > t0);

  STEP("cmov and cmpxchg8b");
  uint32_t r = 1, s = 7;
  __asm__ volatile("cmp %2, %2\n\tcmove %1, %0" : "+r"(r) : "r"(s), "r"(0));
  CHECK_EQ(r, 7);
  volatile uint64_t mem = 0x1122334455667788ull;
  uint32_t lo = 0x55667788, hi = 0x11223344, ok;
  __asm__ volatile("lock cmpxchg8b %1\n\tsetz %b0\n\tmovzbl %b0, %0"
                   : "=q"(ok), "+m"(mem), "+a"(lo), "+d"(hi) : "b"(0xdeadbeef), "c"(0xcafef00d) : "cc");
  CHECK(ok);
  CHECK(mem == 0xcafef00ddeadbeefull);

  STEP("x87 and MMX");
  write_cr0((read_cr0() & ~(CR0_EM | CR0_TS)) | CR0_MP | CR0_NE);
  __asm__ volatile("fninit");
  uint32_t x = 3, y = 0;
  __asm__ volatile("fildl %1\n\tfildl %1\n\tfmulp\n\tfistpl %0" : "=m"(y) : "m"(x));
  CHECK_EQ(y, 9);
  uint64_t m0 = 0x0001000200030004ull, m1 = 0x0010002000300040ull, m2;
  __asm__ volatile("movq %1, %%mm0\n\tpaddw %2, %%mm0\n\tmovq %%mm0, %0\n\temms" : "=m"(m2) : "m"(m0), "m"(m1));
  CHECK(m2 == 0x0011002200330044ull);

  STEP("fxsave, SSE and SSE2 with CR4.OSFXSR");
  write_cr4(read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT);
  static uint8_t area[512] __attribute__((aligned(16)));
  __asm__ volatile("fxsave %0" : "=m"(area));
  uint32_t mxcsr;
  memcpy(&mxcsr, area + 24, 4);
  CHECK_EQ(mxcsr & 0xffff, 0x1f80);
  static float fa[4] __attribute__((aligned(16))) = {1, 2, 3, 4}, fb[4] __attribute__((aligned(16))) = {10, 20, 30, 40};
  __asm__ volatile("movaps %0, %%xmm0\n\taddps %1, %%xmm0\n\tmovaps %%xmm0, %0" : "+m"(fa) : "m"(fb));
  CHECK(fa[0] == 11 && fa[3] == 44);
  static uint64_t qa[2] __attribute__((aligned(16))) = {5, 6}, qb[2] __attribute__((aligned(16))) = {1, 2};
  __asm__ volatile("movdqa %0, %%xmm1\n\tpaddq %1, %%xmm1\n\tmovdqa %%xmm1, %0" : "+m"(qa) : "m"(qb));
  CHECK(qa[0] == 6 && qa[1] == 8);
  __asm__ volatile("fxrstor %0" :: "m"(area));
}
