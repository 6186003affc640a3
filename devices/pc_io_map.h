// The PC's legacy devices and the one table that places them on the port
// bus (pc_io_map.cpp). The monitor creates one PcDevices, binds it to its
// IoBus, connects the PIC's INT output to the vCPU, and calls update(now)
// when next_deadline_ns() has passed.
#pragma once

#include <cstdint>
#include <algorithm>
#include <functional>
#include <optional>

#include "base/result.h"
#include "devices/clock.h"
#include "devices/cmos_rtc.h"
#include "devices/debug_exit.h"
#include "devices/i8042.h"
#include "devices/io_bus.h"
#include "devices/pci_config.h"
#include "devices/pic_8259.h"
#include "devices/pit_8254.h"
#include "devices/uart_16550.h"

namespace bt86::devices {

struct PcDevicesConfig {
  NowFn now = monotonic_now_ns;
  Uart16550::Sink com1_output;                        // bytes the guest writes to COM1
  std::function<void(uint32_t status)> on_debug_exit;  // optional; or poll debug_exit
  // The guest asked for a CPU reset (i8042 command 0xFE, port 0x92 bit 0,
  // 0xCF9 RST_CPU): Linux's `reboot`. Optional; or poll reset_requested().
  std::function<void()> on_reset;
  // Guest RAM size, for the CMOS memory-size bytes.
  uint64_t ram_bytes = 256u << 20;
  // Wall time (ns since 1970, UTC) minus now(); nullopt: the host's clock.
  std::optional<int64_t> rtc_unix_minus_now_ns;
};

// IRQ numbers of the PC wiring.
inline constexpr unsigned kIrqPit = 0;
inline constexpr unsigned kIrqKeyboard = 1;
inline constexpr unsigned kIrqCom1 = 4;
inline constexpr unsigned kIrqRtc = 8;
inline constexpr unsigned kIrqMouse = 12;

class PcDevices {
 public:
  explicit PcDevices(PcDevicesConfig config);
  PcDevices(const PcDevices&) = delete;
  PcDevices& operator=(const PcDevices&) = delete;

  // Registers every device at its PC address. Fails only if the bus already
  // has something in the way.
  Status bind(IoBus& bus);

  // Raises the timer interrupts that are due (PIT IRQ 0, RTC IRQ 8).
  void update(uint64_t now_ns) {
    pit.update(now_ns);
    rtc.update(now_ns);
  }
  // The earliest time update() has something to do, or kNoDeadline.
  uint64_t next_deadline_ns() const { return std::min(pit.next_deadline_ns(), rtc.next_deadline_ns()); }
  // Any of the reset paths was taken.
  bool reset_requested() const {
    return kbc.reset_requested() || port_a.reset_requested() || pci.reset_requested();
  }

  Pic8259Pair pic;
  Pit8254 pit;
  Uart16550 com1;
  DebugExit debug_exit;
  PostPort post;
  CmosRtc rtc;
  I8042 kbc;
  PortA port_a;
  PciConfig pci;
};

}  // namespace bt86::devices
