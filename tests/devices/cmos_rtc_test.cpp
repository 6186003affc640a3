// The MC146818 RTC driven through ports 0x70/0x71 as Linux's
// mc146818_get_time / rtc-cmos drive it, with a hand-stepped clock, a fixed
// wall time and a fake IRQ 8 wire.
#include "devices/cmos_rtc.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

#include "devices/io_bus.h"
#include "devices/pc_io_map.h"
#include "tests/devices/fake_irq_line.h"

namespace bt86::devices {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;

// 2024-02-29 13:45:07 UTC, a Thursday (day of week 5 with Sunday = 1).
int64_t leap_day_unix() {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 1;
  tm.tm_mday = 29;
  tm.tm_hour = 13;
  tm.tm_min = 45;
  tm.tm_sec = 7;
  return int64_t(timegm(&tm));
}

class RtcTest : public ::testing::Test {
 protected:
  RtcTest() : rtc(clock.fn(), leap_day_unix() * int64_t(kSecond) + 500'000'000 - 1'000'000, 256u << 20, irq) {}
  void SetUp() override {
    ASSERT_TRUE(bus.register_device(0x70, 2, rtc));
  }
  uint8_t cmos(uint8_t index) {
    bus.write(0x70, 1, index);
    return uint8_t(bus.read(0x71, 1));
  }
  void set_cmos(uint8_t index, uint8_t value) {
    bus.write(0x70, 1, index);
    bus.write(0x71, 1, value);
  }

  testing::FakeClock clock{1'000'000};  // wall time 13:45:07.5 at this instant
  testing::FakeIrqLine irq;
  CmosRtc rtc;
  IoBus bus;
};

TEST_F(RtcTest, ReadsTheTimeInBcd24HourMode) {
  EXPECT_EQ(cmos(0x00), 0x07);
  EXPECT_EQ(cmos(0x02), 0x45);
  EXPECT_EQ(cmos(0x04), 0x13);
  EXPECT_EQ(cmos(0x06), 5);
  EXPECT_EQ(cmos(0x07), 0x29);
  EXPECT_EQ(cmos(0x08), 0x02);
  EXPECT_EQ(cmos(0x09), 0x24);
  EXPECT_EQ(cmos(0x32), 0x20);
  EXPECT_EQ(cmos(0x0A), 0x26);  // 32.768 kHz, 1024 Hz periodic rate, UIP clear mid-second
  EXPECT_EQ(cmos(0x0B), 0x02);
  EXPECT_EQ(cmos(0x0D), 0x80);  // VRT
}

TEST_F(RtcTest, BinaryAnd12HourModes) {
  set_cmos(0x0B, CmosRtc::kRegB24Hour | CmosRtc::kRegBBinary);
  EXPECT_EQ(cmos(0x00), 7);
  EXPECT_EQ(cmos(0x04), 13);
  EXPECT_EQ(cmos(0x09), 24);
  set_cmos(0x0B, 0x00);  // BCD, 12-hour
  EXPECT_EQ(cmos(0x04), 0x81);  // 1 PM
  set_cmos(0x0B, CmosRtc::kRegBBinary);  // binary, 12-hour
  EXPECT_EQ(cmos(0x04), 0x81);
}

TEST_F(RtcTest, TimeAdvancesWithTheClock) {
  clock.now += 60 * kSecond;
  EXPECT_EQ(cmos(0x02), 0x46);
  EXPECT_EQ(cmos(0x00), 0x07);
  clock.now += 11 * 3600 * kSecond;  // past midnight into March 1st
  EXPECT_EQ(cmos(0x04), 0x00);
  EXPECT_EQ(cmos(0x07), 0x01);
  EXPECT_EQ(cmos(0x08), 0x03);
}

TEST_F(RtcTest, UipIsSetOnlyIn244MicrosecondsBeforeTheUpdate) {
  EXPECT_FALSE(cmos(0x0A) & CmosRtc::kRegAUip);
  clock.now += kSecond / 2 - 100'000;  // 100 us before the next second
  EXPECT_TRUE(cmos(0x0A) & CmosRtc::kRegAUip);
  clock.now += 200'000;
  EXPECT_FALSE(cmos(0x0A) & CmosRtc::kRegAUip);
}

TEST_F(RtcTest, SetFreezesTheRegistersAndClearingItSetsTheClock) {
  set_cmos(0x0B, CmosRtc::kRegBSet | CmosRtc::kRegB24Hour | CmosRtc::kRegBUie);
  EXPECT_FALSE(cmos(0x0B) & CmosRtc::kRegBUie) << "SET clears UIE";
  clock.now += 5 * kSecond;
  EXPECT_EQ(cmos(0x00), 0x07) << "no updates while SET";
  set_cmos(0x09, 0x30);  // 2030
  set_cmos(0x04, 0x08);
  set_cmos(0x0B, CmosRtc::kRegB24Hour);
  EXPECT_EQ(cmos(0x09), 0x30);
  EXPECT_EQ(cmos(0x04), 0x08);
  EXPECT_EQ(cmos(0x00), 0x07);
  clock.now += 3 * kSecond;
  EXPECT_EQ(cmos(0x00), 0x10);
  EXPECT_EQ(cmos(0x09), 0x30);
}

TEST_F(RtcTest, PeriodicInterruptAtTheRegisterARate) {
  // Linux's rtc-cmos: rate 6 = 1024 Hz, PIE on, then read C in the handler.
  set_cmos(0x0B, CmosRtc::kRegB24Hour | CmosRtc::kRegBPie);
  EXPECT_EQ(rtc.periodic_period_ns(), 976'562u);
  EXPECT_FALSE(irq.level);
  uint64_t deadline = rtc.next_deadline_ns();
  ASSERT_NE(deadline, kNoDeadline);
  EXPECT_LE(deadline, clock.now + 976'562);
  rtc.update(deadline - 1);
  EXPECT_FALSE(irq.level);
  clock.now = deadline;
  rtc.update(clock.now);
  EXPECT_TRUE(irq.level);
  EXPECT_GT(rtc.next_deadline_ns(), clock.now);
  EXPECT_EQ(cmos(0x0C), 0xC0);  // IRQF | PF
  EXPECT_FALSE(irq.level);
  EXPECT_EQ(cmos(0x0C), 0x00);
  // Ten periods, one rising edge per period when C is read each time.
  for (int i = 0; i < 10; ++i) {
    clock.now = rtc.next_deadline_ns();
    rtc.update(clock.now);
    EXPECT_EQ(cmos(0x0C), 0xC0);
  }
  EXPECT_EQ(irq.rising_edges, 11);
}

TEST_F(RtcTest, PeriodicFlagWithoutPieRaisesNoIrq) {
  EXPECT_EQ(rtc.next_deadline_ns(), kNoDeadline);  // nothing enabled
  clock.now += 10'000'000;
  rtc.update(clock.now);
  EXPECT_FALSE(irq.level);
  EXPECT_EQ(cmos(0x0C), 0x40);  // PF without IRQF
}

TEST_F(RtcTest, UpdateEndedAndAlarmInterrupts) {
  set_cmos(0x0A, 0x20);  // no periodic rate
  set_cmos(0x01, 0x09);  // alarm at hh:45:09 in BCD
  set_cmos(0x03, 0x45);
  set_cmos(0x05, 0xC0);  // any hour
  set_cmos(0x0B, CmosRtc::kRegB24Hour | CmosRtc::kRegBUie | CmosRtc::kRegBAie);
  uint64_t deadline = rtc.next_deadline_ns();
  EXPECT_EQ(deadline, clock.now + kSecond / 2);  // the next second boundary
  clock.now = deadline;
  rtc.update(clock.now);
  EXPECT_TRUE(irq.level);
  EXPECT_EQ(cmos(0x0C), 0x90);  // IRQF | UF, no alarm at :08
  clock.now = rtc.next_deadline_ns();
  rtc.update(clock.now);
  EXPECT_EQ(cmos(0x0C), 0xB0);  // :09 matches the alarm
}

TEST_F(RtcTest, NmiMaskBitAndRegistersCAndDAreReadOnly) {
  bus.write(0x70, 1, 0x8D);
  EXPECT_TRUE(rtc.nmi_disabled());
  EXPECT_EQ(rtc.state().index, 0x0D);
  bus.write(0x71, 1, 0x00);
  EXPECT_EQ(bus.read(0x71, 1), 0x80u);
  bus.write(0x70, 1, 0x0C);
  EXPECT_FALSE(rtc.nmi_disabled());
  bus.write(0x71, 1, 0xFF);
  EXPECT_EQ(rtc.unexpected_accesses(), 2u);
  EXPECT_EQ(bus.read(0x70, 1), 0xFFu);  // the index port is write-only
}

TEST_F(RtcTest, CmosMemorySizesAndRam) {
  EXPECT_EQ(cmos(0x15) | cmos(0x16) << 8, 640);
  EXPECT_EQ(cmos(0x17) | cmos(0x18) << 8, 0xFFFF);  // 255 MiB of extended memory, capped
  EXPECT_EQ(cmos(0x30) | cmos(0x31) << 8, 0xFFFF);
  EXPECT_EQ(cmos(0x34) | cmos(0x35) << 8, (256 - 16) * 16);  // 64 KiB units above 16 MiB
  set_cmos(0x40, 0xA5);
  set_cmos(0x7F, 0x5A);
  EXPECT_EQ(cmos(0x40), 0xA5);
  EXPECT_EQ(cmos(0x7F), 0x5A);
  CmosRtc small(clock.fn(), 0, 32u << 20);
  IoBus bus2;
  ASSERT_TRUE(bus2.register_device(0x70, 2, small));
  bus2.write(0x70, 1, 0x17);
  uint32_t lo = bus2.read(0x71, 1);
  bus2.write(0x70, 1, 0x18);
  EXPECT_EQ(lo | bus2.read(0x71, 1) << 8, 31u * 1024);
}

TEST(RtcHostClock, ReadsTheHostTimeOfDay) {
  IoBus bus;
  PcDevices pc({.com1_output = [](uint8_t) {}});
  ASSERT_TRUE(pc.bind(bus));
  bus.write(0x70, 1, 0x0B);
  bus.write(0x71, 1, CmosRtc::kRegB24Hour | CmosRtc::kRegBBinary);
  auto read = [&](uint8_t index) {
    bus.write(0x70, 1, index);
    return int(bus.read(0x71, 1));
  };
  const time_t host = time(nullptr);
  std::tm tm{};
  tm.tm_sec = read(0);
  tm.tm_min = read(2);
  tm.tm_hour = read(4);
  tm.tm_mday = read(7);
  tm.tm_mon = read(8) - 1;
  tm.tm_year = read(0x32) * 100 + read(9) - 1900;
  EXPECT_LE(std::llabs(int64_t(timegm(&tm)) - int64_t(host)), 2);
}

}  // namespace
}  // namespace bt86::devices
