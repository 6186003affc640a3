// The 32-bit page walk (SDM vol. 3A, 4.3 translation, 4.6 access rights,
// 4.7 the #PF error code, 4.8 accessed and dirty flags).
#include "mmu/page_walk.h"

#include <cstring>

namespace bt86::mmu {
namespace {

using machine::Access;

// Reads a paging-structure entry; false if it is not in guest RAM.
bool read_entry(const GuestMemory& memory, uint32_t addr, uint32_t& out) {
  const uint8_t* p = memory.host(GuestPhys(addr), 4);
  if (!p) return false;
  std::memcpy(&out, p, 4);
  return true;
}

void or_entry(GuestMemory& memory, uint32_t addr, uint32_t bits) {
  uint8_t* p = memory.host(GuestPhys(addr), 4);
  if (!p) return;
  uint32_t v;
  std::memcpy(&v, p, 4);
  if ((v & bits) == bits) return;
  v |= bits;
  std::memcpy(p, &v, 4);
}

Translation fault(uint32_t error_code) {
  Translation t;
  t.status = WalkStatus::kPageFault;
  t.error_code = error_code;
  return t;
}

}  // namespace

bool PagingControl::paging() const {
  return (cr0 & (machine::cr0::PE | machine::cr0::PG)) == (machine::cr0::PE | machine::cr0::PG);
}
bool PagingControl::wp() const { return cr0 & machine::cr0::WP; }
bool PagingControl::pse() const { return cr4 & machine::cr4::PSE; }
bool PagingControl::pge() const { return cr4 & machine::cr4::PGE; }

bool access_allowed(bool user_page, bool writable_page, bool write, bool user, bool wp) {
  if (user && !user_page) return false;
  if (write && !writable_page && (user || wp)) return false;
  return true;
}

Translation translate(const GuestMemory& memory, const PagingControl& control, uint32_t lin,
                      Access kind, bool user) {
  const bool write = kind == Access::kWrite;
  Translation t;
  if (!control.paging()) {
    t.phys = lin;
    t.status = memory.contains(GuestPhys(lin), 1) ? WalkStatus::kOk : WalkStatus::kNotRam;
    t.user = t.writable = t.dirty = true;
    t.large = true;
    return t;
  }
  // #PF error code (SDM 4.7): W/R and U/S describe the access; P says
  // whether a present entry denied it. No I/D bit: no NX on this CPU.
  const uint32_t access_bits = (write ? machine::pf::W : 0) | (user ? machine::pf::U : 0);

  const uint32_t pde_addr = (control.cr3 & pte::kFrameMask) | ((lin >> 22) << 2);
  uint32_t pde;
  if (!read_entry(memory, pde_addr, pde)) {
    t.status = WalkStatus::kTableNotRam;
    t.phys = pde_addr;
    return t;
  }
  if (!(pde & pte::P)) return fault(access_bits);

  uint32_t leaf;  // the entry that maps the page
  uint32_t rights;
  if ((pde & pte::PS) && control.pse()) {
    if (pde & pte::kLargeReserved) return fault(access_bits | machine::pf::P | machine::pf::RSVD);
    leaf = pde;
    rights = pde;
    t.large = true;
    t.phys = (pde & pte::kLargeFrameMask) | (lin & (kLargePageSize - 1));
  } else {
    // PS is ignored when CR4.PSE = 0 (SDM table 4-5 note): a page table.
    const uint32_t pte_addr = (pde & pte::kFrameMask) | (((lin >> 12) & 0x3ff) << 2);
    uint32_t entry;
    if (!read_entry(memory, pte_addr, entry)) {
      t.status = WalkStatus::kTableNotRam;
      t.phys = pte_addr;
      return t;
    }
    if (!(entry & pte::P)) return fault(access_bits);
    leaf = entry;
    rights = pde & entry;
    t.pte_addr = pte_addr;
    t.phys = (entry & pte::kFrameMask) | (lin & kPageMask);
  }
  t.paged = true;
  t.pde_addr = pde_addr;
  t.user = rights & pte::US;
  t.writable = rights & pte::RW;
  t.dirty = leaf & pte::D;
  t.global = (leaf & pte::G) && control.pge();
  if (!access_allowed(t.user, t.writable, write, user, control.wp()))
    return fault(access_bits | machine::pf::P);
  t.status = memory.contains(GuestPhys(t.phys), 1) ? WalkStatus::kOk : WalkStatus::kNotRam;
  return t;
}

void mark_accessed(GuestMemory& memory, const Translation& t, bool write) {
  if (t.status != WalkStatus::kOk && t.status != WalkStatus::kNotRam) return;
  if (!t.paged) return;  // paging off: no entries
  if (t.large) {
    or_entry(memory, t.pde_addr, pte::A | (write ? pte::D : 0));
  } else {
    or_entry(memory, t.pde_addr, pte::A);
    or_entry(memory, t.pte_addr, pte::A | (write ? pte::D : 0));
  }
}

Translation walk(GuestMemory& memory, const PagingControl& control, uint32_t lin, Access kind,
                 bool user) {
  Translation t = translate(memory, control, lin, kind, user);
  mark_accessed(memory, t, kind == Access::kWrite);
  if (kind == Access::kWrite && (t.status == WalkStatus::kOk || t.status == WalkStatus::kNotRam))
    t.dirty = true;
  return t;
}

}  // namespace bt86::mmu
