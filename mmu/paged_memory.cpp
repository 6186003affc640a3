// PagedMemory: translate every page an access touches, then (only if all of
// them succeed) set accessed/dirty bits and copy.
#include "mmu/paged_memory.h"

#include <array>
#include <cstring>
#include <vector>

#include "base/log.h"

namespace bt86::mmu {
namespace {

struct Piece {
  Translation t;
  uint32_t offset;  // into the caller's buffer
  uint32_t len;
};

}  // namespace

template <typename Fn>
std::optional<machine::GuestFault> PagedMemory::for_each_page(uint32_t lin, size_t len,
                                                              machine::Access kind, bool user,
                                                              Fn&& fn) {
  // Most accesses touch one or two pages; larger ones (string I/O) spill.
  std::array<Piece, 4> small;
  std::vector<Piece> large;
  size_t count = 0;
  auto push = [&](const Piece& p) {
    if (count < small.size()) {
      small[count++] = p;
      return;
    }
    if (large.empty()) large.assign(small.begin(), small.end());
    large.push_back(p);
    ++count;
  };
  size_t done = 0;
  while (done < len) {
    // Linear addresses wrap at 4 GiB (32-bit address arithmetic).
    const uint32_t at = lin + uint32_t(done);
    const uint32_t chunk = uint32_t(std::min<size_t>(len - done, kPageSize - (at & kPageMask)));
    Translation t = translate(*m_memory, m_control, at, kind, user);
    if (t.status == WalkStatus::kTableNotRam) {
      // A guest page table in MMIO space: no defined contents. Treat the
      // entry as not present rather than inventing one.
      if (m_stats.table_not_ram++ == 0)
        log::get("mmu")->warn("guest page-table entry at {:#x} is not in RAM (linear {:#x})",
                              t.phys, at);
      t = Translation{};
      t.status = WalkStatus::kPageFault;
      t.error_code = (kind == machine::Access::kWrite ? machine::pf::W : 0) |
                     (user ? machine::pf::U : 0);
    }
    if (t.status == WalkStatus::kPageFault) {
      ++m_stats.page_faults;
      return machine::GuestFault{machine::vec::PF, true, t.error_code, at};
    }
    push(Piece{t, uint32_t(done), chunk});
    done += chunk;
  }
  const bool write = kind == machine::Access::kWrite;
  const Piece* pieces = count <= small.size() ? small.data() : large.data();
  for (size_t i = 0; i < count; ++i) mark_accessed(*m_memory, pieces[i].t, write);
  for (size_t i = 0; i < count; ++i) fn(pieces[i]);
  return std::nullopt;
}

std::optional<machine::GuestFault> PagedMemory::read(uint32_t lin, std::span<uint8_t> out,
                                                     machine::Access kind, bool user) {
  ++m_stats.reads;
  return for_each_page(lin, out.size(), kind, user, [&](const Piece& p) {
    uint8_t* dst = out.data() + p.offset;
    if (p.t.status == WalkStatus::kOk) {
      std::memcpy(dst, m_memory->host(GuestPhys(p.t.phys), p.len), p.len);
    } else {
      std::memset(dst, 0xff, p.len);  // nothing answers: the bus floats high
      m_stats.not_ram_bytes += p.len;
    }
  });
}

std::optional<machine::GuestFault> PagedMemory::write(uint32_t lin, std::span<const uint8_t> in,
                                                      bool user) {
  ++m_stats.writes;
  return for_each_page(lin, in.size(), machine::Access::kWrite, user, [&](const Piece& p) {
    if (p.t.status == WalkStatus::kOk) {
      std::memcpy(m_memory->host(GuestPhys(p.t.phys), p.len), in.data() + p.offset, p.len);
      if (m_observer) m_observer->phys_page_written(p.t.phys & ~kPageMask);
    } else {
      m_stats.not_ram_bytes += p.len;
    }
  });
}

}  // namespace bt86::mmu
