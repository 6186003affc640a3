// minios entry: the Multiboot v1 header, the first instructions (zero the
// BSS, take a stack, call kmain), and one entry stub per interrupt vector
// that saves the registers into a TrapFrame (kernel.h) and calls trap().
// trap() returns the frame to resume, which may belong to another process:
// that is the whole context switch.

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003  /* bit 0: page-align modules, bit 1: give memory info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .text
        .globl _start
_start:
        // Multiboot spec 3.2: EAX = magic, EBX = info, flat CS/DS, IF = 0,
        // but GDTR/IDTR undefined and no stack. cpu_init() loads our GDT.
        cli
        cld
        mov %eax, %esi
        mov %ebx, %edx
        // The loader should zero the BSS (ELF p_memsz > p_filesz), but do not
        // rely on it: the boot stack lives there too, so zero first.
        mov $__bss_start, %edi
        mov $__bss_end, %ecx
        sub %edi, %ecx
        xor %eax, %eax
        rep stosb
        mov $boot_stack_top, %esp
        sub $8, %esp            // keep kmain's frame 16-byte aligned
        push %edx               // multiboot info
        push %esi               // magic
        call kmain
1:      cli
        hlt
        jmp 1b

// One stub per vector. Vectors where the CPU pushes an error code (SDM
// vol. 3, table 6-1: 8, 10-14, 17, 21, 29, 30) skip the dummy push so that
// every frame has the same layout.
.macro STUB n
        .text
        .align 8
stub_\n:
        .if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
        .else
        push $0
        .endif
        push $\n
        jmp trap_common
        .section .rodata
        .long stub_\n
        .text
.endm

        .section .rodata
        .align 4
        .globl trap_stubs
trap_stubs:
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
        STUB \n
        .endr

        .text
        .globl stub_128
stub_128:
        push $0
        push $128
        jmp trap_common

trap_common:
        pusha
        push %ds
        push %es
        push %fs
        push %gs
        mov $0x10, %eax         // kKernelDs
        mov %eax, %ds
        mov %eax, %es
        mov %eax, %fs
        mov %eax, %gs
        cld                     // user code may have left DF set
        push %esp
        call trap               // TrapFrame *trap(TrapFrame *)
        jmp resume_eax

        // trap_resume(frame): leave the kernel through a prepared frame.
        .globl trap_resume
trap_resume:
        mov 4(%esp), %eax
resume_eax:
        mov %eax, %esp
        pop %gs
        pop %fs
        pop %es
        pop %ds
        popa
        add $8, %esp            // vector and error code
        iret

        .bss
        .align 16
boot_stack:
        .space 16384
boot_stack_top:
