// PC16550D UART. [16550] refers to the National Semiconductor PC16550D
// datasheet; register names are its own (RBR, THR, IER, IIR, FCR, LCR, MCR,
// LSR, MSR, SCR, DLL, DLM).
#include "devices/uart_16550.h"

namespace bt86::devices {
namespace {

// Register offsets ([16550] Table II, "Register Summary").
enum : uint16_t { kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };

// IER bits.
constexpr uint8_t kIerRxData = 0x01, kIerThre = 0x02, kIerLineStatus = 0x04, kIerModemStatus = 0x08;
// IIR identification codes in bits 3-0, highest priority first ([16550]
// Table IV, "Interrupt Control Functions").
constexpr uint8_t kIirNone = 0x01, kIirLineStatus = 0x06, kIirRxData = 0x04, kIirTimeout = 0x0C,
                  kIirThre = 0x02, kIirModemStatus = 0x00, kIirFifosEnabled = 0xC0;
// LSR bits.
constexpr uint8_t kLsrDataReady = 0x01, kLsrOverrun = 0x02, kLsrErrors = 0x1E, kLsrThre = 0x20, kLsrTemt = 0x40;
// MCR bits.
constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08;

}  // namespace

Uart16550::Uart16550(Sink sink, IrqLine& irq) : m_sink(std::move(sink)), m_irq(&irq) {}

void Uart16550::load_state(const State& state) {
  m_state = state;
  if (m_state.rx_count > kFifoSize) m_state.rx_count = kFifoSize;
  m_state.rx_head %= kFifoSize;
  update_irq();
}

unsigned Uart16550::rx_trigger() const {
  // [16550] FCR bits 7-6: RCVR FIFO trigger level.
  static constexpr uint8_t kLevels[4] = {1, 4, 8, 14};
  return kLevels[m_state.fcr >> 6];
}

unsigned Uart16550::rx_space() const {
  if (loopback()) return 0;  // the receiver input is disconnected
  return rx_capacity() - m_state.rx_count;
}

uint8_t Uart16550::interrupt_identification() const {
  const State& s = m_state;
  uint8_t id = kIirNone;
  if ((s.ier & kIerLineStatus) && (s.lsr & kLsrErrors)) {
    id = kIirLineStatus;
  } else if ((s.ier & kIerRxData) && s.rx_count > 0) {
    // Below the trigger level the chip reports a character timeout after
    // four character times without activity; bytes arrive from the host in
    // bursts, so we report it at once (known gap).
    id = (!fifo_enabled() || s.rx_count >= rx_trigger()) ? kIirRxData : kIirTimeout;
  } else if ((s.ier & kIerThre) && s.thr_interrupt) {
    id = kIirThre;
  } else if ((s.ier & kIerModemStatus) && (s.msr & 0x0F)) {
    id = kIirModemStatus;
  }
  return uint8_t(id | (fifo_enabled() ? kIirFifosEnabled : 0));
}

void Uart16550::update_irq() {
  // On a real PC board OUT2 gates the IRQ line to the PIC; QEMU, kvmtool and
  // Firecracker ignore it and so do we, so guests that forget OUT2 still work.
  m_irq->set_level(irq_level());
}

uint8_t Uart16550::pop_rx() {
  State& s = m_state;
  if (s.rx_count == 0) return 0;
  uint8_t byte = s.rx_fifo[s.rx_head];
  s.rx_head = uint8_t((s.rx_head + 1) % kFifoSize);
  --s.rx_count;
  return byte;
}

void Uart16550::push_rx(uint8_t byte) {
  State& s = m_state;
  if (s.rx_count >= rx_capacity()) {
    // [16550] LSR bit 1 (OE): without FIFOs the new character overwrites the
    // RBR; with FIFOs the FIFO is kept and the new character is lost.
    s.lsr |= kLsrOverrun;
    ++s.overruns;
    if (!fifo_enabled()) s.rx_fifo[s.rx_head] = byte;
    return;
  }
  s.rx_fifo[(s.rx_head + s.rx_count) % kFifoSize] = byte;
  ++s.rx_count;
  ++s.bytes_received;
}

bool Uart16550::receive(uint8_t byte) {
  if (loopback()) return false;
  bool fits = m_state.rx_count < rx_capacity();
  push_rx(byte);
  update_irq();
  return fits;
}

void Uart16550::transmit(uint8_t byte) {
  if (loopback()) {
    // [16550] MCR bit 4: the transmitter output is looped back into the
    // receiver; nothing leaves the chip.
    push_rx(byte);
  } else {
    ++m_state.bytes_sent;
    if (m_sink) m_sink(byte);
  }
  // The transmitter is instantaneous: THR and TSR are empty again.
  m_state.thr_interrupt = true;
}

uint8_t Uart16550::modem_status() const {
  const State& s = m_state;
  uint8_t lines = s.msr & 0xF0;
  if (loopback()) {
    // [16550] MCR bit 4: CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2.
    lines = uint8_t(((s.mcr & kMcrRts) ? 0x10 : 0) | ((s.mcr & kMcrDtr) ? 0x20 : 0) |
                    ((s.mcr & kMcrOut1) ? 0x40 : 0) | ((s.mcr & kMcrOut2) ? 0x80 : 0));
  }
  return uint8_t(lines | (s.msr & 0x0F));
}

void Uart16550::write_fcr(uint8_t value) {
  State& s = m_state;
  // [16550] FCR: bit 0 enables both FIFOs; changing it clears them. Bit 1
  // clears the receive FIFO; bit 2 the transmit FIFO (always empty here);
  // bit 3 (DMA mode) has no effect without DMA; bits 7-6 set the trigger.
  bool was_enabled = fifo_enabled();
  s.fcr = value & 0xC1;
  if ((value & 0x02) || was_enabled != fifo_enabled()) {
    s.rx_count = 0;
    s.rx_head = 0;
  }
}

uint32_t Uart16550::io_read(uint16_t offset, unsigned) {
  State& s = m_state;
  uint8_t value = 0xFF;
  switch (offset) {
    case kRbrThr:
      value = dlab() ? s.dll : pop_rx();
      break;
    case kIer:
      value = dlab() ? s.dlm : s.ier;
      break;
    case kIirFcr:
      value = interrupt_identification();
      // [16550] Table IV: reading the IIR when it reports THRE clears it.
      if ((value & 0x0F) == kIirThre) s.thr_interrupt = false;
      break;
    case kLcr:
      value = s.lcr;
      break;
    case kMcr:
      value = s.mcr;
      break;
    case kLsr:
      value = uint8_t((s.lsr & kLsrErrors) | (s.rx_count ? kLsrDataReady : 0) | kLsrThre | kLsrTemt);
      s.lsr &= ~kLsrErrors;  // [16550] LSR: bits 1-4 reset when the LSR is read
      break;
    case kMsr:
      value = modem_status();
      s.msr &= 0xF0;  // reading the MSR clears the delta bits
      break;
    case kScr:
      value = s.scr;
      break;
  }
  update_irq();
  return value;
}

void Uart16550::io_write(uint16_t offset, unsigned, uint32_t value) {
  State& s = m_state;
  auto byte = uint8_t(value);
  switch (offset) {
    case kRbrThr:
      if (dlab()) {
        s.dll = byte;
      } else {
        s.thr_interrupt = false;
        transmit(byte);
      }
      break;
    case kIer:
      if (dlab()) {
        s.dlm = byte;
      } else {
        // Enabling the THRE interrupt while the THR is empty raises it at once;
        // Linux's 8250 driver tests for exactly this (UART_BUG_THRE).
        bool thre_enabled = !(s.ier & kIerThre) && (byte & kIerThre);
        s.ier = byte & 0x0F;
        if (thre_enabled) s.thr_interrupt = true;
      }
      break;
    case kIirFcr:
      write_fcr(byte);
      break;
    case kLcr:
      s.lcr = byte;
      break;
    case kMcr: {
      uint8_t before = modem_status();
      s.mcr = byte & 0x1F;
      uint8_t after = modem_status();
      // Delta bits: DCTS, DDSR, TERI (RI falling), DDCD.
      uint8_t changed = before ^ after;
      if (changed & 0x10) s.msr |= 0x01;
      if (changed & 0x20) s.msr |= 0x02;
      if ((changed & 0x40) && !(after & 0x40)) s.msr |= 0x04;
      if (changed & 0x80) s.msr |= 0x08;
      break;
    }
    case kLsr:
    case kMsr:
      // [16550] LSR/MSR writes are for factory testing only.
      note_unexpected(offset == kLsr ? "write to LSR" : "write to MSR", offset, byte);
      break;
    case kScr:
      s.scr = byte;
      break;
  }
  update_irq();
}

}  // namespace bt86::devices
