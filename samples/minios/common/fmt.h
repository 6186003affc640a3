// A small printf-style formatter shared by the minios kernel and its user
// library (both are freestanding: no libc). Supports %d %u %x %s %c %% with
// an optional zero flag and width (%08x), and '-' (left-justify) for %s. Output is truncated to the buffer
// and always NUL-terminated; the return value is the length written.
#pragma once

#include <stdarg.h>
#include <stdint.h>

typedef struct {
  char* buf;
  int cap;  // bytes available for characters (the NUL is extra)
  int len;
} FmtOut;

static inline void fmt_putc(FmtOut* o, char c) {
  if (o->len < o->cap) o->buf[o->len++] = c;
}

static inline void fmt_number(FmtOut* o, uint32_t v, unsigned base, int neg, int width, char pad) {
  char tmp[12];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  if (neg) tmp[n++] = '-';
  while (width-- > n) fmt_putc(o, pad);
  while (n) fmt_putc(o, tmp[--n]);
}

static inline int fmt_vformat(char* buf, int size, const char* fmt, va_list ap) {
  FmtOut o = {buf, size - 1, 0};
  for (; *fmt; ++fmt) {
    if (*fmt != '%') {
      fmt_putc(&o, *fmt);
      continue;
    }
    ++fmt;
    char pad = ' ';
    int width = 0, left = 0;
    if (*fmt == '-') left = 1, ++fmt;
    if (*fmt == '0') pad = '0', ++fmt;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    switch (*fmt) {
      case 'd': {
        int32_t v = va_arg(ap, int32_t);
        fmt_number(&o, v < 0 ? 0u - (uint32_t)v : (uint32_t)v, 10, v < 0, width, pad);
        break;
      }
      case 'u': fmt_number(&o, va_arg(ap, uint32_t), 10, 0, width, pad); break;
      case 'x': fmt_number(&o, va_arg(ap, uint32_t), 16, 0, width, pad); break;
      case 'c': fmt_putc(&o, (char)va_arg(ap, int)); break;
      case 's': {
        const char* s = va_arg(ap, const char*);
        int n = 0;
        while (s[n]) ++n;
        if (!left)
          while (width-- > n) fmt_putc(&o, ' ');
        while (*s) fmt_putc(&o, *s++);
        if (left)
          while (width-- > n) fmt_putc(&o, ' ');
        break;
      }
      case '%': fmt_putc(&o, '%'); break;
      case 0: --fmt; break;  // a lone '%' at the end
      default: fmt_putc(&o, '%'); fmt_putc(&o, *fmt); break;
    }
  }
  buf[o.len] = 0;
  return o.len;
}
