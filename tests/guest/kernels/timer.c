/* timer: the 8254 PIT (counter 0, mode 2) through the 8259A PIC (IRQ 0 at
   vector 0x20): interrupts arrive in kernel mode (halted and busy), in user
   mode (CPL 3, frame with SS:ESP, on the TSS stack), nested inside another
   interrupt handler that re-enables interrupts, and not at all while masked
   at the PIC or with IF = 0, after which the latched request arrives.
   Datasheets: 8254 (Intel 231164) mode 2, 8259A (231468) ISR/EOI. */
#include "guest.h"

const char test_name[] = "timer";

static volatile uint32_t ticks, kernel_ticks, user_ticks, nested_ticks, in_soft, isr_seen;
static volatile uint32_t user_frame_ss, user_frame_on_int_stack;

static void tick(struct regs *r) {
  ticks++;
  if ((r->cs & 3) == 3) {
    user_ticks++;
    user_frame_ss = r->user_ss;
    user_frame_on_int_stack = (uint32_t)r >= (uint32_t)kernel_int_stack &&
                              (uint32_t)r < (uint32_t)kernel_int_stack + KERNEL_INT_STACK_SIZE;
  } else {
    kernel_ticks++;
  }
  if (in_soft) nested_ticks++;
  isr_seen = pic_isr() & 1;
  pic_eoi(0);
}

static void wait_ticks(uint32_t n, const char *what) {
  const uint32_t start = ticks;
  for (uint32_t spin = 0; ticks - start < n; ++spin)
    if (spin > 200000000u) fail("%s: %u timer ticks did not arrive (got %u)", what, n, ticks - start);
}

/* Waits until PIT counter 0 has wrapped n times, i.e. n full periods of
   PIT time have passed, whatever the speed of the CPU (mode 2 counts down
   from the divisor and reloads, so a read larger than the previous one is a
   wrap). */
static void wait_pit_periods(uint32_t n) {
  uint16_t prev = pit_read_counter0();
  uint32_t wraps = 0;
  for (uint32_t spin = 0; wraps < n; ++spin) {
    if (spin > 50000000u) fail("PIT counter 0 stopped (read 0x%x)", prev);
    const uint16_t cur = pit_read_counter0();
    if (cur > prev) wraps++;
    prev = cur;
  }
}
/* Waits until IRQ 0 is latched in the master's IRR (set even while masked
   or while IF = 0). A VMM may raise the edge some time after the PIT period
   ends (qemu does it from its main loop), so poll rather than assume. */
static int irr0_latched_within(uint32_t periods) {
  for (uint32_t i = 0; i < periods; ++i) {
    outb(0x20, 0x0a);  /* OCW3: read IRR */
    if (inb(0x20) & 1) return 1;
    wait_pit_periods(1);
  }
  return 0;
}
static void spin_io(uint32_t n) { for (uint32_t i = 0; i < n; ++i) (void)inb(0x80); }

static void soft_handler(struct regs *r) {
  (void)r;
  in_soft = 1;
  const uint32_t start = ticks;
  sti();
  for (uint32_t spin = 0; ticks == start && spin < 200000000u; ++spin) __asm__ volatile("hlt");
  cli();
  in_soft = 0;
}

static void user_spin(void) {
  const uint32_t start = ticks;
  for (uint32_t spin = 0; ticks - start < 5; ++spin)
    if (spin > 200000000u) user_syscall(0, 1);
}

void test_main(uint32_t magic, const struct multiboot_info *mbi) {
  (void)magic; (void)mbi;
  pic_init();
  set_handler(IRQ_BASE + 0, tick);
  set_handler(0x81, soft_handler);
  pit_periodic(1000);

  STEP("the PIT counter counts down");
  uint16_t c0 = pit_read_counter0();
  spin_io(100);
  uint16_t c1 = pit_read_counter0();
  CHECK(c0 != c1);
  CHECK(c0 <= 1193 && c1 <= 1193);

  STEP("IRQ 0 while halted in kernel mode; ISR bit set until EOI");
  pic_unmask(0);
  sti();
  const uint32_t start = ticks;
  for (uint32_t spin = 0; ticks - start < 5 && spin < 1000000; ++spin) __asm__ volatile("hlt");
  CHECK(ticks - start >= 5);
  CHECK(isr_seen);
  CHECK_EQ(pic_isr() & 1, 0);

  STEP("IRQ 0 while busy in kernel mode");
  uint32_t k0 = kernel_ticks;
  wait_ticks(5, "kernel busy loop");
  CHECK(kernel_ticks - k0 >= 5);

  STEP("IRQ 0 while in user mode: frame from CPL 3 on the TSS stack");
  cli();
  CHECK_EQ(run_user(user_spin, EFL_IF), 0);
  CHECK(user_ticks >= 1);
  CHECK_EQ(user_frame_ss, UDATA);
  CHECK(user_frame_on_int_stack);

  STEP("masked at the PIC: IRR latches, nothing arrives; unmasked: the request does");
  pic_mask(0);
  sti();
  uint32_t t = ticks;
  CHECK(irr0_latched_within(500));
  CHECK_EQ(ticks, t);
  pic_unmask(0);
  spin_io(10);
  CHECK(ticks != t);

  STEP("IF = 0: IRR latches, nothing arrives; sti: the request is delivered");
  cli();
  t = ticks;
  CHECK(irr0_latched_within(500));
  CHECK_EQ(ticks, t);
  sti();
  spin_io(10);
  CHECK(ticks != t);

  STEP("nested: IRQ 0 inside a software interrupt handler that re-enables interrupts");
  __asm__ volatile("int $0x81");
  CHECK(nested_ticks >= 1);
  cli();
  pic_mask(0);
}
