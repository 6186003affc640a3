// Declarations shared by the minios kernel's files. The kernel is a single
// address space identity-mapped from 0 to kKernelMapEnd (supervisor-only),
// runs with interrupts disabled, and is entered only through trap() (an
// interrupt, exception or int 0x80), so it needs no locks.
#pragma once

#include <stdint.h>

#include "abi.h"

// Segment selectors (cpu.c builds the GDT in this order).
#define kKernelCs 0x08
#define kKernelDs 0x10
#define kUserCs (0x18 | 3)
#define kUserDs (0x20 | 3)
#define kTssSel 0x28

// Interrupt vectors: the 8259A pair is remapped above the exceptions.
#define kIrqBase 0x20
#define kSyscallVector 0x80

// The kernel maps [0, kKernelMapEnd) one to one; page frames for page tables
// and user pages come from the part above the kernel image.
#define kKernelMapEnd (8u * 1024u * 1024u)
#define kPageSize 4096u

#define kTimerHz 1000u
#define kQuantumTicks 3u

// What the entry stubs in boot.S push, lowest address first (SDM vol. 3,
// 6.12.1: the CPU pushes SS:ESP only when the privilege level changes).
typedef struct TrapFrame {
  uint32_t gs, fs, es, ds;
  uint32_t edi, esi, ebp, esp_pusha, ebx, edx, ecx, eax;
  uint32_t vector, error;
  uint32_t eip, cs, eflags;
  uint32_t user_esp, user_ss;  // present only when cs is a ring 3 selector
} TrapFrame;

static inline int from_user(const TrapFrame* f) { return (f->cs & 3) == 3; }

// console.c
void console_init(void);
void console_write(const char* s, uint32_t n);
void kprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int ksnprintf(char* buf, int size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void panic(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void debug_exit(uint8_t value) __attribute__((noreturn));

// cpu.c
void cpu_init(void);
void tss_set_kernel_stack(uint32_t esp0);
void pic_init(void);
void pic_eoi(unsigned irq);
void pit_init(unsigned hz);

// mm.c
typedef struct AddressSpace {
  uint32_t pd;           // physical (= kernel virtual) address of the page directory
  uint32_t user_frames;  // user pages and page tables currently held
} AddressSpace;

void mm_init(uint32_t mem_upper_kib);
void mm_enable_paging(void);
uint32_t mm_kernel_pd(void);
uint32_t mm_frames_in_use(void);
uint32_t mm_frames_total(void);
uint32_t mm_frames_peak(void);
int mm_create(AddressSpace* as);
void mm_destroy(AddressSpace* as);
// Demand paging: maps the page holding addr if addr is a valid user address
// that is not yet mapped. Returns 0 if it mapped a page, or a reason string
// if the access is bad (the caller kills the process).
const char* mm_demand_fault(AddressSpace* as, uint32_t addr, uint32_t error);
// 1 if [addr, addr + len) lies inside one valid user region.
int mm_user_range_ok(uint32_t addr, uint32_t len);
const UserHeader* mm_user_header(void);

// proc.c
void proc_init(void);
void proc_start(void) __attribute__((noreturn));
TrapFrame* trap(TrapFrame* f);

// boot.S
extern const uint32_t trap_stubs[48];
void stub_128(void);
void trap_resume(TrapFrame* f) __attribute__((noreturn));
