// PagedMemory's software TLB against hand-built page tables: hits return
// what a walk would, A/D bits are set exactly as without the TLB (SDM vol.
// 3A, 4.8), every hit re-checks U/S, R/W and CR0.WP (4.6), and the
// invalidations of 4.10.4 (INVLPG, CR3 loads with and without global pages,
// paging-mode changes, a page fault) make remapped pages read their new
// frames. A stale entry after a page-table edit without a flush is
// architectural (4.10.4) and is checked too, so that the TLB is known to be
// in use.
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
using testing::PageTables;
using testing::RecordingObserver;

constexpr uint32_t kUrw = pte::P | pte::RW | pte::US;

class PagedMemoryTlbTest : public testing::PagingTest {
 protected:
  void SetUp() override {
    PagingTest::SetUp();
    if (HasFatalFailure()) return;
    // Distinct contents per frame: frame f holds the byte f >> 12.
    for (uint32_t f = 0x100000; f < 0x140000; f += kPageSize)
      std::memset(mem->host(GuestPhys(f), kPageSize), int(f >> 12), kPageSize);
  }
  uint8_t read8(PagedMemory& lm, uint32_t lin, bool user = false) {
    uint8_t b = 0;
    auto f = lm.read(lin, {&b, 1}, Access::kRead, user);
    EXPECT_FALSE(f) << std::hex << lin;
    return b;
  }
  std::optional<machine::GuestFault> write8(PagedMemory& lm, uint32_t lin, uint8_t v, bool user) {
    return lm.write(lin, {&v, 1}, user);
  }
};

TEST_F(PagedMemoryTlbTest, HitsReadWhatWalksReadAndSetDirtyOnTheFirstWrite) {
  PagedMemory lm(*mem);
  RecordingObserver observer;
  lm.set_write_observer(&observer);
  lm.set_control(control(machine::cr0::WP));
  pt->map(0x40001000, 0x101000, kUrw);
  // First access walks and sets A at both levels, not D.
  EXPECT_EQ(read8(lm, 0x40001010), 0x01);
  EXPECT_EQ(lm.stats().tlb_misses, 1u);
  EXPECT_TRUE(pt->pde(0x40001000) & pte::A);
  EXPECT_TRUE(pt->pte(0x40001000) & pte::A);
  EXPECT_FALSE(pt->pte(0x40001000) & pte::D);
  // The second is a hit with the same data (a read of 8 bytes too).
  EXPECT_EQ(read8(lm, 0x40001ff0), 0x01);
  uint8_t eight[8];
  ASSERT_FALSE(lm.read(0x40001ff8, eight, Access::kFetch, true));
  EXPECT_EQ(eight[7], 0x01);
  EXPECT_EQ(lm.stats().tlb_hits, 2u);
  EXPECT_EQ(lm.stats().tlb_misses, 1u);
  // A write through an entry a read filled (D clear) walks again and sets D.
  ASSERT_FALSE(write8(lm, 0x40001020, 0xaa, false));
  EXPECT_EQ(lm.stats().tlb_misses, 2u);
  EXPECT_TRUE(pt->pte(0x40001000) & pte::D);
  EXPECT_FALSE(pt->pde(0x40001000) & pte::D);  // D lives in the leaf only
  EXPECT_EQ(*mem->host(GuestPhys(0x101020)), 0xaa);
  // Now writes hit, by the user too, and the observer still sees each one.
  ASSERT_FALSE(write8(lm, 0x40001021, 0xbb, true));
  ASSERT_FALSE(write8(lm, 0x40001022, 0xcc, false));
  EXPECT_EQ(lm.stats().tlb_misses, 2u);
  EXPECT_EQ(*mem->host(GuestPhys(0x101022)), 0xcc);
  EXPECT_EQ(observer.pages, (std::vector<uint32_t>{0x101000, 0x101000, 0x101000}));

  // The guest clears D without a flush: a cached dirty entry does not set it
  // again (architectural, SDM 4.8 and 4.10.4); after INVLPG the next
  // write does.
  pt->set_pte(0x40001000, 0x101000 | kUrw | pte::A);
  ASSERT_FALSE(write8(lm, 0x40001023, 1, false));
  EXPECT_FALSE(pt->pte(0x40001000) & pte::D);
  lm.invlpg(0x40001000);
  ASSERT_FALSE(write8(lm, 0x40001023, 2, false));
  EXPECT_TRUE(pt->pte(0x40001000) & pte::D);
}

TEST_F(PagedMemoryTlbTest, EveryHitRechecksPrivilegeAndWriteRights) {
  PagedMemory lm(*mem);
  lm.set_control(control(machine::cr0::WP));
  pt->map(0x40001000, 0x101000, pte::P | pte::RW);  // supervisor page
  pt->map(0x40002000, 0x102000, pte::P | pte::US);  // user, read-only
  // A supervisor read fills the entry; a user read through it faults with
  // P|U, as the walk says, and the fault drops the entry (SDM 4.10.4.1).
  EXPECT_EQ(read8(lm, 0x40001000), 0x01);
  uint8_t b;
  auto f = lm.read(0x40001000, {&b, 1}, Access::kRead, true);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error, pf::P | pf::U);
  EXPECT_EQ(f->cr2, 0x40001000u);
  f = write8(lm, 0x40001000, 1, true);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error, pf::P | pf::W | pf::U);
  // Read-only page: the user reads it, then a user write and (CR0.WP) a
  // supervisor write fault; nothing is written, no D is set.
  EXPECT_EQ(read8(lm, 0x40002000, true), 0x02);
  f = write8(lm, 0x40002000, 9, true);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error, pf::P | pf::W | pf::U);
  EXPECT_EQ(read8(lm, 0x40002000, true), 0x02);
  f = write8(lm, 0x40002000, 9, false);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error, pf::P | pf::W);
  EXPECT_FALSE(pt->pte(0x40002000) & pte::D);
  EXPECT_EQ(*mem->host(GuestPhys(0x102000)), 0x02);
  // Without CR0.WP the supervisor may write it (the change flushes, the
  // write walks and sets D); the entry it filled does not let the user write.
  lm.set_control(control());
  ASSERT_FALSE(write8(lm, 0x40002000, 9, false));
  EXPECT_TRUE(pt->pte(0x40002000) & pte::D);
  ASSERT_FALSE(write8(lm, 0x40002001, 9, false));
  const uint64_t hits = lm.stats().tlb_hits;
  EXPECT_GE(hits, 1u);
  f = write8(lm, 0x40002000, 7, true);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error, pf::P | pf::W | pf::U);
  EXPECT_EQ(*mem->host(GuestPhys(0x102000)), 9);
  // Back to CR0.WP: the supervisor write faults again.
  lm.set_control(control(machine::cr0::WP));
  f = write8(lm, 0x40002000, 7, false);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error, pf::P | pf::W);
}

TEST_F(PagedMemoryTlbTest, InvlpgAndCr3LoadsShowRemappedPages) {
  PagedMemory lm(*mem);
  lm.set_control(control());
  pt->map(0x40001000, 0x101000, kUrw);
  pt->map(0x40005000, 0x105000, kUrw);
  EXPECT_EQ(read8(lm, 0x40001000), 0x01);
  EXPECT_EQ(read8(lm, 0x40005000), 0x05);
  // Remapped without a flush: the stale entry still reads the old frame,
  // as a hardware TLB may (SDM 4.10.4).
  pt->map(0x40001000, 0x111000, kUrw);
  pt->map(0x40005000, 0x115000, kUrw);
  EXPECT_EQ(read8(lm, 0x40001000), 0x01);
  // INVLPG drops only that page.
  lm.invlpg(0x40001234);
  EXPECT_EQ(read8(lm, 0x40001000), 0x11);
  EXPECT_EQ(read8(lm, 0x40005000), 0x05);
  // A CR3 load, even of the same value, drops the rest.
  lm.load_cr3(pt->cr3());
  EXPECT_EQ(read8(lm, 0x40005000), 0x15);
  // So does a CR3 change through set_control.
  pt->map(0x40005000, 0x125000, kUrw);
  PageTables other(*mem, 0x30000, 0x31000);
  other.map(0x40005000, 0x135000, kUrw);
  lm.set_control(PagingControl{kPgPe, other.cr3(), 0});
  EXPECT_EQ(read8(lm, 0x40005000), 0x35);
  lm.set_control(control());
  EXPECT_EQ(read8(lm, 0x40005000), 0x25);
  EXPECT_GE(lm.stats().tlb_flushes, 3u);
  EXPECT_EQ(lm.stats().tlb_invlpgs, 1u);
}

TEST_F(PagedMemoryTlbTest, GlobalEntriesSurviveCr3LoadsOnlyWithPge) {
  PagedMemory lm(*mem);
  lm.set_control(control(0, machine::cr4::PGE));
  pt->map(0x40001000, 0x101000, kUrw | pte::G);
  pt->map(0x40002000, 0x102000, kUrw);
  EXPECT_EQ(read8(lm, 0x40001000), 0x01);
  EXPECT_EQ(read8(lm, 0x40002000), 0x02);
  pt->map(0x40001000, 0x111000, kUrw | pte::G);
  pt->map(0x40002000, 0x112000, kUrw);
  lm.load_cr3(pt->cr3());
  EXPECT_EQ(read8(lm, 0x40001000), 0x01);  // global: kept
  EXPECT_EQ(read8(lm, 0x40002000), 0x12);  // not global: refilled
  // INVLPG drops a global entry too.
  lm.invlpg(0x40001000);
  EXPECT_EQ(read8(lm, 0x40001000), 0x11);
  // Toggling CR4.PGE flushes everything (Linux's global flush).
  pt->map(0x40001000, 0x121000, kUrw | pte::G);
  lm.set_control(control());
  lm.set_control(control(0, machine::cr4::PGE));
  EXPECT_EQ(read8(lm, 0x40001000), 0x21);
  // Without CR4.PGE the G bit means nothing: a CR3 load drops the entry.
  lm.set_control(control());
  EXPECT_EQ(read8(lm, 0x40001000), 0x21);
  pt->map(0x40001000, 0x131000, kUrw | pte::G);
  lm.load_cr3(pt->cr3());
  EXPECT_EQ(read8(lm, 0x40001000), 0x31);
}

TEST_F(PagedMemoryTlbTest, InvlpgDropsEveryEntryOfALargePage) {
  PagedMemory lm(*mem);
  lm.set_control(control(0, machine::cr4::PSE));
  // 4 MiB page at linear 0x00800000 -> physical 0x00400000.
  pt->map_large(0x00800000, 0x00400000, pte::P | pte::RW);
  *mem->host(GuestPhys(0x00400010)) = 0x41;
  *mem->host(GuestPhys(0x007ff010)) = 0x42;
  *mem->host(GuestPhys(0x00800010)) = 0x81;
  *mem->host(GuestPhys(0x00bff010)) = 0x82;
  EXPECT_EQ(read8(lm, 0x00800010), 0x41);
  EXPECT_EQ(read8(lm, 0x00bff010), 0x42);
  pt->map_large(0x00800000, 0x00800000, pte::P | pte::RW);
  EXPECT_EQ(read8(lm, 0x00bff010), 0x42);  // stale until flushed
  // INVLPG of one address in the 4 MiB page drops both entries.
  lm.invlpg(0x00a00000);
  EXPECT_EQ(read8(lm, 0x00800010), 0x81);
  EXPECT_EQ(read8(lm, 0x00bff010), 0x82);
  // A write through a large page sets D in the PDE once.
  ASSERT_FALSE(write8(lm, 0x00800020, 5, false));
  EXPECT_TRUE(pt->pde(0x00800000) & pte::D);
}

TEST_F(PagedMemoryTlbTest, PageFaultDropsTheStaleEntry) {
  PagedMemory lm(*mem);
  lm.set_control(control());
  pt->map(0x40001000, 0x101000, pte::P | pte::RW);  // supervisor page
  EXPECT_EQ(read8(lm, 0x40001000), 0x01);
  pt->set_pte(0x40001000, 0);  // not present, no flush
  EXPECT_EQ(read8(lm, 0x40001000), 0x01);  // stale hit
  // A user access cannot use the entry: it walks and faults (not present),
  // and the fault invalidates the page's entry for the supervisor too.
  uint8_t b;
  auto f = lm.read(0x40001000, {&b, 1}, Access::kRead, true);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error, pf::U);
  f = lm.read(0x40001000, {&b, 1}, Access::kRead, false);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error, 0u);
}

TEST_F(PagedMemoryTlbTest, CrossPageAccessFillsNothingWhenTheSecondPageFaults) {
  PagedMemory lm(*mem);
  lm.set_control(control());
  pt->map(0x40001000, 0x101000, kUrw);
  const uint8_t two[2] = {7, 7};
  auto f = lm.write(0x40001fff, two, false);  // 0x40002000 not present
  ASSERT_TRUE(f);
  EXPECT_EQ(f->cr2, 0x40002000u);
  EXPECT_FALSE(pt->pte(0x40001000) & pte::A);
  // Nothing was cached: the next access walks (and sets A).
  const uint64_t misses = lm.stats().tlb_misses;
  EXPECT_EQ(read8(lm, 0x40001fff), 0x01);
  EXPECT_EQ(lm.stats().tlb_misses, misses + 1);
  EXPECT_TRUE(pt->pte(0x40001000) & pte::A);
  // Both pages present: a crossing write hits the first and walks the second.
  pt->map(0x40002000, 0x102000, kUrw);
  ASSERT_FALSE(lm.write(0x40001fff, two, false));
  EXPECT_TRUE(pt->pte(0x40001000) & pte::D);
  EXPECT_TRUE(pt->pte(0x40002000) & pte::D);
  EXPECT_EQ(*mem->host(GuestPhys(0x101fff)), 7);
  EXPECT_EQ(*mem->host(GuestPhys(0x102000)), 7);
}

TEST_F(PagedMemoryTlbTest, DisabledTlbWalksEveryAccess) {
  PagedMemory lm(*mem, {.tlb = false});
  lm.set_control(control());
  pt->map(0x40001000, 0x101000, kUrw);
  EXPECT_EQ(read8(lm, 0x40001000), 0x01);
  pt->map(0x40001000, 0x111000, kUrw);
  EXPECT_EQ(read8(lm, 0x40001000), 0x11);  // no flush needed
  EXPECT_EQ(lm.stats().tlb_hits, 0u);
  EXPECT_EQ(lm.stats().tlb_misses, 0u);
  lm.set_tlb_enabled(true);
  EXPECT_EQ(read8(lm, 0x40001000), 0x11);
  EXPECT_EQ(read8(lm, 0x40001000), 0x11);
  EXPECT_EQ(lm.stats().tlb_hits, 1u);
}

}  // namespace
}  // namespace bt86::mmu
