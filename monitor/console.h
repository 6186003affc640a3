// Console: the guest's COM1 connected to bt86's terminal (stdin/stdout),
// as QEMU's `-serial mon:stdio` / `-nographic` does.
//
// Interactive mode (stdin is a terminal): the terminal is put in raw mode so
// that every key, Ctrl-C included, reaches the guest as a byte; Ctrl-A x
// quits bt86, Ctrl-A Ctrl-A sends one 0x01, Ctrl-A h prints the keys. The
// terminal is restored on every way out: the destructor, exit() (atexit),
// SIGTERM/SIGHUP/SIGINT/SIGQUIT/SIGABRT (handlers, when nobody else handles
// them), and, for deaths no handler sees (a fatal host fault, which the
// runtime turns into the default action, or SIGKILL), a tiny guard process
// forked at open() that restores the saved settings when bt86's end of a
// pipe closes.
//
// Non-interactive mode (stdin is a pipe or a file): the same forwarding
// without raw mode or escapes, so a test can type commands into the guest
// through a pipe and read its output on stdout. At end of input the guest
// keeps running.
//
// No threads: the machine loop polls input_fd() with whatever else it waits
// on while the guest halts, and calls pump() when it is readable and
// whenever the guest may have drained the UART's receive FIFO. Input waits in
// a buffer here until the FIFO has room, so typing fast or piping a file
// loses nothing (the 16550 would otherwise overrun).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

#include "base/result.h"
#include "devices/uart_16550.h"

namespace bt86::monitor {

struct ConsoleOptions {
  int in_fd = 0;
  int out_fd = 1;
  // Ctrl-A escapes; default: on when in_fd is a terminal.
  std::optional<bool> escapes;
  // Fork the guard process in interactive mode (tests of the signal paths
  // turn it off to see the handlers alone).
  bool guard = true;
};

struct ConsoleStats {
  uint64_t bytes_in = 0;       // bytes handed to the UART
  uint64_t bytes_out = 0;      // bytes the guest wrote that reached out_fd
  uint64_t bytes_dropped = 0;  // guest output lost to a write error (reader gone)
};

class Console {
 public:
  // Bytes of input buffered while the guest's FIFO is full; beyond this
  // bt86 stops reading and the pipe or terminal holds the rest.
  static constexpr size_t kInputBuffer = 4096;
  static constexpr uint8_t kEscape = 0x01;  // Ctrl-A

  // Sets up the console. Fails if another Console owns the terminal, or if
  // the terminal cannot be put in raw mode.
  static Result<std::unique_ptr<Console>> open(ConsoleOptions options = {});
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;
  ~Console();  // restores the terminal

  bool interactive() const { return m_interactive; }

  // Guest output (the UART's sink): written to out_fd at once, so that
  // interactive echo is immediate.
  void write(uint8_t byte);
  devices::Uart16550::Sink sink() {
    return [this](uint8_t byte) { write(byte); };
  }

  // The descriptor to poll for POLLIN, or -1 when the console wants no input
  // now (end of input, or the buffer is full until the guest reads).
  int input_fd() const;
  // Reads what in_fd has (never blocks), handles escapes, then feed().
  void pump(devices::Uart16550& uart);
  // Moves buffered input into the UART's FIFO as far as it has room; no
  // system calls. Cheap enough to call after every read of the COM1 RBR.
  void feed(devices::Uart16550& uart);
  bool has_pending_input() const { return !m_pending.empty(); }

  // Ctrl-A x was typed: the machine should end the run.
  bool quit_requested() const { return m_quit; }
  bool at_eof() const { return m_eof; }
  const ConsoleStats& stats() const { return m_stats; }

  // Puts the terminal back as it was (idempotent; the destructor does it).
  void restore();

 private:
  explicit Console(ConsoleOptions options) : m_options(options) {}
  Status start_interactive();
  void read_input();
  void handle_input_byte(uint8_t byte);
  void write_all(const void* data, size_t size);

  ConsoleOptions m_options;
  bool m_interactive = false;
  bool m_escapes = false;
  bool m_owns_terminal = false;
  bool m_got_escape = false;
  bool m_eof = false;
  bool m_quit = false;
  std::deque<uint8_t> m_pending;
  ConsoleStats m_stats;
};

}  // namespace bt86::monitor
