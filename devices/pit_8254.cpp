// Intel 8254 PIT. [8254] refers to the Intel 8254 datasheet (231164); the
// "time since load" model follows QEMU's hw/timer/i8254_common.c.
#include "devices/pit_8254.h"

namespace bt86::devices {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000;

uint32_t from_bcd(uint16_t raw) {
  return (raw & 0xF) + ((raw >> 4) & 0xF) * 10 + ((raw >> 8) & 0xF) * 100 + ((raw >> 12) & 0xF) * 1000;
}

uint16_t to_bcd(uint32_t value) {
  value %= 10000;
  return uint16_t((value % 10) | ((value / 10 % 10) << 4) | ((value / 100 % 10) << 8) | ((value / 1000) << 12));
}

// Modes 1 and 5 count only after a rising edge on GATE ([8254] "Mode 1",
// "Mode 5"); the others count as soon as the count is written.
bool gate_triggered(uint8_t mode) { return mode == 1 || mode == 5; }

}  // namespace

Pit8254::Pit8254(NowFn now, IrqLine& irq0) : m_now(std::move(now)), m_irq0(&irq0) {
  // On the PC, GATE 0 and 1 are tied high; GATE 2 is port 0x61 bit 0, which
  // resets to 0.
  m_state.channels[2].gate = false;
}

uint64_t Pit8254::ticks_since_load(const Channel& ch, uint64_t now_ns) const {
  if (!ch.counting || now_ns <= ch.load_ns) return 0;
  return uint64_t((unsigned __int128)(now_ns - ch.load_ns) * kFrequencyHz / kNsPerSecond);
}

// Rising edges of OUT at ticks 1..`ticks` after the load.
uint64_t Pit8254::rising_edges(const Channel& ch, uint64_t ticks) const {
  if (!ch.counting) return 0;
  uint64_t n = ch.count;
  switch (ch.mode) {
    case 0:  // [8254] "Mode 0": OUT rises when the count reaches 0, once
    case 1:  // "Mode 1": likewise after the trigger
      return ticks >= n ? 1 : 0;
    case 2:  // "Mode 2": OUT low for one clock at count 1, high again at reload
    case 3:  // "Mode 3": high for ceil(N/2), low for floor(N/2)
      return ticks / n;
    default:  // "Mode 4"/"Mode 5": one low clock at count 0, high after it
      return ticks >= n + 1 ? 1 : 0;
  }
}

bool Pit8254::output(unsigned index, uint64_t now_ns) const {
  const Channel& ch = m_state.channels[index % 3];
  // [8254] "Write Operations": the control word sets OUT to its initial
  // state: low in mode 0, high in all others.
  if (!ch.counting) return ch.mode != 0;
  uint64_t d = ticks_since_load(ch, now_ns);
  uint64_t n = ch.count;
  switch (ch.mode) {
    case 0:
    case 1:
      return d >= n;
    case 2:
      return d % n != n - 1;
    case 3:
      return d % n < (n + 1) / 2;
    default:
      return d != n;
  }
}

uint16_t Pit8254::current_count(unsigned index, uint64_t now_ns) const {
  const Channel& ch = m_state.channels[index % 3];
  uint64_t n = ch.count;
  uint64_t value;
  if (!ch.counting) {
    value = n;
  } else {
    uint64_t d = ticks_since_load(ch, now_ns);
    uint64_t modulus = ch.bcd ? 10000 : 0x10000;
    switch (ch.mode) {
      case 2:
        value = n - d % n;
        break;
      case 3:
        // Counts down by two each clock, twice per period.
        value = n - (2 * d) % n;
        break;
      default:
        // Modes 0, 1, 4, 5 keep counting down through zero and wrap.
        value = (n + modulus - d % modulus) % modulus;
        break;
    }
  }
  return ch.bcd ? to_bcd(uint32_t(value)) : uint16_t(value);
}

void Pit8254::update(uint64_t now_ns) {
  Channel& ch = m_state.channels[0];
  uint64_t edges = rising_edges(ch, ticks_since_load(ch, now_ns));
  if (edges > ch.edges_delivered) {
    // Several missed periods become one edge: the PIC's IRR holds one.
    ch.edges_delivered = edges;
    m_irq0->set_level(false);
    m_irq0->set_level(true);
  }
  // Follow OUT down, but only ever raise the wire on a counted edge, so that
  // programming the counter never produces a tick of its own.
  if (!output(0, now_ns)) m_irq0->set_level(false);
}

uint64_t Pit8254::next_deadline_ns() const {
  const Channel& ch = m_state.channels[0];
  if (!ch.counting) return kNoDeadline;
  uint64_t n = ch.count;
  uint64_t edge_tick;  // the tick of the first edge not yet delivered
  switch (ch.mode) {
    case 0:
    case 1:
      if (ch.edges_delivered >= 1) return kNoDeadline;
      edge_tick = n;
      break;
    case 2:
    case 3:
      // May lie in the past if update() has not been called for a while.
      edge_tick = (ch.edges_delivered + 1) * n;
      break;
    default:
      if (ch.edges_delivered >= 1) return kNoDeadline;
      edge_tick = n + 1;
      break;
  }
  // The first nanosecond at which ticks_since_load() reaches edge_tick.
  auto ns = ((unsigned __int128)edge_tick * kNsPerSecond + kFrequencyHz - 1) / kFrequencyHz;
  return ch.load_ns + uint64_t(ns);
}

uint32_t Pit8254::io_read(uint16_t offset, unsigned) {
  if (offset < 3) return read_counter(offset);
  // [8254] "Read Operations": the control word register cannot be read.
  note_unexpected("read of the control word register", offset, 0);
  return 0xFF;
}

void Pit8254::io_write(uint16_t offset, unsigned, uint32_t value) {
  if (offset < 3) {
    write_counter(offset, uint8_t(value));
  } else {
    write_control(uint8_t(value));
  }
}

void Pit8254::write_control(uint8_t value) {
  unsigned select = value >> 6;
  if (select == 3) return read_back(value);
  Channel& ch = m_state.channels[select];
  unsigned rw = (value >> 4) & 3;
  if (rw == 0) return latch_count(ch);  // [8254] "Counter Latch Command"
  // [8254] "Control Word Format": modes x10 and x11 are 2 and 3.
  uint8_t mode = (value >> 1) & 7;
  if (mode >= 6) mode -= 4;
  ch.mode = mode;
  ch.rw_mode = uint8_t(rw);
  ch.bcd = value & 1;
  ch.counting = false;
  ch.null_count = true;
  ch.write_msb_next = false;
  ch.read_msb_next = false;
  if (select == 0 && mode == 0) m_irq0->set_level(false);
}

void Pit8254::latch_count(Channel& ch) {
  // A second latch before the first is read is ignored.
  if (ch.count_latched) return;
  unsigned index = unsigned(&ch - m_state.channels.data());
  ch.latched_count = current_count(index, m_now());
  ch.count_latched = true;
  ch.latched_msb_next = false;
}

void Pit8254::latch_status(unsigned index) {
  Channel& ch = m_state.channels[index];
  if (ch.status_latched) return;
  // [8254] "Read-Back Command", status byte: OUT, NULL COUNT, RW1 RW0,
  // M2 M1 M0, BCD.
  ch.latched_status = uint8_t((output(index, m_now()) ? 0x80 : 0) | (ch.null_count ? 0x40 : 0) |
                              (ch.rw_mode << 4) | (ch.mode << 1) | (ch.bcd ? 1 : 0));
  ch.status_latched = true;
}

void Pit8254::read_back(uint8_t value) {
  // [8254] "Read-Back Command": bit 5 = 0 latches counts, bit 4 = 0 latches
  // status, bits 3-1 select counters 2-0.
  for (unsigned index = 0; index < 3; ++index) {
    if (!(value & (2u << index))) continue;
    if (!(value & 0x20)) latch_count(m_state.channels[index]);
    if (!(value & 0x10)) latch_status(index);
  }
  if (value & 1) note_unexpected("read-back command with bit 0 set", 3, value);
}

uint8_t Pit8254::read_counter(unsigned index) {
  Channel& ch = m_state.channels[index];
  if (ch.status_latched) {
    ch.status_latched = false;
    return ch.latched_status;
  }
  uint16_t value;
  bool msb;
  if (ch.count_latched) {
    value = ch.latched_count;
    if (ch.rw_mode == 3) {
      msb = ch.latched_msb_next;
      ch.latched_msb_next = !msb;
      if (msb) ch.count_latched = false;
    } else {
      msb = ch.rw_mode == 2;
      ch.count_latched = false;
    }
  } else {
    value = current_count(index, m_now());
    msb = ch.rw_mode == 2 || (ch.rw_mode == 3 && ch.read_msb_next);
    if (ch.rw_mode == 3) ch.read_msb_next = !ch.read_msb_next;
  }
  return uint8_t(msb ? value >> 8 : value);
}

void Pit8254::write_counter(unsigned index, uint8_t value) {
  Channel& ch = m_state.channels[index];
  switch (ch.rw_mode) {
    case 1:
      return load_count(index, value);
    case 2:
      return load_count(index, uint16_t(value << 8));
    default:
      if (!ch.write_msb_next) {
        ch.write_lsb = value;
        ch.write_msb_next = true;
        // [8254] "Mode 0": writing the first byte stops the count.
        if (ch.mode == 0) {
          ch.counting = false;
          if (index == 0) m_irq0->set_level(false);
        }
      } else {
        ch.write_msb_next = false;
        load_count(index, uint16_t(ch.write_lsb | (value << 8)));
      }
      return;
  }
}

void Pit8254::load_count(unsigned index, uint16_t raw) {
  Channel& ch = m_state.channels[index];
  // [8254] "Counter Operation": a count of 0 is the maximum, 2^16 in binary
  // and 10^4 in BCD. Modes 2 and 3 cannot count from 1; treat it as 2.
  uint32_t n = ch.bcd ? from_bcd(raw) : raw;
  if (n == 0) n = ch.bcd ? 10000 : 0x10000;
  if (n == 1 && (ch.mode == 2 || ch.mode == 3)) {
    note_unexpected("count of 1 in mode 2 or 3", uint16_t(index), raw);
    n = 2;
  }
  ch.count = n;
  ch.null_count = false;
  ch.edges_delivered = 0;
  ch.load_ns = m_now();
  // A new count in modes 2 and 3 really takes effect at the end of the
  // current period; we restart at once (QEMU does the same).
  // Modes 1 and 5 wait for a GATE trigger. (Known gap: GATE low does not
  // pause the other modes.)
  ch.counting = !gate_triggered(ch.mode);
  if (index == 0 && !output(0, ch.load_ns)) m_irq0->set_level(false);
}

void Pit8254::set_gate(unsigned index, bool gate) {
  Channel& ch = m_state.channels[index];
  bool rising = gate && !ch.gate;
  ch.gate = gate;
  if (!rising || ch.null_count) return;
  // [8254] "Gate": a rising edge triggers modes 1 and 5 and restarts the
  // period in modes 2 and 3.
  if (gate_triggered(ch.mode) || ch.mode == 2 || ch.mode == 3) {
    ch.counting = true;
    ch.load_ns = m_now();
    ch.edges_delivered = 0;
  }
}

uint32_t Pit8254::PortB::io_read(uint16_t, unsigned) {
  State& s = m_pit.m_state;
  // Bit 4 toggles with DRAM refresh on real boards; BIOS-style delay loops
  // wait for it to flip, so flip it on every read.
  s.refresh_toggle = !s.refresh_toggle;
  return (s.channels[2].gate ? 0x01 : 0) | (s.speaker_data ? 0x02 : 0) | (s.refresh_toggle ? 0x10 : 0) |
         (m_pit.output(2, m_pit.m_now()) ? 0x20 : 0);
}

void Pit8254::PortB::io_write(uint16_t, unsigned, uint32_t value) {
  m_pit.m_state.speaker_data = value & 0x02;
  m_pit.set_gate(2, value & 0x01);
}

}  // namespace bt86::devices
