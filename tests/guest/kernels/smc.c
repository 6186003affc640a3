/* smc: self-modifying and cross-modifying code in the kernel. A store that
   changes an instruction must be seen by the next execution of it (Intel SDM
   vol. 3, 11.6: on the P6 family and later, a write to a code address that
   is about to execute is detected; no serialising instruction needed for
   this in-order, single-processor case). Cases: patch the immediate of the
   very next instruction, patch a routine between calls, patch inside a loop
   many times, fill one page with other code, and remap a virtual code page
   to another frame (paging, invlpg). */
#include "guest.h"

const char test_name[] = "smc";

typedef uint32_t (*fn_t)(void);
static uint8_t code_page[4096] __attribute__((aligned(4096)));
static uint8_t code_frame_b[4096] __attribute__((aligned(4096)));

/* mov $imm, %eax; ret */
static void emit_const(uint8_t *p, uint32_t imm) {
  p[0] = 0xb8;
  memcpy(p + 1, &imm, 4);
  p[5] = 0xc3;
}

static uint32_t patch_next_instruction(uint32_t value) {
  uint32_t out;
  /* The movl stores into the imm32 of the mov right after it. */
  __asm__ volatile("movl %1, 1f+1\n\t"
                   "1: mov $0, %0"
                   : "=r"(out) : "r"(value) : "memory");
  return out;
}

static uint32_t patch_in_loop(void) {
  uint32_t sum = 0, v;
  for (uint32_t i = 1; i <= 1000; ++i) {
    __asm__ volatile("movl %1, 1f+1\n\t"
                     "1: mov $0xffffffff, %0"
                     : "=a"(v) : "r"(i) : "memory");
    sum += v;
  }
  return sum;
}

void test_main(uint32_t magic, const struct multiboot_info *mbi) {
  (void)magic; (void)mbi;

  STEP("patch the next instruction's immediate");
  CHECK_EQ(patch_next_instruction(0x1234), 0x1234);
  CHECK_EQ(patch_next_instruction(0xcafe), 0xcafe);

  STEP("patch a routine between calls");
  fn_t f = (fn_t)code_page;
  emit_const(code_page, 1);
  CHECK_EQ(f(), 1);
  emit_const(code_page, 2);
  CHECK_EQ(f(), 2);
  code_page[1] = 3;  /* one byte of the immediate */
  CHECK_EQ(f(), 3);
  /* Replace the instruction itself: xor %eax,%eax; dec %eax; ret */
  code_page[0] = 0x31; code_page[1] = 0xc0; code_page[2] = 0x48; code_page[3] = 0xc3;
  CHECK_EQ(f(), 0xffffffff);

  STEP("patch an instruction 1000 times in a loop");
  CHECK_EQ(patch_in_loop(), 1000 * 1001 / 2);

  STEP("reload a page with other code: a routine at each 64-byte slot, then new ones");
  for (uint32_t i = 0; i < 64; ++i) emit_const(code_page + 64 * i, 100 + i);
  uint32_t sum = 0;
  for (uint32_t i = 0; i < 64; ++i) sum += ((fn_t)(code_page + 64 * i))();
  CHECK_EQ(sum, 64 * 100 + 63 * 64 / 2);
  memset(code_page, 0xcc, sizeof code_page);
  for (uint32_t i = 0; i < 64; ++i) emit_const(code_page + 64 * i, 1000 * i);
  sum = 0;
  for (uint32_t i = 0; i < 64; ++i) sum += ((fn_t)(code_page + 64 * i))();
  CHECK_EQ(sum, 1000 * 63 * 64 / 2);

  STEP("remap the code page's virtual address to another frame (paging, invlpg)");
  emit_const(code_page, 0xaaaa);
  emit_const(code_frame_b, 0xbbbb);
  paging_init();
  paging_enable();
  CHECK_EQ(f(), 0xaaaa);
  const uint32_t old = *pte_of((uint32_t)code_page);
  *pte_of((uint32_t)code_page) = (uint32_t)code_frame_b | PTE_P | PTE_W;
  invlpg((uint32_t)code_page);
  CHECK_EQ(f(), 0xbbbb);
  /* Write the other frame through an alias mapping while it is mapped as code. */
  *pte_of(0xc00000) = (uint32_t)code_frame_b | PTE_P | PTE_W;
  invlpg(0xc00000);
  emit_const((uint8_t *)0xc00000, 0xcccc);
  CHECK_EQ(f(), 0xcccc);
  *pte_of((uint32_t)code_page) = old;
  invlpg((uint32_t)code_page);
  CHECK_EQ(f(), 0xaaaa);
  paging_disable();
}
