// The i8042 and port 0x92 driven as Linux drives them: the controller probe
// of drivers/input/serio/i8042.c and the reboot paths of
// arch/x86/kernel/reboot.c (kb_wait, then outb(0xfe, 0x64)).
#include "devices/i8042.h"

#include <gtest/gtest.h>

#include "devices/pc_io_map.h"
#include "tests/devices/fake_irq_line.h"

namespace bt86::devices {
namespace {

class KbcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bus.register_device(0x60, 1, kbc.data_port()));
    ASSERT_TRUE(bus.register_device(0x64, 1, kbc.command_port()));
  }
  uint8_t status() { return uint8_t(bus.read(0x64, 1)); }
  void command(uint8_t cmd) { bus.write(0x64, 1, cmd); }
  uint8_t data() { return uint8_t(bus.read(0x60, 1)); }
  void send(uint8_t value) { bus.write(0x60, 1, value); }

  int resets = 0;
  testing::FakeIrqLine irq1, irq12;
  I8042 kbc{[this] { ++resets; }, irq1, irq12};
  IoBus bus;
};

TEST_F(KbcTest, SelfTestAnswers55AndRaisesIrq1) {
  EXPECT_EQ(status() & I8042::kStatusObf, 0);
  command(0xAA);
  EXPECT_TRUE(status() & I8042::kStatusObf);
  EXPECT_TRUE(irq1.level);  // config byte has INT (bit 0) set, as a BIOS leaves it
  EXPECT_EQ(data(), 0x55);
  EXPECT_FALSE(irq1.level);
  EXPECT_EQ(status() & I8042::kStatusObf, 0);
  EXPECT_TRUE(status() & I8042::kStatusSys);
}

TEST_F(KbcTest, ConfigByteReadAndWrite) {
  command(0x20);
  EXPECT_EQ(data(), 0x45);
  command(0x60);
  EXPECT_TRUE(status() & I8042::kStatusCmd);
  send(0x44);  // interrupts off
  EXPECT_FALSE(status() & I8042::kStatusCmd);
  command(0x20);
  EXPECT_FALSE(irq1.level) << "INT cleared: the reply is polled";
  EXPECT_EQ(data(), 0x44);
}

TEST_F(KbcTest, InputBufferIsNeverFullSoKbWaitFallsThrough) {
  for (int i = 0; i < 100; ++i) {
    command(0xFF);  // pulse nothing
    EXPECT_EQ(status() & I8042::kStatusIbf, 0);
  }
  EXPECT_EQ(resets, 0);
}

TEST_F(KbcTest, CommandFEPulsesResetOnce) {
  command(0xFE);
  EXPECT_EQ(resets, 1);
  EXPECT_TRUE(kbc.reset_requested());
  command(0xFE);  // Linux tries ten times; the machine has stopped after the first
  EXPECT_EQ(resets, 1);
}

TEST_F(KbcTest, OutputPortWriteWithResetLineLowResets) {
  command(0xD0);
  EXPECT_EQ(data(), 0x03);
  command(0xD1);
  send(0x03);
  EXPECT_EQ(resets, 0);
  command(0xD1);
  send(0x02);
  EXPECT_EQ(resets, 1);
}

TEST_F(KbcTest, AuxLoopbackComesBackAsAuxDataOnIrq12) {
  command(0x60);
  send(0x47);  // KBDINT | AUXINT | SYS | XLATE
  command(0xD3);
  send(0x5A);
  EXPECT_TRUE(status() & I8042::kStatusAuxData);
  EXPECT_TRUE(irq12.level);
  EXPECT_FALSE(irq1.level);
  EXPECT_EQ(data(), 0x5A);
  EXPECT_FALSE(irq12.level);
}

TEST_F(KbcTest, AuxPortCannotBeEnabledSoLinuxSkipsIt) {
  command(0xA7);
  command(0x20);
  EXPECT_TRUE(data() & I8042::kConfigAuxDisable);
  command(0xA8);
  command(0x20);
  EXPECT_TRUE(data() & I8042::kConfigAuxDisable);
}

TEST_F(KbcTest, KeyboardBytesTimeOutWithFE) {
  send(0xF2);  // atkbd's GET ID, to a keyboard that is not there
  EXPECT_TRUE(status() & 0x40);  // timeout
  EXPECT_EQ(data(), 0xFE);
  EXPECT_EQ(status() & 0x41, 0);
}

TEST_F(KbcTest, UnsupportedCommandsAreCounted) {
  command(0xC0);
  EXPECT_EQ(kbc.unexpected_accesses(), 1u);
  EXPECT_EQ(status() & I8042::kStatusObf, 0);
}

TEST(PortA, BitZeroRisingEdgeResetsAndA20ReadsEnabled) {
  int resets = 0;
  PortA port([&] { ++resets; });
  EXPECT_EQ(port.io_read(0, 1), 0x02u);
  port.io_write(0, 1, 0x00);
  EXPECT_EQ(port.io_read(0, 1), 0x02u) << "A20 cannot be turned off";
  EXPECT_EQ(resets, 0);
  port.io_write(0, 1, 0x03);
  EXPECT_EQ(resets, 1);
  EXPECT_TRUE(port.reset_requested());
}

TEST(PcReset, EveryResetPathReachesTheCallback) {
  for (int path = 0; path < 3; ++path) {
    IoBus bus;
    int resets = 0;
    PcDevices pc({.on_reset = [&] { ++resets; }});
    ASSERT_TRUE(pc.bind(bus));
    EXPECT_FALSE(pc.reset_requested());
    switch (path) {
      case 0: bus.write(0x64, 1, 0xFE); break;
      case 1: bus.write(0x92, 1, 0x01); break;
      default:
        bus.write(0xCF9, 1, 0x02);
        bus.write(0xCF9, 1, 0x06);
        break;
    }
    EXPECT_EQ(resets, 1) << "path " << path;
    EXPECT_TRUE(pc.reset_requested());
    EXPECT_EQ(bus.unknown_reads() + bus.unknown_writes(), 0u);
  }
}

}  // namespace
}  // namespace bt86::devices
