// The port bus: offsets, byte splitting, unknown ports, registration errors,
// and the PC map.
#include "devices/io_bus.h"

#include <gtest/gtest.h>

#include <vector>

#include "devices/pc_io_map.h"

namespace bt86::devices {
namespace {

struct Access {
  bool write;
  uint16_t offset;
  unsigned size;
  uint32_t value;
  bool operator==(const Access&) const = default;
};

class RecordingDevice : public IoDevice {
 public:
  explicit RecordingDevice(unsigned width = 1) : m_width(width) {}
  std::string_view name() const override { return "recorder"; }
  unsigned access_width() const override { return m_width; }
  uint32_t io_read(uint16_t offset, unsigned size) override {
    log.push_back({false, offset, size, 0});
    return 0xA0u + offset;
  }
  void io_write(uint16_t offset, unsigned size, uint32_t value) override {
    log.push_back({true, offset, size, value});
  }
  std::vector<Access> log;

 private:
  unsigned m_width;
};

TEST(IoBus, UnknownPortsReadAllOnesOfTheAccessSize) {
  IoBus bus;
  EXPECT_EQ(bus.read(0x1234, 1), 0xFFu);
  EXPECT_EQ(bus.read(0x1234, 2), 0xFFFFu);
  EXPECT_EQ(bus.read(0x1234, 4), 0xFFFFFFFFu);
  bus.write(0x1234, 1, 0x55);
  bus.write(0x2000, 4, 0x55);
  EXPECT_EQ(bus.unknown_reads(), 3u);
  EXPECT_EQ(bus.unknown_writes(), 2u);
  EXPECT_EQ(bus.unknown_ports().at(0x1234).reads, 3u);
  EXPECT_EQ(bus.unknown_ports().at(0x1234).writes, 1u);
  EXPECT_EQ(bus.unknown_ports().at(0x2000).writes, 1u);
}

TEST(IoBus, DevicesSeeOffsetsNotPorts) {
  IoBus bus;
  RecordingDevice device;
  ASSERT_TRUE(bus.register_device(0x300, 4, device));
  bus.write(0x302, 1, 0x42);
  EXPECT_EQ(bus.read(0x303, 1), 0xA3u);
  ASSERT_EQ(device.log.size(), 2u);
  EXPECT_EQ(device.log[0], (Access{true, 2, 1, 0x42}));
  EXPECT_EQ(device.log[1], (Access{false, 3, 1, 0}));
  EXPECT_EQ(bus.device_at(0x300), &device);
  EXPECT_EQ(bus.device_at(0x304), nullptr);
}

TEST(IoBus, WideAccessesToByteDevicesAreSplitLikeIsa) {
  IoBus bus;
  RecordingDevice device;
  ASSERT_TRUE(bus.register_device(0x300, 4, device));
  bus.write(0x300, 2, 0xBBAA);
  ASSERT_EQ(device.log.size(), 2u);
  EXPECT_EQ(device.log[0], (Access{true, 0, 1, 0xAA}));
  EXPECT_EQ(device.log[1], (Access{true, 1, 1, 0xBB}));
  // Bytes past the device's range go to the next port's owner (nobody).
  EXPECT_EQ(bus.read(0x302, 4), 0xFFFFA3A2u);
  EXPECT_EQ(bus.unknown_reads(), 2u);
}

TEST(IoBus, WideDevicesGetTheAccessWhole) {
  IoBus bus;
  RecordingDevice device(4);
  ASSERT_TRUE(bus.register_device(0x500, 4, device));
  bus.write(0x500, 4, 0x12345678);
  EXPECT_EQ(bus.read(0x500, 2), 0xA0u);
  ASSERT_EQ(device.log.size(), 2u);
  EXPECT_EQ(device.log[0], (Access{true, 0, 4, 0x12345678}));
  EXPECT_EQ(device.log[1], (Access{false, 0, 2, 0}));
}

TEST(IoBus, RegistrationRejectsOverlapEmptyAndOverflow) {
  IoBus bus;
  RecordingDevice a, b;
  ASSERT_TRUE(bus.register_device(0x300, 8, a));
  Status overlap = bus.register_device(0x307, 2, b);
  ASSERT_FALSE(overlap);
  EXPECT_NE(overlap.error().message.find("0x307"), std::string::npos);
  EXPECT_FALSE(bus.register_device(0x400, 0, b));
  EXPECT_FALSE(bus.register_device(0xFFFF, 2, b));
  EXPECT_TRUE(bus.register_device(0xFFFF, 1, b));
  EXPECT_EQ(bus.device_at(0x308), nullptr);
}

TEST(IoBus, PcMapPlacesEveryDevice) {
  IoBus bus;
  PcDevices pc({});
  ASSERT_TRUE(pc.bind(bus));
  EXPECT_EQ(bus.device_at(0x20), &pc.pic.master());
  EXPECT_EQ(bus.device_at(0x21), &pc.pic.master());
  EXPECT_EQ(bus.device_at(0xA1), &pc.pic.slave());
  EXPECT_EQ(bus.device_at(0x43), &pc.pit);
  EXPECT_EQ(bus.device_at(0x61), &pc.pit.port_b());
  EXPECT_EQ(bus.device_at(0x80), &pc.post);
  EXPECT_EQ(bus.device_at(0xF4), &pc.debug_exit);
  EXPECT_EQ(bus.device_at(0x3F8), &pc.com1);
  EXPECT_EQ(bus.device_at(0x3FF), &pc.com1);
  EXPECT_EQ(bus.device_at(0x2F8), nullptr);  // COM2 is absent: all-ones
  EXPECT_EQ(bus.read(0x2FD, 1), 0xFFu);
  // Binding twice fails cleanly instead of stacking devices.
  EXPECT_FALSE(pc.bind(bus));
}

TEST(IoBus, PcMapWiresPitToIrq0AndCom1ToIrq4) {
  uint64_t now = 0;
  IoBus bus;
  PcDevices pc({.now = [&] { return now; }});
  ASSERT_TRUE(pc.bind(bus));
  // Linux's PIC setup, vectors 0x30 / 0x38, everything unmasked.
  for (auto [port, value] : std::initializer_list<std::pair<uint16_t, uint8_t>>{
           {0x20, 0x11}, {0x21, 0x30}, {0x21, 0x04}, {0x21, 0x01},
           {0xA0, 0x11}, {0xA1, 0x38}, {0xA1, 0x02}, {0xA1, 0x01},
           {0x21, 0x00}, {0xA1, 0x00}}) {
    bus.write(port, 1, value);
  }
  bus.write(0x43, 1, 0x34);
  bus.write(0x40, 1, 11932 & 0xFF);
  bus.write(0x40, 1, 11932 >> 8);
  EXPECT_FALSE(pc.pic.interrupt_pending());
  now = pc.pit.next_deadline_ns();
  pc.pit.update(now);
  ASSERT_TRUE(pc.pic.interrupt_pending());
  EXPECT_EQ(pc.pic.acknowledge(), 0x30);
  bus.write(0x20, 1, 0x20);  // EOI

  bus.write(0x3F9, 1, 0x01);  // IER: received data
  pc.com1.receive('x');
  ASSERT_TRUE(pc.pic.interrupt_pending());
  EXPECT_EQ(pc.pic.acknowledge(), 0x34);
}

}  // namespace
}  // namespace bt86::devices
