/* guestlib (see guestlib.h): descriptors per Intel SDM vol. 3, chapters 3
   (segments), 6 (IDT) and 7 (TSS); COM1 per the National PC16550D
   datasheet. */
#include "guestlib.h"

#include "fmt.h"

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4

/* ---- descriptors ---- */
uint64_t make_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags) {
  return (uint64_t)(limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 | (uint64_t)access << 40 |
         (uint64_t)((limit >> 16) & 0xf) << 48 | (uint64_t)(flags & 0xf) << 52 | (uint64_t)(base >> 24) << 56;
}

uint64_t make_gate(uint32_t handler, unsigned dpl, int trap) {
  return (uint64_t)(handler & 0xffff) | (uint64_t)KCODE << 16 |
         (uint64_t)(0x80 | dpl << 5 | (trap ? 0xf : 0xe)) << 40 | (uint64_t)(handler >> 16) << 48;
}

void gdt_load_flat(uint64_t *gdt, unsigned entries, struct tss *tss, uint32_t esp0) {
  /* SDM vol. 3, 3.4.5: base 0, limit 0xFFFFF pages (4 GiB), G=1, D=1. */
  gdt[0] = 0;
  gdt[1] = make_desc(0, 0xfffff, 0x9a, 0xc); /* kernel code: present, DPL 0, execute/read */
  gdt[2] = make_desc(0, 0xfffff, 0x92, 0xc); /* kernel data: present, DPL 0, read/write */
  gdt[3] = make_desc(0, 0xfffff, 0xfa, 0xc); /* user code: DPL 3 */
  gdt[4] = make_desc(0, 0xfffff, 0xf2, 0xc); /* user data: DPL 3 */
  tss->ss0 = KDATA;
  tss->esp0 = esp0;
  /* Offset 102: I/O map base past the limit, so there is no I/O bitmap and
     CPL 3 I/O depends on IOPL only (SDM vol. 1, 19.5.2). */
  tss->iomap = (uint32_t)sizeof *tss << 16;
  gdt[5] = make_desc((uint32_t)tss, sizeof *tss - 1, 0x89, 0x0); /* present, 32-bit TSS available */
  struct {
    uint16_t limit;
    uint32_t base;
  } __attribute__((packed)) gdtr = {(uint16_t)(entries * 8 - 1), (uint32_t)gdt};
  __asm__ volatile(
      "lgdt %0\n\t"
      "ljmp %1, $1f\n"
      "1: mov %2, %%ax\n\t"
      "mov %%ax, %%ds\n\tmov %%ax, %%es\n\tmov %%ax, %%fs\n\tmov %%ax, %%gs\n\tmov %%ax, %%ss\n\t"
      "mov %3, %%ax\n\tltr %%ax\n\t"
      "xor %%eax, %%eax\n\tlldt %%ax" /* no LDT: LDT selectors fault */
      ::"m"(gdtr),
      "i"(KCODE), "i"(KDATA), "i"(TSS_SEL)
      : "eax", "memory");
}

void idt_load(const uint64_t *idt, unsigned entries) {
  struct {
    uint16_t limit;
    uint32_t base;
  } __attribute__((packed)) idtr = {(uint16_t)(entries * 8 - 1), (uint32_t)idt};
  __asm__ volatile("lidt %0" ::"m"(idtr) : "memory");
}

/* ---- COM1 and debug exit ---- */
void serial_init(void) {
  /* PC16550D datasheet, table II: divisor latch via LCR.DLAB, 8N1, FIFOs on
     and cleared; no UART interrupts (these guests only transmit). */
  outb(COM1 + 1, 0x00); /* IER: all off */
  outb(COM1 + 3, 0x80); /* LCR: DLAB */
  outb(COM1 + 0, 0x01); /* divisor 1 = 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03); /* LCR: 8 bits, no parity, 1 stop */
  outb(COM1 + 2, 0xc7); /* FCR: enable, clear both FIFOs, trigger 14 */
  outb(COM1 + 4, 0x03); /* MCR: DTR, RTS */
}

void serial_putc(char c) {
  /* LSR bit 5 (THRE): the holding register can take a byte. Bounded, so a
     missing UART (reads 0xFF, THRE set anyway) cannot hang the guest. */
  for (int spin = 0; spin < 100000 && !(inb(COM1 + 5) & 0x20); ++spin) {
  }
  outb(COM1, (uint8_t)c);
}

void serial_write(const char *s, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    if (s[i] == '\n') serial_putc('\r');
    serial_putc(s[i]);
  }
}

void serial_vprintf(const char *fmt, va_list ap) {
  char buf[64];
  FmtOut o = {buf, sizeof buf, 0, serial_write};
  fmt_vout(&o, fmt, ap);
  serial_write(buf, (uint32_t)o.len);
}

void serial_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  serial_vprintf(fmt, ap);
  va_end(ap);
}

void debug_exit(uint8_t value) {
  outb(DEBUG_EXIT, value);
  halt_forever();
}
