/* The test-kernel library (see guest.h). Serial is a polled 16550 on COM1
   (National PC16550D datasheet); descriptors follow Intel SDM vol. 3,
   chapters 3 (segments), 6 (IDT, exceptions) and 7 (TSS); the PIC and PIT
   are programmed as in the 8259A (231468) and 8254 (231164) datasheets. */
#include "guest.h"

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4

/* ---- strings ---- */
void *memset(void *d, int c, size_t n) { uint8_t *p = d; while (n--) *p++ = (uint8_t)c; return d; }
void *memcpy(void *d, const void *s, size_t n) { uint8_t *p = d; const uint8_t *q = s; while (n--) *p++ = *q++; return d; }
int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *p = a, *q = b;
  for (; n; --n, ++p, ++q) if (*p != *q) return *p - *q;
  return 0;
}
size_t strlen(const char *s) { size_t n = 0; while (s[n]) ++n; return n; }
int strncmp(const char *a, const char *b, size_t n) {
  for (; n; --n, ++a, ++b) { if (*a != *b) return (uint8_t)*a - (uint8_t)*b; if (!*a) return 0; }
  return 0;
}
const char *strstr(const char *h, const char *n) {
  size_t len = strlen(n);
  for (; *h; ++h) if (strncmp(h, n, len) == 0) return h;
  return len ? 0 : h;
}

/* ---- serial ---- */
static void serial_init(void) {
  outb(COM1 + 1, 0x00);  /* IER: no interrupts */
  outb(COM1 + 3, 0x80);  /* LCR: DLAB */
  outb(COM1 + 0, 0x01);  /* 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03);  /* 8N1 */
  outb(COM1 + 2, 0xc7);  /* FIFOs on, cleared */
  outb(COM1 + 4, 0x03);  /* DTR RTS */
}
void putc_serial(char c) {
  for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); ++i) {}
  outb(COM1, (uint8_t)c);
}
static void put_num(uint32_t v, unsigned base, int width, char pad, int neg) {
  char buf[16];
  int n = 0;
  do { buf[n++] = "0123456789abcdef"[v % base]; v /= base; } while (v);
  if (neg) buf[n++] = '-';
  while (n < width) { putc_serial(pad); --width; }
  while (n) putc_serial(buf[--n]);
}
void vprint(const char *fmt, va_list ap) {
  for (; *fmt; ++fmt) {
    if (*fmt != '%') { if (*fmt == '\n') putc_serial('\r'); putc_serial(*fmt); continue; }
    char pad = ' ';
    int width = 0;
    if (*++fmt == '0') { pad = '0'; ++fmt; }
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    switch (*fmt) {
      case 'x': case 'p': put_num(va_arg(ap, uint32_t), 16, width, pad, 0); break;
      case 'u': put_num(va_arg(ap, uint32_t), 10, width, pad, 0); break;
      case 'd': { int v = va_arg(ap, int); put_num(v < 0 ? -(uint32_t)v : (uint32_t)v, 10, width, pad, v < 0); break; }
      case 'c': putc_serial((char)va_arg(ap, int)); break;
      case 's': { const char *s = va_arg(ap, const char *); while (*s) putc_serial(*s++); break; }
      case '%': putc_serial('%'); break;
      default: putc_serial('?'); break;
    }
  }
}
void print(const char *fmt, ...) { va_list ap; va_start(ap, fmt); vprint(fmt, ap); va_end(ap); }

/* ---- verdict: debug-exit port, status (v << 1) | 1 ---- */
static __attribute__((noreturn)) void halt_forever(void) { for (;;) __asm__ volatile("cli; hlt"); }
void pass(void) {
  print("PASS: %s\n", test_name);
  outb(DEBUG_EXIT, 0);
  halt_forever();
}
void fail(const char *fmt, ...) {
  cli();
  print("FAIL: %s: ", test_name);
  va_list ap;
  va_start(ap, fmt);
  vprint(fmt, ap);
  va_end(ap);
  print("\n");
  outb(DEBUG_EXIT, 1);
  halt_forever();
}

/* ---- descriptors ---- */
uint64_t gdt[16] __attribute__((aligned(8)));
uint64_t idt[256] __attribute__((aligned(8)));
struct tss tss __attribute__((aligned(128)));
uint8_t kernel_int_stack[KERNEL_INT_STACK_SIZE] __attribute__((aligned(16)));
extern uint8_t isr_stubs[];

uint64_t make_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags) {
  return (uint64_t)(limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 | (uint64_t)access << 40 |
         (uint64_t)((limit >> 16) & 0xf) << 48 | (uint64_t)(flags & 0xf) << 52 | (uint64_t)(base >> 24) << 56;
}
void set_desc(int index, uint64_t d) { gdt[index] = d; }

void set_gate(int v, int dpl, int trap) {
  uint32_t off = (uint32_t)(isr_stubs + 16 * v);
  idt[v] = (uint64_t)(off & 0xffff) | (uint64_t)KCODE << 16 |
           (uint64_t)(0x80 | dpl << 5 | (trap ? 0xf : 0xe)) << 40 | (uint64_t)(off >> 16) << 48;
}
void set_gate_present(int v, int present) {
  if (present) idt[v] |= 1ull << 47; else idt[v] &= ~(1ull << 47);
}
uint16_t read_ss(void) { uint16_t s; __asm__ volatile("mov %%ss, %0" : "=r"(s)); return s; }

void setup_cpu(void) {
  gdt[0] = 0;
  gdt[1] = make_desc(0, 0xfffff, 0x9a, 0xc);
  gdt[2] = make_desc(0, 0xfffff, 0x92, 0xc);
  gdt[3] = make_desc(0, 0xfffff, 0xfa, 0xc);
  gdt[4] = make_desc(0, 0xfffff, 0xf2, 0xc);
  memset(&tss, 0, sizeof tss);
  tss.ss0 = KDATA;
  tss.esp0 = (uint32_t)(kernel_int_stack + KERNEL_INT_STACK_SIZE);
  /* Offset 102: I/O map base past the limit, so there is no I/O bitmap and
     CPL 3 I/O depends on IOPL only (SDM vol. 1, 19.5.2). */
  tss.iomap = (uint32_t)sizeof tss << 16;
  gdt[5] = make_desc((uint32_t)&tss, sizeof tss - 1, 0x89, 0x0);
  struct { uint16_t limit; uint32_t base; } __attribute__((packed)) gdtr = {sizeof gdt - 1, (uint32_t)gdt},
      idtr = {sizeof idt - 1, (uint32_t)idt};
  __asm__ volatile("lgdt %0\n\t"
                   "ljmp %1, $1f\n"
                   "1: mov %2, %%ax\n\t"
                   "mov %%ax, %%ds\n\tmov %%ax, %%es\n\tmov %%ax, %%fs\n\tmov %%ax, %%gs\n\tmov %%ax, %%ss\n\t"
                   "mov %3, %%ax\n\tltr %%ax\n\t"
                   "xor %%eax, %%eax\n\tlldt %%ax"  /* no LDT: LDT selectors fault */
                   :: "m"(gdtr), "i"(KCODE), "i"(KDATA), "i"(TSS_SEL) : "eax", "memory");
  for (int v = 0; v < 256; ++v) set_gate(v, 0, 0);
  set_gate(3, 3, 0);     /* int3 and into are allowed from user mode */
  set_gate(4, 3, 0);
  set_gate(0x80, 3, 0);  /* system calls */
  __asm__ volatile("lidt %0" :: "m"(idtr) : "memory");
}

/* ---- exceptions ---- */
static handler_fn handlers[256];
volatile struct fault_info last_fault;
struct ctx fault_ctx;
volatile int fault_armed;
volatile uint32_t fault_expected_eip;
uint32_t (*syscall_hook)(struct regs *r);
volatile uint32_t last_syscall_esp;
static struct ctx user_ctx;
static volatile uint32_t user_exit_value;

void set_handler(int vector, handler_fn fn) { handlers[vector] = fn; }

const char *vector_name(uint32_t v) {
  static const char *const names[] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO",
                                      "#TS", "#NP", "#SS", "#GP", "#PF", "15",  "#MF", "#AC", "#MC", "#XM"};
  return v < 20 ? names[v] : "interrupt";
}

void check_fault(const char *file, int line, uint32_t vector, uint32_t err) {
  if (last_fault.vector != vector)
    fail("%s:%d: expected %s, got %s (vector %u) error 0x%x at eip 0x%x", file, line, vector_name(vector),
         vector_name(last_fault.vector), last_fault.vector, last_fault.err, last_fault.eip);
  if (err != ANY_ERR && last_fault.err != err)
    fail("%s:%d: %s error code 0x%x, expected 0x%x (eip 0x%x)", file, line, vector_name(vector), last_fault.err,
         err, last_fault.eip);
  if (fault_expected_eip && last_fault.eip != fault_expected_eip)
    fail("%s:%d: %s saved eip 0x%x, expected 0x%x", file, line, vector_name(vector), last_fault.eip,
         fault_expected_eip);
}

void isr_dispatch(struct regs *r) {
  const uint32_t v = r->vector;
  if (v == 0x80 && !handlers[v]) {
    last_syscall_esp = (uint32_t)r;
    switch (r->eax) {
      case 0: user_exit_value = r->ebx; ctx_restore(&user_ctx, 1);
      case 1: putc_serial((char)r->ebx); r->eax = 0; return;
      default: r->eax = syscall_hook ? syscall_hook(r) : (uint32_t)-1; return;
    }
  }
  if (handlers[v]) { handlers[v](r); return; }
  if (v < 32) {
    last_fault.vector = v;
    last_fault.err = r->err;
    last_fault.eip = r->eip;
    last_fault.cs = r->cs;
    last_fault.cr2 = v == 14 ? read_cr2() : 0;
    last_fault.ecx = r->ecx;
    last_fault.esi = r->esi;
    last_fault.edi = r->edi;
    last_fault.count++;
    if (fault_armed) { fault_armed = 0; ctx_restore(&fault_ctx, 1); }
    fail("unexpected %s (vector %u) error 0x%x at %x:%x cr2 0x%x", vector_name(v), v, r->err, r->cs, r->eip,
         last_fault.cr2);
  }
  fail("unexpected interrupt, vector 0x%x at %x:%x", v, r->cs, r->eip);
}

/* ---- user mode ---- */
extern void enter_user(uint32_t eip, uint32_t esp, uint32_t eflags);
extern void user_exit_trampoline(void);
static uint8_t user_stack[8192] __attribute__((aligned(16)));

uint32_t run_user(void (*fn)(void), uint32_t eflags) {
  uint32_t *top = (uint32_t *)(user_stack + sizeof user_stack) - 4;
  top[0] = (uint32_t)user_exit_trampoline;
  if (ctx_save(&user_ctx) == 0) enter_user((uint32_t)fn, (uint32_t)top, eflags | 2);
  return user_exit_value;
}

/* ---- paging ---- */
uint32_t page_dir[1024] __attribute__((aligned(4096)));
static uint32_t page_tables[4][1024] __attribute__((aligned(4096)));

void paging_init(void) {
  memset(page_dir, 0, sizeof page_dir);
  for (uint32_t i = 0; i < 4; ++i) {
    page_dir[i] = (uint32_t)page_tables[i] | PTE_P | PTE_W | PTE_U;
    for (uint32_t j = 0; j < 1024; ++j) page_tables[i][j] = ((i * 1024 + j) << 12) | PTE_P | PTE_W | PTE_U;
  }
}
uint32_t *pte_of(uint32_t va) {
  uint32_t *pt = (uint32_t *)(page_dir[va >> 22] & ~0xfffu);
  return &pt[(va >> 12) & 0x3ff];
}
void paging_enable(void) { write_cr3((uint32_t)page_dir); write_cr0(read_cr0() | CR0_PG); }
void paging_disable(void) { write_cr0(read_cr0() & ~CR0_PG); }

/* ---- PIC and PIT ---- */
void pic_init(void) {
  outb(0x20, 0x11); outb(0xa0, 0x11);              /* ICW1: edge, cascade, ICW4 */
  outb(0x21, IRQ_BASE); outb(0xa1, IRQ_BASE + 8);  /* ICW2: vector bases */
  outb(0x21, 0x04); outb(0xa1, 0x02);              /* ICW3: slave on IR2 */
  outb(0x21, 0x01); outb(0xa1, 0x01);              /* ICW4: 8086 mode */
  outb(0x21, 0xfb); outb(0xa1, 0xff);              /* all masked but the cascade */
}
void pic_unmask(int irq) {
  uint16_t port = irq < 8 ? 0x21 : 0xa1;
  outb(port, inb(port) & ~(1 << (irq & 7)));
}
void pic_mask(int irq) {
  uint16_t port = irq < 8 ? 0x21 : 0xa1;
  outb(port, inb(port) | (1 << (irq & 7)));
}
void pic_eoi(int irq) { if (irq >= 8) outb(0xa0, 0x20); outb(0x20, 0x20); }
uint8_t pic_isr(void) { outb(0x20, 0x0b); return inb(0x20); }
void pit_periodic(uint32_t hz) {
  uint32_t div = 1193182 / hz;
  outb(0x43, 0x34);  /* counter 0, lo/hi, mode 2 */
  outb(0x40, div & 0xff);
  outb(0x40, div >> 8);
}
uint16_t pit_read_counter0(void) {
  outb(0x43, 0x00);  /* latch counter 0 */
  uint8_t lo = inb(0x40);
  return (uint16_t)(lo | inb(0x40) << 8);
}

/* ---- entry from boot.S ---- */
const char *boot_loader = "";
int on_qemu(void) { return strncmp(boot_loader, "qemu", 4) == 0; }
const char *boot_loader_name(void) { return boot_loader; }

void lib_main(uint32_t magic, const struct multiboot_info *mbi) {
  serial_init();
  if (magic == 0x2badb002 && (mbi->flags & (1u << 9))) boot_loader = (const char *)mbi->boot_loader_name;
  print("START: %s (boot loader \"%s\")\n", test_name, boot_loader);
  setup_cpu();
  /* A BIOS (qemu's SeaBIOS) leaves the PIT running with IRQ 0 at vector 8:
     remap and mask the PIC so a kernel that enables interrupts sees only
     what it unmasked. */
  pic_init();
  test_main(magic, mbi);
  pass();
}
