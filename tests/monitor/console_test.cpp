// The console between a terminal (a pty here) or a pipe and the guest's
// 16550: forwarding with backpressure, escapes, end of input, output, raw
// mode and its restoration on destruction, SIGTERM and SIGKILL.
#include "monitor/console.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

namespace bt86::monitor {
namespace {

struct Pipe {
  int rd = -1, wr = -1;
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    rd = fds[0];
    wr = fds[1];
  }
  ~Pipe() {
    if (rd >= 0) ::close(rd);
    if (wr >= 0) ::close(wr);
  }
  void close_write() {
    ::close(wr);
    wr = -1;
  }
};

struct Pty {
  int master = -1, slave = -1;
  Pty() { EXPECT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0); }
  ~Pty() {
    ::close(master);
    ::close(slave);
  }
  bool canonical() const {
    termios t{};
    ::tcgetattr(slave, &t);
    return t.c_lflag & ICANON;
  }
};

void write_str(int fd, const std::string& s) { ASSERT_EQ(::write(fd, s.data(), s.size()), ssize_t(s.size())); }

// Everything the guest can read from the UART now (RBR until LSR.DR clears),
// feeding the console between reads as the machine loop would.
std::string drain(devices::Uart16550& uart, Console& console) {
  std::string got;
  for (int guard = 0; guard < 100000; ++guard) {
    console.feed(uart);
    if (!(uart.io_read(5, 1) & 0x01)) break;
    got += char(uart.io_read(0, 1));
  }
  return got;
}

// Pumps until `want` bytes arrived or a second passed.
std::string receive(devices::Uart16550& uart, Console& console, size_t want) {
  std::string got;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (got.size() < want && !console.quit_requested() && std::chrono::steady_clock::now() < end) {
    console.pump(uart);
    got += drain(uart, console);
    if (got.size() < want && console.input_fd() >= 0) {
      pollfd pfd{console.input_fd(), POLLIN, 0};
      ::poll(&pfd, 1, 10);
    }
  }
  return got;
}

TEST(Console, PipeInputReachesTheUartWithBackpressure) {
  Pipe in, out;
  auto console = Console::open({.in_fd = in.rd, .out_fd = out.wr});
  ASSERT_TRUE(console) << console.error().message;
  EXPECT_FALSE((*console)->interactive());
  devices::Uart16550 uart;
  uart.io_write(2, 1, 0x01);  // FIFOs on: 16 bytes at a time
  std::string text;
  for (int i = 0; i < 3000; ++i) text += char('a' + i % 26);
  write_str(in.wr, text);
  // The guest reads slowly: one pump fills the FIFO, the rest waits.
  (*console)->pump(uart);
  EXPECT_EQ(uart.state().rx_count, 16);
  EXPECT_TRUE((*console)->has_pending_input());
  EXPECT_EQ(receive(uart, **console, text.size()), text);
  EXPECT_EQ(uart.state().overruns, 0u);
  EXPECT_EQ((*console)->stats().bytes_in, text.size());
}

TEST(Console, EndOfInputStopsPollingButNotTheGuest) {
  Pipe in, out;
  auto console = Console::open({.in_fd = in.rd, .out_fd = out.wr});
  ASSERT_TRUE(console);
  devices::Uart16550 uart;
  write_str(in.wr, "ls\n");
  in.close_write();
  EXPECT_EQ(receive(uart, **console, 3), "ls\n");
  (*console)->pump(uart);
  EXPECT_TRUE((*console)->at_eof());
  EXPECT_EQ((*console)->input_fd(), -1);
  EXPECT_FALSE((*console)->quit_requested());
}

TEST(Console, NonInteractiveInputIsPassedThroughRaw) {
  Pipe in, out;
  auto console = Console::open({.in_fd = in.rd, .out_fd = out.wr});
  ASSERT_TRUE(console);
  devices::Uart16550 uart;
  write_str(in.wr, std::string("\x01x\x03", 3));
  EXPECT_EQ(receive(uart, **console, 3), std::string("\x01x\x03", 3));
  EXPECT_FALSE((*console)->quit_requested());
}

TEST(Console, GuestOutputGoesOutAtOnce) {
  Pipe in, out;
  auto console = Console::open({.in_fd = in.rd, .out_fd = out.wr});
  ASSERT_TRUE(console);
  devices::Uart16550 uart((*console)->sink());
  for (char c : std::string("login: ")) uart.io_write(0, 1, uint8_t(c));
  char buffer[16] = {};
  ASSERT_EQ(::read(out.rd, buffer, sizeof buffer), 7);
  EXPECT_STREQ(buffer, "login: ");
  EXPECT_EQ((*console)->stats().bytes_out, 7u);
}

TEST(Console, OutputToAClosedPipeIsDroppedNotFatal) {
  Pipe in, out;
  auto console = Console::open({.in_fd = in.rd, .out_fd = out.wr});
  ASSERT_TRUE(console);
  ::close(out.rd);
  out.rd = -1;
  (*console)->write('x');  // EPIPE, not SIGPIPE
  EXPECT_EQ((*console)->stats().bytes_dropped, 1u);
}

TEST(Console, OnlyOneConsoleAtATime) {
  Pipe in, out;
  auto first = Console::open({.in_fd = in.rd, .out_fd = out.wr});
  ASSERT_TRUE(first);
  EXPECT_FALSE(Console::open({.in_fd = in.rd, .out_fd = out.wr}));
  first->reset();
  EXPECT_TRUE(Console::open({.in_fd = in.rd, .out_fd = out.wr}));
}

TEST(Console, TerminalIsRawWhileOpenAndRestoredAfter) {
  Pty pty;
  ASSERT_TRUE(pty.canonical());
  {
    auto console = Console::open({.in_fd = pty.slave, .out_fd = pty.slave});
    ASSERT_TRUE(console) << console.error().message;
    EXPECT_TRUE((*console)->interactive());
    EXPECT_FALSE(pty.canonical());
    termios t{};
    ::tcgetattr(pty.slave, &t);
    EXPECT_FALSE(t.c_lflag & (ECHO | ISIG));
    EXPECT_FALSE(t.c_iflag & (ICRNL | IXON));
    EXPECT_TRUE(t.c_oflag & OPOST);
  }
  EXPECT_TRUE(pty.canonical());
}

TEST(Console, CtrlCGoesToTheGuestAndCtrlAEscapesWork) {
  Pty pty;
  auto console = Console::open({.in_fd = pty.slave, .out_fd = pty.slave});
  ASSERT_TRUE(console);
  devices::Uart16550 uart;
  uart.io_write(2, 1, 0x01);
  // Ctrl-C, a CR (not turned into LF), Ctrl-A Ctrl-A (one 0x01), Ctrl-A z
  // (swallowed), then text.
  write_str(pty.master, std::string("\x03\r\x01\x01\x01zok", 8));
  EXPECT_EQ(receive(uart, **console, 5), std::string("\x03\r\x01ok", 5));
  EXPECT_FALSE((*console)->quit_requested());
  write_str(pty.master, "\x01x");
  receive(uart, **console, 1);
  EXPECT_TRUE((*console)->quit_requested());
  EXPECT_EQ((*console)->input_fd(), -1);
}

TEST(Console, CtrlAHPrintsHelp) {
  Pty pty;
  auto console = Console::open({.in_fd = pty.slave, .out_fd = pty.slave});
  ASSERT_TRUE(console);
  devices::Uart16550 uart;
  write_str(pty.master, "\x01h!");
  EXPECT_EQ(receive(uart, **console, 1), "!");
  char buffer[256] = {};
  pollfd pfd{pty.master, POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 1000), 1);
  ASSERT_GT(::read(pty.master, buffer, sizeof buffer - 1), 0);
  EXPECT_NE(std::string(buffer).find("C-a x"), std::string::npos);
}

// A child opens the console on the pty, says so, and waits to be killed.
pid_t child_with_console(Pty& pty, bool guard) {
  Pipe ready;
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto console = Console::open({.in_fd = pty.slave, .out_fd = pty.slave, .guard = guard});
    char ok = console ? 'y' : 'n';
    [[maybe_unused]] ssize_t n = ::write(ready.wr, &ok, 1);
    for (;;) ::pause();
  }
  char ok = 0;
  EXPECT_EQ(::read(ready.rd, &ok, 1), 1);
  EXPECT_EQ(ok, 'y');
  return pid;
}

TEST(Console, SigtermRestoresTheTerminal) {
  Pty pty;
  const pid_t pid = child_with_console(pty, /*guard=*/false);
  EXPECT_FALSE(pty.canonical());
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "dies of the signal, as uncaught";
  EXPECT_TRUE(pty.canonical());
}

TEST(Console, GuardRestoresTheTerminalAfterSigkill) {
  Pty pty;
  const pid_t pid = child_with_console(pty, /*guard=*/true);
  EXPECT_FALSE(pty.canonical());
  ::kill(pid, SIGKILL);  // no handler runs: only the guard can help
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  bool restored = false;
  for (int i = 0; i < 200 && !restored; ++i) {
    restored = pty.canonical();
    if (!restored) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(restored);
}

TEST(Console, NoGuardNoHandlerMeansSigkillLeavesItRaw) {
  // The control for the test above: without the guard the terminal stays raw.
  Pty pty;
  const pid_t pid = child_with_console(pty, /*guard=*/false);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(pty.canonical());
}

}  // namespace
}  // namespace bt86::monitor
