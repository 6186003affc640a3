// Inline wrappers for the privileged x86 instructions the kernel uses.
#pragma once

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t read_cr2(void) {
  uint32_t v;
  __asm__ volatile("mov %%cr2, %0" : "=r"(v));
  return v;
}
static inline void write_cr3(uint32_t v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline uint32_t read_cr0(void) {
  uint32_t v;
  __asm__ volatile("mov %%cr0, %0" : "=r"(v));
  return v;
}
static inline void write_cr0(uint32_t v) { __asm__ volatile("mov %0, %%cr0" ::"r"(v) : "memory"); }
static inline void invlpg(uint32_t addr) { __asm__ volatile("invlpg (%0)" ::"r"(addr) : "memory"); }
static inline __attribute__((noreturn)) void halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}
