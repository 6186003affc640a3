// kprintf and panic on COM1 (guestlib's polled serial_vprintf).
// Transmission is polled with interrupts off, so every kprintf and every
// write() system call reaches the wire whole: lines never interleave.
#include <stdarg.h>

#include "fmt.h"
#include "kernel.h"

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
  serial_vprintf(fmt, ap);
  va_end(ap);
}

void panic(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kprintf("minios: PANIC: ");
  serial_vprintf(fmt, ap);
  kprintf("\n");
  va_end(ap);
  debug_exit(0x7f);  // exit status 255: never mistaken for success (1)
}
