/* guestlib: what every 32-bit Multiboot guest in this repository needs
   (samples/minios, bench/nanobench, tests/guest): privileged-instruction
   wrappers, the interrupt frame of entry.S, the flat GDT with one TSS, IDT
   gates, COM1 output (with printf, fmt.h) and the debug-exit port. Each
   program defines guest_main() (called by entry.S) and isr_dispatch(). */
#pragma once
#include <stdarg.h>
#include <stdint.h>

#include "selectors.h"

/* ---- each program provides ---- */
/* Called once by _start with the boot stack, IF = 0 and a zeroed BSS. */
void guest_main(uint32_t magic, const void *mbi);
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002u

/* What the entry stubs push, lowest address first (SDM vol. 3, 6.12.1: the
   CPU pushes SS:ESP only when the privilege level changes). */
struct regs {
  uint32_t gs, fs, es, ds;
  uint32_t edi, esi, ebp, esp_at_pusha, ebx, edx, ecx, eax;
  uint32_t vector, err, eip, cs, eflags, user_esp, user_ss; /* user_* only from CPL 3 */
};
/* Every vector that has a gate to isr_stub(v) lands here; the return value
   is the frame to resume (r itself, or another saved one). */
struct regs *isr_dispatch(struct regs *r);
extern uint8_t isr_stubs[]; /* 256 stubs, 16 bytes each */
static inline uint32_t isr_stub(unsigned v) { return (uint32_t)(isr_stubs + 16 * v); }
__attribute__((noreturn)) void isr_resume(struct regs *r);

/* ---- port I/O and control registers ---- */
static inline void outb(uint16_t p, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static inline uint8_t inb(uint16_t p) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p));
  return v;
}
#define GUESTLIB_CR(n)                                                     \
  static inline uint32_t read_cr##n(void) {                                \
    uint32_t v;                                                            \
    __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v));                      \
    return v;                                                              \
  }                                                                        \
  static inline void write_cr##n(uint32_t v) { __asm__ volatile("mov %0, %%cr" #n ::"r"(v) : "memory"); }
GUESTLIB_CR(0) GUESTLIB_CR(2) GUESTLIB_CR(3) GUESTLIB_CR(4)
#undef GUESTLIB_CR
static inline uint32_t read_eflags(void) {
  uint32_t v;
  __asm__ volatile("pushf; pop %0" : "=r"(v));
  return v;
}
static inline void invlpg(uint32_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline uint64_t rdtsc(void) {
  uint64_t v;
  __asm__ volatile("rdtsc" : "=A"(v));
  return v;
}
static inline __attribute__((noreturn)) void halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}
#define CR0_PE 1u
#define CR0_MP (1u << 1)
#define CR0_EM (1u << 2)
#define CR0_TS (1u << 3)
#define CR0_NE (1u << 5)
#define CR0_WP (1u << 16)
#define CR0_AM (1u << 18)
#define CR0_PG (1u << 31)
#define CR4_PSE (1u << 4)
#define CR4_PGE (1u << 7)
#define CR4_OSFXSR (1u << 9)
#define CR4_OSXMMEXCPT (1u << 10)
#define EFL_TF (1u << 8)
#define EFL_IF (1u << 9)
#define EFL_AC (1u << 18)
#define EFL_IOPL3 (3u << 12)

/* ---- descriptors (SDM vol. 3, chapters 3, 6 and 7) ---- */
/* The 32-bit TSS (SDM vol. 3, 7.2.1). Only SS0:ESP0 matter here (the stack
   the CPU switches to on a trap from ring 3); no hardware task switch. */
struct tss {
  uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
  uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi, es, cs, ss, ds, fs, gs, ldt;
  uint32_t iomap; /* bit 0: T (debug trap); bits 16-31: I/O map base */
};
/* access: P DPL S type byte (e.g. 0x92 data rw); flags: G D/B nibble (0xC = 4 KiB, 32-bit). */
uint64_t make_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags);
/* A 32-bit interrupt (type 0xE: IF cleared on entry) or trap (0xF) gate to
   KCODE:handler. */
uint64_t make_gate(uint32_t handler, unsigned dpl, int trap);
/* Fills gdt[0..5] with null, KCODE, KDATA, UCODE, UDATA (flat 4 GiB) and
   the TSS (SS0 = KDATA, ESP0 = esp0, no I/O bitmap), loads GDTR with
   `entries` descriptors, reloads every segment register, loads TR and an
   empty LDTR. */
void gdt_load_flat(uint64_t *gdt, unsigned entries, struct tss *tss, uint32_t esp0);
void idt_load(const uint64_t *idt, unsigned entries);

/* ---- COM1 (polled PC16550D) and the debug-exit port ---- */
void serial_init(void);                       /* 115200 8N1, FIFOs on, no interrupts */
void serial_putc(char c);                     /* one byte as is */
void serial_write(const char *s, uint32_t n); /* "\n" goes out as "\r\n" */
/* printf to COM1 through serial_write, with fmt.h's conversions (%d %u %x
   %p %c %s, ll, zero flag and width); nothing is truncated. */
void serial_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void serial_vprintf(const char *fmt, va_list ap);
/* QEMU's isa-debug-exit and bt86 both exit with status (value << 1) | 1;
   without that device the guest halts here. */
__attribute__((noreturn)) void debug_exit(uint8_t value);
