// nanobench guest: the trap handlers the benchmarks hit and the timed
// loops (the Multiboot entry and the stubs for every other vector are
// guestlib's entry.S). Handlers are a few instructions each, so a
// measurement is the cost of the event itself (the CPU's, or the VMM's),
// not of guest kernel C code.

#define PAGE_A 0x00400000       /* nanobench.c: the two pages the pgfault loop ping-pongs */
#define PAGE_B 0x00401000

// --- handlers --------------------------------------------------------------

        // #DE: skip the 2-byte `div %ebx` (F7 F3) and go on.
        .globl nb_de_entry
nb_de_entry:
        addl $2, (%esp)
        iret

        // #PF in the pgfault loop: map the faulting page, unmap the other
        // one (so the next touch of it faults too) and flush that one. A
        // newly present entry needs no flush (SDM vol. 3, 4.10.2.3).
        .globl nb_pf_entry
nb_pf_entry:
        push %eax
        mov %cr2, %eax
        and $0xFFFFF000, %eax
        cmp $PAGE_A, %eax
        je 1f
        cmp $PAGE_B, %eax
        jne 3f
        mov nb_pte_b, %eax
        orl $1, (%eax)
        mov nb_pte_a, %eax
        andl $~1, (%eax)
        invlpg PAGE_A
        jmp 2f
1:      mov nb_pte_a, %eax
        orl $1, (%eax)
        mov nb_pte_b, %eax
        andl $~1, (%eax)
        invlpg PAGE_B
2:      pop %eax
        add $4, %esp            // error code
        iret
3:      pop %eax                // not ours: guestlib's #PF stub reports it
        jmp isr_stubs + 14 * 16

        // int 0x80 from ring 3: the null system call.
        .globl nb_syscall_entry
nb_syscall_entry:
        iret

        // int 0x81 from ring 3: leave user mode for good and return from
        // nb_run_user() on the kernel stack it saved.
        .globl nb_leave_user_entry
nb_leave_user_entry:
        mov nb_saved_esp, %esp
        mov $0x10, %eax
        mov %eax, %ds
        mov %eax, %es
        pop %edi
        pop %esi
        pop %ebx
        pop %ebp
        ret

        // nb_run_user(fn, stack_top): iret to fn in ring 3 with IF = 0;
        // returns when fn executes int 0x81.
        .globl nb_run_user
nb_run_user:
        push %ebp
        push %ebx
        push %esi
        push %edi
        mov %esp, nb_saved_esp
        mov 20(%esp), %ecx      // fn
        mov 24(%esp), %edx      // user stack top
        mov $0x23, %eax         // user data
        mov %eax, %ds
        mov %eax, %es
        push $0x23              // SS
        push %edx               // ESP
        push $0x002             // EFLAGS: IF = 0, no timer in the way
        push $0x1B              // CS: user code
        push %ecx               // EIP
        iret

// --- timed loops (ECX = count) ---------------------------------------------

        .globl nb_ret
nb_ret: ret

        .globl nb_loop_callret
nb_loop_callret:
        mov 4(%esp), %ecx
1:      call nb_ret
        dec %ecx
        jnz 1b
        ret

        .globl nb_loop_in
nb_loop_in:
        mov 4(%esp), %ecx
1:      inb $0x80, %al          // the POST port: no side effects
        dec %ecx
        jnz 1b
        ret

        .globl nb_loop_divzero
nb_loop_divzero:
        push %ebx
        mov 8(%esp), %ecx
        xor %ebx, %ebx
1:      xor %edx, %edx
        mov $1, %eax
        .byte 0xF7, 0xF3        // div %ebx: #DE, the handler skips these 2 bytes
        dec %ecx
        jnz 1b
        pop %ebx
        ret

        // Count must be even: one fault per touch, two touches per round.
        .globl nb_loop_pgfault
nb_loop_pgfault:
        mov 4(%esp), %ecx
1:      mov PAGE_A, %eax
        mov PAGE_B, %eax
        sub $2, %ecx
        jnz 1b
        ret

        // ptemod(count, pte, page): flip R/W in a PTE, then invlpg the page.
        .globl nb_loop_ptemod
nb_loop_ptemod:
        mov 4(%esp), %ecx
        mov 8(%esp), %eax
        mov 12(%esp), %edx
1:      xorl $2, (%eax)
        invlpg (%edx)
        dec %ecx
        jnz 1b
        ret

        // Runs in ring 3: time nb_user_count null system calls, store the
        // TSC delta in nb_user_cycles, leave with int 0x81.
        .globl nb_user_syscall
nb_user_syscall:
        mov nb_user_count, %ecx
        rdtsc
        mov %eax, %esi
        mov %edx, %edi
1:      int $0x80
        dec %ecx
        jnz 1b
        rdtsc
        sub %esi, %eax
        sbb %edi, %edx
        mov %eax, nb_user_cycles
        mov %edx, nb_user_cycles+4
        int $0x81

