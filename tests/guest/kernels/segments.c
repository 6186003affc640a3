/* segments: segment-register loads and their faults (Intel SDM vol. 3, 3.4,
   5.5-5.10, 6.15; vol. 2, MOV/LDS/JMP "Protected Mode Exceptions"):
   which descriptors each register accepts, the error codes of #GP/#NP/#SS
   (selector with TI, without RPL), limit and expand-down checks, the
   descriptor cache surviving a GDT change, the accessed bit, far jumps to
   bad code segments, and a stack-limit #SS at CPL 3. */
#include "guest.h"

const char test_name[] = "segments";

#define SEL(i) ((i) * 8)
enum {
  NP_DATA = 6, XO_CODE, RX_CODE, DPL3_DATA, SMALL_DATA, EXPDOWN_DATA, RO_DATA, NP_CODE, USER_SMALL_STACK
};

#define LOAD(seg, sel) __asm__ volatile(MARK_EIP "1: mov %0, %%" #seg :: "r"((uint16_t)(sel)) : "memory")
/* Loads FS and puts KDATA back so later C code never depends on it. */
#define LOAD_FS_OK(sel) __asm__ volatile("mov %0, %%fs\n\tmov %1, %%fs" :: "r"((uint16_t)(sel)), "r"((uint16_t)KDATA))

static uint32_t fs_read(uint16_t sel, uint32_t off) {
  uint32_t v;
  __asm__ volatile("mov %1, %%fs\n\t" MARK_EIP "1: mov %%fs:(%2), %0\n\tmov %3, %%fs"
                   : "=&r"(v) : "r"(sel), "r"(off), "r"((uint16_t)KDATA) : "memory");
  return v;
}
static void fs_write(uint16_t sel, uint32_t off, uint32_t v) {
  __asm__ volatile("mov %0, %%fs\n\t" MARK_EIP "1: mov %2, %%fs:(%1)\n\tmov %3, %%fs"
                   :: "r"(sel), "r"(off), "r"(v), "r"((uint16_t)KDATA) : "memory");
}

/* Not inlined: the same translated instruction runs with a flat FS first and
   a limited one next (bt86 checks FS at run time there). */
static __attribute__((noinline)) uint32_t fs_load_at(uint32_t off) {
  uint32_t v;
  __asm__ volatile(MARK_EIP "1: mov %%fs:(%1), %0" : "=r"(v) : "r"(off) : "memory");
  return v;
}

static void user_load_kernel_data(void) { LOAD(ds, KDATA | 3); }
static void user_stack_limit(void) {
  /* Limit 0x1fff: the dword at 0x1ffd ends one byte past it. */
  __asm__ volatile("mov %0, %%ss\n\t" MARK_EIP "1: mov %%ss:0x1ffd, %%eax" :: "r"((uint16_t)(SEL(USER_SMALL_STACK) | 3)) : "eax", "memory");
}

void test_main(uint32_t magic, const struct multiboot_info *mbi) {
  (void)magic; (void)mbi;
  set_desc(NP_DATA, make_desc(0, 0xfffff, 0x12, 0xc));       /* data, not present */
  set_desc(XO_CODE, make_desc(0, 0xfffff, 0x98, 0xc));       /* execute-only code */
  set_desc(RX_CODE, make_desc(0, 0xfffff, 0x9a, 0xc));       /* readable code */
  set_desc(DPL3_DATA, make_desc(0, 0xfffff, 0xf2, 0xc));     /* user data */
  set_desc(SMALL_DATA, make_desc(0x200000, 0xfff, 0x92, 0x4));   /* 4 KiB, byte granular */
  set_desc(EXPDOWN_DATA, make_desc(0x200000, 0xfff, 0x96, 0x4)); /* expand-down, valid 0x1000.. */
  set_desc(RO_DATA, make_desc(0, 0xfffff, 0x90, 0xc));       /* read-only data */
  set_desc(NP_CODE, make_desc(0, 0xfffff, 0x1a, 0xc));       /* code, not present */
  set_desc(USER_SMALL_STACK, make_desc(0x200000, 0x1fff, 0xf2, 0x4));

  STEP("valid loads: null into DS, readable code into FS, user data at CPL 0");
  LOAD_FS_OK(0);
  LOAD_FS_OK(SEL(RX_CODE));
  LOAD_FS_OK(SEL(DPL3_DATA));
  CHECK_EQ(fs_read(SEL(RX_CODE), (uint32_t)&gdt[1]), (uint32_t)gdt[1]);

  STEP("#GP(0): null selector into SS, and memory through a null DS");
  EXPECT_FAULT(13, 0, LOAD(ss, 0));
  EXPECT_FAULT(13, 0, LOAD(ss, 3));
  if (!SKIP_ON_QEMU("TCG does not check the null selector on use"))
    EXPECT_FAULT(13, 0, fs_read(0, 0x1000));

  STEP("#GP(sel): beyond the GDT limit, LDT without an LDT, system descriptor");
  EXPECT_FAULT(13, 0x100, LOAD(ds, 0x100));
  EXPECT_FAULT(13, 0x100, LOAD(fs, 0x103));
  EXPECT_FAULT(13, 0x0c, LOAD(gs, 0x0c));  /* TI = 1: the error code keeps it */
  EXPECT_FAULT(13, TSS_SEL, LOAD(es, TSS_SEL));

  STEP("#GP(sel): execute-only code into DS, code into SS, RPL and DPL checks");
  EXPECT_FAULT(13, SEL(XO_CODE), LOAD(ds, SEL(XO_CODE)));
  EXPECT_FAULT(13, SEL(RX_CODE), LOAD(ss, SEL(RX_CODE)));
  EXPECT_FAULT(13, SEL(RO_DATA), LOAD(ss, SEL(RO_DATA)));
  EXPECT_FAULT(13, SEL(DPL3_DATA), LOAD(ss, SEL(DPL3_DATA)));  /* SS needs DPL == CPL */
  EXPECT_FAULT(13, KDATA, LOAD(ss, KDATA | 3));                 /* and RPL == CPL */
  EXPECT_FAULT(13, KDATA, LOAD(ds, KDATA | 3));                 /* DPL < max(CPL, RPL) */

  STEP("#NP(sel) for DS, #SS(sel) for SS when the segment is not present");
  EXPECT_FAULT(11, SEL(NP_DATA), LOAD(ds, SEL(NP_DATA)));
  EXPECT_FAULT(11, SEL(NP_DATA), LOAD(gs, SEL(NP_DATA)));
  EXPECT_FAULT(12, SEL(NP_DATA), LOAD(ss, SEL(NP_DATA)));
  CHECK_EQ(read_ss(), KDATA);

  static int limits;
  limits = !SKIP_ON_QEMU("TCG does not check segment limits or write permission");
  STEP("limits: byte-granular 4 KiB segment at 0x200000");
  *(volatile uint32_t *)0x200ffc = 0x12345678;
  CHECK_EQ(fs_read(SEL(SMALL_DATA), 0xffc), 0x12345678);
  fs_write(SEL(SMALL_DATA), 0x10, 0xabcd);
  CHECK_EQ(*(volatile uint32_t *)0x200010, 0xabcd);
  if (limits) {
  EXPECT_FAULT(13, 0, fs_read(SEL(SMALL_DATA), 0xffd));
  EXPECT_FAULT(13, 0, fs_read(SEL(SMALL_DATA), 0x1000));
  }

  STEP("expand-down: offsets above the limit are valid, below fault");
  *(volatile uint32_t *)0x202000 = 0x55aa55aa;
  CHECK_EQ(fs_read(SEL(EXPDOWN_DATA), 0x2000), 0x55aa55aa);
  if (limits) {
  EXPECT_FAULT(13, 0, fs_read(SEL(EXPDOWN_DATA), 0x800));
  EXPECT_FAULT(13, 0, fs_read(SEL(EXPDOWN_DATA), 0xffe));
  }

  if (limits) {
  STEP("the same FS access, flat first, then past a 4 KiB limit: #GP(0) at that instruction");
  CHECK_EQ(fs_load_at(0x200010), 0xabcd);
  __asm__ volatile("mov %0, %%fs" :: "r"((uint16_t)SEL(SMALL_DATA)));
  CHECK_EQ(fs_load_at(0x10), 0xabcd);
  EXPECT_FAULT(13, 0, fs_load_at(0xffe));
  __asm__ volatile("mov %0, %%fs" :: "r"((uint16_t)KDATA));

  STEP("rep stosb across the ES limit: the 16 bytes inside are stored, then #GP(0) with ECX/EDI at the first byte outside");
  for (int i = 0; i < 0x20; i++) ((volatile uint8_t *)0x200ff0)[i] = 0;
  EXPECT_FAULT(13, 0, __asm__ volatile("mov %0, %%es\n\t" MARK_EIP "1: rep stosb"
                                       :: "r"((uint16_t)SEL(SMALL_DATA)), "D"(0xff0), "c"(0x20), "a"(0x5a) : "memory"));
  __asm__ volatile("mov %0, %%es" :: "r"((uint16_t)KDATA));
  CHECK_EQ(last_fault.ecx, 0x10);
  CHECK_EQ(last_fault.edi, 0x1000);
  CHECK_EQ(*(volatile uint32_t *)0x200ffc, 0x5a5a5a5a);
  CHECK_EQ(*(volatile uint8_t *)0x201000, 0);

  STEP("repne scasb that finds its byte inside the limit ends normally");
  uint32_t left;
  ((volatile uint8_t *)0x200ff0)[4] = 0x77;
  __asm__ volatile("mov %1, %%es\n\trepne scasb\n\tmov %2, %%es"
                   : "=c"(left) : "r"((uint16_t)SEL(SMALL_DATA)), "r"((uint16_t)KDATA), "D"(0xff0), "0"(0x40), "a"(0x77)
                   : "memory", "cc");
  CHECK_EQ(left, 0x40 - 5);
  }

  STEP("read-only data: a write faults");
  CHECK_EQ(fs_read(SEL(RO_DATA), 0x200010), 0xabcd);
  if (limits) {
  EXPECT_FAULT(13, 0, fs_write(SEL(RO_DATA), 0x200010, 1));
  }

  STEP("the accessed bit is set by a load");
  set_desc(SMALL_DATA, make_desc(0x200000, 0xfff, 0x92, 0x4));
  LOAD_FS_OK(SEL(SMALL_DATA));
  CHECK(gdt[SMALL_DATA] & (1ull << 40));

  STEP("the descriptor cache: a GDT change takes effect on reload only");
  *(volatile uint32_t *)0x300000 = 0x33333333;
  *(volatile uint32_t *)0x200000 = 0x22222222;
  uint32_t before, after, reloaded;
  __asm__ volatile("mov %3, %%gs\n\t"
                   "mov %%gs:0, %0\n\t"
                   "movl %5, (%4)\n\t"     /* base 0x20 -> 0x30 (bits 16-23 of the base) */
                   "mov %%gs:0, %1\n\t"
                   "mov %3, %%gs\n\t"
                   "mov %%gs:0, %2\n\t"
                   "mov %6, %%gs"
                   : "=&r"(before), "=&r"(after), "=&r"(reloaded)
                   : "r"((uint16_t)SEL(SMALL_DATA)), "r"((uint8_t *)&gdt[SMALL_DATA] + 4),
                     "r"((uint32_t)(gdt[SMALL_DATA] >> 32) + 0x10), "r"((uint16_t)KDATA)
                   : "memory");
  CHECK_EQ(before, 0x22222222);
  CHECK_EQ(after, 0x22222222);
  CHECK_EQ(reloaded, 0x33333333);

  STEP("far jumps: #NP(sel) to a not-present code segment, #GP(sel) to data");
  EXPECT_FAULT(11, SEL(NP_CODE), __asm__ volatile(MARK_EIP "1: ljmp %0, $0" :: "i"(SEL(NP_CODE))));
  EXPECT_FAULT(13, KDATA, __asm__ volatile(MARK_EIP "1: ljmp %0, $0" :: "i"(KDATA)));
  EXPECT_FAULT(13, SEL(NP_DATA), __asm__ volatile(MARK_EIP "1: lcall %0, $0" :: "i"(SEL(NP_DATA))));

  STEP("CPL 3: kernel data into DS is #GP(sel); a stack access past the SS limit is #SS(0)");
  EXPECT_FAULT(13, KDATA, run_user(user_load_kernel_data, 0));
  CHECK_EQ(last_fault.cs, UCODE);
  if (limits) {
  EXPECT_FAULT(12, 0, run_user(user_stack_limit, 0));
  CHECK_EQ(last_fault.cs, UCODE);
  }
}
