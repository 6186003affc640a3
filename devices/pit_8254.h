// Intel 8254 programmable interval timer: three 16-bit down counters clocked
// at 1.193182 MHz. On the PC, counter 0's OUT is IRQ 0, counter 1 once
// refreshed DRAM, counter 2 feeds the speaker and is gated by port 0x61.
// Source for behaviour: Intel 8254 datasheet (order no. 231164), cited as
// [8254] with the section name.
//
// The counters are not stepped: each remembers the time its count was
// loaded and derives count and OUT from the clock when asked (the approach
// of QEMU's hw/timer/i8254_common.c). The monitor asks next_deadline_ns()
// when to wake and calls update(now) to raise the IRQ 0 edges that are due;
// edges missed while the host was busy are coalesced into one, which is what
// an edge-triggered PIC would have done with them anyway.
#pragma once

#include <array>
#include <cstdint>

#include "devices/clock.h"
#include "devices/io_bus.h"
#include "devices/irq_line.h"

namespace bt86::devices {

class Pit8254 final : public IoDevice {
 public:
  static constexpr uint64_t kFrequencyHz = 1'193'182;

  struct Channel {
    uint32_t count = 0x10000;  // initial count as ticks (0 means 65536 / 10000)
    uint8_t mode = 0;          // 0-5
    uint8_t rw_mode = 3;       // 1 LSB, 2 MSB, 3 LSB then MSB
    bool bcd = false;
    bool gate = true;
    bool counting = false;     // a count has been loaded (and, modes 1/5, triggered)
    bool null_count = true;    // [8254] read-back status bit 6
    uint64_t load_ns = 0;      // time the count took effect
    uint64_t edges_delivered = 0;  // IRQ rising edges raised since load_ns

    // Write side: the low byte waits here in LSB-then-MSB mode.
    bool write_msb_next = false;
    uint8_t write_lsb = 0;
    // Read side.
    bool read_msb_next = false;
    bool count_latched = false;
    uint16_t latched_count = 0;
    bool latched_msb_next = false;
    bool status_latched = false;
    uint8_t latched_status = 0;
  };

  struct State {
    std::array<Channel, 3> channels;
    bool speaker_data = false;  // port 0x61 bit 1
    bool refresh_toggle = false;  // port 0x61 bit 4
  };

  // `now` is the time source for counter reads and port 0x61; `irq0` is
  // counter 0's OUT wire.
  Pit8254(NowFn now, IrqLine& irq0 = NullIrqLine::instance());

  std::string_view name() const override { return "8254 PIT"; }
  uint32_t io_read(uint16_t offset, unsigned size) override;
  void io_write(uint16_t offset, unsigned size, uint32_t value) override;

  void connect_irq0(IrqLine& irq0) { m_irq0 = &irq0; }

  // Raises the IRQ 0 edge if counter 0 produced one since the last update.
  void update(uint64_t now_ns);

  // When counter 0 next produces a rising edge, or kNoDeadline.
  uint64_t next_deadline_ns() const;

  // Counter state as seen at `now_ns` (tests and port 0x61).
  uint16_t current_count(unsigned channel, uint64_t now_ns) const;
  bool output(unsigned channel, uint64_t now_ns) const;

  // System control port B (0x61): bit 0 gate 2, bit 1 speaker data,
  // bit 4 refresh toggle, bit 5 OUT 2. A separate bus device because it
  // lives at its own port; shares this PIT's state.
  class PortB final : public IoDevice {
   public:
    explicit PortB(Pit8254& pit) : m_pit(pit) {}
    std::string_view name() const override { return "port 0x61 (PIT gate 2, speaker)"; }
    uint32_t io_read(uint16_t offset, unsigned size) override;
    void io_write(uint16_t offset, unsigned size, uint32_t value) override;

   private:
    Pit8254& m_pit;
  };
  PortB& port_b() { return m_port_b; }

  const State& state() const { return m_state; }
  void load_state(const State& state) { m_state = state; }

 private:
  uint64_t ticks_since_load(const Channel& ch, uint64_t now_ns) const;
  uint64_t rising_edges(const Channel& ch, uint64_t ticks) const;
  void write_control(uint8_t value);
  void read_back(uint8_t value);
  void latch_count(Channel& ch);
  void latch_status(unsigned index);
  void write_counter(unsigned index, uint8_t value);
  uint8_t read_counter(unsigned index);
  void load_count(unsigned index, uint16_t raw);
  void set_gate(unsigned index, bool gate);

  NowFn m_now;
  IrqLine* m_irq0;
  State m_state;
  PortB m_port_b{*this};
};

}  // namespace bt86::devices
