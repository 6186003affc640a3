/* Constants shared by the assembly and C parts of the test-kernel library. */
#pragma once
#define KCODE 0x08
#define KDATA 0x10
#define UCODE 0x1b
#define UDATA 0x23
#define TSS_SEL 0x28
/* Multiboot header flags: page-align modules, memory information. */
#define MB_FLAGS 0x3
