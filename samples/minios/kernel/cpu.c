// Descriptor tables and the two timer-path chips: the GDT (kernel and user
// segments plus the TSS), the TSS (ring 0 stack for traps from ring 3), the
// IDT, the 8259A pair (remapped to vectors 0x20-0x2F) and the 8254 PIT.
#include "kernel.h"
#include "x86.h"

// Intel SDM vol. 3, 7.2.1: the 32-bit TSS. Only SS0:ESP0 matter here (the
// stack the CPU switches to on a trap from ring 3); no hardware task switch.
typedef struct __attribute__((packed)) {
  uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
  uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi;
  uint32_t es, cs, ss, ds, fs, gs, ldt;
  uint16_t trap, iomap_base;
} Tss;

typedef struct __attribute__((packed)) {
  uint16_t limit;
  uint32_t base;
} TableRegister;

// SDM vol. 3, 6.11: a 32-bit interrupt gate.
typedef struct __attribute__((packed)) {
  uint16_t offset_low, selector;
  uint8_t zero, type_attr;
  uint16_t offset_high;
} IdtGate;

static uint64_t g_gdt[6] __attribute__((aligned(8)));
static Tss g_tss __attribute__((aligned(16)));
static IdtGate g_idt[256] __attribute__((aligned(8)));

// SDM vol. 3, 3.4.5: base 0, limit 0xFFFFF pages (4 GiB), G=1, D=1.
static uint64_t flat_segment(uint8_t access) { return 0x00CF00000000FFFFull | ((uint64_t)access << 40); }

static uint64_t tss_descriptor(uint32_t base, uint32_t limit) {
  return (limit & 0xFFFFu) | ((uint64_t)(base & 0xFFFFFFu) << 16) | (0x89ull << 40) |  // present, 32-bit TSS
         ((uint64_t)((limit >> 16) & 0xF) << 48) | ((uint64_t)(base >> 24) << 56);
}

static void set_gate(unsigned vector, uint32_t handler, unsigned dpl) {
  // Type 0xE: 32-bit interrupt gate, so IF is clear inside the kernel.
  g_idt[vector] = (IdtGate){(uint16_t)handler, kKernelCs, 0, (uint8_t)(0x8E | (dpl << 5)), (uint16_t)(handler >> 16)};
}

void cpu_init(void) {
  g_gdt[0] = 0;
  g_gdt[1] = flat_segment(0x9A);  // kernel code: present, DPL 0, execute/read
  g_gdt[2] = flat_segment(0x92);  // kernel data: present, DPL 0, read/write
  g_gdt[3] = flat_segment(0xFA);  // user code: DPL 3
  g_gdt[4] = flat_segment(0xF2);  // user data: DPL 3
  g_tss.ss0 = kKernelDs;
  // An I/O map base past the limit: no I/O bitmap, so IN/OUT in ring 3
  // raise #GP (IOPL is 0). SDM vol. 1, 19.5.2.
  g_tss.iomap_base = sizeof(Tss);
  g_gdt[5] = tss_descriptor((uint32_t)&g_tss, sizeof(Tss) - 1);

  TableRegister gdtr = {sizeof g_gdt - 1, (uint32_t)g_gdt};
  __asm__ volatile(
      "lgdt %0\n"
      "ljmp %1, $1f\n"
      "1:\n"
      "mov %2, %%ax\n"
      "mov %%ax, %%ds\n"
      "mov %%ax, %%es\n"
      "mov %%ax, %%fs\n"
      "mov %%ax, %%gs\n"
      "mov %%ax, %%ss\n"
      "mov %3, %%ax\n"
      "ltr %%ax\n" ::"m"(gdtr),
      "i"(kKernelCs), "i"(kKernelDs), "i"(kTssSel)
      : "eax", "memory");

  for (unsigned v = 0; v < 48; ++v) set_gate(v, trap_stubs[v], 0);
  set_gate(kSyscallVector, (uint32_t)stub_128, 3);  // DPL 3: int 0x80 allowed from user mode
  TableRegister idtr = {sizeof g_idt - 1, (uint32_t)g_idt};
  __asm__ volatile("lidt %0" ::"m"(idtr));
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
