// PagedMemory: translate every page an access touches (from the TLB or by
// a walk), then - only if all of them succeed - set accessed/dirty bits,
// fill the TLB and copy.
#include "mmu/paged_memory.h"

#include <array>
#include <bit>
#include <cstring>
#include <type_traits>
#include <vector>

#include "base/log.h"

namespace bt86::mmu {
namespace {

struct Piece {
  Translation t;
  uint32_t offset;  // into the caller's buffer
  uint32_t len;
  bool hit;  // from the TLB: A/D already set, nothing to fill
};

// The control bits whose change flushes the whole TLB. MOV to CR0/CR4 that
// changes PG, PSE or PGE invalidates all entries (SDM 4.10.4.1); WP is
// re-checked on every hit anyway, but a change drops everything, as the
// shadow does.
bool mode_changed(const PagingControl& a, const PagingControl& b) {
  return a.paging() != b.paging() || a.wp() != b.wp() || a.pse() != b.pse() || a.pge() != b.pge();
}

// "No fault", built as 16 zero bytes. `return std::nullopt` makes GCC store
// the flag byte alone and then reload all 16 bytes to return them in
// registers: a load spanning a smaller store cannot be forwarded from it,
// a ~15-cycle stall on every access (see machine::Fault). All-zero bytes
// are an empty optional: its engaged flag is a bool.
using MaybeFault = std::optional<machine::GuestFault>;
static_assert(std::is_trivially_copyable_v<MaybeFault> && sizeof(MaybeFault) == 16);
MaybeFault no_fault() { return std::bit_cast<MaybeFault>(std::array<uint64_t, 2>{}); }

// memcpy for the few bytes the CPU model moves at a time (a descriptor, a
// frame of up to six dwords): inline fixed-size copies instead of a libc
// call; longer ones (string I/O, a TSS image) go to memcpy.
inline void copy_bytes(uint8_t* dst, const uint8_t* src, size_t n) {
  if (n >= 8 && n <= 16) {
    // Two 8-byte copies that may overlap in the middle.
    uint64_t a, b;
    std::memcpy(&a, src, 8);
    std::memcpy(&b, src + n - 8, 8);
    std::memcpy(dst, &a, 8);
    std::memcpy(dst + n - 8, &b, 8);
  } else if (n == 4) {
    std::memcpy(dst, src, 4);
  } else if (n == 6) {
    // SS0:ESP0: not two overlapping dwords, or the load of ESP after the
    // copy would need bytes of both stores (no store forwarding, a stall).
    std::memcpy(dst, src, 4);
    std::memcpy(dst + 4, src + 4, 2);
  } else if (n == 2) {
    std::memcpy(dst, src, 2);
  } else {
    std::memcpy(dst, src, n);
  }
}

}  // namespace

void PagedMemory::set_control(const PagingControl& control) {
  const PagingControl prev = m_control;
  m_control = control;
  if (mode_changed(prev, control))
    flush_tlb(false);
  else if (prev.cr3 != control.cr3)
    flush_tlb(control.pge());
}

void PagedMemory::load_cr3(uint32_t cr3) {
  m_control.cr3 = cr3;
  flush_tlb(m_control.pge());
}

void PagedMemory::flush_tlb(bool keep_global) {
  ++m_stats.tlb_flushes;
  if (++m_gen == 0) return tlb_reset();
  if (keep_global) return;
  if (++m_global_gen == 0) return tlb_reset();
  m_large_regions = {};
}

void PagedMemory::tlb_reset() {
  m_tlb.fill(TlbEntry{});
  m_gen = m_global_gen = 1;
  m_large_regions = {};
}

void PagedMemory::invlpg(uint32_t lin) {
  ++m_stats.tlb_invlpgs;
  tlb_drop(lin);
  const uint32_t region = lin >> 22;
  uint64_t& word = m_large_regions[region / 64];
  const uint64_t bit = uint64_t(1) << (region % 64);
  if (!(word & bit)) return;
  for (TlbEntry& e : m_tlb)
    if ((e.flags & kTlbLarge) && (e.page >> 10) == region) e.gen = 0;
  word &= ~bit;
}

void PagedMemory::set_tlb_enabled(bool on) {
  m_tlb_on = on;
  tlb_reset();
}

void PagedMemory::tlb_drop(uint32_t lin) {
  TlbEntry& e = m_tlb[(lin >> 12) % kTlbEntries];
  if (e.page == lin >> 12) e.gen = 0;
}

void PagedMemory::tlb_fill(uint32_t lin, const Translation& t, bool write) {
  // Paging off needs no TLB (linear = physical); MMIO is never cached, so
  // that every access to it reaches the slow path.
  if (!m_tlb_on || !t.paged || t.status != WalkStatus::kOk) return tlb_drop(lin);
  const uint32_t page = lin >> 12;
  TlbEntry& e = m_tlb[page % kTlbEntries];
  e.page = page;
  e.phys = t.phys & ~kPageMask;
  e.flags = uint8_t((t.user ? kTlbUser : 0) | (t.writable ? kTlbWritable : 0) |
                    (t.dirty || write ? kTlbDirty : 0) | (t.global ? kTlbGlobal : 0) |
                    (t.large ? kTlbLarge : 0));
  e.gen = t.global ? m_global_gen : m_gen;
  if (t.large) m_large_regions[(page >> 10) / 64] |= uint64_t(1) << ((page >> 10) % 64);
}

template <typename Fn>
std::optional<machine::GuestFault> PagedMemory::for_each_page(uint32_t lin, size_t len,
                                                              machine::Access kind, bool user,
                                                              Fn&& fn) {
  const bool write = kind == machine::Access::kWrite;
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
    if (const TlbEntry* e = tlb_hit(at, write, user)) {
      ++m_stats.tlb_hits;
      Piece p{Translation{}, uint32_t(done), chunk, true};
      p.t.status = WalkStatus::kOk;
      p.t.phys = e->phys | (at & kPageMask);
      push(p);
      done += chunk;
      continue;
    }
    if (m_tlb_on && m_control.paging()) ++m_stats.tlb_misses;
    Translation t = translate(*m_memory, m_control, at, kind, user);
    if (t.status == WalkStatus::kTableNotRam) {
      // A guest page table in MMIO space: no defined contents. Treat the
      // entry as not present rather than inventing one.
      if (m_stats.table_not_ram++ == 0)
        log::get("mmu")->warn("guest page-table entry at {:#x} is not in RAM (linear {:#x})",
                              t.phys, at);
      t = Translation{};
      t.status = WalkStatus::kPageFault;
      t.error_code = (write ? machine::pf::W : 0) | (user ? machine::pf::U : 0);
    }
    if (t.status == WalkStatus::kPageFault) {
      // A page fault invalidates the TLB entries of the faulting page
      // (SDM 4.10.4.1), so a retry after the handler sees the new tables.
      tlb_drop(at);
      ++m_stats.page_faults;
      return machine::GuestFault{machine::vec::PF, true, t.error_code, at};
    }
    push(Piece{t, uint32_t(done), chunk, false});
    done += chunk;
  }
  const Piece* pieces = count <= small.size() ? small.data() : large.data();
  for (size_t i = 0; i < count; ++i) {
    if (pieces[i].hit) continue;
    mark_accessed(*m_memory, pieces[i].t, write);
    // Only now: the walk's A (and D) bits are in the guest's tables.
    tlb_fill(lin + pieces[i].offset, pieces[i].t, write);
  }
  for (size_t i = 0; i < count; ++i) fn(pieces[i]);
  return no_fault();
}

std::optional<machine::GuestFault> PagedMemory::read(uint32_t lin, std::span<uint8_t> out,
                                                     machine::Access kind, bool user) {
  ++m_stats.reads;
  // Fast path: the whole access inside one page the TLB holds.
  if (!out.empty() && (lin & kPageMask) + out.size() <= kPageSize) {
    if (const TlbEntry* e = tlb_hit(lin, false, user)) {
      ++m_stats.tlb_hits;
      copy_bytes(out.data(), m_memory->host(GuestPhys(e->phys | (lin & kPageMask)), out.size()), out.size());
      return no_fault();
    }
  }
  return read_slow(lin, out, kind, user);
}

std::optional<machine::GuestFault> PagedMemory::read_slow(uint32_t lin, std::span<uint8_t> out,
                                                          machine::Access kind, bool user) {
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
  if (!in.empty() && (lin & kPageMask) + in.size() <= kPageSize) {
    if (const TlbEntry* e = tlb_hit(lin, true, user)) {
      ++m_stats.tlb_hits;
      const uint32_t phys_page = e->phys;
      copy_bytes(m_memory->host(GuestPhys(phys_page | (lin & kPageMask)), in.size()), in.data(), in.size());
      // Code-page protection sees every write, hit or not.
      if (m_observer) m_observer->phys_page_written(phys_page);
      return no_fault();
    }
  }
  return write_slow(lin, in, user);
}

std::optional<machine::GuestFault> PagedMemory::write_slow(uint32_t lin, std::span<const uint8_t> in,
                                                           bool user) {
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
