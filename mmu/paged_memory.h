// PagedMemory: machine::LinearMemory over guest RAM and the current CR0, CR3
// and CR4 - the guest's linear address space as the CPU model sees it when it
// reads or writes on the guest's behalf (descriptor tables, interrupt frames,
// string I/O, operands of interpreted instructions). Every access walks the
// guest page tables (page_walk.h); nothing is cached, so there is nothing to
// flush. Accessed and dirty bits are set only once the whole access is known
// to succeed, and a faulting access writes nothing.
//
// Known gaps: an access that reaches a physical address outside guest RAM
// (MMIO) reads all-ones and drops writes (counted); a page-table entry outside
// RAM is reported to the guest as a not-present #PF (counted). The MMIO bus is
// the run loop's business: faults in the shadow windows report MMIO properly.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "machine/linear_memory.h"
#include "mmu/guest_memory.h"
#include "mmu/page_walk.h"

namespace bt86::mmu {

// Told about every guest-RAM page PagedMemory writes, after the write: the
// shadow MMU uses it to notice writes to pages that hold translated code.
class PhysWriteObserver {
 public:
  virtual ~PhysWriteObserver() = default;
  virtual void phys_page_written(uint32_t phys_page) = 0;
};

struct PagedMemoryStats {
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t page_faults = 0;     // #PF returned
  uint64_t not_ram_bytes = 0;   // bytes read as all-ones or dropped (no RAM there)
  uint64_t table_not_ram = 0;   // walks that met a page-table entry outside RAM
};

class PagedMemory final : public machine::LinearMemory {
 public:
  explicit PagedMemory(GuestMemory& memory) : m_memory(&memory) {}

  void set_control(const PagingControl& control) { m_control = control; }
  const PagingControl& control() const { return m_control; }
  void set_write_observer(PhysWriteObserver* observer) { m_observer = observer; }
  const PagedMemoryStats& stats() const { return m_stats; }

  std::optional<machine::GuestFault> read(uint32_t lin, std::span<uint8_t> out,
                                          machine::Access kind, bool user) override;
  std::optional<machine::GuestFault> write(uint32_t lin, std::span<const uint8_t> in,
                                           bool user) override;

 private:
  // Translates every page of [lin, lin+len) for the access; on success fills
  // `pages` (one per page touched, at most len/4096 + 2) and returns nullopt.
  template <typename Fn>
  std::optional<machine::GuestFault> for_each_page(uint32_t lin, size_t len, machine::Access kind,
                                                   bool user, Fn&& fn);

  GuestMemory* m_memory;
  PagingControl m_control;
  PhysWriteObserver* m_observer = nullptr;
  PagedMemoryStats m_stats;
};

}  // namespace bt86::mmu
