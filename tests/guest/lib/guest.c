/* The test-kernel library (see guest.h). Serial is a polled 16550 on COM1
   (National PC16550D datasheet); descriptors follow Intel SDM vol. 3,
   chapters 3 (segments), 6 (IDT, exceptions) and 7 (TSS); the PIC and PIT
   are programmed as in the 8259A (231468) and 8254 (231164) datasheets. */
#include "guest.h"

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

/* ---- output (COM1 through guestlib's serial_vprintf) ---- */
void vprint(const char *fmt, va_list ap) { serial_vprintf(fmt, ap); }
void print(const char *fmt, ...) { va_list ap; va_start(ap, fmt); vprint(fmt, ap); va_end(ap); }

/* ---- verdict: debug-exit port, status (v << 1) | 1 ---- */
void pass(void) {
  print("PASS: %s\n", test_name);
  debug_exit(0);
}
void fail(const char *fmt, ...) {
  cli();
  print("FAIL: %s: ", test_name);
  va_list ap;
  va_start(ap, fmt);
  vprint(fmt, ap);
  va_end(ap);
  print("\n");
  debug_exit(1);
}

/* ---- descriptors ---- */
uint64_t gdt[16] __attribute__((aligned(8)));
uint64_t idt[256] __attribute__((aligned(8)));
struct tss tss __attribute__((aligned(128)));
uint8_t kernel_int_stack[KERNEL_INT_STACK_SIZE] __attribute__((aligned(16)));
void set_desc(int index, uint64_t d) { gdt[index] = d; }

void set_gate(int v, int dpl, int trap) { idt[v] = make_gate(isr_stub((unsigned)v), (unsigned)dpl, trap); }
void set_gate_present(int v, int present) {
  if (present) idt[v] |= 1ull << 47; else idt[v] &= ~(1ull << 47);
}
uint16_t read_ss(void) { uint16_t s; __asm__ volatile("mov %%ss, %0" : "=r"(s)); return s; }

void setup_cpu(void) {
  memset(&tss, 0, sizeof tss);
  gdt_load_flat(gdt, 16, &tss, (uint32_t)(kernel_int_stack + KERNEL_INT_STACK_SIZE));
  for (int v = 0; v < 256; ++v) set_gate(v, 0, 0);
  set_gate(3, 3, 0);     /* int3 and into are allowed from user mode */
  set_gate(4, 3, 0);
  set_gate(0x80, 3, 0);  /* system calls */
  idt_load(idt, 256);
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

struct regs *isr_dispatch(struct regs *r) {
  const uint32_t v = r->vector;
  if (v == 0x80 && !handlers[v]) {
    last_syscall_esp = (uint32_t)r;
    switch (r->eax) {
      case 0: user_exit_value = r->ebx; ctx_restore(&user_ctx, 1);
      case 1: serial_putc((char)r->ebx); r->eax = 0; return r;
      default: r->eax = syscall_hook ? syscall_hook(r) : (uint32_t)-1; return r;
    }
  }
  if (handlers[v]) { handlers[v](r); return r; }
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

/* ---- entry from guestlib's _start ---- */
const char *boot_loader = "";
int on_qemu(void) { return strncmp(boot_loader, "qemu", 4) == 0; }
const char *boot_loader_name(void) { return boot_loader; }

void guest_main(uint32_t magic, const void *info) {
  const struct multiboot_info *mbi = info;
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
