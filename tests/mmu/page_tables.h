// Hand-built guest page tables for the MMU tests: a page directory at a
// chosen physical address and page tables allocated below it on demand.
#pragma once

#include <cstdint>
#include <cstring>

#include "mmu/guest_memory.h"
#include "mmu/page_walk.h"

namespace bt86::mmu::testing {

class PageTables {
 public:
  // The page directory lives at `dir`; page tables are taken from `next_table` up.
  PageTables(GuestMemory& memory, uint32_t dir, uint32_t next_table)
      : m_memory(memory), m_dir(dir), m_next_table(next_table) {
    std::memset(m_memory.host(GuestPhys(dir), kPageSize), 0, kPageSize);
  }

  uint32_t cr3() const { return m_dir; }
  uint32_t pde_addr(uint32_t lin) const { return m_dir + (lin >> 22) * 4; }
  uint32_t pte_addr(uint32_t lin) const {
    return (get(pde_addr(lin)) & pte::kFrameMask) + ((lin >> 12) & 0x3ff) * 4;
  }
  uint32_t pde(uint32_t lin) const { return get(pde_addr(lin)); }
  uint32_t pte(uint32_t lin) const { return get(pte_addr(lin)); }

  // Maps the 4 KiB page at lin to phys with PTE flags `flags`; the PDE gets
  // `pde_flags` (a page table is allocated when the PDE has none).
  void map(uint32_t lin, uint32_t phys, uint32_t flags, uint32_t pde_flags = pte::P | pte::RW | pte::US) {
    uint32_t d = pde(lin);
    uint32_t table = d & pte::kFrameMask;
    if (!(d & pte::P) && table == 0) {
      table = m_next_table;
      m_next_table += kPageSize;
      std::memset(m_memory.host(GuestPhys(table), kPageSize), 0, kPageSize);
    }
    set(pde_addr(lin), table | pde_flags);
    set(pte_addr(lin), (phys & pte::kFrameMask) | flags);
  }
  void set_pde(uint32_t lin, uint32_t value) { set(pde_addr(lin), value); }
  void set_pte(uint32_t lin, uint32_t value) { set(pte_addr(lin), value); }
  // A 4 MiB page (needs CR4.PSE).
  void map_large(uint32_t lin, uint32_t phys, uint32_t flags) {
    set(pde_addr(lin), (phys & pte::kLargeFrameMask) | flags | pte::PS);
  }

  uint32_t get(uint32_t addr) const {
    uint32_t v;
    std::memcpy(&v, m_memory.host(GuestPhys(addr), 4), 4);
    return v;
  }
  void set(uint32_t addr, uint32_t v) { std::memcpy(m_memory.host(GuestPhys(addr), 4), &v, 4); }

 private:
  GuestMemory& m_memory;
  uint32_t m_dir;
  uint32_t m_next_table;
};

}  // namespace bt86::mmu::testing
