/* The printf-style formatter of every guest here (guestlib's serial_printf,
   the minios kernel and its user library, the tests/guest kernels,
   nanobench). Freestanding and header-only, so that a program without the
   rest of guestlib (the minios user image) can use it too.
   Conversions: %d %u %x %p (as %x) %c %s %%, the ll size on %d %u %x (a
   64-bit argument), an optional zero flag and width (%08x) and '-'
   (left-justify) for %s: a subset of C's printf, so the compiler's format
   checks apply. An unknown conversion is written as is. */
#pragma once

#include <stdarg.h>
#include <stdint.h>

/* Where characters go: buf holds up to cap of them. When it is full, flush
   (if any) takes them and buf is reused; without flush the rest is
   dropped. */
typedef struct {
  char *buf;
  int cap;
  int len;
  void (*flush)(const char *s, uint32_t n);
} FmtOut;

/* Out of line (as fmt_number): inlined at every call, they would double the
   formatter's size, which the minios user image (one page of text) feels. */
static __attribute__((noinline, unused)) void fmt_putc(FmtOut *o, char c) {
  if (o->len == o->cap && o->flush) {
    o->flush(o->buf, (uint32_t)o->len);
    o->len = 0;
  }
  if (o->len < o->cap) o->buf[o->len++] = c;
}

/* *v /= base, returning the remainder: long division in 16-bit steps, all
   in 32-bit arithmetic (r < base <= 16), so that a 64-bit argument costs
   neither libgcc's __udivdi3 nor inlined 64-bit division code in every
   guest that prints. */
static inline unsigned fmt_divmod(uint64_t *v, unsigned base) {
  uint64_t q = 0;
  uint32_t r = 0;
  for (int shift = 48; shift >= 0; shift -= 16) {
    const uint32_t cur = r << 16 | (uint32_t)(*v >> shift & 0xffff);
    q |= (uint64_t)(cur / base) << shift;
    r = cur % base;
  }
  *v = q;
  return r;
}

static __attribute__((noinline, unused)) void fmt_number(FmtOut *o, uint64_t v, unsigned base, int neg,
                                                         int width, char pad) {
  char tmp[24];
  int n = 0;
  do tmp[n++] = "0123456789abcdef"[fmt_divmod(&v, base)];
  while (v);
  if (neg) tmp[n++] = '-';
  while (width-- > n) fmt_putc(o, pad);
  while (n) fmt_putc(o, tmp[--n]);
}

static inline void fmt_vout(FmtOut *o, const char *fmt, va_list ap) {
  for (; *fmt; ++fmt) {
    if (*fmt != '%') {
      fmt_putc(o, *fmt);
      continue;
    }
    ++fmt;
    char pad = ' ';
    int width = 0, left = 0;
    if (*fmt == '-') left = 1, ++fmt;
    if (*fmt == '0') pad = '0', ++fmt;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    int wide = fmt[0] == 'l' && fmt[1] == 'l';
    if (wide) fmt += 2;
    switch (*fmt) {
      case 'd': {
        int64_t v = wide ? va_arg(ap, int64_t) : va_arg(ap, int32_t);
        fmt_number(o, v < 0 ? 0u - (uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
        break;
      }
      case 'u': fmt_number(o, wide ? va_arg(ap, uint64_t) : va_arg(ap, uint32_t), 10, 0, width, pad); break;
      case 'x': fmt_number(o, wide ? va_arg(ap, uint64_t) : va_arg(ap, uint32_t), 16, 0, width, pad); break;
      case 'p': fmt_number(o, va_arg(ap, uint32_t), 16, 0, width, pad); break;
      case 'c': fmt_putc(o, (char)va_arg(ap, int)); break;
      case 's': {
        const char *s = va_arg(ap, const char *);
        int n = 0;
        while (s[n]) ++n;
        if (!left)
          while (width-- > n) fmt_putc(o, ' ');
        while (*s) fmt_putc(o, *s++);
        if (left)
          while (width-- > n) fmt_putc(o, ' ');
        break;
      }
      case '%': fmt_putc(o, '%'); break;
      case 0: --fmt; break; /* a lone '%' at the end */
      default: fmt_putc(o, '%'); fmt_putc(o, *fmt); break;
    }
  }
}

/* vsnprintf: at most size - 1 characters into buf, always NUL-terminated;
   returns the length written. */
static inline int fmt_vformat(char *buf, int size, const char *fmt, va_list ap) {
  FmtOut o = {buf, size - 1, 0, 0};
  fmt_vout(&o, fmt, ap);
  buf[o.len] = 0;
  return o.len;
}
