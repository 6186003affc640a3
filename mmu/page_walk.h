// The guest's page-table walk: 32-bit two-level paging (Intel SDM vol. 3A,
// 4.3) with 4 MiB pages (CR4.PSE), global pages (CR4.PGE) and CR0.WP, the
// access rights of 4.6 and the #PF error code of 4.7. The guest's page
// tables live in guest RAM and are read (and their A/D bits written) there.
//
// What this models, and what it does not:
// - A P6-class CPU without NX, SMEP/SMAP, PAE or PSE-36: the #PF error code
//   never has the I/D bit, and bits 21:13 of a PDE that maps a 4 MiB page are
//   reserved (MAXPHYADDR 32), so setting one is a #PF with RSVD set.
// - Paging off (CR0.PG = 0 or CR0.PE = 0): linear = physical, everything
//   allowed.
// - Physical addresses that are not guest RAM are reported as such (MMIO or
//   nothing); this code never reads outside the memfd.
// - Accessed and dirty bits are set only when the access succeeds (the
//   caller commits them with mark_accessed once the whole access is known to
//   succeed, so a page-crossing access that faults on its second page leaves
//   the first page's bits alone).
#pragma once

#include <cstdint>

#include "machine/linear_memory.h"
#include "mmu/guest_memory.h"

namespace bt86::mmu {

// Page-directory / page-table entry bits (SDM vol. 3A, 4.3, tables 4-4..4-6).
namespace pte {
inline constexpr uint32_t P = 1u << 0, RW = 1u << 1, US = 1u << 2, PWT = 1u << 3, PCD = 1u << 4,
                          A = 1u << 5, D = 1u << 6, PS = 1u << 7, G = 1u << 8;
inline constexpr uint32_t kFrameMask = 0xfffff000u;      // 4 KiB page / page table address
inline constexpr uint32_t kLargeFrameMask = 0xffc00000u;  // 4 MiB page address
// Bits 21:13 of a 4 MiB PDE: physical-address bits 39:32 (PSE-36) and a
// reserved bit. With MAXPHYADDR 32 all of them are reserved.
inline constexpr uint32_t kLargeReserved = 0x003fe000u;
}  // namespace pte

inline constexpr uint32_t kLargePageSize = 1u << 22;

// The control-register state paging depends on.
struct PagingControl {
  uint32_t cr0 = 0;
  uint32_t cr3 = 0;
  uint32_t cr4 = 0;

  bool paging() const;  // CR0.PE and CR0.PG
  bool wp() const;      // supervisor writes honour R/W
  bool pse() const;     // 4 MiB pages
  bool pge() const;     // global pages
  bool operator==(const PagingControl&) const = default;
};

enum class WalkStatus : uint8_t {
  kOk,           // translated and allowed; `phys` is in RAM
  kPageFault,    // #PF with `error_code`
  kNotRam,       // translated and allowed, but `phys` is not guest RAM (MMIO)
  kTableNotRam,  // a paging-structure entry at `phys` is not in guest RAM
};

struct Translation {
  WalkStatus status = WalkStatus::kPageFault;
  uint32_t phys = 0;        // kOk/kNotRam: the physical address; kTableNotRam: the entry's
  uint32_t error_code = 0;  // kPageFault: P, W/R, U/S, RSVD (machine::pf)
  // Effective rights of the translation (AND over both levels, SDM 4.6).
  bool user = false;      // U/S = 1 in PDE and PTE
  bool writable = false;  // R/W = 1 in PDE and PTE
  bool dirty = false;     // D of the entry that maps the page
  bool global = false;    // G of that entry, and CR4.PGE
  bool large = false;     // a 4 MiB page (or paging off)
  bool paged = false;     // paging was on: pde_addr (and pte_addr) are valid
  // Physical addresses of the entries used (for mark_accessed). pte_addr is
  // meaningless for large pages.
  uint32_t pde_addr = 0;
  uint32_t pte_addr = 0;
};

// Whether an access with the given rights is allowed (SDM 4.6.1): user
// accesses need U/S, user writes need R/W; supervisor writes need R/W only
// when CR0.WP is set.
bool access_allowed(bool user_page, bool writable_page, bool write, bool user, bool wp);

// Translates `lin` for an access of `kind` by `user` (CPL 3) or supervisor
// privilege. Reads the guest's tables, changes nothing.
Translation translate(const GuestMemory& memory, const PagingControl& control, uint32_t lin,
                      machine::Access kind, bool user);

// Sets the accessed bit in the entries a successful translation used, and
// the dirty bit of the mapping entry when `write` (SDM 4.8). Touches only
// entries that change, so a guest page table is written no more than needed.
void mark_accessed(GuestMemory& memory, const Translation& t, bool write);

// translate + mark_accessed on success (kOk or kNotRam).
Translation walk(GuestMemory& memory, const PagingControl& control, uint32_t lin,
                 machine::Access kind, bool user);

}  // namespace bt86::mmu
