// Whole-machine runs: see vm_runner.h.
#include "monitor/vm_runner.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "base/log.h"
#include "devices/pc_io_map.h"
#include "machine/machine.h"
#include "monitor/console.h"
#include "monitor/host_memory.h"
#include "monitor/linux_boot.h"
#include "monitor/multiboot.h"

namespace bt86::monitor {
namespace {

Result<std::vector<uint8_t>> read_file(const std::string& path, const char* what) {
  if (auto s = check_readable_file(path); !s) return make_error(std::string(what) + " " + s.error().message);
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return make_error(std::string(what) + " " + path + ": read error");
  return bytes;
}

// Linux on a PC without ACPI has no way to switch itself off: after
// "reboot: Power down" it halts, and a panic spins forever. bt86 watches the
// kernel's console for these lines, so that `poweroff -f` ends the run with
// status 0 and a panic ends it with the guest error status instead of a
// silent hang (issue 5 item 7). The lines are the kernel's own messages
// (kernel/reboot.c, kernel/panic.c).
class LinuxConsoleWatcher {
 public:
  enum class Event { kNone, kPowerOff, kRestart, kPanic };

  Event feed(uint8_t byte) {
    if (byte != '\n') {
      if (m_line.size() < 512) m_line.push_back(char(byte));
      return Event::kNone;
    }
    Event e = Event::kNone;
    if (m_line.find("reboot: Power down") != std::string::npos || m_line.find("System halted") != std::string::npos)
      e = Event::kPowerOff;
    else if (m_line.find("reboot: Restarting system") != std::string::npos)
      e = Event::kRestart;
    else if (m_line.find("Kernel panic - not syncing") != std::string::npos)
      e = Event::kPanic;
    if (e == Event::kPanic) m_panic_line = m_line;
    m_line.clear();
    return e;
  }
  const std::string& panic_line() const { return m_panic_line; }

 private:
  std::string m_line;
  std::string m_panic_line;
};

}  // namespace

int run_vm(const Options& options, const KernelImage& image) {
  auto log = log::get("monitor");
  const bool is_linux = image.kind() == ImageKind::LinuxBzImage;

  std::vector<uint8_t> initrd;
  if (options.initrd) {
    if (!is_linux) {
      std::fprintf(stderr, "bt86: --initrd is for a Linux kernel; use --module for a Multiboot kernel\n");
      return kExitUsage;
    }
    auto bytes = read_file(*options.initrd, "--initrd");
    if (!bytes) {
      std::fprintf(stderr, "bt86: %s\n", bytes.error().message.c_str());
      return kExitUsage;
    }
    initrd = std::move(*bytes);
  }
  std::vector<std::vector<uint8_t>> module_bytes;
  std::vector<MultibootModule> modules;
  if (!options.modules.empty() && is_linux) {
    std::fprintf(stderr, "bt86: --module is for a Multiboot kernel; use --initrd for Linux\n");
    return kExitUsage;
  }
  for (const Module& m : options.modules) {
    auto bytes = read_file(m.file, "--module");
    if (!bytes) {
      std::fprintf(stderr, "bt86: %s\n", bytes.error().message.c_str());
      return kExitUsage;
    }
    module_bytes.push_back(std::move(*bytes));
  }
  for (size_t i = 0; i < options.modules.size(); ++i)
    modules.push_back(MultibootModule{module_bytes[i], options.modules[i].cmdline});

  auto console = Console::open();
  if (!console) {
    std::fprintf(stderr, "bt86: console: %s\n", console.error().message.c_str());
    return kExitHostFailure;
  }
  Console& con = **console;

  LinuxConsoleWatcher watcher;
  std::optional<machine::StopReason> watched;
  machine::Machine* machine_ptr = nullptr;

  machine::MachineConfig config;
  config.memory_mib = options.memory_mib;
  config.user_code = options.user_code == "direct"       ? machine::MachineConfig::UserCode::kDirect
                     : options.user_code == "translated" ? machine::MachineConfig::UserCode::kTranslated
                                                         : machine::MachineConfig::UserCode::kAuto;
  config.serial_out = [&](uint8_t byte) {
    con.write(byte);
    if (!is_linux || watched) return;
    switch (watcher.feed(byte)) {
      case LinuxConsoleWatcher::Event::kNone:
        break;
      case LinuxConsoleWatcher::Event::kPowerOff:
        watched = machine::StopReason::kPowerOff;
        break;
      case LinuxConsoleWatcher::Event::kRestart:
        break;  // the i8042 reset that follows ends the run
      case LinuxConsoleWatcher::Event::kPanic:
        watched = machine::StopReason::kGuestError;
        break;
    }
    if (watched && machine_ptr) machine_ptr->request_quit();
  };
  if (options.trace_bt) config.trace_sink = [](const std::string& text) { std::fputs(text.c_str(), stderr); };

  auto created = machine::Machine::create(config);
  if (!created) {
    std::fprintf(stderr, "bt86: %s\n", created.error().message.c_str());
    return kExitHostFailure;
  }
  machine::Machine& m = **created;
  machine_ptr = &m;

  if (is_linux) {
    const std::string cmdline = options.append.value_or("console=ttyS0");
    std::span<uint8_t> ram(m.memory().host(mmu::GuestPhys{0}, m.memory().size()), m.memory().size());
    auto layout = load_linux(image.bytes(), initrd, cmdline, ram, m.vcpu());
    if (!layout) {
      std::fprintf(stderr, "bt86: %s: %s\n", image.name().c_str(), layout.error().message.c_str());
      return kExitUsage;
    }
    log->info("{}", layout->describe());
  } else {
    auto state = load_multiboot(m.memory(), image.bytes(), options.append.value_or(""), modules, image.name());
    if (!state) {
      std::fprintf(stderr, "bt86: %s\n", state.error().message.c_str());
      return kExitUsage;
    }
    m.vcpu() = *state;
  }

  devices::PcDevices& dev = m.devices();
  m.set_input_hooks(machine::Machine::InputHooks{
      [&con] { return con.input_fd(); },
      [&con, &dev] { con.pump(dev.com1); },
      [&con, &dev, &m] {
        if (con.has_pending_input()) con.feed(dev.com1);
        if (con.quit_requested()) m.request_quit();
      },
      [&con] { return con.has_pending_input(); }});

  machine::Stop stop = m.run();
  if (watched && stop.reason == machine::StopReason::kQuit) {
    if (*watched == machine::StopReason::kPowerOff) {
      stop = {machine::StopReason::kPowerOff, 0, ""};
    } else {
      stop = {machine::StopReason::kGuestError, kExitGuestError,
              "the guest kernel panicked: " + watcher.panic_line()};
    }
  }
  con.restore();
  if (options.stats) {
    std::fputs(m.stats_text().c_str(), stderr);
    std::fputs(own_memory_line().c_str(), stderr);
  }
  if (!stop.message.empty()) std::fprintf(stderr, "bt86: %s\n", stop.message.c_str());
  switch (stop.reason) {
    case machine::StopReason::kDebugExit:
      return stop.status;
    case machine::StopReason::kPowerOff:
    case machine::StopReason::kReset:
    case machine::StopReason::kQuit:
      return 0;
    case machine::StopReason::kTripleFault:
    case machine::StopReason::kGuestError:
      return kExitGuestError;
    case machine::StopReason::kHostError:
      return kExitHostFailure;
  }
  return kExitGuestError;
}

}  // namespace bt86::monitor
