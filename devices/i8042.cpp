// 8042 keyboard controller and port 0x92. [AT-KBC] is the IBM PC AT
// Technical Reference, "Keyboard Controller"; command numbers are its own
// plus the PS/2 additions (0xA7-0xA9, 0xD2-0xD4) Linux's i8042 driver uses.
#include "devices/i8042.h"

namespace bt86::devices {
namespace {

constexpr uint8_t kStatusTimeout = 0x40;
constexpr uint16_t kAuxBit = 0x100;
constexpr uint16_t kTimeoutBit = 0x200;  // queue entry: the device did not answer
constexpr uint8_t kNoDevice = 0xFE;      // what the controller reports when a device does not answer

// Controller commands.
enum : uint8_t {
  kReadRam0 = 0x20, kWriteRam0 = 0x60, kDisableAux = 0xA7, kEnableAux = 0xA8, kTestAux = 0xA9,
  kSelfTest = 0xAA, kTestKbd = 0xAB, kDisableKbd = 0xAD, kEnableKbd = 0xAE, kReadOutputPort = 0xD0,
  kWriteOutputPort = 0xD1, kWriteKbdBuffer = 0xD2, kWriteAuxBuffer = 0xD3, kWriteAux = 0xD4,
  kPulseFirst = 0xF0,
};

}  // namespace

I8042::I8042(std::function<void()> on_reset, IrqLine& irq1, IrqLine& irq12)
    : m_on_reset(std::move(on_reset)), m_irq1(&irq1), m_irq12(&irq12) {}

void I8042::load_state(const State& state) {
  m_state = state;
  m_state.head %= kQueueSize;
  if (m_state.count > kQueueSize) m_state.count = kQueueSize;
  update_irq();
}

uint8_t I8042::status() const {
  const State& s = m_state;
  uint8_t value = kStatusUnlocked;  // IBF is never set: every write is taken at once
  if (s.count > 0) {
    value |= kStatusObf;
    const uint16_t head = s.queue[s.head];
    if (head & kAuxBit) value |= kStatusAuxData;
    if (head & kTimeoutBit) value |= kStatusTimeout;
  }
  if (s.config & kConfigSys) value |= kStatusSys;
  if (s.last_was_command) value |= kStatusCmd;
  return value;
}

void I8042::update_irq() {
  // [AT-KBC]: OBF drives IRQ 1 when the config byte enables it; PS/2
  // controllers route aux bytes to IRQ 12 instead.
  const State& s = m_state;
  const bool full = s.count > 0;
  const bool aux = full && (s.queue[s.head] & kAuxBit);
  m_irq1->set_level(full && !aux && (s.config & kConfigKbdInt));
  m_irq12->set_level(aux && (s.config & kConfigAuxInt));
}

void I8042::push(uint8_t byte, bool aux) {
  State& s = m_state;
  if (s.count >= kQueueSize) return;  // cannot happen with one reply per write; never overflow
  s.queue[(s.head + s.count) % kQueueSize] = uint16_t(byte | (aux ? kAuxBit : 0));
  ++s.count;
}

uint8_t I8042::read_data() {
  State& s = m_state;
  if (s.count > 0) {
    s.last_output = uint8_t(s.queue[s.head]);
    s.head = uint8_t((s.head + 1) % kQueueSize);
    --s.count;
  }
  update_irq();
  return s.last_output;
}

void I8042::request_reset() {
  if (m_state.reset_requested) return;
  m_state.reset_requested = true;
  if (m_on_reset) m_on_reset();
}

void I8042::write_command(uint8_t cmd) {
  State& s = m_state;
  s.last_was_command = true;
  s.pending = 0;
  if (cmd >= kReadRam0 && cmd < kReadRam0 + 0x20) {
    push(cmd == kReadRam0 ? s.config : 0, false);
  } else if ((cmd >= kWriteRam0 && cmd < kWriteRam0 + 0x20) || cmd == kWriteOutputPort || cmd == kWriteKbdBuffer ||
             cmd == kWriteAuxBuffer || cmd == kWriteAux) {
    s.pending = cmd;
  } else if (cmd >= kPulseFirst) {
    // [AT-KBC] "Pulse Output Port": bits 3-0 clear pulse the matching output
    // lines low for 6 us; line 0 is the CPU reset.
    if (!(cmd & 0x01)) request_reset();
  } else {
    switch (cmd) {
      case kDisableAux:
        s.config |= kConfigAuxDisable;
        break;
      case kEnableAux:
        // An AT-style controller: the aux port cannot be enabled, so Linux's
        // i8042_check_aux sees AUXDIS stay set and registers no AUX port
        // (without waiting for timeouts, since there is no mouse).
        break;
      case kTestAux:
      case kTestKbd:
        push(0x00, false);  // interface test passed
        break;
      case kSelfTest:
        s.config |= kConfigSys;
        push(0x55, false);
        break;
      case kDisableKbd:
        s.config |= kConfigKbdDisable;
        break;
      case kEnableKbd:
        s.config &= uint8_t(~kConfigKbdDisable);
        break;
      case kReadOutputPort:
        push(s.output_port, false);
        break;
      default:
        m_command.note("unsupported controller command", cmd);
        break;
    }
  }
  update_irq();
}

void I8042::write_data(uint8_t value) {
  State& s = m_state;
  s.last_was_command = false;
  const uint8_t cmd = s.pending;
  s.pending = 0;
  if (cmd == kWriteRam0) {
    s.config = value;
  } else if (cmd > kWriteRam0 && cmd < kWriteRam0 + 0x20) {
    // Other controller RAM bytes: nothing reads them back.
  } else if (cmd == kWriteOutputPort) {
    s.output_port = value | 0x02;  // A20 stays enabled
    if (!(value & 0x01)) request_reset();
  } else if (cmd == kWriteKbdBuffer || cmd == kWriteAuxBuffer) {
    push(value, cmd == kWriteAuxBuffer);  // loopback into the output buffer
  } else {
    // A byte for the keyboard (no command pending) or the mouse (0xD4).
    // Neither is attached: the controller times out and reports 0xFE.
    const bool aux = cmd == kWriteAux;
    push(kNoDevice, aux);
    m_state.queue[(s.head + s.count - 1) % kQueueSize] |= kTimeoutBit;
  }
  update_irq();
}

uint32_t I8042::DataPort::io_read(uint16_t, unsigned) { return m_kbc.read_data(); }
void I8042::DataPort::io_write(uint16_t, unsigned, uint32_t value) { m_kbc.write_data(uint8_t(value)); }
uint32_t I8042::CommandPort::io_read(uint16_t, unsigned) { return m_kbc.status(); }
void I8042::CommandPort::io_write(uint16_t, unsigned, uint32_t value) { m_kbc.write_command(uint8_t(value)); }

uint32_t PortA::io_read(uint16_t, unsigned) { return m_state.value; }

void PortA::io_write(uint16_t, unsigned, uint32_t value) {
  const uint8_t before = m_state.value;
  // Bit 1 (A20) reads back as written would on hardware; bt86 never masks
  // A20, so it is forced on. Bit 0 resets the CPU on a 0 -> 1 transition.
  m_state.value = uint8_t((value & ~0x02u) | 0x02u);
  if (!(before & 0x01) && (value & 0x01) && !m_state.reset_requested) {
    m_state.reset_requested = true;
    if (m_on_reset) m_on_reset();
  }
}

}  // namespace bt86::devices
