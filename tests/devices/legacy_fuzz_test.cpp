// Fixed-seed register fuzz for the RTC, the i8042 with port 0x92, and the
// PCI configuration ports (the older chips are in fuzz_test.cpp): random
// accesses of every size around each device, random clock steps, and the
// invariants checked after every step.
#include <gtest/gtest.h>

#include <random>

#include "devices/cmos_rtc.h"
#include "devices/i8042.h"
#include "devices/io_bus.h"
#include "devices/pci_config.h"
#include "tests/devices/fake_irq_line.h"

namespace bt86::devices {
namespace {

constexpr int kSteps = 50'000;

struct Fuzz {
  explicit Fuzz(uint32_t seed) : rng(seed) {}
  unsigned size() { return 1u << (rng() % 3); }
  uint32_t value() {
    switch (rng() % 4) {
      case 0: return 0;
      case 1: return 0xFF;
      default: return uint32_t(rng());
    }
  }
  void access(IoBus& bus, uint16_t base, uint16_t length) {
    const auto port = uint16_t(base - 2 + rng() % (length + 4));
    const unsigned n = size();
    if (rng() & 1) {
      ASSERT_EQ(bus.read(port, n) & ~all_ones(n), 0u);
    } else {
      bus.write(port, n, value());
    }
  }
  std::mt19937 rng;
};

TEST(LegacyFuzz, RtcIrqFollowsIrqfAndDeadlinesStayAhead) {
  Fuzz fuzz(0x146818);
  testing::FakeClock clock{5'000'000'000};
  testing::FakeIrqLine irq;
  CmosRtc rtc(clock.fn(), 1'700'000'000'000'000'000, 64u << 20, irq);
  IoBus bus;
  ASSERT_TRUE(bus.register_device(0x70, 2, rtc));
  int interrupts = 0;
  for (int step = 0; step < kSteps; ++step) {
    if (fuzz.rng() % 4 == 0) {
      clock.now += fuzz.rng() % 3'000'000'000u;
      rtc.update(clock.now);
      const uint64_t deadline = rtc.next_deadline_ns();
      ASSERT_TRUE(deadline == kNoDeadline || deadline > clock.now) << "step " << step;
    } else if (fuzz.rng() % 3 == 0) {
      // Mostly the interesting registers: the time, A-D.
      bus.write(0x70, 1, fuzz.rng() % 0x0E | (fuzz.rng() & 0x80));
      if (fuzz.rng() & 1) bus.write(0x71, 1, fuzz.value()); else ASSERT_LE(bus.read(0x71, 1), 0xFFu);
    } else {
      fuzz.access(bus, 0x70, 2);
    }
    const auto& s = rtc.state();
    ASSERT_LT(s.index, 0x80);
    ASSERT_EQ(s.cmos[CmosRtc::kRegC] & 0x0F, 0);
    ASSERT_EQ(irq.level, bool(s.cmos[CmosRtc::kRegC] & CmosRtc::kRegCIrqf)) << "step " << step;
    interrupts = irq.rising_edges;
  }
  EXPECT_GT(interrupts, 100);
}

TEST(LegacyFuzz, KbcQueueBoundedAndIrqsExclusive) {
  Fuzz fuzz(0x8042);
  testing::FakeIrqLine irq1, irq12;
  int resets = 0;
  I8042 kbc([&] { ++resets; }, irq1, irq12);
  PortA port_a([&] { ++resets; });
  IoBus bus;
  ASSERT_TRUE(bus.register_device(0x60, 1, kbc.data_port()));
  ASSERT_TRUE(bus.register_device(0x64, 1, kbc.command_port()));
  ASSERT_TRUE(bus.register_device(0x92, 1, port_a));
  for (int step = 0; step < kSteps; ++step) {
    switch (fuzz.rng() % 3) {
      case 0: fuzz.access(bus, 0x60, 1); break;
      case 1: fuzz.access(bus, 0x64, 1); break;
      default: fuzz.access(bus, 0x92, 1); break;
    }
    const auto& s = kbc.state();
    ASSERT_LE(s.count, I8042::kQueueSize);
    ASSERT_LT(s.head, I8042::kQueueSize);
    ASSERT_FALSE(irq1.level && irq12.level);
    ASSERT_EQ(kbc.status() & I8042::kStatusIbf, 0);
    ASSERT_TRUE(port_a.state().value & 0x02);
  }
  EXPECT_LE(resets, 2) << "each device requests reset at most once";
  EXPECT_GE(resets, 1);
}

TEST(LegacyFuzz, PciAddressKeepsReservedBitsClear) {
  Fuzz fuzz(0xCF8);
  PciConfig pci;
  IoBus bus;
  ASSERT_TRUE(bus.register_device(0xCF8, 8, pci));
  for (int step = 0; step < kSteps; ++step) {
    if (fuzz.rng() % 4 == 0) {
      // Aim at the bridge often enough to reach its registers.
      bus.write(0xCF8, 4, 0x80000000u | (fuzz.rng() & 0xFC) | (fuzz.rng() % 8 == 0 ? fuzz.rng() & 0xFFFF00 : 0));
    }
    fuzz.access(bus, 0xCF8, 8);
    ASSERT_EQ(pci.state().address & ~0x80FFFFFCu, 0u);
    ASSERT_EQ(pci.state().bridge[0], 0x86);
    ASSERT_EQ(pci.state().bridge[1], 0x80);
    ASSERT_EQ(pci.state().bridge[4] & 0x07, 0x07);
  }
}

}  // namespace
}  // namespace bt86::devices
