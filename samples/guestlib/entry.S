/* guestlib entry: the Multiboot v1 header, _start, and one interrupt entry
   stub per vector that saves the registers into a struct regs (guestlib.h)
   and calls the program's isr_dispatch(). isr_dispatch() returns the frame
   to resume, which may be another one (a context switch).
   Multiboot spec 3.1.1 (header) and 3.2 (machine state at entry); the
   interrupt frame is Intel SDM vol. 3, 6.12.1. */
#include "selectors.h"

        .section .multiboot, "a"
        .align 4
        .long 0x1badb002, MB_FLAGS, -(0x1badb002 + MB_FLAGS)

        .text
        .globl _start
_start:
        /* Spec 3.2: EAX = magic, EBX = info, flat CS/DS, IF = 0, but GDTR
           and IDTR undefined and no stack. */
        cli
        cld
        mov %eax, %esi
        mov %ebx, %edx
        /* The loader should zero the BSS (ELF p_memsz > p_filesz), but do
           not rely on it: the boot stack lives there too, so zero first. */
        mov $__bss_start, %edi
        mov $__bss_end, %ecx
        sub %edi, %ecx
        xor %eax, %eax
        rep stosb
        mov $boot_stack_top, %esp
        /* The loader's GDT must be usable: reload every data segment and CS
           from the selectors we were started with (spec 3.2 says the
           selectors are undefined, but the segments are flat; bt86 and qemu
           both give a GDT), so a bad loader GDT fails here. */
        mov %ds, %cx
        mov %cx, %ds
        mov %cx, %es
        mov %cx, %ss
        mov %cs, %ax
        push %eax
        push $1f
        lret
1:      push $0                 /* EFLAGS: IF, DF, TF, AC, IOPL all 0 */
        popf
        sub $8, %esp            /* keep guest_main's frame 16-byte aligned */
        push %edx               /* multiboot info */
        push %esi               /* magic */
        call guest_main
        cli
2:      hlt
        jmp 2b

/* One 16-byte stub per vector (stub v is at isr_stubs + 16 * v). Vectors
   where the CPU pushes an error code (SDM vol. 3, table 6-1: 8, 10-14, 17,
   21, 29, 30) skip the dummy push, so every frame has the same layout. A
   software `int n` to one of those vectors pushes none and is not
   supported. */
        .macro stub v
        .align 16
        .if (\v == 8) || (\v >= 10 && \v <= 14) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
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
        mov $KDATA, %eax
        mov %eax, %ds
        mov %eax, %es
        mov %eax, %fs
        mov %eax, %gs
        cld                     /* user code may have left DF set */
        push %esp
        call isr_dispatch       /* struct regs *isr_dispatch(struct regs *) */
        jmp resume_eax

        /* isr_resume(frame): leave the kernel through a prepared frame. */
        .globl isr_resume
isr_resume:
        mov 4(%esp), %eax
resume_eax:
        mov %eax, %esp
        pop %gs
        pop %fs
        pop %es
        pop %ds
        popa
        add $8, %esp            /* vector and error code */
        iret

        .bss
        .align 16
        .space 16384
        .globl boot_stack_top
boot_stack_top:
