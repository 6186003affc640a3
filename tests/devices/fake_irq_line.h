// Test doubles: an IRQ wire that records what a device drives onto it, and
// a clock the test steps by hand.
#pragma once

#include <cstdint>

#include "devices/clock.h"
#include "devices/irq_line.h"

namespace bt86::devices::testing {

class FakeIrqLine final : public IrqLine {
 public:
  void set_level(bool high) override {
    if (high && !level) ++rising_edges;
    if (!high && level) ++falling_edges;
    level = high;
    ++calls;
  }

  bool level = false;
  int rising_edges = 0;
  int falling_edges = 0;
  int calls = 0;
};

struct FakeClock {
  uint64_t now = 0;
  NowFn fn() {
    return [this] { return now; };
  }
};

}  // namespace bt86::devices::testing
