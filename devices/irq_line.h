// IrqLine: one interrupt request wire between a device and an interrupt
// controller (or between the master PIC and the CPU's INTR pin). Devices only
// ever drive a level; edge detection belongs to the receiver (the 8259A
// latches rising edges in edge-triggered mode). Tests plug in a fake line
// that records what the device did.
#pragma once

namespace bt86::devices {

class IrqLine {
 public:
  virtual ~IrqLine() = default;

  // Drives the wire to `high`. Repeating the current level is harmless.
  virtual void set_level(bool high) = 0;

  // A rising then falling edge: what an edge-triggered receiver sees as one
  // request, e.g. an interval timer tick.
  void pulse() {
    set_level(true);
    set_level(false);
  }
};

// A wire connected to nothing; devices use it until they are wired up, so
// they never have to check for a null line.
class NullIrqLine final : public IrqLine {
 public:
  void set_level(bool) override {}
  static NullIrqLine& instance() {
    static NullIrqLine line;
    return line;
  }
};

}  // namespace bt86::devices
