// PCI configuration mechanism #1 and the 440FX host bridge: see pci_config.h.
#include "devices/pci_config.h"

namespace bt86::devices {
namespace {

// CONFIG_ADDRESS ([PCI] 3.2.2.3.2): bit 31 enable, 30-24 reserved, 23-16
// bus, 15-11 device, 10-8 function, 7-2 register, 1-0 zero.
constexpr uint32_t kAddressMask = 0x80FFFFFCu;
constexpr uint8_t kResetCpu = 0x04;  // 0xCF9 bit 2

// Type 0 header offsets ([PCI] 6.1).
constexpr unsigned kVendorId = 0x00, kDeviceId = 0x02, kCommand = 0x04, kStatus = 0x06, kRevision = 0x08,
                   kClassProg = 0x09, kHeaderType = 0x0E, kCacheLine = 0x0C, kLatency = 0x0D;

}  // namespace

PciConfig::PciConfig(std::function<void()> on_reset) : m_on_reset(std::move(on_reset)) {
  // What QEMU's i440FX presents: vendor/device, I/O + memory + bus master
  // enabled, fast back-to-back and medium DEVSEL in status, revision 2,
  // class 06/00/00 (host bridge), single-function type 0 header.
  std::array<uint8_t, 256>& c = m_state.bridge;
  c[kVendorId] = uint8_t(kHostBridgeVendor);
  c[kVendorId + 1] = uint8_t(kHostBridgeVendor >> 8);
  c[kDeviceId] = uint8_t(kHostBridgeDevice);
  c[kDeviceId + 1] = uint8_t(kHostBridgeDevice >> 8);
  c[kCommand] = 0x07;
  c[kStatus] = 0x80;
  c[kStatus + 1] = 0x02;
  c[kRevision] = 0x02;
  c[kClassProg + 2] = 0x06;  // base class: bridge; subclass 0: host
  c[kHeaderType] = 0x00;
}

std::array<uint8_t, 256>* PciConfig::selected() {
  const uint32_t a = m_state.address;
  if (!(a & kEnable)) return nullptr;
  const uint32_t bus = (a >> 16) & 0xFF, device = (a >> 11) & 0x1F, function = (a >> 8) & 0x7;
  return (bus == 0 && device == 0 && function == 0) ? &m_state.bridge : nullptr;
}

void PciConfig::write_bridge(unsigned reg, uint8_t value) {
  // Only what a driver legitimately writes on a host bridge is kept: the
  // command register's low byte, cache line size and latency timer. Other
  // writes (BAR sizing on a bridge without BARs, status clears) are
  // read-only bits, ignored as the hardware ignores them.
  switch (reg) {
    case kCommand:
      m_state.bridge[reg] = uint8_t(value & 0x47) | 0x07;  // I/O, memory, master stay on
      break;
    case kCacheLine:
    case kLatency:
      m_state.bridge[reg] = value;
      break;
    default:
      break;
  }
}

uint32_t PciConfig::io_read(uint16_t offset, unsigned size) {
  if (offset < 4) {
    if (offset == 0 && size == 4) return m_state.address;
    if (offset == 1 && size == 1) return m_state.reset_control;
    // Byte and word accesses to 0xCF8-0xCFB are not CONFIG_ADDRESS ([PCI]:
    // only dword accesses are). Linux makes them to probe for mechanism #2
    // (0xCF8 = CSE, 0xCFA = forward register), which this chipset lacks.
    return all_ones(size);
  }
  std::array<uint8_t, 256>* space = selected();
  if (space == nullptr) return all_ones(size);
  // CONFIG_DATA: byte lane `offset - 4` of the selected dword.
  const unsigned reg = (m_state.address & 0xFC) + (offset - 4u);
  uint32_t value = 0;
  for (unsigned i = 0; i < size; ++i) value |= uint32_t((*space)[(reg + i) & 0xFF]) << (8 * i);
  return value;
}

void PciConfig::io_write(uint16_t offset, unsigned size, uint32_t value) {
  if (offset < 4) {
    if (offset == 0 && size == 4) {
      m_state.address = value & kAddressMask;
    } else if (offset == 1 && size == 1) {
      // 82371AB "RC": RST_CPU going from 0 to 1 starts the reset.
      const bool start = !(m_state.reset_control & kResetCpu) && (value & kResetCpu);
      m_state.reset_control = uint8_t(value & 0x0E);
      if (start && !m_state.reset_requested) {
        m_state.reset_requested = true;
        if (m_on_reset) m_on_reset();
      }
    }
    return;  // other narrow writes: mechanism #2 probes, ignored (see io_read)
  }
  std::array<uint8_t, 256>* space = selected();
  if (space == nullptr) return;  // no device: the write goes nowhere
  const unsigned reg = (m_state.address & 0xFC) + (offset - 4u);
  for (unsigned i = 0; i < size; ++i) write_bridge((reg + i) & 0xFF, uint8_t(value >> (8 * i)));
}

}  // namespace bt86::devices
