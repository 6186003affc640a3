// CpuHooks: what the CPU model needs from the rest of the machine when it
// interprets a sensitive instruction. The machine implements it; tests use
// fakes. Every hook is called after the architectural register change.
#pragma once

#include <cstdint>

namespace bt86::machine {

class CpuHooks {
 public:
  virtual ~CpuHooks() = default;

  // Port I/O (size 1, 2 or 4).
  virtual uint32_t io_in(uint16_t port, unsigned size) = 0;
  virtual void io_out(uint16_t port, unsigned size, uint32_t value) = 0;

  // CR0, CR3 or CR4 was written (old and new value): the MMU drops or keeps
  // shadow mappings accordingly.
  virtual void control_register_written(int cr, uint32_t old_value, uint32_t new_value) = 0;
  // INVLPG of linear address lin.
  virtual void invlpg(uint32_t lin) = 0;
  // WBINVD / INVD: nothing to write back, but counted.
  virtual void cache_flush() {}

  // A segment register, GDTR, LDTR or TR changed: direct execution refreshes
  // its host LDT mirror, the translator its assumptions about segment bases.
  virtual void segments_changed() = 0;

  // The host TSC (the CPU model adds SystemRegs::tsc_offset).
  virtual uint64_t host_tsc() = 0;
};

}  // namespace bt86::machine
