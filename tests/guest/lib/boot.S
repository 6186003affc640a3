/* Entry, interrupt stubs and context switching for the test kernels.
   Multiboot spec 3.1.1 (header) and 3.2 (machine state at entry); the
   interrupt frame layout is Intel SDM vol. 3, 6.12.1. */
#include "guest_asm.h"

  .section .multiboot, "a"
  .align 4
  .long 0x1badb002, MB_FLAGS, -(0x1badb002 + MB_FLAGS)

  .text
  .globl _start
_start:
  mov $boot_stack_top, %esp
  /* The loader's GDT must be usable: reload every data segment and CS from
     the selectors we were started with (spec 3.2 says the selectors are
     undefined, but the segments are flat; bt86 and qemu both give a GDT). */
  mov %ds, %cx
  mov %cx, %ds
  mov %cx, %es
  mov %cx, %ss
  push %eax
  xor %eax, %eax
  mov %cs, %ax
  push %eax
  push $1f
  lret
1:pop %eax
  push $0
  popf
  push %ebx
  push %eax
  call lib_main
  cli
2:hlt
  jmp 2b

/* int ctx_save(struct ctx *c): returns 0; returns v again on ctx_restore(c, v). */
  .globl ctx_save
ctx_save:
  mov 4(%esp), %edx
  mov %ebx, 0(%edx)
  mov %esi, 4(%edx)
  mov %edi, 8(%edx)
  mov %ebp, 12(%edx)
  lea 4(%esp), %ecx
  mov %ecx, 16(%edx)
  mov (%esp), %ecx
  mov %ecx, 20(%edx)
  pushf
  pop %ecx
  mov %ecx, 24(%edx)
  xor %eax, %eax
  ret

  .globl ctx_restore
ctx_restore:
  mov 4(%esp), %edx
  mov 8(%esp), %eax
  mov $KDATA, %cx
  mov %cx, %ss
  mov 16(%edx), %esp
  mov %cx, %ds
  mov %cx, %es
  mov %cx, %fs
  mov %cx, %gs
  mov 0(%edx), %ebx
  mov 4(%edx), %esi
  mov 8(%edx), %edi
  mov 12(%edx), %ebp
  pushl 24(%edx)
  popf
  jmp *20(%edx)

/* void enter_user(uint32_t eip, uint32_t esp, uint32_t eflags): iret to CPL 3. */
  .globl enter_user
enter_user:
  mov 4(%esp), %eax
  mov 8(%esp), %ecx
  mov 12(%esp), %edx
  push $UDATA
  push %ecx
  push %edx
  push $UCODE
  push %eax
  mov $UDATA, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %fs
  mov %ax, %gs
  xor %eax, %eax
  xor %ecx, %ecx
  xor %edx, %edx
  iret

/* Where a user function returns to: system call 0 (exit). */
  .globl user_exit_trampoline
user_exit_trampoline:
  xor %eax, %eax
  xor %ebx, %ebx
  int $0x80
  ud2

/* One 16-byte stub per vector (stub v is at isr_stubs + 16 * v). The CPU pushes an error code for 8, 10-14 and 17
   (SDM vol. 3, table 6-1); the others push 0 so the frame is uniform. */
  .macro stub v
  .align 16
  .if (\v == 8) || (\v >= 10 && \v <= 14) || (\v == 17)
  .else
  push $0
  .endif
  push $\v
  jmp isr_common
  .endm

  .align 16
  .globl isr_stubs
isr_stubs:
  .altmacro
  .set i, 0
  .rept 256
  stub %i
  .set i, i + 1
  .endr

isr_common:
  pusha
  push %ds
  push %es
  push %fs
  push %gs
  mov $KDATA, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %fs
  mov %ax, %gs
  cld
  push %esp
  call isr_dispatch
  add $4, %esp
  pop %gs
  pop %fs
  pop %es
  pop %ds
  popa
  add $8, %esp
  iret

  .bss
  .align 16
  .space 16384
boot_stack_top:
  .globl boot_stack_top
