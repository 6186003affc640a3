/* paging: 32-bit two-level paging (Intel SDM vol. 3, 4.3, 4.6-4.10):
   #PF error codes (P, W/R, U/S) and CR2 for kernel and user accesses,
   permissions combined from PDE and PTE, CR0.WP, accessed and dirty bits in
   PDEs and PTEs, 4 MiB pages (CR4.PSE) and their D bit, INVLPG, CR3 loads,
   and global pages (CR4.PGE). Architecture lets a TLB keep stale entries
   until a flush, so the test only asserts what must be seen after one. */
#include "guest.h"

const char test_name[] = "paging";

#define VA 0x800000u            /* a 4 KiB test page inside the identity map */
#define FRAME_A 0xa00000u
#define FRAME_B 0xa01000u

/* Barriers: page-table entries are plain memory the CPU writes behind the compiler. */
static uint32_t rd(uint32_t va) { __asm__ volatile("" ::: "memory"); uint32_t v = *(volatile uint32_t *)va; __asm__ volatile("" ::: "memory"); return v; }
static void wr(uint32_t va, uint32_t v) { __asm__ volatile("" ::: "memory"); *(volatile uint32_t *)va = v; __asm__ volatile("" ::: "memory"); }
static void flush_all(void) { write_cr3(read_cr3()); }

static volatile uint32_t user_target;
static void user_read(void) { __asm__ volatile(MARK_EIP "1: mov (%0), %%eax" :: "r"(user_target) : "eax"); }
static void user_write(void) { __asm__ volatile(MARK_EIP "1: movl $7, (%0)" :: "r"(user_target) : "memory"); }

static uint32_t second_dir[1024] __attribute__((aligned(4096)));
static uint32_t second_table[1024] __attribute__((aligned(4096)));

void test_main(uint32_t magic, const struct multiboot_info *mbi) {
  (void)magic; (void)mbi;
  wr(FRAME_A, 0xaaaaaaaa);
  wr(FRAME_B, 0xbbbbbbbb);
  paging_init();
  *pte_of(VA) = FRAME_A | PTE_P | PTE_W;  /* supervisor, writable */
  paging_enable();

  STEP("a mapping to another frame; A and D bits in PTE and PDE");
  *pte_of(VA) &= ~(PTE_A | PTE_D);
  page_dir[VA >> 22] &= ~PTE_A;
  flush_all();
  CHECK_EQ(rd(VA), 0xaaaaaaaa);
  CHECK(*pte_of(VA) & PTE_A);
  CHECK(!(*pte_of(VA) & PTE_D));
  CHECK(page_dir[VA >> 22] & PTE_A);
  wr(VA + 4, 1);
  CHECK(*pte_of(VA) & PTE_D);
  CHECK_EQ(rd(FRAME_A + 4), 1);

  STEP("not present: #PF with P=0, W/R from the access, CR2 = the address");
  *pte_of(VA) &= ~PTE_P;
  invlpg(VA);
  EXPECT_FAULT(14, 0, rd(VA + 0x10));
  CHECK_EQ(last_fault.cr2, VA + 0x10);
  EXPECT_FAULT(14, 2, wr(VA + 0x20, 1));
  CHECK_EQ(last_fault.cr2, VA + 0x20);
  page_dir[0x30] = 0;  /* no page table at all */
  EXPECT_FAULT(14, 0, rd(0x30 << 22));
  CHECK_EQ(last_fault.cr2, 0x30 << 22);
  *pte_of(VA) |= PTE_P;
  invlpg(VA);

  STEP("read-only page: CPL 0 writes succeed with WP=0 and fault with WP=1");
  *pte_of(VA) &= ~PTE_W;
  invlpg(VA);
  wr(VA, 0x12345678);
  CHECK_EQ(rd(VA), 0x12345678);
  write_cr0(read_cr0() | CR0_WP);
  EXPECT_FAULT(14, 3, wr(VA, 1));
  CHECK_EQ(last_fault.cr2, VA);
  write_cr0(read_cr0() & ~CR0_WP);

  STEP("user accesses: supervisor page #PF(U|P), read-only user page #PF(U|W|P), PDE U=0 wins");
  user_target = VA;
  EXPECT_FAULT(14, 5, run_user(user_read, 0));
  CHECK_EQ(last_fault.cr2, VA);
  EXPECT_FAULT(14, 7, run_user(user_write, 0));
  *pte_of(VA) |= PTE_U;
  invlpg(VA);
  CHECK_EQ(run_user(user_read, 0), 0);
  EXPECT_FAULT(14, 7, run_user(user_write, 0));
  *pte_of(VA) |= PTE_W;
  invlpg(VA);
  CHECK_EQ(run_user(user_write, 0), 0);
  CHECK_EQ(rd(FRAME_A), 7);
  user_target = 0x400000 + 0x1230;  /* a user PTE under a supervisor PDE */
  page_dir[1] &= ~PTE_U;
  flush_all();
  EXPECT_FAULT(14, 5, run_user(user_read, 0));
  page_dir[1] |= PTE_U;
  page_dir[1] &= ~PTE_W;  /* and a read-only PDE over a writable PTE */
  flush_all();
  EXPECT_FAULT(14, 7, run_user(user_write, 0));
  CHECK_EQ(last_fault.cr2, 0x401230);
  page_dir[1] |= PTE_W;
  flush_all();
  user_target = 0x1000010;  /* not-present from user mode: U set, P clear */
  EXPECT_FAULT(14, 4, run_user(user_read, 0));

  STEP("INVLPG: a changed PTE is seen after invlpg");
  *pte_of(VA) = FRAME_A | PTE_P | PTE_W;
  invlpg(VA);
  CHECK_EQ(rd(VA + 8), rd(FRAME_A + 8));
  wr(FRAME_B + 8, 0xb8);
  wr(FRAME_A + 8, 0xa8);
  (void)rd(VA + 8);                  /* cache the old translation */
  *pte_of(VA) = FRAME_B | PTE_P | PTE_W;
  invlpg(VA);
  CHECK_EQ(rd(VA + 8), 0xb8);

  STEP("CR3 load: a second address space maps VA elsewhere");
  memcpy(second_dir, page_dir, sizeof second_dir);
  memcpy(second_table, (void *)(page_dir[VA >> 22] & ~0xfffu), sizeof second_table);
  second_dir[VA >> 22] = (uint32_t)second_table | PTE_P | PTE_W | PTE_U;
  second_table[(VA >> 12) & 0x3ff] = FRAME_A | PTE_P | PTE_W;
  const uint32_t first = read_cr3();
  write_cr3((uint32_t)second_dir);
  CHECK_EQ(rd(VA + 8), 0xa8);
  write_cr3(first);
  CHECK_EQ(rd(VA + 8), 0xb8);

  STEP("4 MiB pages (CR4.PSE): mapping, A and D bits in the PDE");
  write_cr4(read_cr4() | CR4_PSE);
  page_dir[0x40] = 0x800000 | PTE_P | PTE_W | PTE_PS;  /* 0x10000000 -> 8 MiB */
  flush_all();
  CHECK_EQ(rd(0x10000000 + (FRAME_A - 0x800000) + 8), 0xa8);
  CHECK(page_dir[0x40] & PTE_A);
  CHECK(!(page_dir[0x40] & PTE_D));
  wr(0x10000000 + (FRAME_B - 0x800000) + 12, 0xc12);
  CHECK(page_dir[0x40] & PTE_D);
  CHECK_EQ(rd(FRAME_B + 12), 0xc12);
  EXPECT_FAULT(14, 2 | 0, wr(0x10400000, 1));  /* the next 4 MiB is not mapped */

  STEP("global pages (CR4.PGE): a global PTE change is seen after invlpg and after a PGE toggle");
  write_cr4(read_cr4() | CR4_PGE);
  *pte_of(VA) = FRAME_A | PTE_P | PTE_W | PTE_G;
  invlpg(VA);
  CHECK_EQ(rd(VA + 8), 0xa8);
  flush_all();                         /* may keep the global entry: nothing asserted */
  *pte_of(VA) = FRAME_B | PTE_P | PTE_W | PTE_G;
  invlpg(VA);
  CHECK_EQ(rd(VA + 8), 0xb8);
  *pte_of(VA) = FRAME_A | PTE_P | PTE_W | PTE_G;
  write_cr4(read_cr4() & ~CR4_PGE);    /* flushes global entries too */
  write_cr4(read_cr4() | CR4_PGE);
  CHECK_EQ(rd(VA + 8), 0xa8);
  /* A non-global page is always re-read after a CR3 load. */
  *pte_of(VA + 0x1000) = FRAME_A | PTE_P | PTE_W;
  invlpg(VA + 0x1000);
  CHECK_EQ(rd(VA + 0x1008), 0xa8);
  *pte_of(VA + 0x1000) = FRAME_B | PTE_P | PTE_W;
  flush_all();
  CHECK_EQ(rd(VA + 0x1008), 0xb8);

  paging_disable();
}
