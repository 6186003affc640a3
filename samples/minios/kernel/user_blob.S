// The user image (user/*.c linked at kUserBase, flattened with objcopy)
// carried inside the kernel. mm.c copies pages out of it on demand, the way a
// kernel would read them from a file.
        .section .rodata
        .align 4096
        .globl user_blob_start, user_blob_end
user_blob_start:
        .incbin USER_BIN
user_blob_end:
