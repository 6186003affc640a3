// Intel 8259A PIC pair. Section names in [8259A] refer to the Intel 8259A
// datasheet (order no. 231468). The structure follows QEMU's hw/intc/i8259.c:
// state is IRR/ISR/IMR plus a rotating priority base, and every change
// re-derives the INT pins.
#include "devices/pic_8259.h"

namespace bt86::devices {

Pic8259::Pic8259(std::string_view name, bool is_master) : m_name(name), m_is_master(is_master) {}

void Pic8259::load_state(const State& state) {
  m_state = state;
  changed();
}

int Pic8259::highest(uint8_t bits) const {
  for (int priority = 0; priority < 8; ++priority) {
    if (bits & (1u << to_ir(priority))) return priority;
  }
  return 8;
}

void Pic8259::set_input(unsigned ir, bool high) {
  auto mask = uint8_t(1u << (ir & 7));
  State& s = m_state;
  if (s.level_triggered) {
    // [8259A] "Edge and Level Triggered Modes": in level mode the request
    // follows the input; no latch.
    s.irr = high ? (s.irr | mask) : (s.irr & ~mask);
  } else if (high && !(s.input & mask)) {
    // Edge mode latches the low-to-high transition. Unlike the real chip we
    // keep the request if the input falls again before INTA (as QEMU does),
    // so that a device may pulse() its line.
    s.irr |= mask;
  }
  s.input = high ? (s.input | mask) : (s.input & ~mask);
}

int Pic8259::pending_ir() const {
  const State& s = m_state;
  int request = highest(s.irr & ~s.imr);
  if (request == 8) return -1;
  // [8259A] "Fully Nested Mode": a request only interrupts if it has higher
  // priority than everything in service. Special mask mode ignores in-service
  // levels that are masked; special fully nested mode (master only) lets the
  // slave interrupt again while its cascade IR is in service.
  uint8_t in_service = s.isr;
  if (s.special_mask) in_service &= ~s.imr;
  if (s.special_fully_nested && m_is_master) in_service &= ~(1u << 2);
  return request < highest(in_service) ? to_ir(request) : -1;
}

uint8_t Pic8259::acknowledge(int ir) {
  State& s = m_state;
  if (ir < 0) {
    // [8259A] "Interrupt Sequence": no request at INTA -> IR7's vector, no
    // ISR bit set. The guest must not send an EOI for it.
    return uint8_t(s.vector_base | 7);
  }
  auto mask = uint8_t(1u << ir);
  if (!s.level_triggered) s.irr &= ~mask;  // a level request stays while its input is high
  if (s.auto_eoi) {
    // [8259A] "Automatic End of Interrupt (AEOI) Mode": the ISR bit is reset
    // at the end of the last INTA; with rotation the served IR becomes lowest.
    if (s.rotate_on_auto_eoi) s.lowest_priority = uint8_t(ir);
  } else {
    s.isr |= mask;
  }
  return uint8_t(s.vector_base | ir);
}

uint32_t Pic8259::io_read(uint16_t offset, unsigned) {
  State& s = m_state;
  if (offset == 0) {
    if (s.poll) return poll_read();
    // [8259A] "Reading the 8259A Status": A0=0 reads IRR or ISR per OCW3.
    return s.read_isr ? s.isr : s.irr;
  }
  return s.imr;  // A0=1 reads the IMR
}

uint8_t Pic8259::poll_read() {
  // [8259A] "The Poll Command": the read acts as an INTA; returns
  // I (bit 7) and W2-W0, the highest pending level.
  m_state.poll = false;
  int ir = pending_ir();
  if (ir < 0) return 0;
  acknowledge(ir);
  changed();
  return uint8_t(0x80 | ir);
}

void Pic8259::io_write(uint16_t offset, unsigned, uint32_t value) {
  auto byte = uint8_t(value);
  if (offset == 0) {
    write_command(byte);
  } else {
    write_data(byte);
  }
  changed();
}

void Pic8259::write_command(uint8_t value) {
  State& s = m_state;
  if (value & 0x10) {
    // ICW1. [8259A] "Initialization Command Words": the sequence clears the
    // IMR, resets the edge sense latches (an input already high must go low
    // and high again), makes IR7 lowest priority, clears special mask mode
    // and selects the IRR for reads; without IC4 all ICW4 functions are 0.
    // We also clear the ISR, as a reset chip has nothing in service.
    s.icw4_needed = value & 0x01;
    s.single = value & 0x02;
    s.level_triggered = value & 0x08;
    s.irr = s.level_triggered ? s.input : 0;
    s.isr = 0;
    s.imr = 0;
    s.lowest_priority = 7;
    s.special_mask = false;
    s.read_isr = false;
    s.poll = false;
    s.auto_eoi = false;
    s.special_fully_nested = false;
    s.rotate_on_auto_eoi = false;
    s.init_step = 2;
    if (!s.icw4_needed) {
      // Without ICW4 the chip is in 8080/8085 mode, which a PC never uses;
      // we keep delivering 8086 vectors.
      note_unexpected("ICW1 without IC4 (8080 mode)", 0, value);
    }
  } else if (value & 0x08) {
    write_ocw3(value);
  } else {
    write_ocw2(value);
  }
}

void Pic8259::write_data(uint8_t value) {
  State& s = m_state;
  switch (s.init_step) {
    case 2:
      // ICW2: in 8086 mode T7-T3 form the vector, the IR number the rest.
      s.vector_base = value & 0xF8;
      s.init_step = !s.single ? 3 : s.icw4_needed ? 4 : 0;
      break;
    case 3:
      // ICW3: master: which IRs have slaves; slave: its ID. The PC wiring
      // is fixed (slave on IR2), so this is only recorded.
      s.icw3 = value;
      s.init_step = s.icw4_needed ? 4 : 0;
      break;
    case 4:
      // ICW4: uPM (bit 0) must be 1 for 8086 mode; AEOI bit 1; BUF and M/S
      // (bits 2-3) only matter for bus buffers; SFNM bit 4.
      if (!(value & 0x01)) note_unexpected("ICW4 selecting 8080 mode", 1, value);
      s.auto_eoi = value & 0x02;
      s.special_fully_nested = value & 0x10;
      s.init_step = 0;
      break;
    default:
      s.imr = value;  // OCW1
      break;
  }
  if (s.init_step == 0) s.initialized = true;
}

void Pic8259::write_ocw2(uint8_t value) {
  // [8259A] "Operation Command Words", OCW2: R SL EOI in bits 7-5, L2-L0.
  State& s = m_state;
  unsigned level = value & 7;
  switch (value >> 5) {
    case 0:  // rotate in AEOI mode (clear)
    case 4:  // rotate in AEOI mode (set)
      s.rotate_on_auto_eoi = (value >> 5) == 4;
      break;
    case 1:  // non-specific EOI
    case 5: {  // rotate on non-specific EOI
      int priority = highest(s.isr);
      if (priority == 8) break;  // nothing in service: harmless
      int ir = to_ir(priority);
      s.isr &= ~(1u << ir);
      if ((value >> 5) == 5) s.lowest_priority = uint8_t(ir);
      break;
    }
    case 2:  // no operation
      break;
    case 3:  // specific EOI
      s.isr &= ~(1u << level);
      break;
    case 6:  // set priority: L becomes the lowest
      s.lowest_priority = uint8_t(level);
      break;
    case 7:  // rotate on specific EOI
      s.isr &= ~(1u << level);
      s.lowest_priority = uint8_t(level);
      break;
  }
}

void Pic8259::write_ocw3(uint8_t value) {
  // [8259A] OCW3: ESMM (6) + SMM (5); P (2) poll; RR (1) + RIS (0).
  State& s = m_state;
  if (value & 0x40) s.special_mask = value & 0x20;
  if (value & 0x04) s.poll = true;
  if (value & 0x02) s.read_isr = value & 0x01;
  if (value & 0x80) note_unexpected("OCW3 with bit 7 set", 0, value);
}

Pic8259Pair::Pic8259Pair() {
  for (unsigned irq = 0; irq < 16; ++irq) {
    m_lines[irq].m_pair = this;
    m_lines[irq].m_irq = irq;
  }
  m_master.set_on_change([this] { update(); });
  m_slave.set_on_change([this] { update(); });
}

void Pic8259Pair::set_irq(unsigned irq, bool high) {
  irq &= 15;
  if (irq == kCascadeIr) return;  // the cascade input is the slave's INT, not a device line
  if (irq < 8) {
    m_master.set_input(irq, high);
  } else {
    m_slave.set_input(irq - 8, high);
  }
  update();
}

void Pic8259Pair::update() {
  m_master.set_input(kCascadeIr, m_slave.pending_ir() >= 0);
  m_cpu->set_level(m_master.pending_ir() >= 0);
}

uint8_t Pic8259Pair::acknowledge() {
  int ir = m_master.pending_ir();
  uint8_t vector;
  if (ir == int(kCascadeIr)) {
    // [8259A] "Cascade Mode": the master marks IR2 in service and the slave
    // supplies the vector; if the slave's request vanished it answers with
    // its own IR7 (the spurious IRQ 15), while the master's IR2 stays in
    // service, so the guest must EOI the master only.
    m_master.acknowledge(ir);
    vector = m_slave.acknowledge(m_slave.pending_ir());
  } else {
    vector = m_master.acknowledge(ir);  // ir < 0: spurious IRQ 7
  }
  update();
  return vector;
}

}  // namespace bt86::devices
