// Descriptor tables and the two timer-path chips: the GDT (kernel and user
// segments plus the TSS), the TSS (ring 0 stack for traps from ring 3), the
// IDT, the 8259A pair (remapped to vectors 0x20-0x2F) and the 8254 PIT.
#include "kernel.h"

static uint64_t g_gdt[6] __attribute__((aligned(8)));
static struct tss g_tss __attribute__((aligned(16)));
static uint64_t g_idt[256] __attribute__((aligned(8)));

void cpu_init(void) {
  // Kernel and user flat segments and the TSS; ESP0 is set per process
  // (tss_set_kernel_stack). No I/O bitmap, so IN/OUT in ring 3 raise #GP
  // (IOPL is 0).
  gdt_load_flat(g_gdt, 6, &g_tss, 0);
  // Interrupt gates (type 0xE), so IF is clear inside the kernel.
  for (unsigned v = 0; v < 48; ++v) g_idt[v] = make_gate(isr_stub(v), 0, 0);
  g_idt[kSyscallVector] = make_gate(isr_stub(kSyscallVector), 3, 0);  // DPL 3: int 0x80 allowed from user mode
  idt_load(g_idt, 256);
}

void tss_set_kernel_stack(uint32_t esp0) { g_tss.esp0 = esp0; }

// 8259A datasheet (Intel 231468), "Initialization Command Words".
void pic_init(void) {
  outb(0x20, 0x11);  // ICW1: edge triggered, cascade, ICW4 follows
  outb(0xA0, 0x11);
  outb(0x21, kIrqBase);      // ICW2: master vectors 0x20-0x27
  outb(0xA1, kIrqBase + 8);  //       slave vectors 0x28-0x2F
  outb(0x21, 0x04);          // ICW3: slave on IR2
  outb(0xA1, 0x02);          //       slave identity 2
  outb(0x21, 0x01);          // ICW4: 8086 mode, normal EOI
  outb(0xA1, 0x01);
  outb(0x21, 0xFE);  // OCW1: only IRQ 0 (the PIT)
  outb(0xA1, 0xFF);
}

void pic_eoi(unsigned irq) {
  if (irq >= 8) outb(0xA0, 0x20);  // OCW2: non-specific EOI
  outb(0x20, 0x20);
}

// 8254 datasheet (Intel 231164): counter 0, LSB then MSB, mode 2 (rate
// generator): OUT 0 pulses once per period, an IRQ 0 edge at `hz`.
void pit_init(unsigned hz) {
  uint32_t divisor = (1193182u + hz / 2) / hz;
  outb(0x43, 0x34);
  outb(0x40, (uint8_t)divisor);
  outb(0x40, (uint8_t)(divisor >> 8));
}
