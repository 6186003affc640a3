// The fixture of the page-walk and PagedMemory tests: 16 MiB of guest RAM
// with hand-built page tables (directory at 0x10000, tables from 0x20000),
// and an observer that records the physical pages PagedMemory reports
// written.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "mmu/guest_memory.h"
#include "mmu/page_walk.h"
#include "mmu/paged_memory.h"
#include "tests/mmu/page_tables.h"

namespace bt86::mmu::testing {

inline constexpr uint32_t kPgPe = machine::cr0::PG | machine::cr0::PE;

class PagingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(16);
    ASSERT_TRUE(m.ok());
    mem.emplace(std::move(*m));
    pt.emplace(*mem, 0x10000, 0x20000);
  }
  // Paging on with the tables above; more CR0 bits and CR4 as given.
  PagingControl control(uint32_t cr0_extra = 0, uint32_t cr4 = 0) const {
    return PagingControl{kPgPe | cr0_extra, pt->cr3(), cr4};
  }
  std::optional<GuestMemory> mem;
  std::optional<PageTables> pt;
};

class RecordingObserver final : public PhysWriteObserver {
 public:
  void phys_page_written(uint32_t phys_page) override { pages.push_back(phys_page); }
  std::vector<uint32_t> pages;
};

}  // namespace bt86::mmu::testing
