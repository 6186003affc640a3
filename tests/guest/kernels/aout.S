/* aout: an assembly-only kernel loaded through the Multiboot a.out kludge
   (header flag 16: the header gives the load addresses, spec 3.1.3). It
   checks the boot handoff itself (spec 3.2): EAX magic, the info flags for
   memory and the memory map, IF = 0, a zeroed bss, segment reloads from the
   loader's GDT; then prints PASS/FAIL on COM1 and writes the debug-exit port. */
#define FLAGS 0x00010003

  .text
  .globl start
start:
header:
  .long 0x1badb002, FLAGS, -(0x1badb002 + FLAGS)
  .long header, start, _edata, _end, entry

entry:
  mov $stack_top, %esp
  mov $msg_magic, %esi
  cmp $0x2badb002, %eax
  jne bad
  mov $msg_info, %esi
  testl $0x1, (%ebx)           /* mem_lower / mem_upper */
  jz bad
  testl $0x40, (%ebx)          /* mmap */
  jz bad
  mov $msg_if, %esi
  pushf
  pop %eax
  test $0x200, %eax
  jnz bad
  mov $msg_bss, %esi
  cmpl $0, bss_word
  jne bad
  cmpl $0, bss_last
  jne bad
  /* Reload every segment from the loader's GDT (its selectors as given). */
  mov %ds, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %fs
  mov %ax, %gs
  mov %ax, %ss
  xor %eax, %eax
  mov %cs, %ax
  push %eax
  push $1f
  lret
1:
  mov $msg_pass, %esi
  call puts
  xor %eax, %eax
  outb %al, $0xf4
  jmp halt
bad:
  push %esi
  mov $msg_fail, %esi
  call puts
  pop %esi
  call puts
  mov $1, %al
  outb %al, $0xf4
halt:
  cli
  hlt
  jmp halt

/* puts(%esi): polled COM1 output. */
puts:
  mov $0x3fd, %dx
2:inb %dx, %al
  test $0x20, %al
  jz 2b
  lodsb
  test %al, %al
  jz 3f
  mov $0x3f8, %dx
  outb %al, %dx
  jmp puts
3:ret

msg_pass:  .asciz "PASS: aout\r\n"
msg_fail:  .asciz "FAIL: aout: "
msg_magic: .asciz "EAX is not 0x2badb002\r\n"
msg_info:  .asciz "multiboot_info lacks memory or mmap\r\n"
msg_if:    .asciz "EFLAGS.IF is set at entry\r\n"
msg_bss:   .asciz "bss not zeroed\r\n"

  .data
  .long 0x5a5a5a5a

  .bss
  .align 16
bss_word:
  .space 4096
stack_top:
bss_last:
  .space 4
