// PCI configuration mechanism #1 as Linux's arch/x86/pci/direct.c probes and
// uses it: pci_check_type1, pci_sanity_check and conf1 reads of every width.
#include "devices/pci_config.h"

#include <gtest/gtest.h>

#include "devices/pc_io_map.h"

namespace bt86::devices {
namespace {

constexpr uint32_t address(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
  return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xFC);
}

class PciTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(pc.bind(bus)); }
  uint32_t read(unsigned bus_nr, unsigned dev, unsigned fn, unsigned reg, unsigned size) {
    bus.write(0xCF8, 4, address(bus_nr, dev, fn, reg));
    return bus.read(uint16_t(0xCFC + (reg & 3)), size);
  }
  void write(unsigned dev, unsigned reg, unsigned size, uint32_t value) {
    bus.write(0xCF8, 4, address(0, dev, 0, reg));
    bus.write(uint16_t(0xCFC + (reg & 3)), size, value);
  }
  IoBus bus;
  PcDevices pc{{}};
};

TEST_F(PciTest, Type1ProbeReadsBackTheEnableBit) {
  bus.write(0xCFB, 1, 0x01);  // pci_check_type1 starts with this
  const uint32_t saved = bus.read(0xCF8, 4);
  bus.write(0xCF8, 4, 0x80000000);
  EXPECT_EQ(bus.read(0xCF8, 4), 0x80000000u);
  bus.write(0xCF8, 4, saved);
  bus.write(0xCF8, 4, 0xFFFFFFFF);
  EXPECT_EQ(bus.read(0xCF8, 4), 0x80FFFFFCu) << "reserved and low bits read as zero";
  EXPECT_EQ(pc.pci.unexpected_accesses(), 0u);
}

TEST_F(PciTest, HostBridgeAtZeroAndNothingElse) {
  EXPECT_EQ(read(0, 0, 0, 0x00, 4), 0x12378086u);
  EXPECT_EQ(read(0, 0, 0, 0x00, 2), 0x8086u);
  EXPECT_EQ(read(0, 0, 0, 0x02, 2), 0x1237u);
  EXPECT_EQ(read(0, 0, 0, 0x08, 4), 0x06000002u);  // class 06/00/00, revision 2
  EXPECT_EQ(read(0, 0, 0, 0x0E, 1), 0x00u);        // single function, type 0
  EXPECT_EQ(read(0, 1, 0, 0x00, 4), 0xFFFFFFFFu);
  EXPECT_EQ(read(0, 0, 1, 0x00, 2), 0xFFFFu);
  EXPECT_EQ(read(1, 0, 0, 0x00, 1), 0xFFu);
  bus.write(0xCF8, 4, 0x00000000);  // enable bit clear: no cycle
  EXPECT_EQ(bus.read(0xCFC, 4), 0xFFFFFFFFu);
}

TEST_F(PciTest, LinuxSanityCheckFindsTheHostBridge) {
  int host_bridges = 0, devices = 0;
  for (unsigned devfn = 0; devfn < 0x100; ++devfn) {
    if (read(0, devfn >> 3, devfn & 7, 0x00, 2) != 0xFFFF) ++devices;
    if (read(0, devfn >> 3, devfn & 7, 0x0A, 2) == 0x0600) ++host_bridges;
  }
  EXPECT_EQ(devices, 1);
  EXPECT_EQ(host_bridges, 1);
}

TEST_F(PciTest, OnlyWritableRegistersChange) {
  write(0, 0x00, 4, 0);  // vendor/device are read-only
  EXPECT_EQ(read(0, 0, 0, 0x00, 4), 0x12378086u);
  write(0, 0x0D, 1, 0x40);  // latency timer
  EXPECT_EQ(read(0, 0, 0, 0x0D, 1), 0x40u);
  write(0, 0x10, 4, 0xFFFFFFFF);  // BAR sizing: no BARs
  EXPECT_EQ(read(0, 0, 0, 0x10, 4), 0u);
  write(0, 0x04, 2, 0x0000);  // the bridge cannot be switched off
  EXPECT_EQ(read(0, 0, 0, 0x04, 2) & 0x07, 0x07u);
  write(3, 0x00, 4, 0x12345678);  // no device: nothing happens
  EXPECT_EQ(read(0, 3, 0, 0x00, 4), 0xFFFFFFFFu);
}

TEST_F(PciTest, ResetControlRegisterAtCF9) {
  EXPECT_EQ(bus.read(0xCF9, 1), 0x00u);
  bus.write(0xCF9, 1, 0x02);
  EXPECT_FALSE(pc.pci.reset_requested());
  EXPECT_EQ(bus.read(0xCF9, 1), 0x02u);
  bus.write(0xCF9, 1, 0x06);
  EXPECT_TRUE(pc.pci.reset_requested());
  EXPECT_TRUE(pc.reset_requested());
}

}  // namespace
}  // namespace bt86::devices
