// The port-I/O bus: the 64 Ki x86 I/O ports, each either owned by one device
// or unassigned. Devices register a range and only ever see offsets within
// it, never port numbers, so one model can sit at several bases (COM1..COM4)
// and the PC map lives in one table (pc_io_map.cpp).
//
// Width: most legacy chips are 8 bits wide. For those the bus splits a 16- or
// 32-bit access into byte accesses at consecutive ports, as the ISA bus does
// (an `inw` from 0x20 reads 0x20 and 0x21). Devices that declare a wider
// access width get the access whole when it fits inside their range.
//
// A guest can never crash bt86 through this bus: unassigned ports read
// all-ones of the access size and ignore writes; each such access is counted
// per port and the first one on each port is logged.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace spdlog {
class logger;
}

namespace bt86::devices {

// All-ones of an access of `size` bytes (1, 2 or 4).
constexpr uint32_t all_ones(unsigned size) {
  return size >= 4 ? 0xFFFFFFFFu : (1u << (size * 8)) - 1;
}

// The logger every device writes to ("devices").
spdlog::logger& logger();

class IoDevice {
 public:
  virtual ~IoDevice() = default;

  // A short human name for logs ("8259A master").
  virtual std::string_view name() const = 0;

  // 1 for byte-wide chips (the bus splits wider accesses); 4 for devices that
  // want 16- and 32-bit accesses whole.
  virtual unsigned access_width() const { return 1; }

  // `offset` is relative to the registered base; `size` is 1, 2 or 4 and
  // never above access_width(). Reads return the value in the low `size`
  // bytes; the bus masks the rest.
  virtual uint32_t io_read(uint16_t offset, unsigned size) = 0;
  virtual void io_write(uint16_t offset, unsigned size, uint32_t value) = 0;

  // Accesses the device accepted but that a correct driver does not make
  // (writes to read-only registers, unsupported commands, ...).
  uint64_t unexpected_accesses() const { return m_unexpected; }

 protected:
  // Counts one unexpected access; logs only the first one per device so that
  // a guest looping on a bad access cannot flood the log.
  void note_unexpected(std::string_view what, uint16_t offset, uint32_t value);

 private:
  uint64_t m_unexpected = 0;
};

struct UnknownPortStats {
  uint64_t reads = 0;
  uint64_t writes = 0;
};

class IoBus {
 public:
  IoBus();

  // Gives ports [base, base + length) to `device` (not owned; must outlive
  // the bus). Fails if the range is empty, leaves the port space or overlaps
  // a range already registered.
  Status register_device(uint16_t base, uint32_t length, IoDevice& device);

  // A guest IN / OUT of `size` bytes (1, 2 or 4) at `port`.
  uint32_t read(uint16_t port, unsigned size);
  void write(uint16_t port, unsigned size, uint32_t value);

  // The device owning `port`, or nullptr.
  IoDevice* device_at(uint16_t port) const;

  // Accesses to unassigned ports, by port (for --stats and tests).
  const std::map<uint16_t, UnknownPortStats>& unknown_ports() const { return m_unknown; }
  uint64_t unknown_reads() const { return m_unknown_reads; }
  uint64_t unknown_writes() const { return m_unknown_writes; }

 private:
  struct Range {
    uint16_t base;
    uint32_t length;
    IoDevice* device;
  };
  static constexpr uint8_t kNoRange = 0xFF;

  const Range* range_at(uint32_t port) const;
  uint32_t read_unknown(uint32_t port, unsigned size);
  void write_unknown(uint32_t port, unsigned size, uint32_t value);

  std::vector<Range> m_ranges;
  // Port -> index into m_ranges, so dispatch is one load (Linux hits 0x80
  // and the PIT often enough that a search would show).
  std::unique_ptr<std::array<uint8_t, 0x10000>> m_index;
  std::map<uint16_t, UnknownPortStats> m_unknown;
  uint64_t m_unknown_reads = 0;
  uint64_t m_unknown_writes = 0;
};

}  // namespace bt86::devices
