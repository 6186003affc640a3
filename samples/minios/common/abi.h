// The contract between the minios kernel and its user programs: system call
// numbers, the user address-space layout, and the header at the start of the
// user image that tells the kernel which programs to start.
#pragma once

#include <stdint.h>

// System calls: int 0x80, number in EAX, arguments in EBX, ECX, EDX, result
// in EAX (negative = error). Same register convention as Linux i386.
enum {
  kSysExit = 1,    // exit(status): never returns
  kSysWrite = 2,   // write(buf, len) -> bytes written to COM1, or -kEFault
  kSysGetpid = 3,  // getpid() -> pid (1, 2, ...)
  kSysYield = 4,   // yield(): let the next ready process run
  kSysSleep = 5,   // sleep(ticks): block for at least that many timer ticks
};
enum { kENoSys = 38, kEFault = 14, kEInval = 22 };

// User layout. The image (text, rodata, data, bss) is linked at kUserBase and
// demand-paged from the copy inside the kernel; the stack is demand-paged
// zero memory just below kUserStackTop. Everything else is a bad address.
#define kUserBase 0x40000000u
#define kUserStackTop 0xC0000000u
#define kUserStackSize (1024u * 1024u)

#define kUserMagic 0x534f494du  // "MIOS"
#define kMaxPrograms 8

typedef struct {
  char name[12];
  uint32_t main;  // int main(void) in user space
} UserProgram;

// Placed first in the image by user.ld (section .uheader).
typedef struct {
  uint32_t magic;
  uint32_t text_end;   // [kUserBase, text_end): read-only (text, rodata, this header)
  uint32_t image_end;  // [text_end, image_end): read-write (data, bss)
  uint32_t start;      // crt entry: EAX = main, EBX = &name
  uint32_t count;
  UserProgram programs[kMaxPrograms];
} UserHeader;
