// Declarations shared by the minios kernel's files. The kernel is a single
// address space identity-mapped from 0 to kKernelMapEnd (supervisor-only),
// runs with interrupts disabled, and is entered only through isr_dispatch() (an
// interrupt, exception or int 0x80), so it needs no locks.
#pragma once

#include <stdint.h>

#include "abi.h"
#include "guestlib.h"

// Segment selectors: guestlib's gdt_load_flat() layout (selectors.h).
#define kKernelCs KCODE
#define kKernelDs KDATA
#define kUserCs UCODE
#define kUserDs UDATA

// Interrupt vectors: the 8259A pair is remapped above the exceptions.
#define kIrqBase 0x20
#define kSyscallVector 0x80

// The kernel maps [0, kKernelMapEnd) one to one; page frames for page tables
// and user pages come from the part above the kernel image.
#define kKernelMapEnd (8u * 1024u * 1024u)
#define kPageSize 4096u

#define kTimerHz 1000u
#define kQuantumTicks 3u

// What guestlib's entry stubs push (struct regs in guestlib.h; user_esp
// and user_ss are present only when cs is a ring 3 selector).
typedef struct regs TrapFrame;

static inline int from_user(const TrapFrame* f) { return (f->cs & 3) == 3; }

// console.c
void kprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int ksnprintf(char* buf, int size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void panic(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

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
// isr_dispatch(), guestlib's trap entry, is defined here.
