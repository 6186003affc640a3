// LdtMirror: the host LDT of this process as bt86 lays it out.
//
// Guest selectors cannot all be used as they are: the host GDT (which a
// process cannot change) answers every TI=0 selector. So each guest segment
// register is loaded from a host LDT slot of its own holding the register's
// descriptor cache, with the base kept and the limit cut below a boundary:
//   host LDT 0..8185     <- guest LDT entries, same index, so that guest user
//                           code loading an LDT selector itself (mov ds, ax;
//                           pop es; far jumps) gets the guest's descriptor
//   host LDT 8186..8191  <- the six segment-register slots (Seg order)
// A guest GDT selector loaded natively by user code reaches the host GDT;
// the exit that follows reports it (see DirectExecutor::classify). A slot
// selector reads back with TI=1: guest code that reads a segment register
// can see that difference.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "base/result.h"
#include "runtime/cpu_state.h"

namespace bt86::runtime::detail {

class LdtMirror {
 public:
  static constexpr uint16_t kSlotBase = 8186;
  static constexpr uint16_t kLdtMirrorEntries = kSlotBase;

  static constexpr uint16_t slot_selector(Seg s) {
    return uint16_t(((kSlotBase + static_cast<int>(s)) << 3) | 7);
  }

  // Segments are cut so that no byte at or above boundary is reachable.
  explicit LdtMirror(uint64_t boundary) : m_boundary(boundary) {}

  // Prepares the host selector for segment register s holding cache.
  // Returns the host selector to load (0 for a null or unusable segment) or
  // an error if the descriptor cannot be represented.
  Result<uint16_t> load_slot(Seg s, const SegmentCache& cache);

  // Mirrors guest LDT entry index so guest code can load it natively. A
  // descriptor user code may not load (system, DPL < 3) is mirrored as
  // not-present, so a native load faults instead of loading something else.
  Status mirror_ldt_entry(uint16_t index, const SegmentCache& desc);

  // Maps a selector found live in a segment register at an exit back to the
  // guest's view. nullopt if the selector is not one bt86 installed.
  std::optional<SegmentCache> guest_view(Seg s, uint16_t host_selector) const;

  // The limit actually installed for a register's slot (after truncation).
  uint32_t installed_limit(Seg s) const { return m_slot_limit[static_cast<int>(s)]; }

  uint64_t ldt_writes() const { return m_writes; }

 private:
  struct Entry {
    SegmentCache guest;
    bool valid = false;
  };
  // Writes host LDT entry index from cache; returns the installed limit.
  Result<uint32_t> write_entry(uint16_t index, const SegmentCache& cache, bool is_cs, bool present);

  uint64_t m_boundary;
  std::array<Entry, kNumSegs> m_slots{};
  std::array<uint32_t, kNumSegs> m_slot_limit{};
  std::unordered_map<uint16_t, SegmentCache> m_mirrored;  // host LDT index -> guest cache
  uint64_t m_writes = 0;
};

}  // namespace bt86::runtime::detail
