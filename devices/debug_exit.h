// Debug-exit port, as QEMU's isa-debug-exit: a write of value v asks bt86 to
// end with exit status (v << 1) | 1, so a test kernel can report success or
// failure with one OUT (status 1 is reserved for "the guest never said").
// The monitor polls exit_requested() after each port write, or installs a
// callback.
#pragma once

#include <cstdint>
#include <functional>

#include "devices/io_bus.h"

namespace bt86::devices {

class DebugExit final : public IoDevice {
 public:
  struct State {
    bool exit_requested = false;
    uint32_t value = 0;        // as written by the guest
    uint32_t exit_status = 0;  // (value << 1) | 1
  };

  explicit DebugExit(std::function<void(uint32_t status)> on_exit = {}) : m_on_exit(std::move(on_exit)) {}

  std::string_view name() const override { return "debug-exit"; }
  // outb, outw and outl all carry the whole value.
  unsigned access_width() const override { return 4; }
  uint32_t io_read(uint16_t offset, unsigned size) override;
  void io_write(uint16_t offset, unsigned size, uint32_t value) override;

  bool exit_requested() const { return m_state.exit_requested; }
  uint32_t exit_status() const { return m_state.exit_status; }

  const State& state() const { return m_state; }
  void load_state(const State& state) { m_state = state; }

 private:
  State m_state;
  std::function<void(uint32_t)> m_on_exit;
};

// Port 0x80, the POST diagnostic port. Linux writes it for I/O delays
// (outb_p), thousands of times during boot; binding it keeps those out of
// the unknown-port counters. Reads see a floating bus.
class PostPort final : public IoDevice {
 public:
  struct State {
    uint8_t last_code = 0;
  };
  std::string_view name() const override { return "POST port"; }
  uint32_t io_read(uint16_t, unsigned size) override { return all_ones(size); }
  void io_write(uint16_t, unsigned, uint32_t value) override { m_state.last_code = uint8_t(value); }
  const State& state() const { return m_state; }
  void load_state(const State& state) { m_state = state; }

 private:
  State m_state;
};

}  // namespace bt86::devices
