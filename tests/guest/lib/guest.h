/* The test-kernel library: serial output on COM1, PASS/FAIL reporting through
   the debug-exit port, GDT/IDT/TSS, exception catching, user mode, paging,
   PIC and PIT. Each kernel defines test_name and test_main(). */
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "guestlib.h" /* samples/guestlib: x86 helpers, descriptors, COM1 */

/* ---- each kernel provides ---- */
extern const char test_name[];
struct multiboot_info;
void test_main(uint32_t magic, const struct multiboot_info *mbi);
/* guestlib's struct regs is the interrupt frame, make_desc() builds
   descriptors, struct tss is the TSS. */

/* ---- Multiboot information (spec 3.3) ---- */
struct multiboot_info {
  uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
  uint32_t syms[4];
  uint32_t mmap_length, mmap_addr, drives_length, drives_addr, config_table, boot_loader_name;
};
struct multiboot_mod { uint32_t mod_start, mod_end, string, reserved; };
struct multiboot_mmap { uint32_t size; uint64_t base, len; uint32_t type; } __attribute__((packed));

/* ---- output and verdict ---- */
void print(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* guestlib serial_printf (fmt.h) */
void vprint(const char *fmt, va_list ap);
__attribute__((noreturn)) void pass(void);
__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...);
#define CHECK(c) do { if (!(c)) fail("%s:%d: CHECK(%s)", __FILE__, __LINE__, #c); } while (0)
#define CHECK_EQ(a, b) do { uint32_t a_ = (uint32_t)(a), b_ = (uint32_t)(b); \
  if (a_ != b_) fail("%s:%d: %s == 0x%x, expected %s == 0x%x", __FILE__, __LINE__, #a, a_, #b, b_); } while (0)
/* A step of the test, printed so a failure's context is in the log. */
#define STEP(s) print("  %s: %s\n", test_name, s)

/* ---- descriptors ---- */
extern struct tss tss;
extern uint64_t gdt[16];        /* 0 null, 1 KCODE, 2 KDATA, 3 UCODE, 4 UDATA, 5 TSS, 6-15 free */
extern uint64_t idt[256];
void set_desc(int index, uint64_t d);
/* Interrupt (type 0xE) or trap (0xF) gate to the library stub for vector v. */
void set_gate(int v, int dpl, int trap);
void set_gate_present(int v, int present);
void setup_cpu(void);   /* called before test_main: GDT, TSS, IDT, segments */
uint16_t read_ss(void);

/* ---- exceptions and interrupts ---- */
typedef void (*handler_fn)(struct regs *r);
void set_handler(int vector, handler_fn fn);
struct fault_info { uint32_t vector, err, eip, cs, cr2, count, ecx, esi, edi; };  /* registers at the fault */
extern volatile struct fault_info last_fault;
struct ctx { uint32_t ebx, esi, edi, ebp, esp, eip, eflags; };
__attribute__((returns_twice)) int ctx_save(struct ctx *c);
__attribute__((noreturn)) void ctx_restore(struct ctx *c, int value);
extern struct ctx fault_ctx;
extern volatile int fault_armed;
extern volatile uint32_t fault_expected_eip;  /* 0: do not check */
#define ANY_ERR 0xdead0000u
void check_fault(const char *file, int line, uint32_t vector, uint32_t err);
/* Runs the statements, which must raise exception `vec` with error code
   `err` (ANY_ERR: do not check); execution continues after the block. Asm
   that sets fault_expected_eip also gets its saved EIP checked. */
#define EXPECT_FAULT(vec, err, ...) do { \
    fault_expected_eip = 0; fault_armed = 1; \
    if (ctx_save(&fault_ctx) == 0) { __VA_ARGS__; fault_armed = 0; \
      fail("%s:%d: expected exception %d, none raised", __FILE__, __LINE__, (int)(vec)); } \
    check_fault(__FILE__, __LINE__, vec, err); } while (0)
/* In inline asm: record the address of label 1 as the expected EIP. */
#define MARK_EIP "movl $1f, fault_expected_eip\n\t"
const char *vector_name(uint32_t v);

/* ---- user mode ---- */
/* Runs fn at CPL 3 (flat segments, own stack) until it returns or makes
   system call 0; returns the exit value (EBX of the call, 0 on return). */
uint32_t run_user(void (*fn)(void), uint32_t eflags);
/* int $0x80 services beyond exit (0) and putc (1): a kernel may add one. */
extern uint32_t (*syscall_hook)(struct regs *r);
extern volatile uint32_t last_syscall_esp;  /* kernel ESP inside the int 0x80 handler */
extern uint8_t kernel_int_stack[];          /* TSS.esp0 stack */
#define KERNEL_INT_STACK_SIZE 8192
static inline uint32_t user_syscall(uint32_t nr, uint32_t arg) {
  uint32_t ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(arg) : "memory");
  return ret;
}

/* ---- paging ---- */
#define PTE_P 1u
#define PTE_W 2u
#define PTE_U 4u
#define PTE_A 0x20u
#define PTE_D 0x40u
#define PTE_PS 0x80u
#define PTE_G 0x100u
extern uint32_t page_dir[1024];
/* Identity-maps [0, 16 MiB) with 4 KiB pages (P W U), does not enable paging. */
void paging_init(void);
uint32_t *pte_of(uint32_t va);
void paging_enable(void);
void paging_disable(void);

/* ---- PIC and PIT ---- */
#define IRQ_BASE 0x20
void pic_init(void);          /* master at 0x20, slave at 0x28, all masked */
void pic_unmask(int irq);
void pic_mask(int irq);
void pic_eoi(int irq);
uint8_t pic_isr(void);        /* master in-service register */
void pit_periodic(uint32_t hz);
uint16_t pit_read_counter0(void);

/* ---- the machine we run on ---- */
/* Multiboot boot_loader_name ("" if none): "qemu" or "bt86". Some checks are
   skipped on qemu because TCG does not model them (segment limits). */
extern const char *boot_loader;
int on_qemu(void);
const char *boot_loader_name(void);  /* the Multiboot boot_loader_name ("" if none) */
#define SKIP_ON_QEMU(what) (on_qemu() ? (print("  %s: skipped on qemu: %s\n", test_name, what), 1) : 0)

/* ---- small helpers ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
const char *strstr(const char *h, const char *n);
