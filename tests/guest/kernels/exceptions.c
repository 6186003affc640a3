/* exceptions: every exception vector a 686-class CPU without machine checks
   raises, each with its error code and saved EIP (faults: the faulting
   instruction; traps: the next one). Intel SDM vol. 3, 6.15 ("Exception and
   Interrupt Reference") and table 6-1; #DF rules in table 6-5. */
#include "guest.h"

const char test_name[] = "exceptions";

static volatile uint32_t soft_count, soft_vector;
static void soft_handler(struct regs *r) { soft_count++; soft_vector = r->vector; }

static uint32_t read_dr6(void) { uint32_t v; __asm__ volatile("mov %%dr6, %0" : "=r"(v)); return v; }
static void write_dr6(uint32_t v) { __asm__ volatile("mov %0, %%dr6" ::"r"(v)); }
static void write_dr7(uint32_t v) { __asm__ volatile("mov %0, %%dr7" ::"r"(v)); }
static void write_dr0(uint32_t v) { __asm__ volatile("mov %0, %%dr0" ::"r"(v)); }

static void user_misaligned(void) {
  static uint8_t buf[16] __attribute__((aligned(8)));
  __asm__ volatile("pushf\n\torl $0x40000, (%%esp)\n\tpopf\n\t" MARK_EIP "1: mov 1(%0), %%eax" :: "r"(buf) : "eax", "memory");
}

/* Two nops at CPL 3: with TF set by the iret that enters user mode, the
   trap comes after the first (saved EIP user_step_2, CS the user's). */
extern void user_step(void), user_step_2(void);
__asm__(".globl user_step, user_step_2\nuser_step:\n\tnop\nuser_step_2:\n\tnop\n\tret\n");

void test_main(uint32_t magic, const struct multiboot_info *mbi) {
  (void)magic; (void)mbi;

  STEP("#DE: divide by zero and quotient overflow (fault)");
  EXPECT_FAULT(0, 0, __asm__ volatile("xor %%ecx, %%ecx\n\t" MARK_EIP "1: div %%ecx" ::: "eax", "ecx", "edx"));
  EXPECT_FAULT(0, 0, __asm__ volatile("mov $0x80000000, %%eax\n\tcdq\n\tmov $-1, %%ecx\n\t" MARK_EIP "1: idiv %%ecx" ::: "eax", "ecx", "edx"));

  STEP("#DB: single step (trap after the next instruction), icebp, DR0 execute breakpoint");
  write_dr6(0);
  EXPECT_FAULT(1, 0, __asm__ volatile("movl $2f, fault_expected_eip\n\tpushf\n\torl $0x100, (%%esp)\n\tpopf\n\tnop\n2:\tnop" ::: "memory"));
  CHECK(read_dr6() & 0x4000);  /* BS */
  if (!SKIP_ON_QEMU("qemu 7.2 raises #UD for icebp (INT1) on this CPU model"))
    EXPECT_FAULT(1, 0, __asm__ volatile("movl $1f, fault_expected_eip\n\t.byte 0xf1\n1:" ::: "memory"));
  write_dr6(0);
  EXPECT_FAULT(1, 0, __asm__ volatile("movl $1f, fault_expected_eip\n\tmovl $1f, %%eax\n\tmov %%eax, %%dr0\n\t"
                                      "movl $0x403, %%eax\n\tmov %%eax, %%dr7\n\tnop\n1:\tnop" ::: "eax", "memory"));
  write_dr7(0x400);
  write_dr0(0);
  CHECK(read_dr6() & 1);  /* B0 */

  STEP("#DB: single step at CPL 3 (TF set by the iret into user mode), and across popf in kernel code");
  write_dr6(0);
  EXPECT_FAULT(1, 0, fault_expected_eip = (uint32_t)user_step_2; run_user(user_step, 0x100));
  CHECK_EQ(last_fault.cs, UCODE);
  CHECK(read_dr6() & 0x4000);  /* BS */
  /* popf clearing TF traps after itself (TF was set when it started). */
  EXPECT_FAULT(1, 0, __asm__ volatile("movl $1f, fault_expected_eip\n\tpushf\n\tpushf\n\torl $0x100, (%%esp)\n\t"
                                      "popf\n\tpopf\n1:\tnop" ::: "memory"));

  STEP("#BP: int3 and int $3 (trap)");
  EXPECT_FAULT(3, 0, __asm__ volatile("movl $1f, fault_expected_eip\n\tint3\n1:" ::: "memory"));
  EXPECT_FAULT(3, 0, __asm__ volatile("movl $1f, fault_expected_eip\n\tint $3\n1:" ::: "memory"));

  STEP("#OF: into with OF set (trap); into with OF clear does nothing");
  __asm__ volatile("xor %%eax, %%eax\n\tinto" ::: "eax", "cc");
  EXPECT_FAULT(4, 0, __asm__ volatile("movl $1f, fault_expected_eip\n\tmov $0x7fffffff, %%eax\n\tadd $1, %%eax\n\tinto\n1:" ::: "eax", "cc", "memory"));

  STEP("#BR: bound out of range (fault)");
  static int32_t bounds[2] = {0, 10};
  __asm__ volatile("mov $10, %%eax\n\t.byte 0x62, 0x02" :: "d"(bounds) : "eax");
  EXPECT_FAULT(5, 0, __asm__ volatile("mov $11, %%eax\n\t" MARK_EIP "1: .byte 0x62, 0x02" :: "d"(bounds) : "eax"));
  EXPECT_FAULT(5, 0, __asm__ volatile("mov $-1, %%eax\n\t" MARK_EIP "1: .byte 0x62, 0x02" :: "d"(bounds) : "eax"));

  STEP("#UD: ud2, lock on a non-memory instruction, mov to cr1");
  EXPECT_FAULT(6, 0, __asm__ volatile(MARK_EIP "1: ud2"));
  EXPECT_FAULT(6, 0, __asm__ volatile(MARK_EIP "1: .byte 0xf0, 0x90"));
  EXPECT_FAULT(6, 0, __asm__ volatile(MARK_EIP "1: .byte 0x0f, 0x22, 0xc8"));

  STEP("#NM: x87 with CR0.TS or CR0.EM, wait with MP+TS, SSE with TS");
  write_cr4(read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT);
  write_cr0((read_cr0() & ~CR0_EM) | CR0_MP | CR0_NE);
  __asm__ volatile("clts\n\tfninit");
  write_cr0(read_cr0() | CR0_TS);
  EXPECT_FAULT(7, 0, __asm__ volatile(MARK_EIP "1: fld1"));
  EXPECT_FAULT(7, 0, __asm__ volatile(MARK_EIP "1: fwait"));
  EXPECT_FAULT(7, 0, __asm__ volatile(MARK_EIP "1: xorps %%xmm0, %%xmm0" ::: "memory"));
  __asm__ volatile("clts");
  write_cr0(read_cr0() | CR0_EM);
  EXPECT_FAULT(7, 0, __asm__ volatile(MARK_EIP "1: fld1"));
  write_cr0(read_cr0() & ~CR0_EM);

  STEP("#NP for a not-present gate: error code vector * 8 + 2 (IDT bit)");
  set_handler(0x41, soft_handler);
  __asm__ volatile("int $0x41");
  CHECK_EQ(soft_count, 1);
  CHECK_EQ(soft_vector, 0x41);
  set_gate_present(0x41, 0);
  EXPECT_FAULT(11, 0x41 * 8 + 2, __asm__ volatile(MARK_EIP "1: int $0x41"));
  set_gate_present(0x41, 1);

  STEP("#TS: jump to a TSS whose limit is below 0x67");
  static struct tss tiny;
  set_desc(6, make_desc((uint32_t)&tiny, 0x20, 0x89, 0));
  EXPECT_FAULT(10, 0x30, __asm__ volatile(MARK_EIP "1: ljmp $0x30, $0"));

  STEP("#SS: not-present stack segment");
  set_desc(7, make_desc(0, 0xfffff, 0x12, 0xc));
  EXPECT_FAULT(12, 0x38, __asm__ volatile(MARK_EIP "1: mov %0, %%ss" :: "r"((uint16_t)0x38)));

  STEP("#GP(0): null SS, CR0.PG without PE, CR4.OSXSAVE without XSAVE, wrmsr to a bad MSR");
  if (!SKIP_ON_QEMU("TCG lets CR0.PG be set with PE clear"))
    EXPECT_FAULT(13, 0, __asm__ volatile("mov %%cr0, %%eax\n\tand $~1, %%eax\n\tor $0x80000000, %%eax\n\t" MARK_EIP "1: mov %%eax, %%cr0" ::: "eax"));

  EXPECT_FAULT(13, 0, __asm__ volatile(MARK_EIP "1: mov %0, %%ss" :: "r"((uint16_t)0)));
  if (!SKIP_ON_QEMU("TCG does not fault on CR4.OSXSAVE without XSAVE or on unknown MSRs")) {
    EXPECT_FAULT(13, 0, __asm__ volatile("mov %%cr4, %%eax\n\tor $0x40000, %%eax\n\t" MARK_EIP "1: mov %%eax, %%cr4" ::: "eax"));
    EXPECT_FAULT(13, 0, __asm__ volatile("mov $0xdeadbeef, %%ecx\n\txor %%eax, %%eax\n\txor %%edx, %%edx\n\t" MARK_EIP "1: wrmsr" ::: "eax", "ecx", "edx"));
  }

  STEP("#PF: read and write of a not-present page, CR2");
  paging_init();
  *pte_of(0x400000) &= ~PTE_P;
  paging_enable();
  EXPECT_FAULT(14, 0, __asm__ volatile(MARK_EIP "1: mov 0x400123, %%eax" ::: "eax"));
  CHECK_EQ(last_fault.cr2, 0x400123);
  EXPECT_FAULT(14, 2, __asm__ volatile(MARK_EIP "1: movl $1, 0x400ffc" ::: "memory"));
  CHECK_EQ(last_fault.cr2, 0x400ffc);
  paging_disable();

  STEP("#MF: unmasked x87 divide by zero, reported at the next wait (CR0.NE)");
  static uint16_t cw = 0x37b;  /* ZM clear */
  __asm__ volatile("fninit\n\tfldcw %0\n\tfld1\n\tfldz\n\tfdivrp" :: "m"(cw));
  EXPECT_FAULT(16, 0, __asm__ volatile(MARK_EIP "1: fwait"));
  __asm__ volatile("fninit");

  STEP("#XM: unmasked SSE divide by zero (CR4.OSXMMEXCPT); #UD without it");
  static float one[4] __attribute__((aligned(16))) = {1, 1, 1, 1}, zero[4] __attribute__((aligned(16)));
  static uint32_t mxcsr_zm_clear = 0x1f80 & ~0x200u, mxcsr_default = 0x1f80;
  if (!SKIP_ON_QEMU("qemu 7.2 TCG does not raise SIMD floating-point exceptions")) {
    __asm__ volatile("ldmxcsr %0\n\tmovaps %1, %%xmm0" :: "m"(mxcsr_zm_clear), "m"(one));
    EXPECT_FAULT(19, 0, __asm__ volatile(MARK_EIP "1: divps %0, %%xmm0" :: "m"(zero)));
    write_cr4(read_cr4() & ~CR4_OSXMMEXCPT);
    __asm__ volatile("ldmxcsr %0" :: "m"(mxcsr_zm_clear));
    EXPECT_FAULT(6, 0, __asm__ volatile(MARK_EIP "1: divps %0, %%xmm0" :: "m"(zero)));
  }
  __asm__ volatile("ldmxcsr %0" :: "m"(mxcsr_default));
  write_cr4(read_cr4() & ~CR4_OSFXSR);
  EXPECT_FAULT(6, 0, __asm__ volatile(MARK_EIP "1: xorps %%xmm0, %%xmm0" ::: "memory"));

  STEP("#AC: misaligned access at CPL 3 with CR0.AM and EFLAGS.AC");
  if (!SKIP_ON_QEMU("TCG does not implement alignment checking")) {
    write_cr0(read_cr0() | CR0_AM);
    EXPECT_FAULT(17, 0, run_user(user_misaligned, 0));
    write_cr0(read_cr0() & ~CR0_AM);
  }

  STEP("#DF: #GP while the #GP gate is not present");
  set_gate_present(13, 0);
  EXPECT_FAULT(8, 0, __asm__ volatile("mov %0, %%ss" :: "r"((uint16_t)0)));
  set_gate_present(13, 1);

  STEP("software int n to an exception vector without an error code");
  set_handler(0, soft_handler);
  __asm__ volatile("int $0");
  CHECK_EQ(soft_vector, 0);
  CHECK_EQ(soft_count, 2);
}
