// Entry of every minios process: the kernel irets here with EAX = main and
// EBX = the program's name, ESP = kUserStackTop (untouched, demand-paged).
        .text
        .globl _ustart
_ustart:
        sub $8, %esp    // ustart_c sees the 16-byte aligned stack the ABI wants
        push %ebx
        push %eax
        call ustart_c   // never returns: it calls exit()
        ud2
