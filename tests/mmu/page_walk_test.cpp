// The guest page walk against hand-built page tables: every combination of
// U/S and R/W at both levels for user and supervisor reads and writes with
// CR0.WP on and off (SDM vol. 3A, 4.6), the #PF error code (4.7), 4 MiB
// pages, global pages, and A/D bits set exactly when the access succeeds
// (4.8). Also PagedMemory, the LinearMemory the CPU model uses.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "mmu/guest_memory.h"
#include "mmu/page_walk.h"
#include "mmu/paged_memory.h"
#include "tests/mmu/paging_fixture.h"

namespace bt86::mmu {
namespace {

using machine::Access;
namespace pf = machine::pf;
using testing::kPgPe;
using testing::RecordingObserver;

using PageWalkTest = testing::PagingTest;

TEST_F(PageWalkTest, EveryPermissionCombination) {
  const uint32_t lin = 0x40001000;
  int checked = 0;
  for (int pde_u = 0; pde_u < 2; ++pde_u)
    for (int pde_w = 0; pde_w < 2; ++pde_w)
      for (int pte_u = 0; pte_u < 2; ++pte_u)
        for (int pte_w = 0; pte_w < 2; ++pte_w)
          for (int wp = 0; wp < 2; ++wp)
            for (int user = 0; user < 2; ++user)
              for (Access kind : {Access::kRead, Access::kWrite, Access::kFetch}) {
                const uint32_t pde_flags = pte::P | (pde_u ? pte::US : 0) | (pde_w ? pte::RW : 0);
                const uint32_t pte_flags = pte::P | (pte_u ? pte::US : 0) | (pte_w ? pte::RW : 0);
                pt->map(lin, 0x123000, pte_flags, pde_flags);
                const bool write = kind == Access::kWrite;
                // SDM 4.6.1, spelled out per case.
                bool allowed;
                if (user) {
                  allowed = pde_u && pte_u && (!write || (pde_w && pte_w));
                } else {
                  allowed = !write || !wp || (pde_w && pte_w);
                }
                auto t = walk(*mem, control(wp ? machine::cr0::WP : 0), lin + 0x234, kind, user);
                SCOPED_TRACE(::testing::Message() << "pde u" << pde_u << " w" << pde_w << " pte u"
                                                  << pte_u << " w" << pte_w << " wp" << wp
                                                  << " user" << user << " kind" << int(kind));
                if (allowed) {
                  ASSERT_EQ(t.status, WalkStatus::kOk);
                  EXPECT_EQ(t.phys, 0x123234u);
                  EXPECT_EQ(t.user, pde_u && pte_u);
                  EXPECT_EQ(t.writable, pde_w && pte_w);
                  EXPECT_TRUE(pt->pde(lin) & pte::A);
                  EXPECT_TRUE(pt->pte(lin) & pte::A);
                  EXPECT_EQ(bool(pt->pte(lin) & pte::D), write);
                  EXPECT_FALSE(pt->pde(lin) & pte::D);  // D exists only in the mapping entry
                } else {
                  ASSERT_EQ(t.status, WalkStatus::kPageFault);
                  // Protection fault: P set, W/R and U/S describe the access, never I/D.
                  EXPECT_EQ(t.error_code, pf::P | (write ? pf::W : 0u) | (user ? pf::U : 0u));
                  EXPECT_FALSE(pt->pde(lin) & pte::A);
                  EXPECT_FALSE(pt->pte(lin) & pte::A);
                  EXPECT_FALSE(pt->pte(lin) & pte::D);
                }
                ++checked;
              }
  EXPECT_EQ(checked, 192);
}

TEST_F(PageWalkTest, NotPresentAtEitherLevel) {
  const uint32_t lin = 0x00800000;
  // PDE not present.
  auto t = walk(*mem, control(), lin, Access::kWrite, true);
  ASSERT_EQ(t.status, WalkStatus::kPageFault);
  EXPECT_EQ(t.error_code, pf::W | pf::U);
  // PDE present, PTE not present: no A bit in the PDE either.
  pt->map(lin, 0x5000, 0);
  t = walk(*mem, control(), lin, Access::kRead, false);
  ASSERT_EQ(t.status, WalkStatus::kPageFault);
  EXPECT_EQ(t.error_code, 0u);
  EXPECT_FALSE(pt->pde(lin) & pte::A);
  t = walk(*mem, control(), lin, Access::kFetch, true);
  EXPECT_EQ(t.error_code, pf::U);  // no I/D bit: this CPU has no NX
}

TEST_F(PageWalkTest, AccessedAndDirtyOnlyWhenTheyChange) {
  const uint32_t lin = 0x00400000;
  pt->map(lin, 0x7000, pte::P | pte::RW);
  auto t = walk(*mem, control(), lin, Access::kRead, false);
  ASSERT_EQ(t.status, WalkStatus::kOk);
  EXPECT_FALSE(t.dirty);
  EXPECT_EQ(pt->pte(lin), 0x7000u | pte::P | pte::RW | pte::A);
  t = walk(*mem, control(), lin, Access::kWrite, false);
  EXPECT_TRUE(t.dirty);
  EXPECT_EQ(pt->pte(lin), 0x7000u | pte::P | pte::RW | pte::A | pte::D);
  // translate() alone never writes.
  pt->set_pte(lin, 0x7000 | pte::P | pte::RW);
  pt->set_pde(lin, pt->pde(lin) & ~pte::A);
  t = translate(*mem, control(), lin, Access::kWrite, false);
  ASSERT_EQ(t.status, WalkStatus::kOk);
  EXPECT_EQ(pt->pte(lin), 0x7000u | pte::P | pte::RW);
  EXPECT_FALSE(pt->pde(lin) & pte::A);
}

TEST_F(PageWalkTest, LargePages) {
  const uint32_t lin = 0xc0400000;
  pt->map_large(lin, 0x00800000, pte::P | pte::RW | pte::G);
  // Without CR4.PSE the PS bit is ignored: the PDE points to a page table
  // (at 0x800000, all zero), so the access faults not-present.
  auto t = walk(*mem, control(), lin + 0x12345, Access::kRead, false);
  ASSERT_EQ(t.status, WalkStatus::kPageFault);
  EXPECT_EQ(t.error_code, 0u);
  EXPECT_FALSE(pt->pde(lin) & pte::A);

  t = walk(*mem, control(0, machine::cr4::PSE), lin + 0x12345, Access::kRead, false);
  ASSERT_EQ(t.status, WalkStatus::kOk);
  EXPECT_TRUE(t.large);
  EXPECT_FALSE(t.global);  // G needs CR4.PGE
  EXPECT_EQ(t.phys, 0x00812345u);
  EXPECT_EQ(pt->pde(lin) & (pte::A | pte::D), pte::A);
  t = walk(*mem, control(0, machine::cr4::PSE | machine::cr4::PGE), lin + 0x3ffffc, Access::kWrite,
           false);
  ASSERT_EQ(t.status, WalkStatus::kOk);
  EXPECT_TRUE(t.global);
  EXPECT_EQ(t.phys, 0x00bffffcu);
  EXPECT_EQ(pt->pde(lin) & (pte::A | pte::D), pte::A | pte::D);
  // Supervisor-only: user access faults with P set.
  t = walk(*mem, control(0, machine::cr4::PSE), lin, Access::kRead, true);
  ASSERT_EQ(t.status, WalkStatus::kPageFault);
  EXPECT_EQ(t.error_code, pf::P | pf::U);
  // Bits 21:13 are reserved (MAXPHYADDR 32): RSVD fault, checked before rights.
  for (uint32_t bit : {13u, 16u, 21u}) {
    pt->set_pde(lin, 0x00800000 | (1u << bit) | pte::PS | pte::P | pte::RW);
    t = walk(*mem, control(0, machine::cr4::PSE), lin, Access::kWrite, true);
    ASSERT_EQ(t.status, WalkStatus::kPageFault);
    EXPECT_EQ(t.error_code, pf::P | pf::RSVD | pf::W | pf::U) << bit;
    EXPECT_FALSE(pt->pde(lin) & pte::A);
  }
}

TEST_F(PageWalkTest, GlobalPagesNeedPge) {
  const uint32_t lin = 0xc0001000;
  pt->map(lin, 0x9000, pte::P | pte::G);
  EXPECT_FALSE(walk(*mem, control(), lin, Access::kRead, false).global);
  EXPECT_TRUE(walk(*mem, control(0, machine::cr4::PGE), lin, Access::kRead, false).global);
  // G in the PDE of a 4 KiB page means nothing.
  pt->map(lin, 0x9000, pte::P, pte::P | pte::G);
  EXPECT_FALSE(walk(*mem, control(0, machine::cr4::PGE), lin, Access::kRead, false).global);
}

TEST_F(PageWalkTest, PagingOffIsIdentity) {
  PagingControl off{machine::cr0::PE, 0, 0};
  auto t = walk(*mem, off, 0x00123456, Access::kWrite, true);
  ASSERT_EQ(t.status, WalkStatus::kOk);
  EXPECT_EQ(t.phys, 0x00123456u);
  EXPECT_TRUE(t.user && t.writable);
  // PG without PE is not paging either (real mode ignores PG... and PG
  // cannot be set without PE; treat it as off).
  t = walk(*mem, PagingControl{machine::cr0::PG, pt->cr3(), 0}, 0x4000, Access::kRead, false);
  EXPECT_EQ(t.phys, 0x4000u);
  t = walk(*mem, off, 16u << 20, Access::kRead, false);
  EXPECT_EQ(t.status, WalkStatus::kNotRam);
  EXPECT_EQ(t.phys, 16u << 20);
}

TEST_F(PageWalkTest, PhysicalAddressesOutsideRam) {
  // A page mapped to MMIO space: rights are still checked first.
  const uint32_t lin = 0x00400000;
  pt->map(lin, 0xfee00000, pte::P | pte::RW);
  auto t = walk(*mem, control(), lin + 0x20, Access::kWrite, false);
  ASSERT_EQ(t.status, WalkStatus::kNotRam);
  EXPECT_EQ(t.phys, 0xfee00020u);
  EXPECT_TRUE(pt->pte(lin) & pte::D);  // the access goes to the device: it succeeded
  t = walk(*mem, control(), lin, Access::kRead, true);
  ASSERT_EQ(t.status, WalkStatus::kPageFault);
  // A page table outside RAM, and a page directory outside RAM.
  pt->set_pde(lin, 0xfffff000 | pte::P | pte::RW);
  t = walk(*mem, control(), lin + 0x3000, Access::kRead, false);
  ASSERT_EQ(t.status, WalkStatus::kTableNotRam);
  EXPECT_EQ(t.phys, 0xfffff00cu);
  t = walk(*mem, PagingControl{kPgPe, 0xfffff000, 0}, 0xffc00000, Access::kRead, false);
  ASSERT_EQ(t.status, WalkStatus::kTableNotRam);
  EXPECT_EQ(t.phys, 0xfffffffcu);
}

TEST_F(PageWalkTest, PagedMemoryCrossesPagesAndFaultsCleanly) {
  PagedMemory lm(*mem);
  RecordingObserver observer;
  lm.set_write_observer(&observer);
  lm.set_control(control(machine::cr0::WP));
  // Two linear pages backed by non-adjacent physical pages.
  pt->map(0x1000, 0x50000, pte::P | pte::RW | pte::US);
  pt->map(0x2000, 0x30000, pte::P | pte::RW | pte::US);
  const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_FALSE(lm.write(0x1ffc, data, true));
  EXPECT_EQ(std::memcmp(mem->host(GuestPhys(0x50ffc)), data, 4), 0);
  EXPECT_EQ(std::memcmp(mem->host(GuestPhys(0x30000)), data + 4, 4), 0);
  EXPECT_EQ(observer.pages, (std::vector<uint32_t>{0x50000, 0x30000}));
  EXPECT_TRUE(pt->pte(0x1000) & pte::D);
  EXPECT_TRUE(pt->pte(0x2000) & pte::D);
  uint8_t back[8] = {};
  ASSERT_FALSE(lm.read(0x1ffc, back, Access::kRead, false));
  EXPECT_EQ(std::memcmp(back, data, 8), 0);

  // The second page is read-only for the user: the write faults at the first
  // byte of that page, and neither page is written or marked.
  pt->map(0x3000, 0x60000, pte::P | pte::US);
  pt->set_pte(0x2000, 0x30000 | pte::P | pte::RW | pte::US);
  const uint8_t other[8] = {9, 9, 9, 9, 9, 9, 9, 9};
  auto f = lm.write(0x2ffe, other, true);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->vector, machine::vec::PF);
  EXPECT_TRUE(f->has_error);
  EXPECT_EQ(f->error, pf::P | pf::W | pf::U);
  EXPECT_EQ(f->cr2, 0x3000u);
  EXPECT_NE(*mem->host(GuestPhys(0x30ffe)), 9);
  EXPECT_EQ(pt->pte(0x2000), 0x30000u | pte::P | pte::RW | pte::US);
  EXPECT_FALSE(pt->pte(0x3000) & pte::A);
  // A fault on the first page reports the access address itself.
  f = lm.read(0x7ff0, back, Access::kRead, false);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->cr2, 0x7ff0u);
  EXPECT_EQ(f->error, 0u);
  // Supervisor with WP=0 may write the read-only page.
  lm.set_control(control());
  EXPECT_FALSE(lm.write(0x2ffe, other, false));
  EXPECT_EQ(*mem->host(GuestPhys(0x60005)), 9);

  // MMIO: reads float high, writes are dropped, both counted.
  pt->map(0x4000, 0xfec00000, pte::P | pte::RW);
  ASSERT_FALSE(lm.read(0x3ffc, back, Access::kRead, false));
  EXPECT_EQ(back[4], 0xff);
  EXPECT_EQ(back[7], 0xff);
  EXPECT_EQ(lm.stats().not_ram_bytes, 4u);
  EXPECT_EQ(lm.stats().page_faults, 2u);
}

TEST_F(PageWalkTest, PagedMemoryLargeAccessAndWrap) {
  PagedMemory lm(*mem);
  lm.set_control(PagingControl{machine::cr0::PE, 0, 0});
  std::vector<uint8_t> big(5 * kPageSize + 10, 0x5a);
  ASSERT_FALSE(lm.write(0x100003, big, false));
  EXPECT_EQ(*mem->host(GuestPhys(0x100003 + 5 * kPageSize + 9)), 0x5a);
  // Paging on: an access that wraps at 4 GiB continues at linear 0.
  lm.set_control(control());
  pt->map(0xfffff000, 0x70000, pte::P | pte::RW);
  pt->map(0x00000000, 0x71000, pte::P | pte::RW);
  const uint8_t four[4] = {0xa, 0xb, 0xc, 0xd};
  ASSERT_FALSE(lm.write(0xfffffffe, four, false));
  EXPECT_EQ(*mem->host(GuestPhys(0x70ffe)), 0xa);
  EXPECT_EQ(*mem->host(GuestPhys(0x71001)), 0xd);
}

}  // namespace
}  // namespace bt86::mmu
