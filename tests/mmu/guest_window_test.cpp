// Guest memory and the guest window: sizes, coherence between the monitor's
// view and shadow mappings, and that the reservation keeps host allocations
// out of the low 4 GiB.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <vector>

#include "mmu/guest_memory.h"
#include "mmu/guest_window.h"

namespace bt86::mmu {
namespace {

TEST(GuestMemoryTest, SizeOutOfRangeIsAClearError) {
  for (uint32_t mib : {0u, 8u, 15u, 3073u, 100000u}) {
    auto r = GuestMemory::create(mib);
    ASSERT_FALSE(r.ok()) << mib;
    EXPECT_NE(r.error().message.find(std::to_string(mib) + " MiB"), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(GuestMemory::create(16).ok());
}

TEST(GuestMemoryTest, ReadWriteStayInsideRam) {
  auto mem = GuestMemory::create(16);
  ASSERT_TRUE(mem.ok());
  const uint8_t bytes[4] = {1, 2, 3, 4};
  EXPECT_TRUE(mem->write(GuestPhys(0x1000), bytes));
  EXPECT_FALSE(mem->write(GuestPhys(16u << 20) + uint32_t(-2), bytes));
  EXPECT_FALSE(mem->write(GuestPhys((16u << 20) - 2), bytes));
  EXPECT_EQ(mem->host(GuestPhys(16u << 20)), nullptr);
  uint8_t back[4];
  EXPECT_TRUE(mem->read(GuestPhys(0x1000), back));
  EXPECT_EQ(std::memcmp(back, bytes, 4), 0);
}

// One window at base 0 per process: one test covers its life.
TEST(GuestWindowTest, MapsAreCoherentAndTheWindowStaysReserved) {
  auto mem = GuestMemory::create(16);
  ASSERT_TRUE(mem.ok());
  auto win = GuestWindow::reserve(*mem, 0);
  ASSERT_TRUE(win.ok()) << win.error().message;

  // Nothing else can be placed in the low 4 GiB any more.
  void* p = mmap(reinterpret_cast<void*>(0x10000000), 4096, PROT_READ,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  EXPECT_EQ(p, MAP_FAILED);
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {
    blocks.push_back(malloc(1 << 20));
    EXPECT_GE(reinterpret_cast<uintptr_t>(blocks.back()), uintptr_t(1) << 32);
  }
  for (void* b : blocks) free(b);

  // The same page at two guest addresses, and the monitor's view.
  ASSERT_TRUE(win->map(GuestVirt(0x08048000), GuestPhys(0x5000), 4096, Prot::ReadWrite));
  ASSERT_TRUE(win->map(GuestVirt(0xc0005000), GuestPhys(0x5000), 4096, Prot::Read));
  *reinterpret_cast<volatile uint32_t*>(win->host(GuestVirt(0x08048010))) = 0xfeedface;
  EXPECT_EQ(*reinterpret_cast<volatile uint32_t*>(win->host(GuestVirt(0xc0005010))), 0xfeedfaceu);
  uint32_t v;
  std::memcpy(&v, mem->host(GuestPhys(0x5010)), 4);
  EXPECT_EQ(v, 0xfeedfaceu);

  // Unmap puts the reservation back: the address is still not free.
  ASSERT_TRUE(win->unmap(GuestVirt(0x08048000), 4096));
  p = mmap(reinterpret_cast<void*>(0x08048000), 4096, PROT_READ,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  EXPECT_EQ(p, MAP_FAILED);
  ASSERT_TRUE(win->protect(GuestVirt(0xc0005000), 4096, Prot::ReadWrite));
  EXPECT_EQ(win->stats().maps, 2u);
  EXPECT_EQ(win->stats().unmaps, 1u);
  EXPECT_EQ(win->stats().protects, 1u);

  // Bad requests are errors, not crashes.
  EXPECT_FALSE(win->map(GuestVirt(0), GuestPhys(0), 4096, Prot::Read));             // below mmap_min_addr
  EXPECT_FALSE(win->map(GuestVirt(0x1234), GuestPhys(0), 4096, Prot::Read));        // unaligned
  EXPECT_FALSE(win->map(GuestVirt(0xfffff000), GuestPhys(0), 8192, Prot::Read));    // leaves 4 GiB
  EXPECT_FALSE(win->map(GuestVirt(0x1000), GuestPhys(16u << 20), 4096, Prot::Read)); // beyond RAM
  EXPECT_FALSE(win->unmap(GuestVirt(0x1000), 0));

  // A second window at base 0 is refused with a message.
  auto second = GuestWindow::reserve(*mem, 0);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("guest window"), std::string::npos);
  EXPECT_FALSE(GuestWindow::reserve(*mem, 0x1234).ok());
}

TEST(GuestWindowTest, AWindowAtAnother4GiBBase) {
  auto mem = GuestMemory::create(16);
  ASSERT_TRUE(mem.ok());
  auto win = GuestWindow::reserve(*mem, uintptr_t(0x100) << 32);
  ASSERT_TRUE(win.ok()) << win.error().message;
  ASSERT_TRUE(win->map(GuestVirt(0), GuestPhys(0), 4096, Prot::ReadWrite));  // page 0 is fine here
  *reinterpret_cast<volatile uint8_t*>(win->host(GuestVirt(0))) = 0x5a;
  EXPECT_EQ(*mem->host(GuestPhys(0)), 0x5a);
}

}  // namespace
}  // namespace bt86::mmu
