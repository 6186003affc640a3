// The shadow MMU over real guest windows: after handle_host_fault the host
// window really maps the right guest page (checked through the window), the
// user window never maps a supervisor page, pages stay read-only until dirty,
// CR3 loads keep global pages, INVLPG, 4 MiB pages in one call, code-page
// protection with its callback, execute permission only for frames without
// cpuid (exec_only_clean). Whether a host address is mapped is probed with
// process_vm_readv/writev on ourselves (EFAULT, no signal); whether it is
// executable by calling a `ret` placed there (SIGSEGV caught). The tests that
// predate exec_only_clean run with it off and on.
#include <gtest/gtest.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "mmu/guest_memory.h"
#include "mmu/shadow_mmu.h"
#include "tests/mmu/page_tables.h"

namespace bt86::mmu {
namespace {

using machine::Access;
namespace pf = machine::pf;
using Kind = HostFaultOutcome::Kind;
using testing::PageTables;

constexpr uint32_t kPgPe = machine::cr0::PG | machine::cr0::PE;
constexpr uint32_t kUserRw = pte::P | pte::RW | pte::US;

// Reads one byte at p without touching it directly; false if not readable.
bool readable(uintptr_t p, uint8_t* out = nullptr) {
  uint8_t byte;
  iovec local{&byte, 1};
  iovec remote{reinterpret_cast<void*>(p), 1};
  if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != 1) return false;
  if (out) *out = byte;
  return true;
}
// Writes the byte back; false if the host mapping is not writable.
bool writable(uintptr_t p) {
  uint8_t byte;
  if (!readable(p, &byte)) return false;
  iovec local{&byte, 1};
  iovec remote{reinterpret_cast<void*>(p), 1};
  return process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == 1;
}

// Whether the host can execute at p, which must hold a `ret` (C3): calls it
// and catches the SIGSEGV of a fetch from a page without PROT_EXEC.
sigjmp_buf g_exec_jmp;
void on_exec_fault(int, siginfo_t*, void*) { siglongjmp(g_exec_jmp, 1); }
bool executes(uintptr_t p) {
  struct sigaction sa {}, old_segv {}, old_bus {};
  sa.sa_sigaction = on_exec_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGBUS, &sa, &old_bus);
  volatile bool ran = false;
  if (sigsetjmp(g_exec_jmp, 1) == 0) {
    reinterpret_cast<void (*)()>(p)();
    ran = true;
  }
  sigaction(SIGSEGV, &old_segv, nullptr);
  sigaction(SIGBUS, &old_bus, nullptr);
  return ran;
}

// The test's own cpuid finder (what exec-clean promises about a frame).
bool holds_cpuid(const uint8_t* p) {
  if (p[0] == 0xa2) return true;
  for (uint32_t i = 1; i < kPageSize; ++i)
    if (p[i] == 0xa2 && p[i - 1] == 0x0f) return true;
  return false;
}

class ShadowMmuTest : public ::testing::Test {
 protected:
  void SetUp() override { make(16); }
  void make(uint32_t cluster) {
    shadow.reset();
    mem.reset();
    auto m = GuestMemory::create(16);
    ASSERT_TRUE(m.ok());
    mem.emplace(std::move(*m));
    pt.emplace(*mem, 0x10000, 0x20000);
    ShadowConfig config;
    config.user_base = 0;
    config.kernel_base = uintptr_t(1) << 36;
    config.prefault_cluster_pages = cluster;
    config.exec_only_clean = exec_only_clean;
    config.remap_after_cr3 = remap_after_cr3;
    config.park_ahead_pages = park_ahead;
    auto s = ShadowMmu::create(*mem, config);
    ASSERT_TRUE(s.ok()) << s.error().message;
    shadow = std::move(*s);
    shadow->set_control_registers(kPgPe | machine::cr0::WP, pt->cr3(), machine::cr4::PSE | machine::cr4::PGE);
  }
  uintptr_t user(uint32_t lin) const { return shadow->window_base(Window::kUser) + lin; }
  uintptr_t kernel(uint32_t lin) const { return shadow->window_base(Window::kKernel) + lin; }
  void fill(uint32_t phys, uint8_t value) { std::memset(mem->host(GuestPhys(phys), kPageSize), value, kPageSize); }
  void poke(uint32_t phys, std::initializer_list<uint8_t> bytes) {
    std::memcpy(mem->host(GuestPhys(phys), bytes.size()), bytes.begin(), bytes.size());
  }

  bool exec_only_clean = false;
  bool remap_after_cr3 = false;
  uint32_t park_ahead = ShadowConfig{}.park_ahead_pages;

  std::unique_ptr<ShadowMmu> shadow;  // destroyed before mem
  std::optional<GuestMemory> mem;
  std::optional<PageTables> pt;
};

// The tests that predate exec_only_clean: the same results with it off and on
// (they never fetch, except where they say so).
class ShadowMmuModes : public ShadowMmuTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    exec_only_clean = GetParam();
    make(16);
  }
};
INSTANTIATE_TEST_SUITE_P(ExecOnlyClean, ShadowMmuModes, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

// exec_only_clean on.
class ShadowMmuExec : public ShadowMmuTest {
 protected:
  void SetUp() override {
    exec_only_clean = true;
    make(16);
  }
};

TEST_P(ShadowMmuModes, HiddenFaultMapsTheGuestPageReadOnlyUntilDirty) {
  const uint32_t lin = 0x08048000;
  pt->map(lin, 0x200000, kUserRw);
  fill(0x200000, 0x42);
  EXPECT_FALSE(readable(user(lin)));

  auto out = shadow->handle_host_fault(Window::kUser, lin + 0x10, Access::kRead);
  ASSERT_EQ(out.kind, Kind::kHidden) << out.error;
  uint8_t b = 0;
  ASSERT_TRUE(readable(user(lin + 0x123), &b));
  EXPECT_EQ(b, 0x42);
  EXPECT_FALSE(writable(user(lin)));  // D = 0: the first write must fault
  EXPECT_EQ(pt->pte(lin) & (pte::A | pte::D), pte::A);
  EXPECT_TRUE(pt->pde(lin) & pte::A);
  EXPECT_FALSE(readable(kernel(lin)));  // each window fills on its own faults

  out = shadow->handle_host_fault(Window::kUser, lin + 0x10, Access::kWrite);
  ASSERT_EQ(out.kind, Kind::kHidden) << out.error;
  EXPECT_TRUE(pt->pte(lin) & pte::D);
  EXPECT_TRUE(writable(user(lin)));
  *reinterpret_cast<volatile uint8_t*>(user(lin + 5)) = 0x99;  // really through the window
  EXPECT_EQ(*mem->host(GuestPhys(0x200005)), 0x99);
  EXPECT_EQ(shadow->stats().hidden_faults, 2u);
  EXPECT_EQ(shadow->stats().dirty_upgrades, 1u);
  auto page = shadow->lookup(Window::kUser, lin);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->phys, 0x200000u);
  EXPECT_TRUE(page->writable);

  // Already dirty: mapped writable on the first fault.
  pt->map(lin + 0x100000, 0x300000, kUserRw | pte::D);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 0x100000, Access::kRead).kind, Kind::kHidden);
  EXPECT_TRUE(writable(user(lin + 0x100000)));
}

TEST_P(ShadowMmuModes, UserWindowNeverMapsSupervisorPages) {
  // One page table: user and supervisor pages side by side.
  const uint32_t base = 0x40000000;
  for (uint32_t i = 0; i < 8; ++i)
    pt->map(base + i * kPageSize, 0x400000 + i * kPageSize,
            pte::P | pte::RW | pte::D | ((i % 2) ? 0 : pte::US));
  // Supervisor page from the user window: a true fault, nothing mapped.
  auto out = shadow->handle_host_fault(Window::kUser, base + kPageSize + 8, Access::kRead);
  ASSERT_EQ(out.kind, Kind::kGuestFault);
  EXPECT_EQ(out.fault.vector, machine::vec::PF);
  EXPECT_EQ(out.fault.error, pf::P | pf::U);
  EXPECT_EQ(out.fault.cr2, base + kPageSize + 8);
  EXPECT_FALSE(readable(user(base + kPageSize)));
  // The kernel window maps it.
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, base + kPageSize, Access::kWrite).kind, Kind::kHidden);
  EXPECT_TRUE(writable(kernel(base + kPageSize)));
  // A user fault on a user page prefaults only the user neighbours.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, base, Access::kRead).kind, Kind::kHidden);
  for (uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(readable(user(base + i * kPageSize)), i % 2 == 0) << i;
    EXPECT_EQ(writable(user(base + i * kPageSize)), i % 2 == 0) << i;
  }
  // ...and the supervisor PDE bit hides a whole table from the user window.
  pt->map(0x50000000, 0x500000, kUserRw, pte::P | pte::RW);
  out = shadow->handle_host_fault(Window::kUser, 0x50000000, Access::kWrite);
  ASSERT_EQ(out.kind, Kind::kGuestFault);
  EXPECT_EQ(out.fault.error, pf::P | pf::W | pf::U);
  EXPECT_EQ(shadow->stats().true_faults, 2u);
}

TEST_P(ShadowMmuModes, ReadOnlyPagesAndCr0Wp) {
  const uint32_t lin = 0x00c00000;
  pt->map(lin, 0x600000, pte::P | pte::US | pte::D);  // read-only user page
  // User write: true fault.
  auto out = shadow->handle_host_fault(Window::kUser, lin, Access::kWrite);
  ASSERT_EQ(out.kind, Kind::kGuestFault);
  EXPECT_EQ(out.fault.error, pf::P | pf::W | pf::U);
  // Supervisor write with WP=1: true fault without U.
  out = shadow->handle_host_fault(Window::kKernel, lin, Access::kWrite);
  ASSERT_EQ(out.kind, Kind::kGuestFault);
  EXPECT_EQ(out.fault.error, pf::P | pf::W);
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, lin, Access::kRead).kind, Kind::kHidden);
  EXPECT_FALSE(writable(kernel(lin)));
  // Clearing WP drops everything; then the supervisor may write the page.
  shadow->set_control_registers(kPgPe, pt->cr3(), machine::cr4::PSE | machine::cr4::PGE);
  EXPECT_FALSE(readable(kernel(lin)));
  EXPECT_EQ(shadow->mapped_pages(Window::kKernel), 0u);
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, lin, Access::kWrite).kind, Kind::kHidden);
  EXPECT_TRUE(writable(kernel(lin)));
  // ...but the user window still never may.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kHidden);
  EXPECT_TRUE(readable(user(lin)));
  EXPECT_FALSE(writable(user(lin)));
  EXPECT_EQ(shadow->stats().full_flushes, 2u);  // the first set_control_registers and this one
}

TEST_P(ShadowMmuModes, NeighboursOneCallPerContiguousRun) {
  // 64 physically contiguous pages: one mmap for the whole run, although the
  // prefault cluster is 16 pages.
  for (uint32_t i = 0; i < 64; ++i)
    pt->map(0x10000000 + i * kPageSize, 0x800000 + i * kPageSize, kUserRw);
  const auto before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x10000000 + 20 * kPageSize, Access::kRead).kind,
            Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_mapped - before.pages_mapped, 64u);
  EXPECT_EQ(shadow->mapped_pages(Window::kUser), 64u);
  uint8_t b;
  fill(0x800000 + 63 * kPageSize, 0x63);
  ASSERT_TRUE(readable(user(0x10000000 + 63 * kPageSize), &b));
  EXPECT_EQ(b, 0x63);
  // Neighbours got A set (a speculative TLB fill); D untouched.
  EXPECT_EQ(pt->pte(0x10000000 + 63 * kPageSize) & (pte::A | pte::D), pte::A);

  // Scattered physical pages: one call per page, only inside the cluster.
  for (uint32_t i = 0; i < 64; ++i)
    pt->map(0x20000000 + i * kPageSize, 0xa00000 + ((i * 7) % 64) * 2 * kPageSize, kUserRw);
  const auto mid = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x20000000 + 35 * kPageSize, Access::kRead).kind,
            Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - mid.map_calls, 16u);
  for (uint32_t i = 0; i < 64; ++i) {
    EXPECT_EQ(readable(user(0x20000000 + i * kPageSize)), i >= 32 && i < 48) << i;
    EXPECT_EQ(bool(pt->pte(0x20000000 + i * kPageSize) & pte::A), i >= 32 && i < 48) << i;
  }
  // Content check through an alias of a scattered page.
  fill(0xa00000 + ((40 * 7) % 64) * 2 * kPageSize, 0x40);
  ASSERT_TRUE(readable(user(0x20000000 + 40 * kPageSize), &b));
  EXPECT_EQ(b, 0x40);
  // A second fault in the same cluster maps only what is missing.
  const auto late = shadow->stats();
  const uint32_t pte33 = pt->pte(0x20000000 + 33 * kPageSize);
  pt->set_pte(0x20000000 + 33 * kPageSize, 0);
  shadow->invlpg(0x20000000 + 33 * kPageSize);
  pt->set_pte(0x20000000 + 33 * kPageSize, pte33);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x20000000 + 33 * kPageSize, Access::kRead).kind,
            Kind::kHidden);
  // The dropped page was parked with the same frame: one protect, no mmap.
  EXPECT_EQ(shadow->stats().map_calls - late.map_calls, 0u);
  EXPECT_EQ(shadow->stats().protect_calls - late.protect_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_unparked - late.pages_unparked, 1u);
}

TEST_P(ShadowMmuModes, LargePagesAreOneCallAndOneTlbEntry) {
  const uint32_t lin = 0xc0000000;
  pt->map_large(lin, 0x400000, pte::P | pte::RW | pte::G);
  fill(0x400000 + 0x3ff000, 0x77);
  const auto before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, lin + 0x1234, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 1u);
  EXPECT_EQ(shadow->mapped_pages(Window::kKernel), 1024u);
  uint8_t b;
  ASSERT_TRUE(readable(kernel(lin + 0x3ff800), &b));
  EXPECT_EQ(b, 0x77);
  EXPECT_FALSE(writable(kernel(lin)));
  EXPECT_EQ(pt->pde(lin) & (pte::A | pte::D), pte::A);
  // The first write sets D in the PDE and upgrades all 4 MiB with one mprotect.
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, lin + 0x200000, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 1u);
  EXPECT_EQ(shadow->stats().protect_calls - before.protect_calls, 1u);
  EXPECT_TRUE(pt->pde(lin) & pte::D);
  EXPECT_TRUE(writable(kernel(lin)) && writable(kernel(lin + 0x3ff000)));
  // Global: survives a CR3 load.
  shadow->load_cr3(pt->cr3());
  EXPECT_TRUE(readable(kernel(lin + 0x5000)));
  // INVLPG of any address in it drops the whole 4 MiB page.
  shadow->invlpg(lin + 0x2ff000);
  EXPECT_EQ(shadow->mapped_pages(Window::kKernel), 0u);
  EXPECT_FALSE(readable(kernel(lin)));
  EXPECT_FALSE(readable(kernel(lin + 0x3ff000)));
  // A 4 MiB page that runs past the end of RAM maps only the RAM part.
  pt->map_large(0xd0000000, 0xc00000 + 0x400000, pte::P | pte::RW);  // 16..20 MiB: no RAM
  auto out = shadow->handle_host_fault(Window::kKernel, 0xd0000010, Access::kRead);
  ASSERT_EQ(out.kind, Kind::kNotRam);
  EXPECT_EQ(out.phys, 0x1000010u);
}

// A CR3 load flushes non-global entries; the shadow keeps a mapping only if
// the new tables translate it exactly as mapped (a refill would recreate it).
TEST_P(ShadowMmuModes, Cr3LoadKeepsGlobalPagesAndRevalidatesTheRest) {
  pt->map(0xc0100000, 0x100000, pte::P | pte::RW | pte::D | pte::G);
  pt->map(0xc0200000, 0x101000, pte::P | pte::RW | pte::D);
  pt->map(0xc0300000, 0x105000, pte::P | pte::RW | pte::D);
  pt->map(0x08000000, 0x102000, kUserRw | pte::D | pte::G);
  pt->map(0x08400000, 0x103000, kUserRw | pte::D);
  pt->map(0x08800000, 0x106000, kUserRw | pte::D);
  pt->map(0x08c00000, 0x107000, kUserRw | pte::D);
  for (uint32_t lin : {0xc0100000u, 0xc0200000u, 0xc0300000u, 0x08000000u, 0x08400000u})
    ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, lin, Access::kRead).kind, Kind::kHidden);
  for (uint32_t lin : {0x08000000u, 0x08400000u, 0x08800000u})
    ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kWrite).kind, Kind::kHidden);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x08c00000, Access::kWrite).kind, Kind::kHidden);
  // The guest changes its tables without INVLPG, then reloads CR3: the
  // changed entries must go, the unchanged ones may stay.
  pt->map(0xc0200000, 0x104000, pte::P | pte::RW | pte::D);     // another frame
  pt->set_pte(0x08400000, 0);                                   // not present
  pt->map(0x08800000, 0x106000, pte::P | pte::US | pte::D);     // read-only now
  pt->map(0x08c00000, 0x107000, pte::P | pte::RW | pte::D);     // supervisor now
  pt->set_pte(0x08000000, pt->pte(0x08000000) & ~pte::A);      // kept entries get A again
  const uint32_t ptes_before = pt->pte(0xc0300000) & ~pte::A;
  pt->set_pte(0xc0300000, ptes_before);
  const auto before = shadow->stats();
  shadow->load_cr3(pt->cr3());  // same value: still a flush (SDM 4.10.4.1)
  EXPECT_EQ(shadow->stats().cr3_loads - before.cr3_loads, 1u);
  EXPECT_TRUE(readable(kernel(0xc0100000)));   // global
  EXPECT_FALSE(readable(kernel(0xc0200000)));  // other frame
  EXPECT_TRUE(readable(kernel(0xc0300000)));   // unchanged
  EXPECT_TRUE(pt->pte(0xc0300000) & pte::A);
  EXPECT_TRUE(readable(kernel(0x08000000)));
  EXPECT_FALSE(readable(kernel(0x08400000)));  // not present
  EXPECT_TRUE(readable(user(0x08000000)));
  EXPECT_FALSE(readable(user(0x08400000)));
  EXPECT_TRUE(readable(user(0x08800000)));     // was writable, now read-only: kept, write-protected
  EXPECT_FALSE(writable(user(0x08800000)));
  EXPECT_FALSE(readable(user(0x08c00000)));    // now a supervisor page
  EXPECT_EQ(shadow->stats().pages_dropped - before.pages_dropped, 4u);
  EXPECT_EQ(shadow->stats().pages_kept - before.pages_kept, 2u);  // 0xc0300000, 0x08800000 (globals not counted)
  EXPECT_EQ(shadow->mapped_pages(Window::kKernel) + shadow->mapped_pages(Window::kUser), 5u);
  EXPECT_FALSE(shadow->lookup(Window::kUser, 0x08800000)->writable);

  // Without PGE nothing is global: set_control_registers with PGE cleared
  // drops everything, and later mappings do not survive CR3 loads.
  shadow->set_control_registers(kPgPe | machine::cr0::WP, pt->cr3(), machine::cr4::PSE);
  EXPECT_EQ(shadow->mapped_pages(Window::kKernel) + shadow->mapped_pages(Window::kUser), 0u);
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, 0xc0100000, Access::kRead).kind, Kind::kHidden);
  EXPECT_FALSE(shadow->lookup(Window::kKernel, 0xc0100000)->global);
  // A different CR3 through set_control_registers is a CR3 load.
  PageTables other(*mem, 0x90000, 0x91000);
  shadow->set_control_registers(kPgPe | machine::cr0::WP, other.cr3(), machine::cr4::PSE);
  EXPECT_FALSE(readable(kernel(0xc0100000)));
  EXPECT_EQ(shadow->handle_host_fault(Window::kKernel, 0xc0100000, Access::kRead).kind, Kind::kGuestFault);
}

// INVLPG drops a page whose entry changed, in both windows; a page whose
// entry is unchanged may stay (a refill would recreate it).
// Pages a CR3 load finds read-only now (both sides of a fork) are
// write-protected one mprotect per contiguous run, not one per page.
TEST_P(ShadowMmuModes, Cr3LoadWriteProtectsRunsInOneCall) {
  for (uint32_t i = 0; i < 8; ++i) pt->map(0x08000000 + i * kPageSize, 0x102000 + i * kPageSize, kUserRw | pte::D);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x08000000, Access::kWrite).kind, Kind::kHidden);
  for (uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(writable(user(0x08000000 + i * kPageSize)));
  for (uint32_t i = 0; i < 8; ++i) pt->set_pte(0x08000000 + i * kPageSize, pt->pte(0x08000000 + i * kPageSize) & ~pte::RW);
  const auto before = shadow->stats();
  shadow->load_cr3(pt->cr3());
  EXPECT_EQ(shadow->stats().protect_calls - before.protect_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_kept - before.pages_kept, 8u);
  for (uint32_t i = 0; i < 8; ++i) {
    EXPECT_TRUE(readable(user(0x08000000 + i * kPageSize)));
    EXPECT_FALSE(writable(user(0x08000000 + i * kPageSize)));
    EXPECT_FALSE(shadow->lookup(Window::kUser, 0x08000000 + i * kPageSize)->writable);
  }
}

// remap_after_cr3: a page the new tables give another frame is mapped to it
// at once (with A set, as a speculative fill); pages that are gone or not
// allowed any more are still dropped.
TEST_P(ShadowMmuModes, Cr3LoadRemapsChangedFramesWhenAsked) {
  remap_after_cr3 = true;
  make(1);
  pt->map(0x08000000, 0x102000, kUserRw | pte::D);
  pt->map(0x08001000, 0x103000, kUserRw | pte::D);
  pt->map(0x08002000, 0x104000, kUserRw | pte::D);
  fill(0x102000, 0x11);
  fill(0x108000, 0x22);
  for (uint32_t lin : {0x08000000u, 0x08001000u, 0x08002000u})
    ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kWrite).kind, Kind::kHidden);
  ASSERT_EQ(*reinterpret_cast<volatile uint8_t*>(user(0x08000000)), 0x11);
  pt->map(0x08000000, 0x108000, pte::P | pte::US);            // another frame, read-only, A clear
  pt->set_pte(0x08001000, 0);                                  // not present
  pt->map(0x08002000, 0x109000, pte::P | pte::RW | pte::D);   // supervisor now
  const auto before = shadow->stats();
  shadow->load_cr3(pt->cr3());
  EXPECT_EQ(shadow->stats().pages_remapped - before.pages_remapped, 1u);
  auto s = shadow->lookup(Window::kUser, 0x08000000);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->phys, 0x108000u);
  EXPECT_FALSE(s->writable);
  EXPECT_TRUE(pt->pte(0x08000000) & pte::A);
  EXPECT_EQ(*reinterpret_cast<volatile uint8_t*>(user(0x08000000)), 0x22);
  EXPECT_FALSE(writable(user(0x08000000)));
  EXPECT_FALSE(readable(user(0x08001000)));
  EXPECT_FALSE(readable(user(0x08002000)));
  EXPECT_EQ(shadow->mapped_pages(Window::kUser), 1u);
}

TEST_P(ShadowMmuModes, InvlpgDropsThePageInBothWindows) {
  pt->map(0x08001000, 0x100000, kUserRw | pte::D);
  pt->map(0x08002000, 0x101000, kUserRw | pte::D);
  for (Window w : {Window::kUser, Window::kKernel})
    ASSERT_EQ(shadow->handle_host_fault(w, 0x08001000, Access::kRead).kind, Kind::kHidden);
  ASSERT_TRUE(readable(user(0x08002000)));  // prefaulted neighbour
  const auto kept = shadow->stats().pages_kept;
  shadow->invlpg(0x08001abc);  // entry unchanged: kept
  EXPECT_TRUE(readable(user(0x08001000)));
  EXPECT_TRUE(readable(kernel(0x08001000)));
  EXPECT_EQ(shadow->stats().pages_kept - kept, 2u);
  pt->set_pte(0x08001000, 0);  // not present
  shadow->invlpg(0x08001abc);
  EXPECT_FALSE(readable(user(0x08001000)));
  EXPECT_FALSE(readable(kernel(0x08001000)));
  EXPECT_TRUE(readable(user(0x08002000)));
  EXPECT_TRUE(readable(kernel(0x08002000)));
  EXPECT_EQ(shadow->stats().invlpgs, 2u);
  // The guest remaps the page and flushes: the new page shows.
  pt->set_pte(0x08001000, 0x105000 | kUserRw | pte::D);
  fill(0x105000, 0x15);
  shadow->invlpg(0x08001000);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x08001000, Access::kRead).kind, Kind::kHidden);
  uint8_t b;
  ASSERT_TRUE(readable(user(0x08001000), &b));
  EXPECT_EQ(b, 0x15);
}

TEST_P(ShadowMmuModes, CodePagesStayReadOnlyAndWritesCallBack) {
  // One physical page at two user addresses and in the kernel window.
  pt->map(0x08001000, 0x300000, kUserRw | pte::D);
  pt->map(0x08801000, 0x300000, kUserRw | pte::D);
  for (uint32_t lin : {0x08001000u, 0x08801000u})
    for (Window w : {Window::kUser, Window::kKernel})
      ASSERT_EQ(shadow->handle_host_fault(w, lin, Access::kWrite).kind, Kind::kHidden);
  ASSERT_TRUE(writable(user(0x08001000)) && writable(kernel(0x08801000)));
  std::vector<uint32_t> calls;
  shadow->set_code_write_callback([&](uint32_t phys) { calls.push_back(phys); });

  shadow->protect_code_page(0x300abc);
  EXPECT_TRUE(shadow->code_page_protected(0x300000));
  for (uint32_t lin : {0x08001000u, 0x08801000u}) {
    EXPECT_TRUE(readable(user(lin)) && readable(kernel(lin)));
    EXPECT_FALSE(writable(user(lin)));
    EXPECT_FALSE(writable(kernel(lin)));
  }
  // Mapped later at a third address: read-only too.
  pt->map(0x09001000, 0x300000, kUserRw | pte::D);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x09001000, Access::kRead).kind, Kind::kHidden);
  EXPECT_FALSE(writable(user(0x09001000)));
  EXPECT_TRUE(calls.empty());

  // A write the guest allows: callback, unprotect, hidden fault, writable.
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, 0x08801004, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(calls, (std::vector<uint32_t>{0x300000}));
  EXPECT_FALSE(shadow->code_page_protected(0x300000));
  EXPECT_TRUE(writable(kernel(0x08801000)));
  EXPECT_EQ(shadow->stats().code_write_faults, 1u);
  // A write the guest does not allow is a true fault and no callback.
  pt->map(0x0a001000, 0x301000, pte::P | pte::US | pte::D);
  shadow->protect_code_page(0x301000);
  auto out = shadow->handle_host_fault(Window::kUser, 0x0a001000, Access::kWrite);
  EXPECT_EQ(out.kind, Kind::kGuestFault);
  EXPECT_EQ(calls.size(), 1u);
  EXPECT_TRUE(shadow->code_page_protected(0x301000));

  // The CPU model writing through linear_memory() also triggers it.
  shadow->protect_code_page(0x300000);
  EXPECT_FALSE(writable(user(0x08001000)));
  const uint8_t nop = 0x90;
  ASSERT_FALSE(shadow->linear_memory().write(0x08001010, {&nop, 1}, false));
  EXPECT_EQ(calls, (std::vector<uint32_t>{0x300000, 0x300000}));
  EXPECT_EQ(shadow->stats().code_writes_by_cpu, 1u);
  EXPECT_EQ(*mem->host(GuestPhys(0x300010)), 0x90);
  // Unprotected now: the next write fault simply maps it writable.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x08001000, Access::kWrite).kind, Kind::kHidden);
  EXPECT_TRUE(writable(user(0x08001000)));
  EXPECT_EQ(calls.size(), 2u);
}

TEST_P(ShadowMmuModes, CodePageInsideALargePage) {
  pt->map_large(0xc0000000, 0x400000, pte::P | pte::RW | pte::D);
  shadow->protect_code_page(0x405000);
  const auto before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, 0xc0000000, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 3u);  // before, the code page, after
  EXPECT_TRUE(writable(kernel(0xc0004000)));
  EXPECT_FALSE(writable(kernel(0xc0005000)));
  EXPECT_TRUE(readable(kernel(0xc0005000)));
  EXPECT_TRUE(writable(kernel(0xc0006000)));
}

TEST_P(ShadowMmuModes, MmioBadTablesAndPageZero) {
  pt->map(0x00400000, 0xfee00000, pte::P | pte::RW);
  auto out = shadow->handle_host_fault(Window::kKernel, 0x00400030, Access::kWrite);
  ASSERT_EQ(out.kind, Kind::kNotRam);
  EXPECT_EQ(out.phys, 0xfee00030u);
  EXPECT_TRUE(pt->pte(0x00400000) & pte::D);
  EXPECT_FALSE(readable(kernel(0x00400000)));
  pt->set_pde(0x00800000, 0xfff00000 | pte::P | pte::RW);
  out = shadow->handle_host_fault(Window::kKernel, 0x00800000, Access::kRead);
  ASSERT_EQ(out.kind, Kind::kTableNotRam);
  EXPECT_EQ(out.phys, 0xfff00000u);
  // Linear page 0 of the user window cannot exist on the host.
  pt->map(0x00000000, 0x100000, kUserRw);
  pt->map(0x00001000, 0x101000, kUserRw);
  out = shadow->handle_host_fault(Window::kUser, 0x10, Access::kRead);
  EXPECT_EQ(out.kind, Kind::kUnmappable);
  // ...but its neighbour is fine, and the kernel window can map page 0.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x1000, Access::kRead).kind, Kind::kHidden);
  EXPECT_FALSE(shadow->lookup(Window::kUser, 0));
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, 0x10, Access::kRead).kind, Kind::kHidden);
  EXPECT_TRUE(readable(kernel(0)));
}

TEST_P(ShadowMmuModes, PagingOffIsAnIdentityMapIn4MiBChunks) {
  shadow->set_control_registers(machine::cr0::PE, 0, 0);
  fill(0x123000, 0x12);
  const auto before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, 0x123456, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 1u);
  uint8_t b;
  ASSERT_TRUE(readable(kernel(0x123000), &b));
  EXPECT_EQ(b, 0x12);
  EXPECT_TRUE(writable(kernel(0x3ff000)));
  EXPECT_FALSE(readable(kernel(0x400000)));
  // CR3 writes do not matter with paging off; enabling paging drops all.
  shadow->load_cr3(pt->cr3());
  EXPECT_TRUE(readable(kernel(0x123000)));
  shadow->set_control_registers(kPgPe, pt->cr3(), 0);
  EXPECT_FALSE(readable(kernel(0x123000)));
  EXPECT_EQ(shadow->stats().pages_dropped - before.pages_dropped, 1024u);
  // Past the end of RAM: MMIO.
  shadow->set_control_registers(machine::cr0::PE, 0, 0);
  auto out = shadow->handle_host_fault(Window::kKernel, 0xfec00000, Access::kRead);
  EXPECT_EQ(out.kind, Kind::kNotRam);
}

TEST_P(ShadowMmuModes, DropsCoalesceIntoFewUnmapCalls) {
  make(1024);  // prefault the whole page table
  for (uint32_t i = 0; i < 1024; ++i)
    pt->map(0x30000000 + i * kPageSize, 0x100000 + ((i * 37) % 1024) * kPageSize, kUserRw | pte::D);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x30000000, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->mapped_pages(Window::kUser), 1024u);
  const auto before = shadow->stats();
  PageTables empty(*mem, 0x90000, 0x91000);
  shadow->load_cr3(empty.cr3());
  EXPECT_EQ(shadow->stats().unmap_calls - before.unmap_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_dropped - before.pages_dropped, 1024u);
  EXPECT_FALSE(readable(user(0x30000000 + 500 * kPageSize)));
  EXPECT_EQ(shadow->mapped_pages(Window::kUser), 0u);
}
// Parking: a dropped 4 KiB mapping stays inaccessible in the host, and the
// same frame at the same address comes back with a protect, not an mmap.
TEST_P(ShadowMmuModes, DroppedPagesAreParkedAndComeBackWithoutMmap) {
  park_ahead = 0;  // counts parked pages exactly
  make(1);  // no prefetch: one page per fault
  const uint32_t lin = 0x08048000;
  pt->map(lin, 0x200000, kUserRw | pte::D);
  pt->map(lin + kPageSize, 0x201000, kUserRw | pte::D);
  fill(0x200000, 0x21);
  fill(0x300000, 0x30);
  for (uint32_t l : {lin, lin + kPageSize})
    ASSERT_EQ(shadow->handle_host_fault(Window::kUser, l, Access::kWrite).kind, Kind::kHidden);
  ASSERT_TRUE(writable(user(lin)));

  // A CR3 load to tables without the pages: both dropped in one park call.
  PageTables empty(*mem, 0x90000, 0x91000);
  auto before = shadow->stats();
  shadow->load_cr3(empty.cr3());
  EXPECT_EQ(shadow->stats().unmap_calls - before.unmap_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_parked - before.pages_parked, 2u);
  EXPECT_EQ(shadow->parked_pages(Window::kUser), 2u);
  EXPECT_EQ(shadow->mapped_pages(Window::kUser), 0u);
  EXPECT_FALSE(shadow->lookup(Window::kUser, lin));
  EXPECT_EQ(shadow->parked_phys(Window::kUser, lin), 0x200000u);
  // A parked page is not accessible at all.
  EXPECT_FALSE(readable(user(lin)));
  EXPECT_FALSE(readable(user(lin + kPageSize)));
  EXPECT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kGuestFault);
  EXPECT_FALSE(readable(user(lin)));

  // Back to the tables that map the same frame: a protect, no mmap, and
  // the rights are recomputed (read-only until the next write: D cleared).
  shadow->load_cr3(pt->cr3());
  pt->set_pte(lin, pt->pte(lin) & ~pte::D);
  before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 0u);
  EXPECT_EQ(shadow->stats().protect_calls - before.protect_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_unparked - before.pages_unparked, 1u);
  EXPECT_EQ(shadow->parked_pages(Window::kUser), 1u);
  EXPECT_FALSE(shadow->parked_phys(Window::kUser, lin));
  uint8_t b = 0;
  ASSERT_TRUE(readable(user(lin), &b));
  EXPECT_EQ(b, 0x21);
  EXPECT_FALSE(writable(user(lin)));
  EXPECT_FALSE(shadow->lookup(Window::kUser, lin)->writable);

  // The other page now maps another frame: a real mmap replaces the parked one.
  pt->map(lin + kPageSize, 0x300000, kUserRw | pte::D);
  before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + kPageSize, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_unparked - before.pages_unparked, 0u);
  EXPECT_EQ(shadow->parked_pages(Window::kUser), 0u);
  ASSERT_TRUE(readable(user(lin + kPageSize), &b));
  EXPECT_EQ(b, 0x30);

  // INVLPG parks too; a supervisor page never comes back in the user window.
  pt->map(lin, 0x200000, pte::P | pte::RW | pte::D);
  shadow->invlpg(lin);
  EXPECT_EQ(shadow->parked_phys(Window::kUser, lin), 0x200000u);
  EXPECT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kGuestFault);
  EXPECT_FALSE(readable(user(lin)));
}

TEST_P(ShadowMmuModes, ParkedCodePageComesBackReadOnly) {
  make(1);
  const uint32_t lin = 0x08048000;
  pt->map(lin, 0x200000, kUserRw | pte::D);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kWrite).kind, Kind::kHidden);
  pt->set_pte(lin, 0);
  shadow->invlpg(lin);
  ASSERT_EQ(shadow->parked_phys(Window::kUser, lin), 0x200000u);
  shadow->protect_code_page(0x200000);
  pt->map(lin, 0x200000, kUserRw | pte::D);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kHidden);
  EXPECT_TRUE(readable(user(lin)));
  EXPECT_FALSE(writable(user(lin)));
}

// Parking ahead: a page that extends an ascending run (the page before maps
// the frame before) parks the following frames at the following pages the
// guest has not mapped yet; the guest's next fresh pages come back with a
// protect when it gives them those frames, and a wrong guess is an mmap.
TEST_P(ShadowMmuModes, AscendingRunsParkTheNextFramesAhead) {
  park_ahead = 4;
  make(1);
  const uint32_t lin = 0x20000000;
  fill(0x202000, 0x22);
  fill(0x400000, 0x40);
  pt->map(lin, 0x200000, kUserRw | pte::D);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().parked_ahead, 0u);  // no run yet
  // A page already present further on bounds what is parked ahead.
  pt->map(lin + 4 * kPageSize, 0x500000, kUserRw | pte::D);
  pt->map(lin + kPageSize, 0x201000, kUserRw | pte::D);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + kPageSize, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().parked_ahead, 2u);
  EXPECT_EQ(shadow->stats().park_ahead_calls, 1u);
  EXPECT_EQ(shadow->parked_phys(Window::kUser, lin + 2 * kPageSize), 0x202000u);
  EXPECT_EQ(shadow->parked_phys(Window::kUser, lin + 3 * kPageSize), 0x203000u);
  EXPECT_FALSE(shadow->parked_phys(Window::kUser, lin + 4 * kPageSize));
  EXPECT_FALSE(shadow->lookup(Window::kUser, lin + 2 * kPageSize));
  // Parked pages are inaccessible, and a fault there is still the guest's.
  EXPECT_FALSE(readable(user(lin + 2 * kPageSize)));
  EXPECT_EQ(shadow->handle_host_fault(Window::kUser, lin + 2 * kPageSize, Access::kRead).kind, Kind::kGuestFault);

  // The guest gives the next page the guessed frame: a protect, no mmap.
  pt->map(lin + 2 * kPageSize, 0x202000, kUserRw | pte::D);
  auto before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 2 * kPageSize, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 0u);
  EXPECT_EQ(shadow->stats().protect_calls - before.protect_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_unparked - before.pages_unparked, 1u);
  uint8_t b = 0;
  ASSERT_TRUE(readable(user(lin + 2 * kPageSize), &b));
  EXPECT_EQ(b, 0x22);
  EXPECT_TRUE(writable(user(lin + 2 * kPageSize)));
  EXPECT_EQ(shadow->stats().park_ahead_calls, 1u);  // the next slot is taken: nothing more parked

  // Another frame than guessed: a real mmap over the parked page.
  pt->map(lin + 3 * kPageSize, 0x400000, kUserRw | pte::D);
  before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 3 * kPageSize, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - before.map_calls, 1u);
  EXPECT_EQ(shadow->stats().pages_unparked - before.pages_unparked, 0u);
  EXPECT_EQ(shadow->parked_pages(Window::kUser), 0u);
  ASSERT_TRUE(readable(user(lin + 3 * kPageSize), &b));
  EXPECT_EQ(b, 0x40);

  // Descending frames are no run: nothing parked ahead.
  pt->map(lin + 0x10 * kPageSize, 0x600000, kUserRw | pte::D);
  pt->map(lin + 0x11 * kPageSize, 0x5ff000, kUserRw | pte::D);
  for (uint32_t l : {lin + 0x10 * kPageSize, lin + 0x11 * kPageSize})
    ASSERT_EQ(shadow->handle_host_fault(Window::kUser, l, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().park_ahead_calls, 1u);
}

TEST_P(ShadowMmuModes, ParkingIsCappedOldestFirst) {
  make(1);
  ShadowConfig config;
  config.user_base = 0;
  config.kernel_base = uintptr_t(1) << 36;
  config.prefault_cluster_pages = 1;
  config.max_parked_pages = 8;
  config.exec_only_clean = exec_only_clean;
  shadow.reset();
  auto s = ShadowMmu::create(*mem, config);
  ASSERT_TRUE(s.ok()) << s.error().message;
  shadow = std::move(*s);
  shadow->set_control_registers(kPgPe | machine::cr0::WP, pt->cr3(), machine::cr4::PSE | machine::cr4::PGE);
  const uint32_t lin = 0x10000000;
  // Every other page, so that runs do not coalesce.
  for (uint32_t i = 0; i < 20; ++i) {
    pt->map(lin + 2 * i * kPageSize, 0x200000 + i * kPageSize, kUserRw | pte::D);
    ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 2 * i * kPageSize, Access::kRead).kind, Kind::kHidden);
  }
  // Drop them one at a time (oldest first), re-installing page 0 in
  // between: its first park entry goes stale and must not count.
  const auto before = shadow->stats();
  auto drop = [&](uint32_t i) {
    const uint32_t l = lin + 2 * i * kPageSize;
    const uint32_t e = pt->pte(l);
    pt->set_pte(l, 0);
    shadow->invlpg(l);
    pt->set_pte(l, e);
  };
  drop(0);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kHidden);
  for (uint32_t i = 1; i < 20; ++i) drop(i);
  drop(0);
  EXPECT_EQ(shadow->parked_pages(Window::kUser), 8u);
  EXPECT_EQ(shadow->stats().parked_evicted - before.parked_evicted, 12u);
  EXPECT_EQ(shadow->stats().pages_parked - before.pages_parked, 21u);
  // The newest eight stay parked (12..19 were dropped before page 0 went
  // the second time, so 12 was evicted for it); the others are gone for real.
  for (uint32_t i = 0; i < 20; ++i) {
    const bool parked = i == 0 || i >= 13;
    EXPECT_EQ(bool(shadow->parked_phys(Window::kUser, lin + 2 * i * kPageSize)), parked) << i;
    EXPECT_FALSE(readable(user(lin + 2 * i * kPageSize))) << i;
  }
  // An evicted page is back with an mmap, a parked one with a protect.
  auto mid = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 2 * 5 * kPageSize, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - mid.map_calls, 1u);
  mid = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 2 * 15 * kPageSize, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - mid.map_calls, 0u);
  EXPECT_EQ(shadow->stats().protect_calls - mid.protect_calls, 1u);
  // Many park/unpark cycles under the cap keep the queue bounded and the
  // count exact.
  for (int round = 0; round < 200; ++round) {
    drop(15);
    ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 2 * 15 * kPageSize, Access::kRead).kind, Kind::kHidden);
  }
  EXPECT_EQ(shadow->parked_pages(Window::kUser), 7u);
  EXPECT_TRUE(shadow->parked_phys(Window::kUser, lin + 2 * 19 * kPageSize));
  // Parking off: drops unmap.
  config.max_parked_pages = 0;
  shadow.reset();
  s = ShadowMmu::create(*mem, config);
  ASSERT_TRUE(s.ok());
  shadow = std::move(*s);
  shadow->set_control_registers(kPgPe | machine::cr0::WP, pt->cr3(), machine::cr4::PSE | machine::cr4::PGE);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kHidden);
  drop(0);
  EXPECT_EQ(shadow->parked_pages(Window::kUser), 0u);
  EXPECT_EQ(shadow->stats().pages_parked, 0u);
  mid = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().map_calls - mid.map_calls, 1u);
}

// exec_only_clean: a frame holding cpuid (0F A2 anywhere, or A2 first: the
// 0F may end the previous page) is never executable in the host; the fetch
// says kNotExecutable so the run loop runs the page translated.
TEST_F(ShadowMmuExec, FrameWithCpuidIsNotExecutable) {
  const uint32_t lin = 0x08048000;
  pt->map(lin, 0x200000, pte::P | pte::US);  // read-only user code page
  fill(0x200000, 0x90);
  poke(0x200000, {0xc3});
  poke(0x200abc, {0x0f, 0xa2});
  auto out = shadow->handle_host_fault(Window::kUser, lin + 0x10, Access::kFetch);
  ASSERT_EQ(out.kind, Kind::kNotExecutable) << out.error;
  EXPECT_EQ(out.phys, 0x200000u);
  EXPECT_TRUE(readable(user(lin)));
  EXPECT_FALSE(executes(user(lin)));
  EXPECT_FALSE(shadow->lookup(Window::kUser, lin)->executable);
  EXPECT_FALSE(shadow->exec_clean(0x200000));
  EXPECT_TRUE(pt->pte(lin) & pte::A);  // the fetch happens (translated)
  EXPECT_EQ(shadow->stats().exec_scans, 1u);
  EXPECT_EQ(shadow->stats().exec_dirty_scans, 1u);
  EXPECT_EQ(shadow->stats().not_executable_faults, 1u);
  EXPECT_EQ(shadow->stats().hidden_faults, 0u);
  // Again (the run loop comes back to the page): the verdict is re-checked
  // in O(1), nothing is scanned or mapped.
  auto before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kFetch).kind, Kind::kNotExecutable);
  EXPECT_EQ(shadow->stats().exec_scans, before.exec_scans);
  EXPECT_EQ(shadow->stats().map_calls + shadow->stats().protect_calls, before.map_calls + before.protect_calls);
  EXPECT_EQ(shadow->stats().not_executable_faults, 2u);
  // The pair goes away (the frame is not write-protected, nothing noticed):
  // the next fetch finds the cached pair gone, rescans, maps executable.
  poke(0x200abc, {0x90, 0x90});
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kFetch).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().exec_scans, 2u);
  EXPECT_TRUE(executes(user(lin)));
  EXPECT_TRUE(shadow->exec_clean(0x200000));

  // A frame that starts with A2: also not executable.
  pt->map(lin + 0x100000, 0x201000, pte::P | pte::US);
  poke(0x201000, {0xa2});
  poke(0x201008, {0xc3});
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 0x100008, Access::kFetch).kind, Kind::kNotExecutable);
  EXPECT_FALSE(executes(user(lin + 0x100008)));
  EXPECT_EQ(shadow->stats().exec_dirty_scans, 2u);
  // ...and one that ends with 0F is fine (the next page holds the A2).
  pt->map(lin + 0x200000, 0x202000, pte::P | pte::US);
  poke(0x202000, {0xc3});
  poke(0x202fff, {0x0f});
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 0x200000, Access::kFetch).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(lin + 0x200000)));
}

// A clean frame is executable until written through any alias: the write
// revokes PROT_EXEC first (host write fault in either window, CPU-model
// write), and the next fetch scans again.
TEST_F(ShadowMmuExec, WritesRevokeExecuteBeforeTheyLand) {
  const uint32_t code = 0x08048000, alias = 0x09000000, kern = 0xc0300000;
  pt->map(code, 0x300000, pte::P | pte::US);        // read-only user mapping
  pt->map(alias, 0x300000, kUserRw | pte::D);        // writable user alias
  pt->map(kern, 0x300000, pte::P | pte::RW | pte::D);  // writable supervisor alias
  fill(0x300000, 0x90);
  poke(0x300000, {0xc3});
  std::vector<uint32_t> code_writes;
  shadow->set_code_write_callback([&](uint32_t p) { code_writes.push_back(p); });

  // Read first: mapped, not executable, nothing scanned.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, code, Access::kRead).kind, Kind::kHidden);
  EXPECT_FALSE(executes(user(code)));
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, alias, Access::kWrite).kind, Kind::kHidden);
  ASSERT_TRUE(writable(user(alias)));
  EXPECT_EQ(shadow->stats().exec_scans, 0u);
  // The fetch: scanned clean, executable; the writable alias is now read-only.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, code, Access::kFetch).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(code)));
  EXPECT_TRUE(shadow->lookup(Window::kUser, code)->executable);
  EXPECT_FALSE(writable(user(alias)));
  EXPECT_TRUE(readable(user(alias)));
  EXPECT_EQ(shadow->stats().exec_scans, 1u);
  // Mapped later in the kernel window: read-only although dirty and R/W.
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, kern, Access::kRead).kind, Kind::kHidden);
  EXPECT_FALSE(writable(kernel(kern)));

  // 1. A host write fault through the user alias.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, alias + 0x200, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().exec_revoked, 1u);
  EXPECT_FALSE(shadow->exec_clean(0x300000));
  EXPECT_FALSE(executes(user(code)));
  EXPECT_FALSE(shadow->lookup(Window::kUser, code)->executable);
  EXPECT_TRUE(readable(user(code)));
  ASSERT_TRUE(writable(user(alias)));
  std::memcpy(reinterpret_cast<void*>(user(alias + 0x200)), "\x0f\xa2", 2);
  EXPECT_EQ(shadow->handle_host_fault(Window::kUser, code, Access::kFetch).kind, Kind::kNotExecutable);
  EXPECT_EQ(shadow->stats().exec_scans, 2u);
  std::memcpy(reinterpret_cast<void*>(user(alias + 0x200)), "\x90\x90", 2);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, code, Access::kFetch).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().exec_scans, 3u);
  EXPECT_TRUE(executes(user(code)));
  EXPECT_FALSE(writable(user(alias)));

  // 2. A host write fault through the kernel window.
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, kern + 4, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().exec_revoked, 2u);
  EXPECT_FALSE(executes(user(code)));
  EXPECT_TRUE(writable(kernel(kern)));
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, code, Access::kFetch).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(code)));
  EXPECT_FALSE(writable(kernel(kern)));

  // 3. A CPU-model write through linear_memory().
  const uint8_t pair[2] = {0x0f, 0xa2};
  ASSERT_FALSE(shadow->linear_memory().write(kern + 0x300, pair, false));
  EXPECT_EQ(shadow->stats().exec_revoked, 3u);
  EXPECT_FALSE(executes(user(code)));
  EXPECT_EQ(shadow->handle_host_fault(Window::kUser, code, Access::kFetch).kind, Kind::kNotExecutable);
  // A write the guest does not allow revokes nothing (a true fault).
  poke(0x300300, {0x90, 0x90});
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, code, Access::kFetch).kind, Kind::kHidden);
  EXPECT_EQ(shadow->handle_host_fault(Window::kUser, code, Access::kWrite).kind, Kind::kGuestFault);
  EXPECT_TRUE(executes(user(code)));
  EXPECT_EQ(shadow->stats().exec_revoked, 3u);

  // None of that was translated code: no code-write callback. The two
  // protections are separate: unprotecting code leaves exec-clean alone.
  EXPECT_TRUE(code_writes.empty());
  EXPECT_EQ(shadow->stats().code_write_faults + shadow->stats().code_writes_by_cpu, 0u);
  shadow->protect_code_page(0x300000);
  shadow->unprotect_code_page(0x300000);
  EXPECT_TRUE(shadow->exec_clean(0x300000));
  EXPECT_TRUE(executes(user(code)));
  EXPECT_FALSE(writable(kernel(kern)));
  // Both at once: a write ends both, calls back once.
  shadow->protect_code_page(0x300000);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, alias, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(code_writes, (std::vector<uint32_t>{0x300000}));
  EXPECT_FALSE(shadow->exec_clean(0x300000));
  EXPECT_FALSE(shadow->code_page_protected(0x300000));
  EXPECT_FALSE(executes(user(code)));
}

// A page the shadow maps writable is never executable (its contents could
// turn into a cpuid without a fault), whatever its frame holds.
TEST_F(ShadowMmuExec, WritablePagesAreNotExecutable) {
  const uint32_t lin = 0x08048000;
  pt->map(lin, 0x400000, kUserRw | pte::D);
  poke(0x400000, {0xc3});
  auto out = shadow->handle_host_fault(Window::kUser, lin, Access::kFetch);
  ASSERT_EQ(out.kind, Kind::kNotExecutable);
  EXPECT_EQ(out.phys, 0x400000u);
  EXPECT_TRUE(writable(user(lin)));
  EXPECT_FALSE(executes(user(lin)));
  EXPECT_EQ(shadow->stats().exec_scans, 0u);  // no point: it stays writable
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kFetch).kind, Kind::kNotExecutable);
  EXPECT_TRUE(writable(user(lin)));

  // R/W but not yet dirty: mapped read-only, so a clean frame may run until
  // the first write, which sets D and takes execute away.
  pt->map(lin + 0x1000, 0x401000, kUserRw);
  poke(0x401000, {0xc3});
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 0x1000, Access::kFetch).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(lin + 0x1000)));
  EXPECT_FALSE(writable(user(lin + 0x1000)));
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin + 0x1000, Access::kWrite).kind, Kind::kHidden);
  EXPECT_TRUE(pt->pte(lin + 0x1000) & pte::D);
  EXPECT_TRUE(writable(user(lin + 0x1000)));
  EXPECT_FALSE(executes(user(lin + 0x1000)));
  EXPECT_EQ(shadow->stats().exec_revoked, 1u);
  EXPECT_EQ(shadow->handle_host_fault(Window::kUser, lin + 0x1000, Access::kFetch).kind, Kind::kNotExecutable);
}

// Reads and writes never scan and never make a page executable unless its
// frame is already known clean; then any read-only mapping of it is.
TEST_F(ShadowMmuExec, ReadsNeverScan) {
  for (uint32_t i = 0; i < 16; ++i) {
    pt->map(0x10000000 + i * kPageSize, 0x500000 + i * kPageSize, pte::P | pte::US);
    poke(0x500000 + i * kPageSize, {0xc3});
  }
  pt->map(0x20000000, 0x500000, pte::P | pte::US);  // alias of the first frame
  pt->map(0x20010000, 0x600000, kUserRw);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x10000000, Access::kRead).kind, Kind::kHidden);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x20010000, Access::kWrite).kind, Kind::kHidden);
  ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, 0x10000000, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().exec_scans, 0u);
  for (uint32_t i = 0; i < 16; ++i) EXPECT_FALSE(executes(user(0x10000000 + i * kPageSize))) << i;
  // A fetch on page 3 makes page 3's frame known clean: only that page.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x10003000, Access::kFetch).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().exec_scans, 1u);
  for (uint32_t i = 0; i < 16; ++i) EXPECT_EQ(executes(user(0x10000000 + i * kPageSize)), i == 3) << i;
  // Frame 0 becomes clean through a fetch; its alias mapped later by a read
  // is executable at once, without another scan.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x10000000, Access::kFetch).kind, Kind::kHidden);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x20000000, Access::kRead).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(0x20000000)));
  EXPECT_EQ(shadow->stats().exec_scans, 2u);
  // A fetch in the kernel window is still bt86's bug, not the guest's.
  EXPECT_EQ(shadow->handle_host_fault(Window::kKernel, 0x10000000, Access::kFetch).kind, Kind::kHostError);
}

// A fetch the guest's tables forbid is the guest's #PF, with the error code
// of a CPU without NX (no I/D bit, SDM vol. 3A 4.7).
TEST_F(ShadowMmuExec, FetchTrueFaults) {
  pt->map(0x08048000, 0x200000, pte::P | pte::RW);  // supervisor page
  auto out = shadow->handle_host_fault(Window::kUser, 0x08048010, Access::kFetch);
  ASSERT_EQ(out.kind, Kind::kGuestFault);
  EXPECT_EQ(out.fault.error, pf::P | pf::U);
  EXPECT_EQ(out.fault.cr2, 0x08048010u);
  out = shadow->handle_host_fault(Window::kUser, 0x0c000000, Access::kFetch);  // not present
  ASSERT_EQ(out.kind, Kind::kGuestFault);
  EXPECT_EQ(out.fault.error, pf::U);
  EXPECT_EQ(shadow->stats().exec_scans + shadow->stats().not_executable_faults, 0u);
}

// Parked pages, CR3 revalidation and 4 MiB pages follow the same rule.
TEST_F(ShadowMmuExec, ParkedKeptAndLargePagesFollowTheRule) {
  make(1);
  const uint32_t lin = 0x08048000, alias = 0x09000000;
  pt->map(lin, 0x200000, pte::P | pte::US);
  pt->map(alias, 0x200000, kUserRw | pte::D);
  poke(0x200000, {0xc3});
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kFetch).kind, Kind::kHidden);
  ASSERT_TRUE(executes(user(lin)));
  // Parked and re-installed: a protect, executable again (frame still clean).
  const uint32_t e = pt->pte(lin);
  pt->set_pte(lin, 0);
  shadow->invlpg(lin);
  ASSERT_EQ(shadow->parked_phys(Window::kUser, lin), 0x200000u);
  pt->set_pte(lin, e);
  auto before = shadow->stats();
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().pages_unparked - before.pages_unparked, 1u);
  EXPECT_TRUE(executes(user(lin)));
  // Parked again; the frame is written meanwhile (the parked page is not in
  // the reverse map): it comes back without execute permission.
  pt->set_pte(lin, 0);
  shadow->invlpg(lin);
  pt->set_pte(lin, e);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, alias, Access::kWrite).kind, Kind::kHidden);
  EXPECT_EQ(shadow->stats().exec_revoked, 1u);
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kRead).kind, Kind::kHidden);
  EXPECT_TRUE(readable(user(lin)));
  EXPECT_FALSE(executes(user(lin)));

  // A CR3 load keeps an executable page the new tables still map; if they
  // now allow writes it stays read-only and executable until the write.
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kFetch).kind, Kind::kHidden);
  ASSERT_TRUE(executes(user(lin)));
  pt->set_pte(lin, e | pte::RW | pte::D);
  shadow->load_cr3(pt->cr3());
  EXPECT_TRUE(executes(user(lin)));
  EXPECT_FALSE(writable(user(lin)));
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kWrite).kind, Kind::kHidden);
  EXPECT_TRUE(writable(user(lin)));
  EXPECT_FALSE(executes(user(lin)));
  // The reverse: a writable mapping the new tables make read-only is
  // write-protected by the CR3 load, and is not executable until a fetch.
  pt->set_pte(lin, e);
  shadow->load_cr3(pt->cr3());
  EXPECT_FALSE(writable(user(lin)));
  EXPECT_FALSE(executes(user(lin)));
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, lin, Access::kFetch).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(lin)));

  // A user 4 MiB page: only the page fetched from is scanned and executable.
  pt->map_large(0x40000000, 0x800000, pte::P | pte::US);
  for (uint32_t i = 0; i < 4; ++i) poke(0x800000 + i * kPageSize, {0xc3});
  poke(0x802100, {0x0f, 0xa2});
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x40001000, Access::kFetch).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(0x40001000)));
  EXPECT_FALSE(executes(user(0x40000000)));
  EXPECT_TRUE(readable(user(0x40000000)));
  EXPECT_EQ(shadow->handle_host_fault(Window::kUser, 0x40002000, Access::kFetch).kind, Kind::kNotExecutable);
  EXPECT_FALSE(executes(user(0x40002000)));
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x40000000, Access::kFetch).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(0x40000000)));
}

// exec_only_clean off: every user page is executable, as before.
TEST_F(ShadowMmuTest, ExecOnlyCleanOffMapsEveryUserPageExecutable) {
  pt->map(0x08048000, 0x200000, pte::P | pte::US);
  pt->map(0x08049000, 0x201000, kUserRw | pte::D);
  poke(0x200000, {0xc3, 0x0f, 0xa2});
  poke(0x201000, {0xc3});
  ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x08048000, Access::kFetch).kind, Kind::kHidden);
  EXPECT_TRUE(executes(user(0x08048000)));
  EXPECT_TRUE(executes(user(0x08049000)));  // prefaulted neighbour, writable
  EXPECT_TRUE(writable(user(0x08049000)));
  EXPECT_EQ(shadow->stats().exec_scans + shadow->stats().not_executable_faults, 0u);
}

// Timings for the README and --stats reasoning, not a pass/fail test:
//   mmu_tests --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Timings*'
class ShadowMmuTiming : public ShadowMmuTest {};
TEST_F(ShadowMmuTiming, DISABLED_Timings) {
  using Clock = std::chrono::steady_clock;
  auto us = [](Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
  for (uint32_t cluster : {1u, 16u}) {
    make(cluster);
    // 4096 scattered user pages in 4 page tables.
    for (uint32_t i = 0; i < 4096; ++i)
      pt->map(0x40000000 + i * kPageSize, 0x100000 + ((i * 37) % 3000) * kPageSize, kUserRw | pte::D);
    auto t0 = Clock::now();
    uint32_t faults = 0;
    for (uint32_t i = 0; i < 4096; ++i) {
      if (shadow->lookup(Window::kUser, 0x40000000 + i * kPageSize)) continue;
      ASSERT_EQ(shadow->handle_host_fault(Window::kUser, 0x40000000 + i * kPageSize, Access::kRead).kind,
                Kind::kHidden);
      ++faults;
    }
    auto t1 = Clock::now();
    std::printf("cluster %4u: %u faults for 4096 scattered pages, %.2f us/fault, %.2f us/page\n", cluster,
                faults, us(t1 - t0) / faults, us(t1 - t0) / 4096);
    t0 = Clock::now();
    shadow->load_cr3(pt->cr3());
    t1 = Clock::now();
    std::printf("  CR3 load dropping 4096 pages: %.1f us (%llu unmap calls)\n", us(t1 - t0),
                (unsigned long long)shadow->stats().unmap_calls);
  }
  make(16);
  for (uint32_t i = 0; i < 3; ++i) pt->map_large(0xc0000000 + i * kLargePageSize, i * kLargePageSize, pte::P | pte::RW | pte::D);
  auto t0 = Clock::now();
  for (uint32_t i = 0; i < 3; ++i)
    ASSERT_EQ(shadow->handle_host_fault(Window::kKernel, 0xc0000000 + i * kLargePageSize, Access::kRead).kind,
              Kind::kHidden);
  auto t1 = Clock::now();
  std::printf("4 MiB page fault: %.1f us each\n", us(t1 - t0) / 3);
  t0 = Clock::now();
  shadow->invlpg(0xc0000000);
  t1 = Clock::now();
  std::printf("INVLPG of a 4 MiB page: %.1f us\n", us(t1 - t0));

  // exec_only_clean: what fetch faults cost (cluster 1: one page per fault,
  // 2048 read-only user pages on scattered frames of code-like bytes without
  // A2, so a scan reads all 4 KiB; every other frame holds a cpuid).
  exec_only_clean = true;
  constexpr uint32_t kPages = 2048;
  auto setup = [&] {
    make(1);
    for (uint32_t i = 0; i < kPages; ++i) {
      const uint32_t frame = 0x100000 + ((i * 37) % 3000) * kPageSize;
      uint8_t* p = mem->host(GuestPhys(frame), kPageSize);
      for (uint32_t k = 0; k < kPageSize; ++k) p[k] = uint8_t((k * 131 + i) % 0xa0);
      if (i % 2) p[1234] = 0x0f, p[1235] = 0xa2;
      pt->map(0x40000000 + i * kPageSize, frame, pte::P | pte::US);
    }
  };
  auto run = [&](const char* what, Access kind, uint32_t step) {
    const auto s0 = shadow->stats();
    auto t = Clock::now();
    for (uint32_t i = 0; i < kPages; i += step)
      (void)shadow->handle_host_fault(Window::kUser, 0x40000000 + i * kPageSize, kind);
    const double d = us(Clock::now() - t) / (kPages / step);
    std::printf("%-62s %.2f us/fault (%llu scans, %llu not executable)\n", what, d,
                (unsigned long long)(shadow->stats().exec_scans - s0.exec_scans),
                (unsigned long long)(shadow->stats().not_executable_faults - s0.not_executable_faults));
  };
  setup();
  run("read fault, unmapped page (baseline, no scan):", Access::kRead, 1);
  run("fetch fault, mapped non-exec page (scan, protect or nothing):", Access::kFetch, 1);
  run("fetch fault again, frame with cpuid (O(1) recheck):", Access::kFetch, 2);
  setup();
  run("fetch fault, unmapped page, unknown frame (scan, map):", Access::kFetch, 1);
  shadow->flush_all();
  run("read fault, parked page, frame known clean (exec at once):", Access::kRead, 2);
  // The scan alone, as the shadow does it (memchr for A2, then look back).
  std::vector<uint8_t> page(kPageSize);
  for (uint32_t k = 0; k < kPageSize; ++k) page[k] = uint8_t((k * 131) % 0xa0);
  t0 = Clock::now();
  uint32_t found = 0;
  for (int r = 0; r < 100000; ++r) {
    page[r % kPageSize] ^= 1;
    const uint8_t* at = page.data() + 1;
    const uint8_t* end = page.data() + kPageSize;
    while ((at = static_cast<const uint8_t*>(std::memchr(at, 0xa2, size_t(end - at))))) {
      if (at[-1] == 0x0f) { ++found; break; }
      ++at;
    }
  }
  std::printf("scan of a 4 KiB frame without A2 (memchr): %.3f us (%u)\n", us(Clock::now() - t0) / 100000, found);
}


// Random page tables and a random mix of faults, guest PTE changes with
// INVLPG, CR3 loads and code protection; after every step the invariants
// hold for every page the shadow holds: the user window maps only what a
// CPL-3 access may touch under the current guest tables, writable only if a
// user write is allowed and D is set, never a protected code page writable;
// the host mapping really shows the recorded frame (checked through a
// per-frame tag) and its protection matches the record. With exec_only_clean,
// fetches and writes of cpuid bytes through the windows and the CPU model
// mix in: a page the host can execute is read-only and its frame holds no
// cpuid at that moment; an exec-clean frame is writable nowhere.
TEST_P(ShadowMmuModes, RandomOperationsKeepTheInvariants) {
  uint32_t seed = 12345;
  auto rnd = [&](uint32_t n) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) % n;
  };
  // Tag every frame we use with its number.
  const uint32_t first_frame = 0x100, frames = 64;
  // Every frame: its tag at 0, a `ret` at 8 (to probe execution), some a
  // cpuid pair at 100; writes below put one at 200 or 300 or take it away.
  for (uint32_t f = first_frame; f < first_frame + frames; ++f) {
    uint32_t tag = f;
    std::memcpy(mem->host(GuestPhys(f << 12), 4), &tag, 4);
    poke((f << 12) + 8, {0xc3});
    if (f % 4 == 0) poke((f << 12) + 100, {0x0f, 0xa2});
  }
  const uint32_t lins[] = {0x08000000, 0x08001000, 0x08002000, 0x08003000, 0x08400000,
                           0x08401000, 0xc0000000, 0xc0001000, 0xc0002000, 0xbffff000};
  auto random_pte = [&]() {
    uint32_t flags = pte::P;
    if (rnd(4)) flags |= pte::US;
    if (rnd(2)) flags |= pte::RW;
    if (rnd(2)) flags |= pte::D;
    if (rnd(3) == 0) flags |= pte::G;
    if (rnd(8) == 0) flags &= ~pte::P;
    return ((first_frame + rnd(frames)) << 12) | flags;
  };
  for (uint32_t lin : lins) pt->map(lin, 0, 0, rnd(5) ? (pte::P | pte::RW | pte::US) : (pte::P | pte::RW));
  for (uint32_t lin : lins) pt->set_pte(lin, random_pte());
  std::vector<uint32_t> code_writes;
  shadow->set_code_write_callback([&](uint32_t p) { code_writes.push_back(p); });

  auto check = [&](int step) {
    for (uint32_t lin : lins) {
      for (Window w : {Window::kUser, Window::kKernel}) {
        auto s = shadow->lookup(w, lin);
        const uintptr_t host = shadow->window_base(w) + lin;
        if (!s) {
          ASSERT_FALSE(readable(host)) << step << " " << std::hex << lin;
          continue;
        }
        uint32_t tag = 0;
        uint8_t b;
        for (int k = 0; k < 4; ++k) {
          ASSERT_TRUE(readable(host + k, &b)) << step;
          tag |= uint32_t(b) << (8 * k);
        }
        ASSERT_EQ(tag, s->phys >> 12) << step;
        ASSERT_EQ(writable(host), s->writable) << step;
        if (s->writable) {
          ASSERT_FALSE(shadow->code_page_protected(s->phys)) << step;
          ASSERT_FALSE(shadow->exec_clean(s->phys)) << step;
        }
        ASSERT_EQ(executes(host + 8), s->executable) << step << " " << std::hex << lin;
        if (w == Window::kKernel || (exec_only_clean && s->writable)) {
          ASSERT_FALSE(s->executable) << step;
        }
        if (w == Window::kUser && !exec_only_clean) {
          ASSERT_TRUE(s->executable) << step;
        }
        if (exec_only_clean && s->executable) {
          ASSERT_TRUE(shadow->exec_clean(s->phys)) << step;
          ASSERT_FALSE(holds_cpuid(mem->host(GuestPhys(s->phys), kPageSize))) << step;
        }
        if (w == Window::kUser && !s->global) {
          // Entries that were not flushed since the last change must still
          // be what the guest allows (global ones may lag, like a TLB).
          auto t = translate(*mem, shadow->control(), lin, Access::kRead, true);
          ASSERT_EQ(t.status, WalkStatus::kOk) << step << " " << std::hex << lin;
          ASSERT_EQ(t.phys & ~kPageMask, s->phys) << step;
          if (s->writable) {
            ASSERT_TRUE(t.writable && t.dirty) << step;
          }
        }
      }
    }
  };
  for (int step = 0; step < 4000; ++step) {
    const uint32_t lin = lins[rnd(std::size(lins))];
    switch (rnd(6)) {
      case 0:
      case 1:
      case 2: {
        const Window w = rnd(2) ? Window::kUser : Window::kKernel;
        const uint32_t k = rnd(3);
        const Access kind = k == 0 ? Access::kWrite : k == 1 || w == Window::kKernel ? Access::kRead : Access::kFetch;
        auto out = shadow->handle_host_fault(w, lin + rnd(kPageSize), kind);
        ASSERT_TRUE(out.kind == Kind::kHidden || out.kind == Kind::kGuestFault ||
                    (out.kind == Kind::kNotExecutable && exec_only_clean && kind == Access::kFetch))
            << int(out.kind) << out.error;
        if (out.kind == Kind::kHidden || out.kind == Kind::kNotExecutable) {
          auto s = shadow->lookup(w, lin);
          ASSERT_TRUE(s);
          if (kind == Access::kWrite) {
            ASSERT_TRUE(s->writable);
            // The write the fault was for, through the window: a cpuid or not.
            const uint8_t bytes[2] = {uint8_t(rnd(2) ? 0x0f : 0x90), uint8_t(rnd(2) ? 0xa2 : 0x90)};
            std::memcpy(reinterpret_cast<void*>(shadow->window_base(w) + lin + 200), bytes, 2);
          }
          if (kind == Access::kFetch) {
            ASSERT_EQ(s->executable, out.kind == Kind::kHidden);
          }
        }
        break;
      }
      case 3:  // the guest changes a PTE and flushes it, like an OS must
        pt->set_pte(lin, random_pte());
        shadow->invlpg(lin);
        break;
      case 4:
        if (rnd(4) == 0) {
          // Global pages may survive; make them non-global so the check can
          // hold them to the current tables... unless PGE keeps them.
          for (uint32_t l : lins) pt->set_pte(l, pt->pte(l) & ~pte::G);
          shadow->set_control_registers(kPgPe | machine::cr0::WP, pt->cr3(), machine::cr4::PSE);
          shadow->set_control_registers(kPgPe | machine::cr0::WP, pt->cr3(),
                                        machine::cr4::PSE | machine::cr4::PGE);
        } else {
          shadow->load_cr3(pt->cr3());
        }
        break;
      case 5:
        if (rnd(2)) {
          if (rnd(2)) shadow->protect_code_page((first_frame + rnd(frames)) << 12);
          else shadow->unprotect_code_page((first_frame + rnd(frames)) << 12);
        } else {
          // The CPU model writes (a supervisor write; it may fault).
          const uint8_t bytes[2] = {uint8_t(rnd(2) ? 0x0f : 0x90), uint8_t(rnd(2) ? 0xa2 : 0x90)};
          (void)shadow->linear_memory().write(lin + 300, bytes, false);
        }
        break;
    }
    check(step);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(shadow->stats().hidden_faults, 100u);
  EXPECT_GT(shadow->stats().true_faults, 50u);
  if (exec_only_clean) {
    EXPECT_GT(shadow->stats().exec_scans, 20u);
    EXPECT_GT(shadow->stats().exec_dirty_scans, 5u);
    EXPECT_GT(shadow->stats().not_executable_faults, 20u);
    EXPECT_GT(shadow->stats().exec_revoked, 5u);
  } else {
    EXPECT_EQ(shadow->stats().exec_scans + shadow->stats().not_executable_faults, 0u);
  }
}

}  // namespace
}  // namespace bt86::mmu
