// The 16550A as COM1, set up the way Linux's 8250 driver and early console
// set it up, with a fake IRQ 4 wire and a string sink.
#include "devices/uart_16550.h"

#include <gtest/gtest.h>

#include <string>

#include "devices/io_bus.h"
#include "tests/devices/fake_irq_line.h"

namespace bt86::devices {
namespace {

constexpr uint16_t kBase = 0x3F8;
enum : uint16_t { kData = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };

class UartTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(bus.register_device(kBase, 8, uart)); }
  void out(uint16_t reg, uint8_t value) { bus.write(kBase + reg, 1, value); }
  uint8_t in(uint16_t reg) { return uint8_t(bus.read(kBase + reg, 1)); }

  // early_serial_init / serial8250 set_termios for 115200 8N1, FIFO on.
  void setup_115200_8n1() {
    out(kIer, 0x00);
    out(kLcr, 0x80);  // DLAB
    out(kData, 0x01);  // DLL: 115200 / 1
    out(kIer, 0x00);   // DLM
    out(kLcr, 0x03);   // 8N1, DLAB off
    out(kIirFcr, 0xC7);  // FIFO on, clear both, trigger 14
    out(kMcr, 0x0B);   // DTR, RTS, OUT2
  }

  testing::FakeIrqLine irq;
  std::string output;
  Uart16550 uart{[this](uint8_t byte) { output.push_back(char(byte)); }, irq};
  IoBus bus;
};

TEST_F(UartTest, Setup115200_8N1) {
  setup_115200_8n1();
  EXPECT_EQ(uart.divisor(), 1);
  EXPECT_EQ(in(kLcr), 0x03);
  EXPECT_EQ(in(kIirFcr), 0xC1);  // FIFOs enabled, nothing pending
  EXPECT_EQ(in(kLsr), 0x60);     // THRE | TEMT
  EXPECT_EQ(in(kMcr), 0x0B);
  EXPECT_FALSE(irq.level);
  EXPECT_EQ(uart.unexpected_accesses(), 0u);
}

TEST_F(UartTest, DlabSelectsTheDivisorLatch) {
  out(kIer, 0x05);
  out(kLcr, 0x83);
  out(kData, 0x0C);
  out(kIer, 0x00);
  EXPECT_EQ(in(kData), 0x0C);
  EXPECT_EQ(in(kIer), 0x00);
  out(kLcr, 0x03);
  EXPECT_EQ(in(kIer), 0x05);  // IER untouched by DLM writes
  EXPECT_EQ(uart.divisor(), 12);
}

TEST_F(UartTest, LinuxAutoconfigProbes) {
  // autoconfig(): IER read-back, scratch, and FIFO detection via IIR bits 7-6.
  out(kIer, 0x0F);
  EXPECT_EQ(in(kIer), 0x0F);
  out(kIer, 0x00);
  EXPECT_EQ(in(kIer), 0x00);
  out(kScr, 0xA5);
  EXPECT_EQ(in(kScr), 0xA5);
  out(kIirFcr, 0x01);
  EXPECT_EQ(in(kIirFcr) >> 6, 3);  // a 16550A
  EXPECT_EQ(in(kIirFcr) & 0x20, 0);  // not a 16750 (64-byte FIFO)
  out(kIirFcr, 0x00);
  EXPECT_EQ(in(kIirFcr) >> 6, 0);
}

TEST_F(UartTest, TransmitGoesToTheSink) {
  setup_115200_8n1();
  for (char c : std::string("hi\n")) {
    ASSERT_EQ(in(kLsr) & 0x20, 0x20);  // wait for THRE, as a polled driver does
    out(kData, uint8_t(c));
  }
  EXPECT_EQ(output, "hi\n");
  EXPECT_EQ(uart.state().bytes_sent, 3u);
}

TEST_F(UartTest, ThreInterruptRaisedOnEnableClearedByIirRead) {
  setup_115200_8n1();
  out(kIer, 0x02);
  EXPECT_TRUE(irq.level);
  EXPECT_EQ(in(kIirFcr), 0xC2);
  EXPECT_FALSE(irq.level);
  EXPECT_EQ(in(kIirFcr), 0xC1);
  out(kData, 'x');  // the byte leaves at once; THR is empty again
  EXPECT_TRUE(irq.level);
  // Linux's UART_BUG_THRE test: disable and re-enable must re-raise it.
  EXPECT_EQ(in(kIirFcr), 0xC2);
  out(kIer, 0x00);
  out(kIer, 0x02);
  EXPECT_EQ(in(kIirFcr), 0xC2);
}

TEST_F(UartTest, ReceivedDataInterruptAtTriggerLevelTimeoutBelowIt) {
  setup_115200_8n1();  // trigger level 14
  out(kIer, 0x01);
  EXPECT_FALSE(irq.level);
  EXPECT_TRUE(uart.receive('a'));
  EXPECT_TRUE(irq.level);
  EXPECT_EQ(in(kIirFcr), 0xCC);  // character timeout
  for (int i = 0; i < 13; ++i) EXPECT_TRUE(uart.receive(uint8_t('b' + i)));
  EXPECT_EQ(in(kIirFcr), 0xC4);  // received data available
  EXPECT_EQ(in(kLsr) & 0x01, 0x01);
  std::string got;
  while (in(kLsr) & 0x01) got.push_back(char(in(kData)));
  EXPECT_EQ(got, "abcdefghijklmn");
  EXPECT_FALSE(irq.level);
  EXPECT_EQ(in(kIirFcr), 0xC1);
}

TEST_F(UartTest, ReceiveBeatsThreInPriorityAndLineStatusBeatsBoth) {
  setup_115200_8n1();
  out(kIirFcr, 0x01);  // trigger level 1
  out(kIer, 0x07);     // rx data, THRE, line status
  EXPECT_EQ(in(kIirFcr), 0xC2);
  out(kIer, 0x07);     // no 0->1 change: THRE stays cleared
  uart.receive('z');
  out(kData, '!');      // THRE pending again, below rx data
  EXPECT_EQ(in(kIirFcr), 0xC4);
  for (int i = 0; i < 16; ++i) uart.receive('o');  // one too many: overrun
  EXPECT_EQ(in(kIirFcr), 0xC6);
  EXPECT_EQ(in(kLsr) & 0x03, 0x03);  // reading LSR clears OE
  EXPECT_EQ(in(kIirFcr), 0xC4);
  while (in(kLsr) & 0x01) in(kData);
  EXPECT_EQ(in(kIirFcr), 0xC2);
  EXPECT_EQ(in(kIirFcr), 0xC1);
}

TEST_F(UartTest, FifoHoldsSixteenAndCountsOverruns) {
  setup_115200_8n1();
  EXPECT_EQ(uart.rx_space(), 16u);
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(uart.receive(uint8_t(i)));
  EXPECT_EQ(uart.rx_space(), 0u);
  EXPECT_FALSE(uart.receive(99));
  EXPECT_EQ(uart.state().rx_count, 16);
  EXPECT_EQ(uart.state().overruns, 1u);
  EXPECT_EQ(in(kData), 0);  // the oldest byte survives; the newest was lost
  out(kIirFcr, 0xC3);       // clear the receive FIFO
  EXPECT_EQ(in(kLsr) & 0x01, 0);
}

TEST_F(UartTest, WithoutFifosTheNewByteOverwritesTheOld) {
  out(kIer, 0x01);
  EXPECT_TRUE(uart.receive('1'));
  EXPECT_EQ(in(kIirFcr), 0x04);  // no FIFO bits
  EXPECT_FALSE(uart.receive('2'));
  EXPECT_EQ(in(kData), '2');
  EXPECT_FALSE(irq.level);
}

TEST_F(UartTest, LoopbackReturnsWhatIsSentAndMirrorsModemLines) {
  setup_115200_8n1();
  out(kMcr, 0x10 | 0x0A);  // loop, RTS, OUT2 (Linux's autoconfig check)
  EXPECT_EQ(in(kMsr) & 0xF0, 0x90);  // CTS and DCD
  out(kData, 'L');
  EXPECT_EQ(output, "");
  EXPECT_EQ(in(kData), 'L');
  EXPECT_FALSE(uart.receive('h'));  // the receiver input is disconnected
  out(kMcr, 0x0B);
  EXPECT_EQ(in(kMsr) & 0xF0, 0xB0);
}

TEST_F(UartTest, ModemStatusInterruptOnDeltaInLoopback) {
  out(kIer, 0x08);
  out(kMcr, 0x10);
  in(kMsr);
  EXPECT_FALSE(irq.level);
  out(kMcr, 0x12);  // RTS -> CTS changes: DCTS
  EXPECT_TRUE(irq.level);
  EXPECT_EQ(in(kIirFcr), 0x00);
  EXPECT_EQ(in(kMsr) & 0x01, 0x01);
  EXPECT_FALSE(irq.level);
}

TEST_F(UartTest, WritesToStatusRegistersAreCountedAndIgnored) {
  out(kLsr, 0x00);
  out(kMsr, 0x00);
  EXPECT_EQ(in(kLsr), 0x60);
  EXPECT_EQ(uart.unexpected_accesses(), 2u);
}

TEST_F(UartTest, StateRoundTrips) {
  setup_115200_8n1();
  out(kIer, 0x01);
  uart.receive('s');
  Uart16550 copy;
  testing::FakeIrqLine copy_irq;
  copy.connect_irq(copy_irq);
  copy.load_state(uart.state());
  EXPECT_TRUE(copy_irq.level);
  EXPECT_EQ(copy.io_read(kData, 1), 's');
}

}  // namespace
}  // namespace bt86::devices
