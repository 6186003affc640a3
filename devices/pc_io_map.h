// The PC's legacy devices and the one table that places them on the port
// bus (pc_io_map.cpp). The monitor creates one PcDevices, binds it to its
// IoBus, connects the PIC's INT output to the vCPU, and calls pit.update()
// when pit.next_deadline_ns() has passed.
#pragma once

#include <cstdint>
#include <functional>

#include "base/result.h"
#include "devices/clock.h"
#include "devices/debug_exit.h"
#include "devices/io_bus.h"
#include "devices/pic_8259.h"
#include "devices/pit_8254.h"
#include "devices/uart_16550.h"

namespace bt86::devices {

struct PcDevicesConfig {
  NowFn now = monotonic_now_ns;
  Uart16550::Sink com1_output;                        // bytes the guest writes to COM1
  std::function<void(uint32_t status)> on_debug_exit;  // optional; or poll debug_exit
};

// IRQ numbers of the PC wiring.
inline constexpr unsigned kIrqPit = 0;
inline constexpr unsigned kIrqCom1 = 4;

class PcDevices {
 public:
  explicit PcDevices(PcDevicesConfig config);
  PcDevices(const PcDevices&) = delete;
  PcDevices& operator=(const PcDevices&) = delete;

  // Registers every device at its PC address. Fails only if the bus already
  // has something in the way.
  Status bind(IoBus& bus);

  Pic8259Pair pic;
  Pit8254 pit;
  Uart16550 com1;
  DebugExit debug_exit;
  PostPort post;
};

}  // namespace bt86::devices
