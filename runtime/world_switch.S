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
        fxsave64 [rdi + 128]            # host_fx
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
2:      fxrstor64 [rdi + 128]           # host_fx
        popfq
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        pop     rbp
        ret
        .size   bt86_world_landing, . - bt86_world_landing

        .section .note.GNU-stack, "", @progbits
