// Machine: one virtual PC. It owns guest RAM, the MMU with its two guest
// windows, the PC devices, the CPU model and both execution engines, and
// runs the loop that ties them together (DESIGN.md §2):
//
//   loop: service devices (PIT deadline, console input)
//         deliver a pending external interrupt if EFLAGS.IF allows
//         halted?  sleep until the next device event
//         CPL 0:   Translator::run        (guest kernel code, translated)
//         CPL 3:   UserExecutor::run      (guest user code, native)
//         the exit: hidden fault → map and retry; sensitive instruction →
//         CPU model; guest exception → deliver through the guest IDT
//
// All guest-visible state lives in plain data (VcpuState, GuestMemory, the
// devices' State structs) so a later snapshot can save and restore it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "machine/vcpu_state.h"
#include "mmu/guest_memory.h"

namespace bt86::devices {
class PcDevices;
class IoBus;
}  // namespace bt86::devices

namespace bt86::machine {

struct MachineConfig {
  uint32_t memory_mib = 256;
  // Host base of the kernel window translated code addresses through GS
  // (4 GiB aligned, far from the user window at 0 and from bt86 itself).
  uint64_t kernel_window_base = uint64_t(1) << 36;
  // Guest bytes written to COM1.
  std::function<void(uint8_t)> serial_out;
  // Guest user code: direct execution, translation while a process traps
  // often (UserEnginePolicy), or always translated.
  enum class UserCode : uint8_t { kAuto, kDirect, kTranslated };
  UserCode user_code = UserCode::kAuto;
  // Each translated block, as text (--trace-bt).
  std::function<void(const std::string&)> trace_sink;
};

// Why run() returned.
enum class StopReason : uint8_t {
  kDebugExit,    // the guest wrote to the debug-exit port: status (v << 1) | 1
  kPowerOff,     // the guest powered the machine off (status 0)
  kReset,        // the guest reset the machine (reboot: status 0)
  kTripleFault,  // shutdown after a fault during #DF delivery
  kGuestError,   // the guest did something bt86 cannot run, or is stuck
  kQuit,         // the user asked bt86 to quit (console Ctrl-A x)
  kHostError,    // bt86 failed (a bug or a host resource)
};

struct Stop {
  StopReason reason = StopReason::kGuestError;
  int status = 0;       // suggested exit status of bt86
  std::string message;  // one line for the user (empty for a clean end)
};

const char* stop_reason_name(StopReason reason);

class Machine {
 public:
  static Result<std::unique_ptr<Machine>> create(const MachineConfig& config);
  virtual ~Machine() = default;

  virtual mmu::GuestMemory& memory() = 0;
  virtual VcpuState& vcpu() = 0;
  virtual devices::PcDevices& devices() = 0;
  virtual devices::IoBus& io_bus() = 0;

  // Runs the guest from vcpu() until it stops. Call once the loader has
  // put the guest in memory and set vcpu(), from the thread that created
  // the machine (its host tick and signal state are that thread's).
  virtual Stop run() = 0;

  // Async-signal-safe: makes run() return kQuit soon (Ctrl-A x).
  virtual void request_quit() = 0;
  // The terminal side (monitor/console.h), polled by the loop without threads.
  struct InputHooks {
    std::function<int()> input_fd;   // descriptor to poll for POLLIN, or -1
    std::function<void()> pump;      // input_fd() is readable
    std::function<void()> service;   // every pass of the loop: feed the UART, check for quit
    std::function<bool()> pending;   // input read but not yet taken by the UART (optional)
  };
  virtual void set_input_hooks(InputHooks hooks) = 0;

  // Everything --stats prints.
  virtual std::string stats_text() const = 0;
};

}  // namespace bt86::machine
