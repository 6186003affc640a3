// The 8254 driven as Linux drives it (arch/x86/kernel/i8253.c and the TSC
// calibration in tsc.c), with a hand-stepped clock and a fake IRQ 0 wire.
#include "devices/pit_8254.h"

#include <gtest/gtest.h>

#include "devices/io_bus.h"
#include "tests/devices/fake_irq_line.h"

namespace bt86::devices {
namespace {

constexpr uint16_t kCh0 = 0x40, kCh2 = 0x42, kMode = 0x43, kPortB = 0x61;
constexpr uint16_t kLatch100Hz = 11932;  // (1193182 + HZ/2) / HZ for HZ = 100

// Nanoseconds for `ticks` PIT clocks, rounded down.
constexpr uint64_t ticks_ns(uint64_t ticks) { return ticks * 1'000'000'000 / Pit8254::kFrequencyHz; }

class PitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock.now = 1'000'000;  // an arbitrary non-zero origin
    ASSERT_TRUE(bus.register_device(0x40, 4, pit));
    ASSERT_TRUE(bus.register_device(0x61, 1, pit.port_b()));
  }
  void out(uint16_t port, uint8_t value) { bus.write(port, 1, value); }
  uint8_t in(uint16_t port) { return uint8_t(bus.read(port, 1)); }
  void program_ch0(uint8_t control, uint16_t count) {
    out(kMode, control);
    out(kCh0, count & 0xFF);
    out(kCh0, count >> 8);
  }
  uint16_t latch_ch0() {
    out(kMode, 0x00);  // counter latch command, counter 0
    uint8_t lo = in(kCh0);
    return uint16_t(lo | (in(kCh0) << 8));
  }
  // Advances the clock to the PIT's next deadline and lets it fire.
  void run_to_deadline() {
    uint64_t deadline = pit.next_deadline_ns();
    ASSERT_NE(deadline, kNoDeadline);
    ASSERT_GE(deadline, clock.now);
    clock.now = deadline;
    pit.update(clock.now);
  }

  testing::FakeClock clock;
  testing::FakeIrqLine irq0;
  Pit8254 pit{clock.fn(), irq0};
  IoBus bus;
};

TEST_F(PitTest, Mode2At100HzTicksOncePerPeriod) {
  uint64_t start = clock.now;
  program_ch0(0x34, kLatch100Hz);  // counter 0, LSB then MSB, mode 2, binary
  EXPECT_EQ(irq0.rising_edges, 0);  // programming alone is not a tick
  uint64_t deadline = pit.next_deadline_ns();
  EXPECT_NEAR(double(deadline - start), 10'000'150.9, 1.0);  // 11932 / 1.193182 MHz
  clock.now = deadline - 1;
  pit.update(clock.now);
  EXPECT_EQ(irq0.rising_edges, 0);
  for (int i = 0; i < 100; ++i) run_to_deadline();
  EXPECT_EQ(irq0.rising_edges, 100);
  EXPECT_NEAR(double(clock.now - start), 100 * 10'000'150.86, 2.0);
  EXPECT_EQ(pit.unexpected_accesses(), 0u);
}

TEST_F(PitTest, MissedPeriodsCoalesceIntoOneEdge) {
  program_ch0(0x34, kLatch100Hz);
  clock.now += 1'000'000'000;  // the host was busy for a second
  pit.update(clock.now);
  EXPECT_EQ(irq0.rising_edges, 1);
  pit.update(clock.now);
  EXPECT_EQ(irq0.rising_edges, 1);
  uint64_t deadline = pit.next_deadline_ns();
  EXPECT_GT(deadline, clock.now);
  EXPECT_LE(deadline, clock.now + 10'000'200);
  run_to_deadline();
  EXPECT_EQ(irq0.rising_edges, 2);
}

TEST_F(PitTest, Mode2CountsDownAndReloads) {
  uint64_t start = clock.now;
  program_ch0(0x34, kLatch100Hz);
  EXPECT_EQ(latch_ch0(), kLatch100Hz);
  // ticks_ns(k) + 1 lies inside tick k.
  clock.now = start + ticks_ns(1000) + 1;
  EXPECT_EQ(latch_ch0(), kLatch100Hz - 1000);
  clock.now = start + ticks_ns(1000 + kLatch100Hz) + 1;
  EXPECT_EQ(latch_ch0(), kLatch100Hz - 1000);
}

TEST_F(PitTest, Mode3SquareWaveIsHighForHalfThePeriod) {
  uint64_t start = clock.now;
  program_ch0(0x36, kLatch100Hz);  // mode 3, as Linux's legacy setup does
  EXPECT_TRUE(pit.output(0, start + ticks_ns(kLatch100Hz / 2 - 10)));
  EXPECT_FALSE(pit.output(0, start + ticks_ns(kLatch100Hz / 2 + 10)));
  EXPECT_TRUE(pit.output(0, start + ticks_ns(kLatch100Hz + 10)));
  for (int i = 0; i < 10; ++i) run_to_deadline();
  EXPECT_EQ(irq0.rising_edges, 10);
  // The wire follows OUT down in the second half-period.
  clock.now += ticks_ns(kLatch100Hz / 2 + 10);
  pit.update(clock.now);
  EXPECT_FALSE(irq0.level);
}

TEST_F(PitTest, Mode0FiresOnceAtTerminalCount) {
  program_ch0(0x30, 1000);  // Linux's one-shot clockevent
  EXPECT_FALSE(irq0.level);
  EXPECT_FALSE(pit.output(0, clock.now));
  run_to_deadline();
  EXPECT_EQ(irq0.rising_edges, 1);
  EXPECT_TRUE(irq0.level);
  EXPECT_EQ(pit.next_deadline_ns(), kNoDeadline);
  clock.now += 1'000'000'000;
  pit.update(clock.now);
  EXPECT_EQ(irq0.rising_edges, 1);
  // Reprogramming re-arms it and drops OUT.
  program_ch0(0x30, 1000);
  EXPECT_FALSE(irq0.level);
  run_to_deadline();
  EXPECT_EQ(irq0.rising_edges, 2);
}

TEST_F(PitTest, LatchFreezesTheCountUntilBothBytesAreRead) {
  uint64_t start = clock.now;
  program_ch0(0x34, 0);  // 0 means 65536
  clock.now = start + ticks_ns(100) + 1;
  out(kMode, 0x00);
  clock.now = start + ticks_ns(5100) + 1;
  EXPECT_EQ(in(kCh0), uint8_t(65536 - 100));
  out(kMode, 0x00);  // a second latch before the read completes is ignored
  EXPECT_EQ(in(kCh0), uint8_t((65536 - 100) >> 8));
  EXPECT_EQ(latch_ch0(), 65536 - 5100);
}

TEST_F(PitTest, LobyteOnlyAndHibyteOnlyAccess) {
  out(kMode, 0x14);  // LSB only, mode 2
  out(kCh0, 200);
  EXPECT_EQ(pit.state().channels[0].count, 200u);
  EXPECT_EQ(in(kCh0), 200);
  EXPECT_EQ(in(kCh0), 200);  // every read is the LSB
  out(kMode, 0x24);  // MSB only, mode 2
  out(kCh0, 0x12);
  EXPECT_EQ(pit.state().channels[0].count, 0x1200u);
  EXPECT_EQ(in(kCh0), 0x12);
}

TEST_F(PitTest, ReadBackLatchesStatus) {
  program_ch0(0x34, kLatch100Hz);
  out(kMode, 0xE2);  // read-back: status only, counter 0
  EXPECT_EQ(in(kCh0), 0x80 | 0x30 | (2 << 1));  // OUT high, LSB/MSB, mode 2
  out(kMode, 0xC2);  // read-back: status and count
  EXPECT_EQ(in(kCh0), 0x80 | 0x30 | (2 << 1));
  EXPECT_EQ(in(kCh0), kLatch100Hz & 0xFF);
  EXPECT_EQ(in(kCh0), kLatch100Hz >> 8);
  out(kMode, 0x30);  // new control word: null count until a count arrives
  out(kMode, 0xE2);
  EXPECT_EQ(in(kCh0) & 0x40, 0x40);
}

TEST_F(PitTest, Channel2CalibrationThroughPort61) {
  // pit_calibrate_tsc(): gate high, speaker off, mode 0, then poll OUT 2.
  out(kPortB, (in(kPortB) & ~0x02) | 0x01);
  out(kMode, 0xB0);
  uint16_t latch = 11932 * 5;  // 50 ms
  out(kCh2, latch & 0xFF);
  out(kCh2, latch >> 8);
  EXPECT_EQ(in(kPortB) & 0x21, 0x01);  // gate on, OUT 2 low
  clock.now += ticks_ns(latch) - 1000;
  EXPECT_EQ(in(kPortB) & 0x20, 0x00);
  clock.now += 2000;
  EXPECT_EQ(in(kPortB) & 0x20, 0x20);
  // Channel 2 never touches IRQ 0.
  pit.update(clock.now);
  EXPECT_EQ(irq0.rising_edges, 0);
}

TEST_F(PitTest, RefreshBitToggles) {
  uint8_t a = in(kPortB) & 0x10;
  uint8_t b = in(kPortB) & 0x10;
  EXPECT_NE(a, b);
}

TEST_F(PitTest, BcdCounting) {
  out(kMode, 0x31);  // mode 0, BCD
  out(kCh0, 0x00);
  out(kCh0, 0x10);  // 1000 decimal
  EXPECT_EQ(pit.state().channels[0].count, 1000u);
  clock.now += ticks_ns(1) + 1;
  EXPECT_EQ(latch_ch0(), 0x0999);
}

TEST_F(PitTest, ControlRegisterReadIsCountedNotFatal) {
  EXPECT_EQ(in(kMode), 0xFF);
  EXPECT_EQ(pit.unexpected_accesses(), 1u);
}

TEST_F(PitTest, NoDeadlineUntilProgrammed) {
  EXPECT_EQ(pit.next_deadline_ns(), kNoDeadline);
  pit.update(clock.now + 1'000'000'000);
  EXPECT_EQ(irq0.rising_edges, 0);
}

}  // namespace
}  // namespace bt86::devices
