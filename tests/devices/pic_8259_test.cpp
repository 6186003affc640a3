// The 8259A pair driven through the bus the way Linux's arch/x86/kernel/
// i8259.c drives it, with a fake CPU INTR wire.
#include "devices/pic_8259.h"

#include <gtest/gtest.h>

#include "devices/io_bus.h"
#include "tests/devices/fake_irq_line.h"

namespace bt86::devices {
namespace {

constexpr uint16_t kMasterCmd = 0x20, kMasterData = 0x21, kSlaveCmd = 0xA0, kSlaveData = 0xA1;

class PicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bus.register_device(0x20, 2, pic.master()));
    ASSERT_TRUE(bus.register_device(0xA0, 2, pic.slave()));
    pic.connect_cpu(intr);
  }

  // init_8259A(auto_eoi) from Linux, with its probe of the mask register.
  void linux_init(bool auto_eoi = false) {
    out(kMasterData, 0xFF);
    out(kSlaveData, 0xFF);
    out(kMasterCmd, 0x11);                      // ICW1: edge, cascade, ICW4 follows
    out(kMasterData, 0x30);                     // ICW2: IRQ 0-7 -> vectors 0x30-0x37
    out(kMasterData, 1 << 2);                   // ICW3: slave on IR2
    out(kMasterData, auto_eoi ? 0x03 : 0x01);   // ICW4: 8086 mode (+ AEOI)
    out(kSlaveCmd, 0x11);
    out(kSlaveData, 0x38);                      // IRQ 8-15 -> vectors 0x38-0x3F
    out(kSlaveData, 2);                         // ICW3: slave ID 2
    out(kSlaveData, 0x01);
    out(kMasterData, 0x00);                     // OCW1: unmask everything
    out(kSlaveData, 0x00);
  }

  void out(uint16_t port, uint8_t value) { bus.write(port, 1, value); }
  uint8_t in(uint16_t port) { return uint8_t(bus.read(port, 1)); }
  uint8_t master_isr() {
    out(kMasterCmd, 0x0B);  // OCW3: read ISR
    uint8_t isr = in(kMasterCmd);
    out(kMasterCmd, 0x0A);  // back to IRR
    return isr;
  }
  uint8_t slave_isr() {
    out(kSlaveCmd, 0x0B);
    uint8_t isr = in(kSlaveCmd);
    out(kSlaveCmd, 0x0A);
    return isr;
  }

  IoBus bus;
  Pic8259Pair pic;
  testing::FakeIrqLine intr;
};

TEST_F(PicTest, LinuxProbeReadsBackTheMask) {
  out(kMasterData, 0xFB);
  EXPECT_EQ(in(kMasterData), 0xFB);
  linux_init();
  EXPECT_EQ(pic.master().state().vector_base, 0x30);
  EXPECT_EQ(pic.slave().state().vector_base, 0x38);
  EXPECT_TRUE(pic.master().state().initialized);
  EXPECT_EQ(in(kMasterData), 0x00);
  EXPECT_EQ(pic.master().unexpected_accesses(), 0u);
}

TEST_F(PicTest, TimerEdgeDeliversVectorAndStaysInServiceUntilEoi) {
  linux_init();
  pic.line(0).pulse();
  EXPECT_TRUE(intr.level);
  ASSERT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(in(kMasterCmd), 0x01);  // IRR shows the request
  EXPECT_EQ(pic.acknowledge(), 0x30);
  EXPECT_FALSE(intr.level);
  EXPECT_EQ(master_isr(), 0x01);
  // A lower-priority request waits for the EOI.
  pic.line(1).pulse();
  EXPECT_FALSE(pic.interrupt_pending());
  out(kMasterCmd, 0x60);  // specific EOI for IR0, as Linux's mask_and_ack does
  EXPECT_EQ(master_isr(), 0x00);
  ASSERT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x31);
  out(kMasterCmd, 0x20);  // non-specific EOI
  EXPECT_EQ(master_isr(), 0x00);
  EXPECT_FALSE(pic.interrupt_pending());
}

TEST_F(PicTest, HigherPriorityNestsOverLowerInService) {
  linux_init();
  pic.line(4).pulse();
  EXPECT_EQ(pic.acknowledge(), 0x34);
  pic.line(0).pulse();
  ASSERT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x30);
  EXPECT_EQ(master_isr(), 0x11);
  out(kMasterCmd, 0x20);  // non-specific EOI clears the highest: IR0
  EXPECT_EQ(master_isr(), 0x10);
}

TEST_F(PicTest, MaskedRequestWaitsInIrr) {
  linux_init();
  out(kMasterData, 0x08);
  pic.line(3).pulse();
  EXPECT_FALSE(pic.interrupt_pending());
  EXPECT_EQ(in(kMasterCmd), 0x08);
  out(kMasterData, 0x00);
  ASSERT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x33);
}

TEST_F(PicTest, EdgeModeNeedsANewRisingEdge) {
  linux_init();
  pic.line(5).set_level(true);
  EXPECT_EQ(pic.acknowledge(), 0x35);
  out(kMasterCmd, 0x65);
  pic.line(5).set_level(true);  // still high: no new request
  EXPECT_FALSE(pic.interrupt_pending());
  pic.line(5).set_level(false);
  pic.line(5).set_level(true);
  EXPECT_TRUE(pic.interrupt_pending());
}

TEST_F(PicTest, SlaveIrqCascadesThroughMasterIr2) {
  linux_init();
  pic.line(12).pulse();
  ASSERT_TRUE(pic.interrupt_pending());
  EXPECT_TRUE(intr.level);
  EXPECT_EQ(pic.acknowledge(), 0x3C);
  EXPECT_EQ(master_isr(), 0x04);
  EXPECT_EQ(slave_isr(), 0x10);
  // Another slave IRQ of lower priority waits for the slave's EOI.
  pic.line(14).pulse();
  EXPECT_FALSE(pic.interrupt_pending());
  out(kSlaveCmd, 0x60 + 4);  // Linux: specific EOI on the slave, then IR2 on the master
  out(kMasterCmd, 0x60 + 2);
  ASSERT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x3E);
}

TEST_F(PicTest, SlaveMaskBlocksCascade) {
  linux_init();
  out(kSlaveData, 0x01);
  pic.line(8).pulse();
  EXPECT_FALSE(pic.interrupt_pending());
  out(kSlaveData, 0x00);
  EXPECT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x38);
}

TEST_F(PicTest, SpuriousIrq7WhenTheLevelRequestVanishes) {
  // Level-triggered (LTIM): the request follows the input, so dropping the
  // line before INTA leaves nothing and the chip answers IR7 without setting
  // its ISR bit ([8259A] "Interrupt Sequence").
  out(kMasterCmd, 0x19);
  out(kMasterData, 0x30);
  out(kMasterData, 0x04);
  out(kMasterData, 0x01);
  pic.line(3).set_level(true);
  EXPECT_TRUE(pic.interrupt_pending());
  pic.line(3).set_level(false);
  EXPECT_FALSE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x37);
  EXPECT_EQ(master_isr(), 0x00);
}

TEST_F(PicTest, SpuriousIrq15WhenTheSlaveRequestVanishes) {
  linux_init();
  out(kSlaveCmd, 0x19);  // slave level-triggered
  out(kSlaveData, 0x38);
  out(kSlaveData, 0x02);
  out(kSlaveData, 0x01);
  pic.line(10).set_level(true);
  ASSERT_TRUE(pic.interrupt_pending());  // master latched the IR2 edge
  pic.line(10).set_level(false);
  EXPECT_EQ(pic.acknowledge(), 0x3F);
  EXPECT_EQ(slave_isr(), 0x00);
  EXPECT_EQ(master_isr(), 0x04);  // the master still thinks IR2 is in service
}

TEST_F(PicTest, AutoEoiLeavesNothingInService) {
  linux_init(/*auto_eoi=*/true);
  pic.line(6).pulse();
  EXPECT_EQ(pic.acknowledge(), 0x36);
  EXPECT_EQ(master_isr(), 0x00);
  pic.line(7).pulse();
  EXPECT_TRUE(pic.interrupt_pending());
}

TEST_F(PicTest, SetPriorityRotatesTheOrder) {
  linux_init();
  out(kMasterCmd, 0xC0 | 3);  // OCW2 set priority: IR3 lowest, IR4 highest
  pic.line(0).pulse();
  pic.line(5).pulse();
  EXPECT_EQ(pic.acknowledge(), 0x35);
  out(kMasterCmd, 0xA0);  // rotate on non-specific EOI: IR5 becomes lowest
  EXPECT_EQ(pic.master().state().lowest_priority, 5);
  EXPECT_EQ(pic.acknowledge(), 0x30);
}

TEST_F(PicTest, PollCommandActsAsAcknowledge) {
  linux_init();
  out(kMasterCmd, 0x0C);  // OCW3 poll
  EXPECT_EQ(in(kMasterCmd), 0x00);
  pic.line(1).pulse();
  out(kMasterCmd, 0x0C);
  EXPECT_EQ(in(kMasterCmd), 0x81);
  EXPECT_EQ(master_isr(), 0x02);
  EXPECT_FALSE(pic.interrupt_pending());
}

TEST_F(PicTest, SpecialMaskModeLetsLowerPrioritiesThrough) {
  linux_init();
  pic.line(0).pulse();
  EXPECT_EQ(pic.acknowledge(), 0x30);
  out(kMasterData, 0x01);  // mask the in-service IR0
  out(kMasterCmd, 0x68);   // OCW3: set special mask mode
  pic.line(2 + 1).pulse();
  ASSERT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x33);
}

TEST_F(PicTest, ReinitialisationClearsRequestsAndMasks) {
  linux_init();
  out(kMasterData, 0xFF);
  pic.line(1).pulse();
  linux_init();
  EXPECT_EQ(in(kMasterCmd), 0x00);
  EXPECT_FALSE(pic.interrupt_pending());
}

TEST_F(PicTest, StateRoundTrips) {
  linux_init();
  pic.line(4).pulse();
  Pic8259::State master = pic.master().state();
  Pic8259Pair other;
  other.master().load_state(master);
  other.slave().load_state(pic.slave().state());
  ASSERT_TRUE(other.interrupt_pending());
  EXPECT_EQ(other.acknowledge(), 0x34);
}

}  // namespace
}  // namespace bt86::devices
