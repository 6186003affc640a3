// The PC's pair of Intel 8259A programmable interrupt controllers: a master
// at 0x20 (IRQ 0-7) and a slave at 0xA0 (IRQ 8-15) cascaded on the master's
// IR2. Source for all behaviour: Intel 8259A datasheet (order no. 231468),
// referred to below as [8259A] with the section name.
//
// Device side: Pic8259Pair::line(n) is the IrqLine for IRQ n.
// CPU side: interrupt_pending() is the master's INT pin; acknowledge() is the
// two INTA pulses and returns the vector byte the 8259A would put on the bus.
// The INT pin is also driven onto an optional IrqLine so that a halted vCPU
// can be woken.
#pragma once

#include <array>
#include <cstdint>
#include <functional>

#include "devices/io_bus.h"
#include "devices/irq_line.h"

namespace bt86::devices {

// One 8259A. Registers at offsets 0 (A0=0) and 1 (A0=1).
class Pic8259 final : public IoDevice {
 public:
  struct State {
    uint8_t input = 0;  // current level of IR0-7 (for edge detection)
    uint8_t irr = 0;    // interrupt request register
    uint8_t isr = 0;    // in-service register
    uint8_t imr = 0;    // interrupt mask register (OCW1)
    uint8_t vector_base = 0;  // ICW2 T7-T3
    uint8_t icw3 = 0;
    uint8_t init_step = 0;    // 0: operational; 2,3,4: next ICW expected
    bool icw4_needed = false;   // ICW1 IC4
    bool single = false;        // ICW1 SNGL
    bool level_triggered = false;  // ICW1 LTIM
    bool auto_eoi = false;      // ICW4 AEOI
    bool special_fully_nested = false;  // ICW4 SFNM
    bool rotate_on_auto_eoi = false;    // OCW2 R=1 SL=0 EOI=0
    bool special_mask = false;  // OCW3 SMM
    bool read_isr = false;      // OCW3 RIS: A0=0 reads ISR instead of IRR
    bool poll = false;          // OCW3 P: next A0=0 read is a poll
    uint8_t lowest_priority = 7;  // the IR with the lowest priority (rotation)
    bool initialized = false;   // a full ICW sequence has been seen
  };

  Pic8259(std::string_view name, bool is_master);

  std::string_view name() const override { return m_name; }
  uint32_t io_read(uint16_t offset, unsigned size) override;
  void io_write(uint16_t offset, unsigned size, uint32_t value) override;

  // Sets the level of input IRn (0-7).
  void set_input(unsigned ir, bool high);

  // The IR this chip would present on INTA now, or -1 (its INT pin is low).
  int pending_ir() const;

  // The first and second INTA pulses: marks `ir` in service (unless in auto
  // EOI mode) and clears its request. `ir` must be pending_ir() or 7 for the
  // spurious case ([8259A] "Interrupt Sequence": if the request is gone by
  // the first INTA, the chip answers with IR7 and sets no ISR bit).
  uint8_t acknowledge(int ir);

  const State& state() const { return m_state; }
  void load_state(const State& state);

  // Called after anything that may change the INT pin or the IRR.
  void set_on_change(std::function<void()> on_change) { m_on_change = std::move(on_change); }

 private:
  void write_command(uint8_t value);  // A0 = 0
  void write_data(uint8_t value);     // A0 = 1
  void write_ocw2(uint8_t value);
  void write_ocw3(uint8_t value);
  uint8_t poll_read();
  // Index in priority order (0 = highest) of the highest-priority set bit in
  // `bits`, or 8 if none.
  int highest(uint8_t bits) const;
  int to_ir(int priority) const { return (priority + m_state.lowest_priority + 1) & 7; }
  void changed() {
    if (m_on_change) m_on_change();
  }

  std::string_view m_name;
  bool m_is_master;
  State m_state;
  std::function<void()> m_on_change;
};

class Pic8259Pair {
 public:
  static constexpr unsigned kCascadeIr = 2;  // the slave's INT goes to master IR2

  Pic8259Pair();
  Pic8259Pair(const Pic8259Pair&) = delete;
  Pic8259Pair& operator=(const Pic8259Pair&) = delete;

  Pic8259& master() { return m_master; }
  Pic8259& slave() { return m_slave; }

  // The wire for IRQ `irq` (0-15). IRQ 2 is the cascade and not a device
  // input on a PC; driving it is ignored.
  IrqLine& line(unsigned irq) { return m_lines[irq & 15]; }
  void set_irq(unsigned irq, bool high);

  // The master's INT pin.
  bool interrupt_pending() const { return m_master.pending_ir() >= 0; }

  // INTA: the vector for the highest-priority pending request. Called with
  // nothing pending it returns the master's spurious vector (IR7), as a real
  // master does when the request disappeared before INTA.
  uint8_t acknowledge();

  // Optional: the CPU's INTR wire, driven with interrupt_pending().
  void connect_cpu(IrqLine& intr) {
    m_cpu = &intr;
    update();
  }

  // Re-derives the cascade and the INT wire after load_state on either chip.
  void update();

 private:
  class Input final : public IrqLine {
   public:
    void set_level(bool high) override { m_pair->set_irq(m_irq, high); }
    Pic8259Pair* m_pair = nullptr;
    unsigned m_irq = 0;
  };

  Pic8259 m_master{"8259A master", true};
  Pic8259 m_slave{"8259A slave", false};
  std::array<Input, 16> m_lines;
  IrqLine* m_cpu = &NullIrqLine::instance();
  bool m_updating = false;
};

}  // namespace bt86::devices
