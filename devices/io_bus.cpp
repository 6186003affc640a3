// Port-I/O dispatch: see io_bus.h for the rules (offsets, byte splitting,
// all-ones for unassigned ports).
#include "devices/io_bus.h"

#include <spdlog/spdlog.h>

#include <ctime>

#include "base/log.h"
#include "devices/clock.h"

namespace bt86::devices {

spdlog::logger& logger() {
  // bt86::log::get takes a lock; device paths are hot, so look it up once.
  static std::shared_ptr<spdlog::logger> instance = bt86::log::get("devices");
  return *instance;
}

uint64_t monotonic_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

void IoDevice::note_unexpected(std::string_view what, uint16_t offset, uint32_t value) {
  if (m_unexpected++ == 0) {
    logger().warn("{}: unexpected access: {} at offset {:#x} (value {:#x}); further ones are only counted",
                  name(), what, offset, value);
  }
}

IoBus::IoBus() : m_index(std::make_unique<std::array<uint8_t, 0x10000>>()) { m_index->fill(kNoRange); }

Status IoBus::register_device(uint16_t base, uint32_t length, IoDevice& device) {
  if (length == 0 || uint32_t(base) + length > 0x10000) {
    return make_error(fmt::format("I/O range {:#x}+{:#x} for {} is empty or leaves the port space", base,
                                  length, device.name()));
  }
  if (m_ranges.size() >= kNoRange) return make_error("too many I/O devices");
  for (uint32_t port = base; port < base + length; ++port) {
    if (const Range* other = range_at(port)) {
      return make_error(fmt::format("I/O port {:#x} for {} is already taken by {}", port, device.name(),
                                    other->device->name()));
    }
  }
  auto index = uint8_t(m_ranges.size());
  m_ranges.push_back(Range{base, length, &device});
  for (uint32_t port = base; port < base + length; ++port) (*m_index)[port] = index;
  return Ok{};
}

const IoBus::Range* IoBus::range_at(uint32_t port) const {
  uint8_t index = (*m_index)[port & 0xFFFF];
  return index == kNoRange ? nullptr : &m_ranges[index];
}

IoDevice* IoBus::device_at(uint16_t port) const {
  const Range* range = range_at(port);
  return range ? range->device : nullptr;
}

uint32_t IoBus::read(uint16_t port, unsigned size) {
  if (size != 1 && size != 2 && size != 4) size = 1;  // IN/OUT have no other sizes
  const Range* range = range_at(port);
  if (range == nullptr) return read_unknown(port, size);
  uint32_t offset = port - range->base;
  IoDevice& device = *range->device;
  if (size <= device.access_width() && offset + size <= range->length) {
    return device.io_read(uint16_t(offset), size) & all_ones(size);
  }
  // Split into bytes at consecutive ports, little-endian, as the ISA bus does;
  // bytes past the range go to whatever owns the next port.
  uint32_t value = 0;
  for (unsigned i = 0; i < size; ++i) value |= read(uint16_t(port + i), 1) << (8 * i);
  return value;
}

void IoBus::write(uint16_t port, unsigned size, uint32_t value) {
  if (size != 1 && size != 2 && size != 4) size = 1;
  value &= all_ones(size);
  const Range* range = range_at(port);
  if (range == nullptr) return write_unknown(port, size, value);
  uint32_t offset = port - range->base;
  IoDevice& device = *range->device;
  if (size <= device.access_width() && offset + size <= range->length) {
    return device.io_write(uint16_t(offset), size, value);
  }
  for (unsigned i = 0; i < size; ++i) write(uint16_t(port + i), 1, (value >> (8 * i)) & 0xFF);
}

uint32_t IoBus::read_unknown(uint32_t port, unsigned size) {
  auto& stats = m_unknown[uint16_t(port)];
  if (stats.reads++ == 0 && stats.writes == 0) {
    logger().info("read of unassigned I/O port {:#06x} (size {}): returning all-ones; further accesses are counted",
                  port, size);
  }
  ++m_unknown_reads;
  return all_ones(size);
}

void IoBus::write_unknown(uint32_t port, unsigned size, uint32_t value) {
  auto& stats = m_unknown[uint16_t(port)];
  if (stats.writes++ == 0 && stats.reads == 0) {
    logger().info("write of {:#x} to unassigned I/O port {:#06x} (size {}): ignored; further accesses are counted",
                  value, port, size);
  }
  ++m_unknown_writes;
}

}  // namespace bt86::devices
