// The minios user library: system call wrappers and say(), which prints one
// whole line "[pid name] text" with a single write() so that lines from
// different processes never mix.
#pragma once

#include <stdint.h>

int32_t sys_write(const char* buf, uint32_t len);
int32_t sys_getpid(void);
void sys_yield(void);
void sys_sleep(uint32_t ticks);
void sys_exit(int32_t status) __attribute__((noreturn));

void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
