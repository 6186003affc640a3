// Fixed-seed register fuzz: tens of thousands of random guest accesses per
// device (random offsets, including just outside the device, random sizes
// and values), interleaved with random host-side events. Nothing may crash
// and each device's invariants must hold after every step.
#include <gtest/gtest.h>

#include <random>

#include "devices/debug_exit.h"
#include "devices/io_bus.h"
#include "devices/pc_io_map.h"
#include "tests/devices/fake_irq_line.h"

namespace bt86::devices {
namespace {

constexpr int kSteps = 50'000;

struct Fuzzer {
  explicit Fuzzer(uint32_t seed) : rng(seed) {}
  unsigned size() { return 1u << std::uniform_int_distribution<int>(0, 2)(rng); }
  uint32_t value() {
    // Mostly bytes with interesting bit patterns, sometimes anything.
    switch (rng() % 4) {
      case 0: return 0;
      case 1: return 0xFF;
      default: return uint32_t(rng());
    }
  }
  // A port in [base - 2, base + length + 2).
  uint16_t port(uint16_t base, uint16_t length) {
    return uint16_t(base - 2 + rng() % (length + 4));
  }
  bool chance(unsigned one_in) { return rng() % one_in == 0; }
  void access(IoBus& bus, uint16_t base, uint16_t length) {
    uint16_t p = port(base, length);
    unsigned n = size();
    if (rng() & 1) {
      uint32_t v = bus.read(p, n);
      ASSERT_EQ(v & ~all_ones(n), 0u) << "read returned bits above the access size";
    } else {
      bus.write(p, n, value());
    }
  }
  std::mt19937 rng;
};

TEST(DeviceFuzz, PicNeverAnswersOutsideItsVectorRanges) {
  Fuzzer fuzz(0x8259);
  IoBus bus;
  Pic8259Pair pic;
  testing::FakeIrqLine intr;
  pic.connect_cpu(intr);
  ASSERT_TRUE(bus.register_device(0x20, 2, pic.master()));
  ASSERT_TRUE(bus.register_device(0xA0, 2, pic.slave()));
  int acks = 0;
  for (int step = 0; step < kSteps; ++step) {
    switch (fuzz.rng() % 4) {
      case 0:
        fuzz.access(bus, 0x20, 2);
        break;
      case 1:
        fuzz.access(bus, 0xA0, 2);
        break;
      case 2:
        pic.set_irq(fuzz.rng() % 16, fuzz.rng() & 1);
        break;
      default:
        if (pic.interrupt_pending() || fuzz.chance(8)) {
          uint8_t vector = pic.acknowledge();
          uint8_t master = pic.master().state().vector_base, slave = pic.slave().state().vector_base;
          bool in_master = vector >= master && vector < master + 8;
          bool in_slave = vector >= slave && vector < slave + 8;
          ASSERT_TRUE(in_master || in_slave) << "vector " << int(vector) << " at step " << step;
          ++acks;
        }
        break;
    }
    ASSERT_EQ(intr.level, pic.interrupt_pending()) << "INTR wire out of step at step " << step;
    ASSERT_LT(pic.master().state().lowest_priority, 8);
    ASSERT_LT(pic.slave().state().lowest_priority, 8);
    ASSERT_EQ(pic.master().state().vector_base & 7, 0);
  }
  EXPECT_GT(acks, 1000);
}

TEST(DeviceFuzz, PitKeepsDeadlinesAheadOfDeliveredEdges) {
  Fuzzer fuzz(0x8254);
  testing::FakeClock clock;
  testing::FakeIrqLine irq0;
  Pit8254 pit(clock.fn(), irq0);
  IoBus bus;
  ASSERT_TRUE(bus.register_device(0x40, 4, pit));
  ASSERT_TRUE(bus.register_device(0x61, 1, pit.port_b()));
  for (int step = 0; step < kSteps; ++step) {
    switch (fuzz.rng() % 4) {
      case 0:
      case 1:
        fuzz.access(bus, 0x40, 4);
        break;
      case 2:
        fuzz.access(bus, 0x61, 1);
        break;
      default: {
        clock.now += fuzz.rng() % 20'000'000;
        pit.update(clock.now);
        // After an update nothing may be overdue.
        uint64_t deadline = pit.next_deadline_ns();
        ASSERT_TRUE(deadline == kNoDeadline || deadline > clock.now) << "step " << step;
        break;
      }
    }
    for (const auto& ch : pit.state().channels) {
      ASSERT_LE(ch.mode, 5);
      ASSERT_GE(ch.count, 1u);
      ASSERT_LE(ch.count, 0x10000u);
    }
  }
}

TEST(DeviceFuzz, UartFifoNeverExceedsSixteenAndIrqMatchesIir) {
  Fuzzer fuzz(0x16550);
  testing::FakeIrqLine irq;
  uint64_t sent = 0;
  Uart16550 uart([&](uint8_t) { ++sent; }, irq);
  IoBus bus;
  ASSERT_TRUE(bus.register_device(0x3F8, 8, uart));
  for (int step = 0; step < kSteps; ++step) {
    if (fuzz.chance(3)) {
      unsigned space = uart.rx_space();
      bool accepted = uart.receive(uint8_t(fuzz.rng()));
      ASSERT_EQ(accepted, space > 0);
    } else {
      fuzz.access(bus, 0x3F8, 8);
    }
    const auto& s = uart.state();
    ASSERT_LE(s.rx_count, Uart16550::kFifoSize);
    ASSERT_LT(s.rx_head, Uart16550::kFifoSize);
    ASSERT_LE(s.ier, 0x0F);
    ASSERT_EQ(irq.level, uart.irq_level());
    uint8_t iir = uart.interrupt_identification();
    uint8_t id = iir & 0x0F;
    ASSERT_TRUE(id == 0x01 || id == 0x06 || id == 0x04 || id == 0x0C || id == 0x02 || id == 0x00)
        << "IIR " << int(iir);
  }
  EXPECT_EQ(sent, uart.state().bytes_sent);
  EXPECT_GT(sent, 100u);
}

TEST(DeviceFuzz, WholePcMapSurvivesRandomPorts) {
  Fuzzer fuzz(0x0F4);
  IoBus bus;
  uint64_t now = 0;
  PcDevices pc({.now = [&] { return now; }, .com1_output = [](uint8_t) {}});
  ASSERT_TRUE(pc.bind(bus));
  for (int step = 0; step < kSteps; ++step) {
    // Anywhere in the low 1 KiB of ports, where the legacy devices live.
    uint16_t port = uint16_t(fuzz.rng() % 0x400);
    unsigned n = fuzz.size();
    if (fuzz.rng() & 1) {
      ASSERT_EQ(bus.read(port, n) & ~all_ones(n), 0u);
    } else {
      bus.write(port, n, fuzz.value());
    }
    now += fuzz.rng() % 100'000;
    pc.pit.update(now);
    if (pc.pic.interrupt_pending()) pc.pic.acknowledge();
  }
  EXPECT_GT(bus.unknown_reads() + bus.unknown_writes(), 1000u);
}

}  // namespace
}  // namespace bt86::devices
