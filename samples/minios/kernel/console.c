// COM1 output (16550A, polled), kprintf, panic and the debug-exit port.
// Transmission is polled with interrupts off, so every kprintf and every
// write() system call reaches the wire whole: lines never interleave.
#include <stdarg.h>

#include "fmt.h"
#include "kernel.h"
#include "x86.h"

#define kCom1 0x3F8
#define kDebugExitPort 0xF4

void console_init(void) {
  // PC16550D datasheet, table II: divisor latch via LCR.DLAB, 8N1, FIFOs
  // on and cleared; no UART interrupts (minios only transmits).
  outb(kCom1 + 1, 0x00);  // IER: all off
  outb(kCom1 + 3, 0x80);  // LCR: DLAB
  outb(kCom1 + 0, 0x01);  // divisor 1 = 115200 baud
  outb(kCom1 + 1, 0x00);
  outb(kCom1 + 3, 0x03);  // LCR: 8 bits, no parity, 1 stop
  outb(kCom1 + 2, 0xC7);  // FCR: enable, clear both FIFOs, trigger 14
  outb(kCom1 + 4, 0x03);  // MCR: DTR, RTS
}

static void serial_putc(char c) {
  // LSR bit 5 (THRE): the holding register can take a byte. Bounded, so a
  // missing UART (reads 0xFF, THRE set anyway) cannot hang the kernel.
  for (int spin = 0; spin < 100000 && !(inb(kCom1 + 5) & 0x20); ++spin) {
  }
  outb(kCom1, (uint8_t)c);
}

void console_write(const char* s, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    if (s[i] == '\n') serial_putc('\r');
    serial_putc(s[i]);
  }
}

static void vprint(const char* fmt, va_list ap) {
  char buf[256];
  int n = fmt_vformat(buf, sizeof buf, fmt, ap);
  console_write(buf, (uint32_t)n);
}

int ksnprintf(char* buf, int size, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = fmt_vformat(buf, size, fmt, ap);
  va_end(ap);
  return n;
}

void kprintf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprint(fmt, ap);
  va_end(ap);
}

// QEMU's isa-debug-exit and bt86 both exit with status (value << 1) | 1.
void debug_exit(uint8_t value) {
  outb(kDebugExitPort, value);
  halt_forever();  // no debug-exit device: stop here
}

void panic(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kprintf("minios: PANIC: ");
  vprint(fmt, ap);
  kprintf("\n");
  va_end(ap);
  debug_exit(0x7f);  // exit status 255: never mistaken for success (1)
}
