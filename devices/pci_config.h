// PCI configuration mechanism #1 at 0xCF8-0xCFF (PCI Local Bus
// Specification 3.0, 3.2.2.3.2 "Configuration Mechanism #1", cited as
// [PCI]), with one device behind it: an Intel 440FX host bridge at
// 00:00.0 (as QEMU's default PC has), so that Linux's pci_sanity_check finds
// a host bridge and uses type 1 accesses. Every other bus/device/function
// reads all-ones, which is how [PCI] says "no device".
//
// 0xCF9, a byte inside the address register, is the PIIX reset control
// register (Intel 82371AB datasheet, "RC - Reset Control Register"): a write
// setting bit 2 (RST_CPU) resets the machine; Linux's `reboot=pci` uses it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>

#include "devices/io_bus.h"

namespace bt86::devices {

class PciConfig final : public IoDevice {
 public:
  static constexpr uint32_t kEnable = 0x80000000u;
  static constexpr uint16_t kHostBridgeVendor = 0x8086;  // Intel
  static constexpr uint16_t kHostBridgeDevice = 0x1237;  // 82441FX (440FX) PMC

  struct State {
    uint32_t address = 0;                  // CONFIG_ADDRESS as last written (reserved bits clear)
    std::array<uint8_t, 256> bridge{};     // 00:00.0 configuration space
    uint8_t reset_control = 0;             // 0xCF9
    bool reset_requested = false;
  };

  explicit PciConfig(std::function<void()> on_reset = {});

  std::string_view name() const override { return "PCI configuration (mechanism #1)"; }
  unsigned access_width() const override { return 4; }
  uint32_t io_read(uint16_t offset, unsigned size) override;
  void io_write(uint16_t offset, unsigned size, uint32_t value) override;

  bool reset_requested() const { return m_state.reset_requested; }
  const State& state() const { return m_state; }
  void load_state(const State& state) { m_state = state; }

 private:
  // The configuration space of the function CONFIG_ADDRESS selects, or
  // nullptr if there is none.
  std::array<uint8_t, 256>* selected();
  void write_bridge(unsigned reg, uint8_t value);

  State m_state;
  std::function<void()> m_on_reset;
};

}  // namespace bt86::devices
