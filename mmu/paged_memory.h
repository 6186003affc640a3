// PagedMemory: machine::LinearMemory over guest RAM and the current CR0, CR3
// and CR4 - the guest's linear address space as the CPU model sees it when it
// reads or writes on the guest's behalf (descriptor tables, interrupt frames,
// string I/O, operands of interpreted instructions). Accesses translate
// through the guest page tables (page_walk.h), with a small software TLB in
// front of the walk. Accessed and dirty bits are set only once the whole
// access is known to succeed, and a faulting access writes nothing.
//
// The TLB behaves as the hardware's does (SDM vol. 3A, 4.10): it caches
// only successful translations, and only after their A (and, for a write,
// D) bits were set; an entry records the rights of both levels and whether
// D is set, and every hit re-checks them against the access (CPL, write,
// CR0.WP). A write through an entry filled while D was clear walks again
// (which sets D). A hit that the rights refuse walks again too, and a page
// fault drops the entry of its page (SDM 4.10.4.1), so a fault is always
// decided by the current tables. Invalidation: a CR3 load drops the
// non-global entries (global ones stay with CR4.PGE), a change of paging
// on/off, CR0.WP, CR4.PSE or CR4.PGE drops all, INVLPG drops the page (or
// every entry of a 4 MiB page). Like a hardware TLB it may return a stale
// translation after the guest edits a page-table entry without flushing
// (SDM 4.10.4), and it does not set A or D again in an entry the guest
// cleared without flushing.
//
// Known gaps: an access that reaches a physical address outside guest RAM
// (MMIO) reads all-ones and drops writes (counted, never cached); a
// page-table entry outside RAM is reported to the guest as a not-present
// #PF (counted). The MMIO bus is the run loop's business: faults in the
// shadow windows report MMIO properly.
#pragma once

#include <array>
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

struct PagedMemoryConfig {
  bool tlb = true;  // the software TLB; off: every access walks
};

struct PagedMemoryStats {
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t page_faults = 0;     // #PF returned
  uint64_t not_ram_bytes = 0;   // bytes read as all-ones or dropped (no RAM there)
  uint64_t table_not_ram = 0;   // walks that met a page-table entry outside RAM
  uint64_t tlb_hits = 0;        // pages translated by the TLB
  uint64_t tlb_misses = 0;      // pages walked with paging on and the TLB enabled
  uint64_t tlb_flushes = 0;     // CR3 loads, paging-mode changes, flush_tlb()
  uint64_t tlb_invlpgs = 0;     // invlpg()
};

class PagedMemory final : public machine::LinearMemory {
 public:
  // Direct-mapped by linear page number: the CPU model's working set is a
  // handful of pages (IDT, GDT, TSS, kernel stack, a user stack).
  static constexpr uint32_t kTlbEntries = 256;

  explicit PagedMemory(GuestMemory& memory, const PagedMemoryConfig& config = {})
      : m_memory(&memory), m_tlb_on(config.tlb) {}

  // Takes new control registers. A change of paging on/off, CR0.WP,
  // CR4.PSE or CR4.PGE flushes the whole TLB; a different CR3 alone is a
  // CR3 load (see load_cr3).
  void set_control(const PagingControl& control);
  const PagingControl& control() const { return m_control; }
  // MOV to CR3: flushes the non-global entries (all of them without
  // CR4.PGE), also when the value does not change (SDM 4.10.4.1).
  void load_cr3(uint32_t cr3);
  // Drops every entry, or every non-global one when keep_global.
  void flush_tlb(bool keep_global);
  // INVLPG: drops the entry of lin's page, and every entry that came from
  // the same guest 4 MiB page (one TLB entry on hardware, SDM 4.10.2.3).
  void invlpg(uint32_t lin);
  void set_tlb_enabled(bool on);
  bool tlb_enabled() const { return m_tlb_on; }

  void set_write_observer(PhysWriteObserver* observer) { m_observer = observer; }
  const PagedMemoryStats& stats() const { return m_stats; }

  std::optional<machine::GuestFault> read(uint32_t lin, std::span<uint8_t> out,
                                          machine::Access kind, bool user) override;
  std::optional<machine::GuestFault> write(uint32_t lin, std::span<const uint8_t> in,
                                           bool user) override;

 private:
  struct TlbEntry {
    uint32_t page = 0;  // linear page number (the tag)
    uint32_t phys = 0;  // physical page address
    uint32_t gen = 0;   // m_gen (m_global_gen if global) at fill time; 0: empty
    uint8_t flags = 0;  // kTlb*
  };
  static constexpr uint8_t kTlbUser = 1, kTlbWritable = 2, kTlbDirty = 4, kTlbGlobal = 8,
                           kTlbLarge = 16;

  // The live entry for lin's page if it allows this access, else nullptr.
  const TlbEntry* tlb_hit(uint32_t lin, bool write, bool user) const {
    const uint32_t page = lin >> 12;
    const TlbEntry& e = m_tlb[page % kTlbEntries];
    if (e.page != page || e.gen != ((e.flags & kTlbGlobal) ? m_global_gen : m_gen)) return nullptr;
    if (user && !(e.flags & kTlbUser)) return nullptr;
    if (write && (!(e.flags & kTlbDirty) ||
                  (!(e.flags & kTlbWritable) && (user || m_control.wp()))))
      return nullptr;
    return &e;
  }
  // After a successful walk whose A/D bits are set: caches it (or drops a
  // stale entry for the page when the result is not cacheable).
  void tlb_fill(uint32_t lin, const Translation& t, bool write);
  void tlb_drop(uint32_t lin);
  void tlb_reset();

  // read/write beyond the fast path (a TLB hit for an access within one
  // page): apart, so that the fast path needs no large stack frame.
  [[gnu::noinline]] std::optional<machine::GuestFault> read_slow(uint32_t lin, std::span<uint8_t> out,
                                                                 machine::Access kind, bool user);
  [[gnu::noinline]] std::optional<machine::GuestFault> write_slow(uint32_t lin, std::span<const uint8_t> in,
                                                                  bool user);

  // Translates every page of [lin, lin+len) for the access; only if all
  // succeed sets A/D, fills the TLB and calls fn for each piece.
  template <typename Fn>
  std::optional<machine::GuestFault> for_each_page(uint32_t lin, size_t len, machine::Access kind,
                                                   bool user, Fn&& fn);

  GuestMemory* m_memory;
  PagingControl m_control;
  PhysWriteObserver* m_observer = nullptr;
  PagedMemoryStats m_stats;
  bool m_tlb_on;
  // Flushes bump a generation instead of visiting the entries; a counter
  // that wraps clears the array (tlb_reset).
  uint32_t m_gen = 1;
  uint32_t m_global_gen = 1;
  std::array<TlbEntry, kTlbEntries> m_tlb{};
  // One bit per 4 MiB region that may hold entries of a guest 4 MiB page,
  // so invlpg scans the array only when it can matter.
  std::array<uint64_t, 16> m_large_regions{};
};

}  // namespace bt86::mmu
