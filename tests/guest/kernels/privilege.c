/* privilege: CPL 0 -> 3 through iret, back through int 0x80 onto the TSS
   ring-0 stack (SS0:ESP0) with the user SS:ESP pushed, privileged
   instructions and DPL-0 gates from CPL 3 (#GP), IOPL 3, register
   preservation across a system call, and nested interrupts at CPL 0 through
   interrupt and trap gates (IF cleared or kept). Intel SDM vol. 3, 5.8-5.9
   (privilege checks), 6.12.1 (stack switch on interrupts), 7.7 (TSS). */
#include "guest.h"

const char test_name[] = "privilege";

static volatile uint32_t hook_cs, hook_ss, hook_user_esp, hook_esp, hook_arg, hook_nested_esp;
static volatile uint32_t user_cpl, user_ret, user_regs_ok;
static volatile uint32_t depth, inner_depth, inner_cs, inner_frame_esp, outer_frame_esp, inner_if, trap_if;

static int on_int_stack(uint32_t esp) {
  return esp >= (uint32_t)kernel_int_stack && esp < (uint32_t)kernel_int_stack + KERNEL_INT_STACK_SIZE;
}

static void inner_handler(struct regs *r) {
  inner_depth = depth;
  inner_cs = r->cs;
  inner_frame_esp = (uint32_t)r;
  inner_if = read_eflags() & EFL_IF;
}
static void outer_handler(struct regs *r) {
  depth++;
  outer_frame_esp = (uint32_t)r;
  __asm__ volatile("int $0x43");
  depth--;
}
static void trap_gate_handler(struct regs *r) { (void)r; trap_if = read_eflags() & EFL_IF; }

static uint32_t hook(struct regs *r) {
  hook_cs = r->cs;
  hook_ss = r->user_ss;
  hook_user_esp = r->user_esp;
  hook_esp = (uint32_t)r;
  hook_arg = r->ebx;
  __asm__ volatile("int $0x42");  /* nested, ring 0 -> ring 0 on the TSS stack */
  hook_nested_esp = inner_frame_esp;
  return r->ebx + 1;
}

static void user_main(void) {
  uint16_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  user_cpl = cs & 3;
  user_ret = user_syscall(2, 41);
  /* ESI, EDI, EBP survive a system call. */
  uint32_t si, di, bp;
  __asm__ volatile("push %%ebp\n\tmov $0x11111111, %%esi\n\tmov $0x22222222, %%edi\n\tmov $0x33333333, %%ebp\n\t"
                   "mov $2, %%eax\n\tmov $0, %%ebx\n\tint $0x80\n\tmov %%ebp, %%edx\n\tpop %%ebp"
                   : "=S"(si), "=D"(di), "=d"(bp) :: "eax", "ebx", "ecx", "memory");
  user_regs_ok = si == 0x11111111 && di == 0x22222222 && bp == 0x33333333;
  user_syscall(1, 'u');
  user_syscall(1, '\n');
}
static void user_exit42(void) { user_syscall(0, 42); }
static void user_cli(void) { __asm__ volatile(MARK_EIP "1: cli"); }
static void user_hlt(void) { __asm__ volatile(MARK_EIP "1: hlt"); }
static void user_in(void) { __asm__ volatile(MARK_EIP "1: inb $0x80, %%al" ::: "eax"); }
static void user_out(void) { __asm__ volatile(MARK_EIP "1: outb %%al, $0x80" ::: "eax"); }
static void user_cr0(void) { __asm__ volatile(MARK_EIP "1: mov %%cr0, %%eax" ::: "eax"); }
static void user_lidt(void) { static uint64_t z; __asm__ volatile(MARK_EIP "1: lidt %0" :: "m"(z)); }
static void user_int41(void) { __asm__ volatile(MARK_EIP "1: int $0x41"); }
static void user_int3(void) { __asm__ volatile("movl $1f, fault_expected_eip\n\tint3\n1:" ::: "memory"); }
static void user_iopl3(void) { __asm__ volatile("cli\n\tsti\n\tinb $0x80, %%al\n\toutb %%al, $0x80" ::: "eax"); }

void test_main(uint32_t magic, const struct multiboot_info *mbi) {
  (void)magic; (void)mbi;
  set_handler(0x42, outer_handler);
  set_handler(0x43, inner_handler);
  set_handler(0x44, trap_gate_handler);
  set_gate(0x44, 0, 1);
  syscall_hook = hook;

  STEP("iret to CPL 3, int 0x80 back on the TSS stack, return value, nested interrupt");
  CHECK_EQ(run_user(user_main, 0), 0);
  CHECK_EQ(user_cpl, 3);
  CHECK_EQ(hook_cs, UCODE);
  CHECK_EQ(hook_ss, UDATA);
  CHECK(hook_user_esp > 0x100000 && !on_int_stack(hook_user_esp));
  CHECK(on_int_stack(hook_esp));
  /* The frame from CPL 3 is the top of the ring-0 stack: 19 dwords below ESP0. */
  CHECK_EQ(hook_esp, (uint32_t)kernel_int_stack + KERNEL_INT_STACK_SIZE - sizeof(struct regs));
  CHECK_EQ(hook_arg, 0);  /* the last call was the register check with EBX = 0 */
  CHECK_EQ(user_ret, 42);
  CHECK(user_regs_ok);
  CHECK(on_int_stack(hook_nested_esp) && hook_nested_esp < hook_esp);
  CHECK_EQ(inner_cs, KCODE);
  CHECK_EQ(run_user(user_exit42, 0), 42);

  STEP("privileged instructions at CPL 3 with IOPL 0 raise #GP(0)");
  EXPECT_FAULT(13, 0, run_user(user_cli, 0));
  CHECK_EQ(last_fault.cs, UCODE);
  EXPECT_FAULT(13, 0, run_user(user_hlt, 0));
  EXPECT_FAULT(13, 0, run_user(user_in, 0));
  EXPECT_FAULT(13, 0, run_user(user_out, 0));
  EXPECT_FAULT(13, 0, run_user(user_cr0, 0));
  EXPECT_FAULT(13, 0, run_user(user_lidt, 0));

  STEP("int n through a DPL 0 gate from CPL 3: #GP(vector * 8 + 2); int3 through a DPL 3 gate: #BP");
  EXPECT_FAULT(13, 0x41 * 8 + 2, run_user(user_int41, 0));
  EXPECT_FAULT(3, 0, run_user(user_int3, 0));
  CHECK_EQ(last_fault.cs, UCODE);

  STEP("IOPL 3: cli, sti, in and out are allowed at CPL 3");
  CHECK_EQ(run_user(user_iopl3, EFL_IOPL3), 0);

  STEP("nested interrupts at CPL 0: same stack, no SS:ESP pushed, IF cleared by interrupt gates");
  sti();
  __asm__ volatile("int $0x42");
  cli();
  CHECK_EQ(inner_depth, 1);
  CHECK_EQ(inner_cs, KCODE);
  CHECK(!inner_if);
  /* No stack switch and no SS:ESP: the inner frame sits just below the outer one. */
  CHECK(inner_frame_esp < outer_frame_esp && outer_frame_esp - inner_frame_esp < 256);
  CHECK(!on_int_stack(outer_frame_esp));

  STEP("a trap gate keeps IF");
  sti();
  __asm__ volatile("int $0x44");
  cli();
  CHECK(trap_if);
}
