// National Semiconductor PC16550D UART, as COM1 (0x3F8, IRQ 4). Source for
// behaviour: the PC16550D datasheet (National/TI, SNLS378), cited as
// [16550] with the section or register name. The shape follows kvmtool's
// hw/serial.c and QEMU's hw/char/serial.c: one state struct, one
// update_irq(), one switch for reads and one for writes.
//
// Transmit is instantaneous: a THR write hands the byte to the sink and the
// THR is empty again at once. Receive: the host pushes bytes with receive()
// into the 16-byte RX FIFO (or the single RBR when FIFOs are off).
#pragma once

#include <array>
#include <cstdint>
#include <functional>

#include "devices/io_bus.h"
#include "devices/irq_line.h"

namespace bt86::devices {

class Uart16550 final : public IoDevice {
 public:
  static constexpr unsigned kFifoSize = 16;

  using Sink = std::function<void(uint8_t)>;

  struct State {
    std::array<uint8_t, kFifoSize> rx_fifo{};
    uint8_t rx_head = 0;   // index of the oldest byte
    uint8_t rx_count = 0;  // bytes in the FIFO (<= 1 with FIFOs off)
    uint8_t ier = 0;
    uint8_t fcr = 0;  // only bit 0 (enable) and bits 7-6 (trigger) are kept
    uint8_t lcr = 0x03;  // 8N1
    uint8_t mcr = 0;
    uint8_t lsr = 0x60;  // THRE | TEMT
    uint8_t msr = 0xB0;  // DCD | DSR | CTS: a terminal is connected
    uint8_t scr = 0;
    uint8_t dll = 0x0C;  // 9600 baud until the guest says otherwise
    uint8_t dlm = 0;
    bool thr_interrupt = false;  // THRE interrupt pending (cleared by IIR read / THR write)
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    uint64_t overruns = 0;
  };

  explicit Uart16550(Sink sink = {}, IrqLine& irq = NullIrqLine::instance());

  std::string_view name() const override { return "16550A UART"; }
  uint32_t io_read(uint16_t offset, unsigned size) override;
  void io_write(uint16_t offset, unsigned size, uint32_t value) override;

  void connect_irq(IrqLine& irq) {
    m_irq = &irq;
    update_irq();
  }
  void set_sink(Sink sink) { m_sink = std::move(sink); }

  // Host side: one byte from the terminal. Returns false (and counts an
  // overrun, as the chip's OE bit does) if there was no room; callers that
  // must not lose input check rx_space() first.
  bool receive(uint8_t byte);
  unsigned rx_space() const;

  // The IIR the guest would read now (without the read's side effects).
  uint8_t interrupt_identification() const;
  bool irq_level() const { return (interrupt_identification() & 1) == 0; }
  // The divisor latch: baud = 115200 / divisor.
  uint16_t divisor() const { return uint16_t(m_state.dll | (m_state.dlm << 8)); }

  const State& state() const { return m_state; }
  void load_state(const State& state);

 private:
  bool fifo_enabled() const { return m_state.fcr & 0x01; }
  bool dlab() const { return m_state.lcr & 0x80; }
  bool loopback() const { return m_state.mcr & 0x10; }
  unsigned rx_capacity() const { return fifo_enabled() ? kFifoSize : 1; }
  unsigned rx_trigger() const;
  uint8_t pop_rx();
  void push_rx(uint8_t byte);
  void transmit(uint8_t byte);
  void write_fcr(uint8_t value);
  uint8_t modem_status() const;
  void update_irq();

  State m_state;
  Sink m_sink;
  IrqLine* m_irq;
};

}  // namespace bt86::devices
