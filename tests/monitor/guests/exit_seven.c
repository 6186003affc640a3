// exit_seven: a guest that calls exit(7) at once; bt86 must exit with 7.
// Also the seed image of the corrupted-ELF test: small and with no loops.
__asm__(
    ".globl _start\n"
    "_start:\n"
    "  mov $1, %eax\n"  // exit
    "  mov $7, %ebx\n"
    "  int $0x80\n"     // software-interrupt 0x80 -> bt86 exits with 7
    "  hlt\n");         // not reached
