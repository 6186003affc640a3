// kprintf and panic on COM1 (guestlib's polled serial_write).
// Transmission is polled with interrupts off, so every kprintf and every
// write() system call reaches the wire whole: lines never interleave.
#include <stdarg.h>

#include "fmt.h"
#include "kernel.h"

static void vprint(const char* fmt, va_list ap) {
  char buf[256];
  int n = fmt_vformat(buf, sizeof buf, fmt, ap);
  serial_write(buf, (uint32_t)n);
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

void panic(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kprintf("minios: PANIC: ");
  vprint(fmt, ap);
  kprintf("\n");
  va_end(ap);
  debug_exit(0x7f);  // exit status 255: never mistaken for success (1)
}
