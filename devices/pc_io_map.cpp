// The PC legacy port map, in one place. Ports not listed here read all-ones
// and ignore writes (io_bus.cpp). DESIGN.md §4 lists what is still to come:
// the local APIC and IO-APIC (MMIO).
#include "devices/pc_io_map.h"

namespace bt86::devices {

PcDevices::PcDevices(PcDevicesConfig config)
    : pit(config.now, pic.line(kIrqPit)),
      com1(std::move(config.com1_output), pic.line(kIrqCom1)),
      debug_exit(std::move(config.on_debug_exit)),
      rtc(config.now, config.rtc_unix_minus_now_ns, config.ram_bytes, pic.line(kIrqRtc)),
      kbc(config.on_reset, pic.line(kIrqKeyboard), pic.line(kIrqMouse)),
      port_a(config.on_reset),
      pci(config.on_reset) {}

Status PcDevices::bind(IoBus& bus) {
  struct Binding {
    uint16_t base;
    uint16_t length;
    IoDevice* device;
  };
  const Binding table[] = {
      {0x020, 2, &pic.master()},  // 8259A master: command (A0=0), data (A0=1); IRQ 0-7
      {0x040, 4, &pit},           // 8254: counters 0-2, control word; counter 0 -> IRQ 0
      {0x060, 1, &kbc.data_port()},     // i8042 data; keyboard IRQ 1, aux IRQ 12
      {0x061, 1, &pit.port_b()},  // system control port B: gate 2, speaker, OUT 2
      {0x064, 1, &kbc.command_port()},  // i8042 status / command (0xFE: reset)
      {0x070, 2, &rtc},           // MC146818: index (bit 7 NMI mask), data; IRQ 8
      {0x080, 1, &post},          // POST codes; Linux's outb_p delay port
      {0x092, 1, &port_a},        // system control port A: fast A20, reset
      {0x0A0, 2, &pic.slave()},   // 8259A slave, cascaded on master IR2; IRQ 8-15
      {0x0F4, 4, &debug_exit},    // isa-debug-exit,iobase=0xf4,iosize=4 (value at 0xF4)
      {0x3F8, 8, &com1},          // COM1 16550A -> IRQ 4
      {0xCF8, 8, &pci},           // PCI CONFIG_ADDRESS / CONFIG_DATA; 0xCF9 reset control
  };
  for (const Binding& b : table) {
    if (Status status = bus.register_device(b.base, b.length, *b.device); !status) return status;
  }
  return Ok{};
}

}  // namespace bt86::devices
