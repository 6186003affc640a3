// COM1 <-> terminal: see console.h. The terminal state that must survive
// into signal handlers and atexit lives in one static struct; everything
// those paths call is async-signal-safe (tcsetattr, write, close, raise).
#include "monitor/console.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

namespace bt86::monitor {
namespace {

// Signals after which the terminal must be restored before the process
// dies. SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP and SIGSYS belong to the
// runtime (runtime/host_signals.cpp); the guard process covers deaths there.
constexpr int kRestoreSignals[] = {SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGABRT};
constexpr int kNumRestoreSignals = int(sizeof(kRestoreSignals) / sizeof(kRestoreSignals[0]));

struct TerminalGuard {
  std::atomic<bool> active{false};  // saved holds settings to put back
  int fd = -1;
  termios saved{};
  int guard_pipe = -1;  // write end; the guard restores when it closes without a byte
  pid_t guard_pid = -1;
  bool handler_installed[kNumRestoreSignals] = {};
  struct sigaction previous[kNumRestoreSignals] = {};
  bool atexit_registered = false;
};
TerminalGuard g_terminal;
std::atomic<bool> g_console_open{false};

// Restores the terminal and disarms the guard. Async-signal-safe.
void restore_terminal() {
  if (!g_terminal.active.exchange(false)) return;
  ::tcsetattr(g_terminal.fd, TCSANOW, &g_terminal.saved);
  if (g_terminal.guard_pipe >= 0) {
    const char done = 'r';  // "restored": the guard exits without touching the terminal
    [[maybe_unused]] ssize_t n = ::write(g_terminal.guard_pipe, &done, 1);
    ::close(g_terminal.guard_pipe);
    g_terminal.guard_pipe = -1;
  }
}

void on_fatal_signal(int signo) {
  restore_terminal();
  // Die of the same signal, as if nobody had caught it.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(signo, &dfl, nullptr);
  ::raise(signo);
}

void at_exit() { restore_terminal(); }

// The guard: a child that waits on a pipe. A byte means bt86 restored the
// terminal itself; end of file without one means bt86 died unseen, and the
// child puts the saved settings back. Only async-signal-safe calls after fork.
[[noreturn]] void run_guard(int read_fd, int tty_fd, const termios& saved) {
  ::prctl(PR_SET_NAME, "bt86-tty-guard", 0, 0, 0);
  // Survive the signals that might take bt86 down with its process group.
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  for (int sig : {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGTSTP, SIGTTOU, SIGPIPE}) ::sigaction(sig, &ign, nullptr);
  char byte;
  ssize_t n;
  do {
    n = ::read(read_fd, &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) ::tcsetattr(tty_fd, TCSANOW, &saved);
  ::_exit(0);
}

}  // namespace

Result<std::unique_ptr<Console>> Console::open(ConsoleOptions options) {
  if (g_console_open.exchange(true)) return make_error("console: another console is already open");
  std::unique_ptr<Console> console(new Console(options));
  console->m_interactive = ::isatty(options.in_fd) == 1;
  console->m_escapes = options.escapes.value_or(console->m_interactive);
  // Guest output to a reader that went away must not kill bt86: make the
  // write fail with EPIPE instead (counted as dropped).
  struct sigaction old_pipe {};
  if (::sigaction(SIGPIPE, nullptr, &old_pipe) == 0 && old_pipe.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
  if (console->m_interactive) {
    if (Status s = console->start_interactive(); !s) {
      g_console_open = false;
      console->m_interactive = false;
      return s.error();
    }
  }
  return console;
}

Status Console::start_interactive() {
  const int fd = m_options.in_fd;
  termios saved{};
  if (::tcgetattr(fd, &saved) != 0) return make_error(std::string("console: tcgetattr: ") + std::strerror(errno));
  // Raw input as QEMU's stdio backend sets it: no line editing, echo,
  // signals (Ctrl-C is the guest's), CR/LF mapping or flow control; 8-bit
  // characters. Output processing stays on (the guest writes "\r\n" anyway).
  termios raw = saved;
  raw.c_iflag &= ~tcflag_t(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
  raw.c_oflag |= OPOST;
  raw.c_lflag &= ~tcflag_t(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
  raw.c_cflag &= ~tcflag_t(CSIZE | PARENB);
  raw.c_cflag |= CS8;
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;

  g_terminal.fd = fd;
  g_terminal.saved = saved;
  if (m_options.guard) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return make_error(std::string("console: pipe: ") + std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      return make_error(std::string("console: fork of the terminal guard: ") + std::strerror(errno));
    }
    if (pid == 0) {
      ::close(fds[1]);
      run_guard(fds[0], fd, saved);
    }
    ::close(fds[0]);
    g_terminal.guard_pipe = fds[1];
    g_terminal.guard_pid = pid;
  }
  // Handlers only where nobody else has one: an owner's own handler (the
  // machine's clean shutdown) ends in exit(), and atexit restores.
  for (int i = 0; i < kNumRestoreSignals; ++i) {
    struct sigaction old {};
    if (::sigaction(kRestoreSignals[i], nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    if (::sigaction(kRestoreSignals[i], &sa, &g_terminal.previous[i]) == 0) g_terminal.handler_installed[i] = true;
  }
  if (!g_terminal.atexit_registered) g_terminal.atexit_registered = std::atexit(at_exit) == 0;
  g_terminal.active = true;
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) {
    const int err = errno;
    restore();
    return make_error(std::string("console: cannot put the terminal in raw mode: ") + std::strerror(err));
  }
  m_owns_terminal = true;
  return Ok{};
}

void Console::restore() {
  if (!m_owns_terminal) return;
  m_owns_terminal = false;
  restore_terminal();
  for (int i = 0; i < kNumRestoreSignals; ++i) {
    if (!g_terminal.handler_installed[i]) continue;
    ::sigaction(kRestoreSignals[i], &g_terminal.previous[i], nullptr);
    g_terminal.handler_installed[i] = false;
  }
  if (g_terminal.guard_pid > 0) {
    ::waitpid(g_terminal.guard_pid, nullptr, 0);  // the guard exits once it reads the byte
    g_terminal.guard_pid = -1;
  }
}

Console::~Console() {
  restore();
  g_console_open = false;
}

void Console::write_all(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(m_options.out_fd, p, size);
    if (n > 0) {
      p += n;
      size -= size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // Someone made out_fd non-blocking: wait for room rather than lose output.
      pollfd pfd{m_options.out_fd, POLLOUT, 0};
      if (::poll(&pfd, 1, 1000) > 0) continue;
    }
    m_stats.bytes_dropped += size;
    return;
  }
}

void Console::write(uint8_t byte) {
  const uint64_t dropped = m_stats.bytes_dropped;
  write_all(&byte, 1);
  if (m_stats.bytes_dropped == dropped) ++m_stats.bytes_out;
}

int Console::input_fd() const {
  if (m_eof || m_quit || m_pending.size() >= kInputBuffer) return -1;
  return m_options.in_fd;
}

void Console::handle_input_byte(uint8_t byte) {
  if (!m_escapes) {
    m_pending.push_back(byte);
    return;
  }
  if (!m_got_escape) {
    if (byte == kEscape) {
      m_got_escape = true;
    } else {
      m_pending.push_back(byte);
    }
    return;
  }
  // The byte after Ctrl-A, as in QEMU's character mux.
  m_got_escape = false;
  switch (byte) {
    case kEscape:
      m_pending.push_back(kEscape);
      break;
    case 'x':
    case 'X':
      m_quit = true;
      break;
    case 'h':
    case 'H':
    case '?': {
      static constexpr char kHelp[] =
          "\r\nC-a x    exit bt86\r\nC-a C-a  send C-a to the guest\r\nC-a h    print this help\r\n";
      write_all(kHelp, sizeof kHelp - 1);
      break;
    }
    default:
      break;  // unknown escapes are swallowed, as QEMU does
  }
}

void Console::read_input() {
  const int fd = input_fd();
  if (fd < 0) return;
  pollfd pfd{fd, POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&pfd, 1, 0);
  } while (ready < 0 && errno == EINTR);
  if (ready <= 0) return;
  if (pfd.revents & POLLNVAL) {
    m_eof = true;
    return;
  }
  uint8_t buffer[512];
  const size_t room = std::min(sizeof buffer, kInputBuffer - m_pending.size());
  ssize_t n;
  do {
    n = ::read(fd, buffer, room);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return;
  if (n <= 0) {
    // End of input (or EIO: the terminal hung up). The guest keeps running.
    m_eof = true;
    return;
  }
  for (ssize_t i = 0; i < n && !m_quit; ++i) handle_input_byte(buffer[i]);
}

void Console::feed(devices::Uart16550& uart) {
  while (!m_pending.empty() && uart.rx_space() > 0) {
    uart.receive(m_pending.front());
    m_pending.pop_front();
    ++m_stats.bytes_in;
  }
}

void Console::pump(devices::Uart16550& uart) {
  feed(uart);
  read_input();
  feed(uart);
}

}  // namespace bt86::monitor
