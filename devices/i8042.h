// Intel 8042 keyboard controller, as the PC AT wires it: data port 0x60,
// status/command port 0x64, keyboard on IRQ 1, auxiliary (mouse) on IRQ 12,
// output-port bit 0 on the CPU reset line. Sources: the IBM PC AT Technical
// Reference "Keyboard Controller" section ([AT-KBC]) and QEMU's
// hw/input/pckbd.c for what modern guests rely on.
//
// No keyboard or mouse is attached (the console is the serial port): bytes
// written to either device go nowhere and nothing answers them, which is
// what Linux's atkbd/psmouse probes see on a machine without those devices.
// What is here is what Linux needs: the controller commands it probes with
// (self test, config byte, port tests, AUX loopback) and the reset pulse
// (command 0xFE) that `reboot` uses, reported through a callback.
#pragma once

#include <array>
#include <cstdint>
#include <functional>

#include "devices/io_bus.h"
#include "devices/irq_line.h"

namespace bt86::devices {

class I8042 {
 public:
  // Status register bits ([AT-KBC] "Status Register").
  static constexpr uint8_t kStatusObf = 0x01, kStatusIbf = 0x02, kStatusSys = 0x04, kStatusCmd = 0x08,
                           kStatusUnlocked = 0x10, kStatusAuxData = 0x20;
  // Controller configuration byte ("command byte") bits.
  static constexpr uint8_t kConfigKbdInt = 0x01, kConfigAuxInt = 0x02, kConfigSys = 0x04,
                           kConfigKbdDisable = 0x10, kConfigAuxDisable = 0x20, kConfigXlate = 0x40;
  static constexpr unsigned kQueueSize = 16;

  struct State {
    uint8_t config = kConfigKbdInt | kConfigSys | kConfigXlate;  // as a BIOS leaves it
    uint8_t output_port = 0x03;  // bit 0: reset line (1 = not in reset), bit 1: A20 enabled
    uint8_t pending = 0;         // controller command waiting for its data byte, or 0
    bool last_was_command = true;
    uint8_t last_output = 0;     // what the data port reads when the queue is empty
    // Output bytes not yet read; bit 8 marks bytes from the aux port.
    std::array<uint16_t, kQueueSize> queue{};
    uint8_t head = 0, count = 0;
    bool reset_requested = false;
  };

  explicit I8042(std::function<void()> on_reset = {}, IrqLine& irq1 = NullIrqLine::instance(),
                 IrqLine& irq12 = NullIrqLine::instance());

  // The two bus devices: data at 0x60, status/command at 0x64.
  class DataPort final : public IoDevice {
   public:
    explicit DataPort(I8042& kbc) : m_kbc(kbc) {}
    std::string_view name() const override { return "i8042 data port"; }
    uint32_t io_read(uint16_t offset, unsigned size) override;
    void io_write(uint16_t offset, unsigned size, uint32_t value) override;

   private:
    I8042& m_kbc;
  };
  class CommandPort final : public IoDevice {
   public:
    explicit CommandPort(I8042& kbc) : m_kbc(kbc) {}
    std::string_view name() const override { return "i8042 command port"; }
    uint32_t io_read(uint16_t offset, unsigned size) override;
    void io_write(uint16_t offset, unsigned size, uint32_t value) override;
    void note(std::string_view what, uint8_t value) { note_unexpected(what, 0, value); }

   private:
    I8042& m_kbc;
  };
  DataPort& data_port() { return m_data; }
  CommandPort& command_port() { return m_command; }

  void connect_irqs(IrqLine& irq1, IrqLine& irq12) {
    m_irq1 = &irq1;
    m_irq12 = &irq12;
    update_irq();
  }

  uint8_t status() const;
  bool reset_requested() const { return m_state.reset_requested; }
  uint64_t unexpected_accesses() const { return m_data.unexpected_accesses() + m_command.unexpected_accesses(); }

  const State& state() const { return m_state; }
  void load_state(const State& state);

 private:
  uint8_t read_data();
  void write_data(uint8_t value);
  void write_command(uint8_t value);
  void push(uint8_t byte, bool aux);
  void request_reset();
  void update_irq();

  State m_state;
  std::function<void()> m_on_reset;
  IrqLine* m_irq1;
  IrqLine* m_irq12;
  DataPort m_data{*this};
  CommandPort m_command{*this};
};

// System control port A (0x92, "fast A20 and reset" on PS/2 and every later
// chipset): bit 0 rising resets the CPU, bit 1 gates A20. bt86 always runs
// with A20 enabled, so bit 1 only reads back.
class PortA final : public IoDevice {
 public:
  struct State {
    uint8_t value = 0x02;  // A20 enabled
    bool reset_requested = false;
  };
  explicit PortA(std::function<void()> on_reset = {}) : m_on_reset(std::move(on_reset)) {}
  std::string_view name() const override { return "port 0x92 (fast A20, reset)"; }
  uint32_t io_read(uint16_t offset, unsigned size) override;
  void io_write(uint16_t offset, unsigned size, uint32_t value) override;
  bool reset_requested() const { return m_state.reset_requested; }
  const State& state() const { return m_state; }
  void load_state(const State& state) { m_state = state; }

 private:
  State m_state;
  std::function<void()> m_on_reset;
};

}  // namespace bt86::devices
