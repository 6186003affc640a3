/* Context switching for the test kernels: ctx_save / ctx_restore
   (setjmp-style), enter_user (iret to CPL 3) and the user exit trampoline.
   The Multiboot entry and the interrupt stubs are guestlib's entry.S; the
   interrupt frame layout is Intel SDM vol. 3, 6.12.1. */
#include "selectors.h"

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
