# World switch into guest user code (compatibility mode) and the landing
# that signal returns resume at. Offsets: see world_switch.h.
        .intel_syntax noprefix
        .text

# void bt86_world_enter(WorldContext* ctx /* rdi */)
        .globl  bt86_world_enter
        .type   bt86_world_enter, @function
bt86_world_enter:
        push    rbp
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        pushfq
        push    rdi                     # ctx, for the landing
        sub     rsp, 8                  # keep the host stack 16-byte aligned
        mov     [rdi + 0], rsp          # host_rsp
        # Of the host x87/SSE state only the SysV callee-saved parts need to
        # come back: the x87 control word and MXCSR (kept at their FXSAVE
        # offsets in host_fx). A full fxsave64 + fxrstor64 of the host state
        # costs 120-220 ns here.
        fnstcw  word ptr [rdi + 128]    # host_fx.fcw
        stmxcsr dword ptr [rdi + 128 + 24]  # host_fx.mxcsr
        fxrstor64 [rdi + 640]           # guest_fx

        # iretq frame: SS, RSP, RFLAGS, CS, RIP
        movzx   eax, word ptr [rdi + 64 + 2*2]   # SS
        push    rax
        mov     eax, [rdi + 24 + 4*4]            # ESP
        push    rax
        mov     eax, [rdi + 60]                  # EFLAGS
        push    rax
        movzx   eax, word ptr [rdi + 64 + 1*2]   # CS
        push    rax
        mov     eax, [rdi + 56]                  # EIP
        push    rax

        # Host registers the guest cannot see in compatibility mode, but
        # could read after an escape to 64-bit mode: do not leak them.
        xor     r8d, r8d
        xor     r9d, r9d
        xor     r10d, r10d
        xor     r11d, r11d
        xor     r12d, r12d
        xor     r13d, r13d
        xor     r14d, r14d
        xor     r15d, r15d

        # Data segments. FS/GS loads replace the host TLS base; the landing
        # puts it back before any host code runs.
        mov     ax, [rdi + 64 + 0*2]    # ES
        mov     es, ax
        mov     ax, [rdi + 64 + 3*2]    # DS
        mov     ds, ax
        mov     ax, [rdi + 64 + 4*2]    # FS
        mov     fs, ax
        mov     ax, [rdi + 64 + 5*2]    # GS
        mov     gs, ax

        mov     eax, [rdi + 24 + 0*4]
        mov     ecx, [rdi + 24 + 1*4]
        mov     edx, [rdi + 24 + 2*4]
        mov     ebx, [rdi + 24 + 3*4]
        mov     ebp, [rdi + 24 + 5*4]
        mov     esi, [rdi + 24 + 6*4]
        mov     edi, [rdi + 24 + 7*4]
        iretq
        .size   bt86_world_enter, . - bt86_world_enter

# Reached by sigreturn (the handler pointed RIP here and RSP at host_rsp),
# in 64-bit mode, with guest values still in FS/GS and the FPU.
        .globl  bt86_world_landing
        .type   bt86_world_landing, @function
bt86_world_landing:
        add     rsp, 8
        pop     rdi                     # ctx
        xor     eax, eax
        mov     ds, ax
        mov     es, ax
        mov     fs, ax
        mov     gs, ax
        cmp     dword ptr [rdi + 76], 0
        je      1f
        mov     rax, [rdi + 8]
        wrfsbase rax
        mov     rax, [rdi + 16]
        wrgsbase rax
        jmp     2f
1:      # No FSGSBASE for user space: ask the kernel (arch_prctl).
        push    rdi
        mov     rsi, [rdi + 8]
        mov     edi, 0x1002             # ARCH_SET_FS
        mov     eax, 158                # SYS_arch_prctl
        syscall
        mov     rdi, [rsp]
        mov     rsi, [rdi + 16]
        mov     edi, 0x1001             # ARCH_SET_GS
        mov     eax, 158
        syscall
        pop     rdi
2:      fninit                          # empty x87 stack, default control word
        fldcw   word ptr [rdi + 128]    # the host's control word and MXCSR
        ldmxcsr dword ptr [rdi + 128 + 24]
        popfq
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        pop     rbp
        ret
        .size   bt86_world_landing, . - bt86_world_landing

# void bt86_signal_resume(const greg_t* gregs /* rdi */, const void* fx /* rsi */)
# Leaves a signal handler for the context it edited without rt_sigreturn
# (about 1 us of the 2.3 us host signal round trip here): loads the x87/SSE
# state from fx (FXSAVE layout; skipped when null), every general register
# from gregs, and iretqs to gregs' RIP, RSP and RFLAGS in the host's 64-bit
# CS 0x33 and SS 0x2b. The handlers run with SA_NODEFER and an empty
# sa_mask, so the signal mask is already the interrupted one: nothing else
# that sigreturn restores differs. gregs is in ucontext order (REG_R8 = 0 ...
# REG_RIP = 16, REG_EFL = 17).
        .globl  bt86_signal_resume
        .type   bt86_signal_resume, @function
bt86_signal_resume:
        test    rsi, rsi
        jz      1f
        fxrstor64 [rsi]
1:      mov     rax, rdi
        push    0x2b                    # SS
        push    qword ptr [rax + 15*8]  # RSP
        push    qword ptr [rax + 17*8]  # RFLAGS
        push    0x33                    # CS
        push    qword ptr [rax + 16*8]  # RIP
        mov     r8,  [rax + 0*8]
        mov     r9,  [rax + 1*8]
        mov     r10, [rax + 2*8]
        mov     r11, [rax + 3*8]
        mov     r12, [rax + 4*8]
        mov     r13, [rax + 5*8]
        mov     r14, [rax + 6*8]
        mov     r15, [rax + 7*8]
        mov     rdi, [rax + 8*8]
        mov     rsi, [rax + 9*8]
        mov     rbp, [rax + 10*8]
        mov     rbx, [rax + 11*8]
        mov     rdx, [rax + 12*8]
        mov     rcx, [rax + 14*8]
        mov     rax, [rax + 13*8]
        iretq
        .size   bt86_signal_resume, . - bt86_signal_resume

# size_t bt86_probe_read(const uint8_t* src /* rdi */, uint8_t* dst /* rsi */, size_t n /* rdx */)
# Copies up to n bytes and returns how many it copied: a load that faults
# (SIGSEGV/SIGBUS at bt86_probe_load) is resumed at bt86_probe_done by the
# signal handler, with the count so far in rax. Reads guest memory that may
# be gone without a system call (process_vm_readv costs 1.3 us here).
        .globl  bt86_probe_read
        .globl  bt86_probe_load
        .globl  bt86_probe_done
        .type   bt86_probe_read, @function
bt86_probe_read:
        xor     eax, eax
1:      cmp     rax, rdx
        jae     bt86_probe_done
bt86_probe_load:
        movzx   ecx, byte ptr [rdi + rax]
        mov     [rsi + rax], cl
        inc     rax
        jmp     1b
bt86_probe_done:
        ret
        .size   bt86_probe_read, . - bt86_probe_read

        .section .note.GNU-stack, "", @progbits
