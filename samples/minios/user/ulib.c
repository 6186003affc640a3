// minios user library (see ulib.h).
#include "ulib.h"

#include <stdarg.h>

#include "abi.h"
#include "fmt.h"

static int32_t syscall3(uint32_t nr, uint32_t a, uint32_t b, uint32_t c) {
  int32_t ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return ret;
}

int32_t sys_write(const char* buf, uint32_t len) { return syscall3(kSysWrite, (uint32_t)buf, len, 0); }
int32_t sys_getpid(void) { return syscall3(kSysGetpid, 0, 0, 0); }
void sys_yield(void) { syscall3(kSysYield, 0, 0, 0); }
void sys_sleep(uint32_t ticks) { syscall3(kSysSleep, ticks, 0, 0); }
void sys_exit(int32_t status) {
  syscall3(kSysExit, (uint32_t)status, 0, 0);
  for (;;) {
  }
}

// Every process has these globals at the same virtual address. The line
// prefix is built from them, so if address spaces were not separate the
// prefixes (and the golden test) would be wrong.
static int32_t g_pid;
static const char* g_name;

void say(const char* fmt, ...) {
  char line[160];
  FmtOut prefix = {line, sizeof line - 2, 0, 0};
  fmt_putc(&prefix, '[');
  fmt_number(&prefix, (uint32_t)g_pid, 10, 0, 0, ' ');
  fmt_putc(&prefix, ' ');
  for (const char* s = g_name; *s; ++s) fmt_putc(&prefix, *s);
  fmt_putc(&prefix, ']');
  fmt_putc(&prefix, ' ');
  va_list ap;
  va_start(ap, fmt);
  int n = prefix.len + fmt_vformat(line + prefix.len, (int)sizeof line - 1 - prefix.len, fmt, ap);
  va_end(ap);
  line[n++] = '\n';
  sys_write(line, (uint32_t)n);
}

void ustart_c(int (*main)(void), const char* name);
void ustart_c(int (*main)(void), const char* name) {
  g_name = name;
  g_pid = sys_getpid();
  int status = main();
  if (g_pid != sys_getpid()) say("BUG: my pid global was overwritten: address spaces are shared");
  sys_exit(status);
}
