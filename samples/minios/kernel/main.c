// minios: guest_main (called by guestlib's _start) brings the machine up in dependency order and starts the
// first process. See samples/minios/README.md for the tour.
#include "kernel.h"

// Multiboot v1 specification, 3.3: the part of the information structure
// minios reads.
typedef struct {
  uint32_t flags;
  uint32_t mem_lower, mem_upper;  // KiB below 1 MiB / above 1 MiB (flags bit 0)
} MultibootInfo;

void guest_main(uint32_t magic, const void* info) {
  const MultibootInfo* mbi = (const MultibootInfo*)info;
  serial_init();
  kprintf("minios: booting\n");
  if (magic != MULTIBOOT_BOOTLOADER_MAGIC) panic("not started by a Multiboot loader (eax 0x%08x)", magic);
  if (!(mbi->flags & 1)) panic("the loader gave no memory size");
  uint32_t mem_upper = mbi->mem_upper;  // read before paging hides low memory

  cpu_init();
  mm_init(mem_upper);
  mm_enable_paging();
  pic_init();
  pit_init(kTimerHz);
  proc_init();
  kprintf("minios: %u programs, timer %u Hz, quantum %u ticks\n", mm_user_header()->count, kTimerHz, kQuantumTicks);
  proc_start();
}
