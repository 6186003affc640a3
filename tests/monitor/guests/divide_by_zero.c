// divide_by_zero: prints one line, then divides by zero. The #DE is a guest
// error: bt86 prints "guest error: divide-error ..." and exits with 4.
#include <stdint.h>

__asm__(
    ".globl _start\n"
    "_start:\n"
    "  call main\n"
    "  mov %eax, %ebx\n"
    "  mov $1, %eax\n"
    "  int $0x80\n");

static volatile uint32_t g_divisor = 0;

int main(void) {
  static const char msg[] = "dividing by zero\n";
  int32_t ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(4), "b"(1), "c"(msg), "d"(sizeof msg - 1) : "memory");
  return (int)(100u / g_divisor);  // divide-error exit
}
