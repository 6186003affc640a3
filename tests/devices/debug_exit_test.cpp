// The debug-exit port at 0xF4 and the POST port, through the PC map.
#include "devices/debug_exit.h"

#include <gtest/gtest.h>

#include "devices/pc_io_map.h"

namespace bt86::devices {
namespace {

TEST(DebugExit, OutbRequestsStatusTwiceValuePlusOne) {
  IoBus bus;
  uint32_t reported = 0;
  PcDevices pc({.on_debug_exit = [&](uint32_t status) { reported = status; }});
  ASSERT_TRUE(pc.bind(bus));
  EXPECT_FALSE(pc.debug_exit.exit_requested());
  bus.write(0xF4, 1, 0x10);
  EXPECT_TRUE(pc.debug_exit.exit_requested());
  EXPECT_EQ(pc.debug_exit.exit_status(), 0x21u);
  EXPECT_EQ(reported, 0x21u);
  bus.write(0xF4, 1, 0x00);  // the first request wins
  EXPECT_EQ(pc.debug_exit.exit_status(), 0x21u);
}

TEST(DebugExit, OutlCarriesTheWholeValue) {
  DebugExit device;
  IoBus bus;
  ASSERT_TRUE(bus.register_device(0xF4, 4, device));
  bus.write(0xF4, 4, 0x1234);
  EXPECT_EQ(device.state().value, 0x1234u);
  EXPECT_EQ(device.exit_status(), 0x2469u);
}

TEST(DebugExit, ZeroMeansStatusOne) {
  DebugExit device;
  device.io_write(0, 1, 0);
  EXPECT_EQ(device.exit_status(), 1u);
}

TEST(DebugExit, ReadsAndOtherOffsetsAreCountedNotExits) {
  DebugExit device;
  IoBus bus;
  ASSERT_TRUE(bus.register_device(0xF4, 4, device));
  EXPECT_EQ(bus.read(0xF4, 1), 0xFFu);
  bus.write(0xF6, 1, 3);
  EXPECT_FALSE(device.exit_requested());
  EXPECT_EQ(device.unexpected_accesses(), 2u);
}

TEST(PostPort, SwallowsDelayWrites) {
  IoBus bus;
  PcDevices pc({});
  ASSERT_TRUE(pc.bind(bus));
  for (int i = 0; i < 1000; ++i) bus.write(0x80, 1, uint8_t(i));
  EXPECT_EQ(pc.post.state().last_code, uint8_t(999));
  EXPECT_EQ(bus.read(0x80, 1), 0xFFu);
  EXPECT_EQ(bus.unknown_writes(), 0u);
}

}  // namespace
}  // namespace bt86::devices
