// The machine loop: see machine.h for the picture. This file is the glue;
// the architecture lives in the CPU model (interpreter.cpp, interrupts.cpp,
// descriptors.cpp), the MMU (mmu/shadow_mmu.cpp), the translator and the
// direct executor. What is decided here is only which engine runs next and
// what each kind of exit means for the guest.
#include "machine/machine.h"

#include <poll.h>
#include <sys/mman.h>
#include <time.h>
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <spdlog/fmt/fmt.h>

#include "base/log.h"
#include "devices/clock.h"
#include "devices/io_bus.h"
#include "devices/pc_io_map.h"
#include "machine/access_check.h"
#include "machine/code_view.h"
#include "machine/cpu_hooks.h"
#include "machine/descriptors.h"
#include "machine/interpreter.h"
#include "machine/interrupts.h"
#include "machine/user_engine_policy.h"
#include "mmu/page_walk.h"
#include "mmu/shadow_mmu.h"
#include "runtime/direct_executor.h"
#include "runtime/host_signals.h"
#include "runtime/tick_timer.h"
#include "translator/callout.h"
#include "translator/translator.h"

namespace bt86::machine {
namespace {

using runtime::Seg;

// The devices' clock: their deadlines and the loop's idea of now agree.
uint64_t now_ns() { return devices::monotonic_now_ns(); }

// Blocks the translator may run before the loop looks at the devices again
// even without a tick (a safety net; the tick is what normally stops it).
constexpr uint64_t kMaxBlocksPerRun = 1u << 20;
constexpr uint64_t kGuardBytes = uint64_t(16) << 30;
constexpr uint64_t kInputPollNs = 1000000;  // service_devices: console input polled at most this often
// The host tick (arm_tick) stops the guest when a device deadline is due,
// and at least this often for console input the loop has not seen yet.
constexpr uint64_t kInputTickNs = 10000000;
// Never arm the tick closer than this to now: a deadline in the past (a
// device not yet updated) must not keep the guest from running at all.
constexpr uint64_t kMinTickNs = 20000;

struct LoopStats {
  uint64_t translated_runs = 0;
  uint64_t user_translated_runs = 0;  // runs of guest user code through the user translator
  uint64_t direct_runs = 0;
  uint64_t not_executable = 0;      // user pages the host must not execute (cpuid inside): run translated
  uint64_t not_executable_known = 0;  // ... known so before running directly (no refused fetch)
  uint64_t interpreted = 0;       // instructions run by the CPU model outside callouts
  uint64_t callouts = 0;
  uint64_t interrupts = 0;        // external interrupts delivered
  uint64_t exceptions = 0;        // exceptions and INT n delivered
  uint64_t hidden_faults_user = 0;
  uint64_t hidden_faults_kernel = 0;
  uint64_t true_faults = 0;
  uint64_t segment_fixups = 0;    // host GDT selectors replaced by the guest's descriptor
  uint64_t halts = 0;
  uint64_t halt_ns = 0;
  uint64_t mode_switches = 0;     // CPL 0 <-> 3
  uint64_t unbacked_pages = 0;    // pages of all-ones mapped for physical addresses without RAM
  uint64_t prefaults = 0;         // pages mapped when a #PF handler returned (prefault_after_iret)
  uint64_t checked_steps = 0;     // kernel instructions run one at a time with checks (checked_step)
  uint64_t ticks_armed = 0;       // one-shot host ticks armed (arm_tick)
};

// The last true page fault given to the guest, until the IRET that may end
// its handler (prefault_after_iret).
struct PendingPrefault {
  bool valid = false;
  mmu::Window window = mmu::Window::kKernel;
  uint32_t lin = 0;
  uint32_t eip = 0;  // the faulting instruction
  uint32_t cr3 = 0;
  Access kind = Access::kRead;
};

class PcMachine final : public Machine,
                        private CpuHooks,
                        private translator::CalloutHandler {
 public:
  explicit PcMachine(const MachineConfig& config)
      : m_config(config),
        m_user_policy(UserEnginePolicyConfig{.enabled = config.user_code != MachineConfig::UserCode::kDirect,
                                             .always = config.user_code == MachineConfig::UserCode::kTranslated}) {}
  ~PcMachine() override {
    for (void* p : m_guards) munmap(p, kGuardBytes);
  }

  Status init();

  mmu::GuestMemory& memory() override { return *m_memory; }
  VcpuState& vcpu() override { return m_vcpu; }
  devices::PcDevices& devices() override { return *m_devices; }
  devices::IoBus& io_bus() override { return m_bus; }
  Stop run() override;
  void request_quit() override {
    m_quit.store(true, std::memory_order_relaxed);
    stop_engines();
  }
  // Async-signal-safe: the running engine returns soon.
  void stop_engines() {
    if (m_translator) m_translator->request_exit();
    if (m_user_translator) m_user_translator->request_exit();
    if (m_direct) m_direct->request_exit();
  }
  void set_input_hooks(InputHooks hooks) override { m_input = std::move(hooks); }
  std::string stats_text() const override;

 private:
  // One pass of the loop. Returns a Stop when the machine is done.
  std::optional<Stop> step();
  std::optional<Stop> run_translated();
  std::optional<Stop> run_user();
  std::optional<Stop> run_user_translated();
  std::optional<Stop> run_translator(translator::Translator& translator, mmu::Window window);
  std::optional<Stop> run_direct();
  void track_user_stints();
  bool needs_checked_mode() const;
  bool alignment_checks() const;
  void update_fpu_checked() {
    const bool checked = (m_vcpu.sys.cr0 & (cr0::TS | cr0::EM)) || !(m_vcpu.sys.cr4 & cr4::OSFXSR);
    m_translator->set_fpu_checked(checked);
    m_user_translator->set_fpu_checked(checked);
  }
  std::optional<Stop> checked_step(translator::Translator& translator);
  std::optional<Stop> translated_fault(const translator::GuestFault& f, mmu::Window window);
  std::optional<Stop> interpret(const ExecuteOptions& options = {});
  std::optional<Stop> deliver_event(const Event& event);
  std::optional<Stop> after_step(const StepResult& r);
  void service_devices();
  void arm_tick();
  // Counts a CPL change since the last call (event delivery, the end of a
  // pass): each switch once, whether it happened inside a run or between.
  void count_mode_switch() {
    if (m_vcpu.cpl == m_counted_cpl) return;
    m_counted_cpl = m_vcpu.cpl;
    ++m_stats.mode_switches;
  }
  void wait_for_event();
  void poll_input(int timeout_ms);
  bool fix_host_gdt_selectors();
  std::optional<Stop> resolve_page_fault(mmu::Window window, uint32_t lin, Access kind);
  void prefault_after_iret();
  bool map_unbacked(uint32_t lin);
  void drop_unbacked();
  Stop guest_error(std::string message);
  void paging_changed();

  // CpuHooks
  uint32_t io_in(uint16_t port, unsigned size) override { return m_bus.read(port, size); }
  void io_out(uint16_t port, unsigned size, uint32_t value) override {
    m_bus.write(port, size, value);
    // The guest may have moved a timer's deadline before the armed tick
    // (Linux programs the PIT one-shot for every tick when idle-dynticks).
    if (m_devices->next_deadline_ns() < m_tick_at) arm_tick();
  }
  void control_register_written(int cr, uint32_t old_value, uint32_t new_value) override;
  void invlpg(uint32_t lin) override {
    drop_unbacked();
    m_mmu->invlpg(lin);
    m_kernel_code.revalidate_page(lin >> 12);
    m_user_code.mark_stale(false);
  }
  void segments_changed() override {}
  uint64_t host_tsc() override { return __rdtsc(); }

  // CalloutHandler: a sensitive instruction in translated code.
  translator::CalloutAction callout(runtime::CpuState& cpu, const translator::CalloutInsn& insn) override;

  MachineConfig m_config;
  std::optional<mmu::GuestMemory> m_memory;
  std::unique_ptr<mmu::ShadowMmu> m_mmu;
  devices::IoBus m_bus;
  std::unique_ptr<devices::PcDevices> m_devices;
  std::unique_ptr<translator::Translator> m_translator;       // guest kernel code (CPL 0)
  std::unique_ptr<translator::Translator> m_user_translator;  // guest user code of trap-heavy processes (CPL 3)
  std::unique_ptr<runtime::DirectExecutor> m_direct;
  VcpuState m_vcpu;
  std::optional<Stop> m_stop;          // set by device callbacks (debug exit, reset)
  std::optional<Stop> m_callout_stop;  // set by a callout that ended the machine
  uint64_t m_callout_seq = 0;          // callouts so far (checked_step: did the interpreter run it?)
  std::atomic<bool> m_quit{false};
  InputHooks m_input;
  // The code each translator reads, and the linear-to-physical bindings its
  // blocks rely on (code_view.h).
  CodeView m_kernel_code{m_vcpu, false};
  CodeView m_user_code{m_vcpu, true};
  UserEnginePolicy m_user_policy;
  uint8_t m_policy_cpl = 0;
  uint8_t m_counted_cpl = 0;  // count_mode_switch           // the CPL the policy last saw (track_user_stints)
  bool m_translate_user_next = false;
  // The guest left user code for a page fault or an external interrupt,
  // which cost the same in both engines (the policy's stint goes on).
  bool m_user_exit_neutral = false;  // the last direct run stopped at a page the host must not execute
  uint64_t m_now_ns = 0;              // the loop's clock at this pass (service_devices)
  std::vector<void*> m_guards;
  std::vector<uint32_t> m_unbacked;  // kernel-window pages standing for physical addresses without RAM
  LoopStats m_stats;
  PendingPrefault m_prefault;
  uint64_t m_last_input_poll_ns = 0;
  // The preemption tick, armed one shot at a time at the next time a device
  // needs the loop (arm_tick); m_tick_at is when it fires (0: not armed).
  runtime::TickTimer m_tick;
  uint64_t m_tick_at = 0;
};

const char* kStopNames[] = {"debug exit", "power off", "reset", "triple fault", "guest error", "quit",
                            "host error"};

}  // namespace

const char* stop_reason_name(StopReason reason) { return kStopNames[static_cast<int>(reason)]; }

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& config) {
  auto m = std::make_unique<PcMachine>(config);
  if (auto s = m->init(); !s) return s.error();
  return std::unique_ptr<Machine>(std::move(m));
}

namespace {

Status PcMachine::init() {
  auto memory = mmu::GuestMemory::create(m_config.memory_mib);
  if (!memory) return memory.error();
  m_memory.emplace(std::move(*memory));

  mmu::ShadowConfig sc;
  sc.kernel_base = m_config.kernel_window_base;
  // The host never executes a user page that may hold cpuid (this host has
  // no CPUID faulting, and the guest must see the virtual CPU at CPL 3 too):
  // such pages run through the user translator (run_user).
  sc.exec_only_clean = true;
  auto shadow = mmu::ShadowMmu::create(*m_memory, sc);
  if (!shadow) return shadow.error();
  m_mmu = std::move(*shadow);
  // Guard areas around the windows: translated string instructions run on
  // 64-bit pointers (translator/expand_misc.cpp), and a rep with a huge
  // count that walks off a window must fault here, not reach host memory.
  // 16 GiB covers rep movsd with any 32-bit count. The user window starts
  // at host address 0: below it a walk reaches non-canonical addresses.
  const uint64_t user_end = m_mmu->window_base(mmu::Window::kUser) + (uint64_t(1) << 32);
  for (uint64_t start : {m_config.kernel_window_base - kGuardBytes, m_config.kernel_window_base + (uint64_t(1) << 32),
                         user_end}) {
    void* p = mmap(reinterpret_cast<void*>(start), kGuardBytes, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) return make_error(fmt::format("cannot reserve the guard area at {:#x}: {}", start, strerror(errno)));
    m_guards.push_back(p);
  }

  devices::PcDevicesConfig dc;
  dc.com1_output = m_config.serial_out;
  dc.ram_bytes = m_memory->size();
  dc.on_reset = [this] {
    m_stop = Stop{StopReason::kReset, 0, ""};
    stop_engines();
  };
  dc.on_debug_exit = [this](uint32_t status) {
    m_stop = Stop{StopReason::kDebugExit, int(status), ""};
    stop_engines();
  };
  m_devices = std::make_unique<devices::PcDevices>(dc);
  if (auto s = m_devices->bind(m_bus); !s) return s.error();

  translator::TranslatorConfig tc;
  tc.window_base = m_config.kernel_window_base;
  // The runtime's preemption tick also stops translated code (through
  // Translator::request_exit() and its poll page).
  tc.stop_on_host_tick = true;
  tc.check_segments = true;
  tc.fast_segment_loads = true;  // CPL 0 only; the GDTR goes to set_gdt() (run_translated, callout)
  auto tr = translator::Translator::create(tc, m_kernel_code);
  if (!tr) return tr.error();
  m_translator = std::move(*tr);
  m_kernel_code.bind(*m_memory, *m_translator);
  m_translator->set_callout_handler(this);
  // Guest user code, when it runs translated, addresses the user window: the
  // same pages, with the same rights, as when it runs directly.
  translator::TranslatorConfig uc = tc;
  uc.window_base = m_mmu->window_base(mmu::Window::kUser);
  uc.tc_size = size_t(8) << 20;
  uc.user_mode = true;
  uc.fast_segment_loads = false;  // its remembered loads are CPL-0 results
  auto utr = translator::Translator::create(uc, m_user_code);
  if (!utr) return utr.error();
  m_user_translator = std::move(*utr);
  m_user_code.bind(*m_memory, *m_user_translator);
  m_user_translator->set_callout_handler(this);
  m_user_translator->set_code_page_callback([this](uint32_t page) { m_mmu->protect_code_page(page << 12); });
  // The interpreter's rdtsc is host TSC + sys.tsc_offset at CPL 0 (TSD only
  // faults at CPL > 0): translated code does the same inline (Linux reads
  // the TSC ~1 M times per boot; a callout costs ~200 ns).
  m_translator->set_inline_rdtsc(&m_vcpu.sys.tsc_offset);
  // The translator speaks page numbers, the MMU physical addresses.
  m_translator->set_code_page_callback([this](uint32_t page) { m_mmu->protect_code_page(page << 12); });
  m_mmu->set_code_write_callback([this](uint32_t phys) {
    m_translator->invalidate_code_page(phys >> 12);
    m_user_translator->invalidate_code_page(phys >> 12);
  });
  if (m_config.trace_sink) {
    m_translator->set_trace_sink(m_config.trace_sink);
    m_user_translator->set_trace_sink(m_config.trace_sink);
  }

  runtime::DirectConfig dc2;
  dc2.tick_period = std::chrono::microseconds(0);  // arm_tick drives the tick
  dc2.trap_rdtsc = false;  // guest TSC = host TSC until the guest writes the TSC MSR
  auto direct = runtime::DirectExecutor::create(dc2);
  if (!direct) return direct.error();
  m_direct = std::move(*direct);
  // Without a tick, a guest that computes without exits would never let the
  // loop deliver its timer interrupts or see Ctrl-A x: refuse to start.
  if (auto s = m_tick.create(); !s) return make_error("cannot create the host tick timer: " + s.error().message);
  return Ok{};
}

Stop PcMachine::guest_error(std::string message) {
  return Stop{StopReason::kGuestError, 4, std::move(message)};
}

Stop PcMachine::run() {
  m_vcpu.cpl = m_vcpu.regs.sreg(Seg::CS).selector & 3;
  m_counted_cpl = m_vcpu.cpl;
  m_mmu->set_control_registers(m_vcpu.sys.cr0, m_vcpu.sys.cr3, m_vcpu.sys.cr4);
  for (;;) {
    if (auto s = step()) return *s;
  }
}

std::optional<Stop> PcMachine::step() {
  if (m_stop) return m_stop;
  if (m_quit.load(std::memory_order_relaxed)) return Stop{StopReason::kQuit, 0, "quit by the user"};
  service_devices();
  if (m_stop) return m_stop;

  // An external interrupt is taken at an instruction boundary when IF is
  // set and no sti/mov-ss shadow is in force (SDM vol. 3, 6.8.3).
  if (m_vcpu.interrupts_enabled() && !m_vcpu.interrupt_shadow && m_devices->pic.interrupt_pending()) {
    const uint8_t vector = m_devices->pic.acknowledge();
    m_vcpu.halted = false;
    ++m_stats.interrupts;
    if (m_vcpu.cpl == 3) m_user_exit_neutral = true;
    if (auto s = deliver_event(Event::external(vector))) return s;
  }
  if (m_vcpu.halted) {
    if (!m_vcpu.interrupts_enabled())
      return guest_error(fmt::format("the guest halted with interrupts disabled at eip {:#x} (it cannot wake up)",
                                     m_vcpu.regs.eip));
    wait_for_event();
    return std::nullopt;
  }
  if (!m_vcpu.protected_mode())
    return guest_error(fmt::format("the guest entered real mode at {:#x}:{:#x}; bt86 runs protected mode only",
                                   m_vcpu.regs.sreg(Seg::CS).selector, m_vcpu.regs.eip));
  track_user_stints();
  arm_tick();
  if (m_stop) return m_stop;
  const bool irq_pending = m_devices->pic.interrupt_pending();
  m_translator->context().irq_pending = irq_pending;
  m_user_translator->context().irq_pending = irq_pending;
  auto s = m_vcpu.cpl == 3 ? run_user() : needs_checked_mode() ? checked_step(*m_translator) : run_translated();
  count_mode_switch();
  return s;
}

// The policy (user_engine_policy.h) times each stretch of guest user code:
// from the pass that first finds the guest at CPL 3 to the pass that finds
// it back in its kernel.
void PcMachine::track_user_stints() {
  if (m_vcpu.cpl == m_policy_cpl) return;
  if (m_vcpu.cpl == 3)
    m_user_policy.user_entered(m_vcpu.sys.cr3, m_now_ns);
  else if (m_policy_cpl == 3)
    m_user_policy.user_left(m_now_ns, !m_user_exit_neutral);
  m_user_exit_neutral = false;
  m_policy_cpl = m_vcpu.cpl;
}

// Guest user code runs directly unless the policy finds the process
// trap-heavy, or the code is on a page the host must not execute (one that
// may hold cpuid, whose host answer the guest must never see: the shadow MMU
// maps such pages without PROT_EXEC, mmu/README.md). The translator runs
// CPL-3 code only while that needs no checks the host would have made
// (TF, DR7 breakpoints, a CS limit: direct execution has them natively).
std::optional<Stop> PcMachine::run_user() {
  bool must = m_translate_user_next;
  m_translate_user_next = false;
  if (!must) {
    // Back in user mode (after a system call, fault or interrupt) on a page
    // the shadow maps without PROT_EXEC: direct execution would only be
    // refused (a host signal and an engine switch, about 3 us).
    const uint32_t lin = m_vcpu.regs.sreg(Seg::CS).base + m_vcpu.regs.eip;
    if (auto s = m_mmu->lookup(mmu::Window::kUser, lin); s && !s->executable) {
      must = true;
      ++m_stats.not_executable_known;
    }
  }
  const bool translate = must || (m_user_policy.translate(m_now_ns) && !needs_checked_mode() &&
                                  !alignment_checks() && m_vcpu.regs.sreg(Seg::CS).base == 0);
  if (!translate) return run_direct();
  // Only the user translator's blocks depend on the user bindings: checked
  // here, not on every CR3 load of a process that runs directly.
  m_user_code.revalidate_if_stale();
  if (needs_checked_mode()) return checked_step(*m_user_translator);
  return run_user_translated();
}

// CR0.AM with EFLAGS.AC at CPL 3: misaligned accesses raise #AC (SDM vol. 3,
// 6.15 "Interrupt 17"). The host checks them natively in direct execution;
// translated code does not (EFLAGS.AC is virtual there).
bool PcMachine::alignment_checks() const {
  return (m_vcpu.sys.cr0 & cr0::AM) && (m_vcpu.regs.eflags & runtime::flags::AC);
}

std::optional<Stop> PcMachine::run_user_translated() {
  ++m_stats.user_translated_runs;
  return run_translator(*m_user_translator, mmu::Window::kUser);
}

void PcMachine::service_devices() {
  // Asked every pass: the guest may have reprogrammed a timer since.
  const uint64_t now = now_ns();
  m_now_ns = now;
  if (now >= m_devices->next_deadline_ns()) m_devices->update(now);
  // Console input: a poll() on every pass is a system call per exit while
  // stdin is an idle terminal or pipe (0.2-0.5 us here, more than a callout).
  // Once a millisecond is below what a typist or a pipe notices; input
  // already read (service) is still fed every pass.
  if (now - m_last_input_poll_ns >= kInputPollNs) {
    m_last_input_poll_ns = now;
    poll_input(0);
  } else if (m_input.service) {
    m_input.service();
  }
}

// The host tick used to be periodic (1 kHz). Each one costs a host signal,
// an exit and a pass of this loop, whether or not a device needed it: 2-3%
// of a compute-bound guest, whose own timer interrupt comes at 250 Hz.
// Now it is one shot, at the earliest of the next device deadline (the
// PIT, the RTC) and the next console-input poll; it is re-armed only when
// that time moves before the armed one or the armed one has passed.
void PcMachine::arm_tick() {
  uint64_t want = m_devices->next_deadline_ns();
  const bool pending = m_input.pending && m_input.pending();
  want = std::min(want, m_last_input_poll_ns + (pending ? kInputPollNs : kInputTickNs));
  want = std::max(want, m_now_ns + kMinTickNs);
  if (m_tick_at > m_now_ns && m_tick_at <= want) return;  // a tick at least as early is coming
  if (auto s = m_tick.arm_at(want); !s) {
    // The timer exists (init): timer_settime on it does not fail short of
    // a bt86 bug. Stop rather than run a guest that may never be stopped.
    m_stop = Stop{StopReason::kHostError, 3, "cannot arm the host tick: " + s.error().message};
    return;
  }
  m_tick_at = want;
  ++m_stats.ticks_armed;
}

void PcMachine::poll_input(int timeout_ms) {
  if (timeout_ms == 0 && m_input.service) m_input.service();
  const int fd = m_input.input_fd ? m_input.input_fd() : -1;
  if (fd < 0) {
    if (timeout_ms > 0) {
      timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
      nanosleep(&ts, nullptr);
    }
    return;
  }
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) && m_input.pump) m_input.pump();
}

// HLT with IF set: sleep until the next device deadline or console input
// instead of spinning (issue 4 item 5).
void PcMachine::wait_for_event() {
  ++m_stats.halts;
  const uint64_t start = now_ns();
  const uint64_t deadline = m_devices->next_deadline_ns();
  int timeout_ms = 10;
  if (deadline != UINT64_MAX && deadline > start)
    timeout_ms = int(std::min<uint64_t>((deadline - start + 999999) / 1000000, 10));
  else if (deadline != UINT64_MAX)
    timeout_ms = 0;
  poll_input(timeout_ms);
  m_stats.halt_ns += now_ns() - start;
}

std::optional<Stop> PcMachine::deliver_event(const Event& event) {
  DeliveryResult r = deliver(m_vcpu, event, m_mmu->linear_memory(), *this);
  if (event.kind != EventKind::kExternal) ++m_stats.exceptions;
  if (r.shutdown)
    return Stop{StopReason::kTripleFault, 4,
                fmt::format("{} (eip {:#x}): the machine shuts down", r.shutdown_reason, m_vcpu.regs.eip)};
  count_mode_switch();
  return std::nullopt;
}

std::optional<Stop> PcMachine::after_step(const StepResult& r) {
  if (r.kind == StepKind::kShutdown)
    return Stop{StopReason::kTripleFault, 4, r.shutdown_reason + ": the machine shuts down"};
  if (r.kind == StepKind::kHalted) m_vcpu.halted = true;
  return std::nullopt;
}

std::optional<Stop> PcMachine::interpret(const ExecuteOptions& options) {
  ++m_stats.interpreted;
  const bool shadow = m_vcpu.interrupt_shadow;
  StepResult r = execute(m_vcpu, m_mmu->linear_memory(), *this, options);
  if (shadow) m_vcpu.interrupt_shadow = false;
  return after_step(r);
}

translator::CalloutAction PcMachine::callout(runtime::CpuState& cpu, const translator::CalloutInsn& insn) {
  // cpu is m_vcpu.regs: the translator runs on it.
  (void)cpu;
  ++m_stats.callouts;
  ++m_callout_seq;
  const uint8_t cpl = m_vcpu.cpl;
  ExecuteOptions options;
  if (insn.insn.eip == m_vcpu.regs.eip) {  // the translator decoded it: no second fetch and decode
    options.decoded = &insn.insn.insn;
    options.decoded_ops = insn.insn.ops;
  }
  StepResult r = execute(m_vcpu, m_mmu->linear_memory(), *this, options);
  m_translator->set_gdt(m_vcpu.sys.gdtr.base, m_vcpu.sys.gdtr.limit);  // lgdt
  if (m_prefault.valid && (insn.id() == ZYDIS_MNEMONIC_IRETD || insn.id() == ZYDIS_MNEMONIC_IRET))
    prefault_after_iret();
  if (auto s = after_step(r)) {
    m_callout_stop = s;
    return translator::CalloutAction::kStop;
  }
  if (m_vcpu.halted || m_vcpu.cpl != cpl || r.mode_changed || r.paging_changed || m_stop)
    return translator::CalloutAction::kStop;
  // TF set (iret, a task switch), a breakpoint armed, a CS limit: the loop
  // goes on one checked instruction at a time.
  if (needs_checked_mode()) return translator::CalloutAction::kStop;
  // A popf that set EFLAGS.AC under CR0.AM: user code goes direct (run_user).
  if (cpl == 3 && alignment_checks()) return translator::CalloutAction::kStop;
  update_fpu_checked();  // mov to CR0/CR4, clts, lmsw (may flush: allowed in a callout)
  // An interrupt may now be deliverable (sti, popf, an EOI): let the loop look.
  if (m_vcpu.interrupts_enabled() && m_devices->pic.interrupt_pending()) return translator::CalloutAction::kStop;
  return translator::CalloutAction::kContinue;
}

std::optional<Stop> PcMachine::run_translated() {
  ++m_stats.translated_runs;
  m_translator->set_gdt(m_vcpu.sys.gdtr.base, m_vcpu.sys.gdtr.limit);  // lgdt in the interpreter
  return run_translator(*m_translator, mmu::Window::kKernel);
}

// One run of either translator (guest kernel code, or guest user code
// through the user window) and what its stop means.
std::optional<Stop> PcMachine::run_translator(translator::Translator& translator, mmu::Window window) {
  m_vcpu.interrupt_shadow = false;
  // x87/MMX/SSE instructions under CR0.TS/EM or without CR4.OSFXSR fault in
  // the guest but not on the host: the translator leaves them to checked_step.
  update_fpu_checked();
  translator::RunResult r = translator.run(m_vcpu.regs, kMaxBlocksPerRun);
  if (m_callout_stop) {
    auto s = m_callout_stop;
    m_callout_stop.reset();
    return s;
  }
  switch (r.stop) {
    case translator::RunStop::kMaxBlocks:
    case translator::RunStop::kExitRequested:
    case translator::RunStop::kCallout:
    case translator::RunStop::kIrqWindow:
      return std::nullopt;
    case translator::RunStop::kNeedsInterpretation:
      // A sensitive instruction without a callout, or an access through a
      // non-flat segment: one instruction with checks (it ends in the
      // interpreter if the translator cannot run it at all). In user mode
      // not a direct run either: the code may be on a page the host must
      // not execute.
      return checked_step(translator);
    case translator::RunStop::kGuestFault:
      return translated_fault(r.fault, window);
    case translator::RunStop::kUnsupportedState:
      // Something the translator cannot run from this state: one instruction
      // through the CPU model.
      return interpret();
    case translator::RunStop::kInternalError:
      return Stop{StopReason::kHostError, 3,
                  std::string(window == mmu::Window::kUser ? "user translator: " : "translator: ") + r.detail};
  }
  return std::nullopt;
}

std::optional<Stop> PcMachine::translated_fault(const translator::GuestFault& f, mmu::Window window) {
  if (f.vector == vec::PF) {
    const Access kind = f.access == translator::FaultAccess::kWrite   ? Access::kWrite
                        : f.access == translator::FaultAccess::kFetch ? Access::kFetch
                                                                      : Access::kRead;
    return resolve_page_fault(window, f.linear_address, kind);
  }
  // An unmasked SIMD exception is #XM only with CR4.OSXMMEXCPT, else #UD
  // (SDM vol. 3, 13.1.5): the host has it set, the guest may not.
  if (f.vector == vec::XM && !(m_vcpu.sys.cr4 & cr4::OSXMMEXCPT))
    return deliver_event(Event::exception(make_fault(vec::UD)));
  return deliver_event(Event::exception(GuestFault{f.vector, f.has_error_code, f.error_code, 0}));
}

// Translated code runs guest kernel code as if segments were flat and no
// debug feature were on. Whole runs of it are wrong when EFLAGS.TF is set
// (a #DB trap after every instruction), when an execute breakpoint is armed
// in DR7, or when CS has a limit below 4 GiB: then every kernel instruction
// goes through checked_step(). Accesses through non-flat data segments are
// found by the translator itself, which stops before them.
bool PcMachine::needs_checked_mode() const {
  return (m_vcpu.regs.eflags & runtime::flags::TF) || execute_breakpoints_armed(m_vcpu.sys) ||
         m_vcpu.regs.sreg(Seg::CS).limit != 0xffffffffu;
}

// One guest instruction as the hardware runs it (machine/README.md
// "Checked execution"): an execute breakpoint first (a fault, unless RF),
// then the segment and CS-limit checks of its accesses (a fault before
// anything of it runs), then the instruction from a one-instruction
// translation (or the interpreter, which does all of this itself), then the
// single-step trap if TF was set when it started (SDM vol. 3, 17.3.1.4).
std::optional<Stop> PcMachine::checked_step(translator::Translator& translator) {
  namespace fl = runtime::flags;
  ++m_stats.checked_steps;
  VcpuState& s = m_vcpu;
  const bool tf = s.regs.eflags & fl::TF;
  const bool shadow = s.interrupt_shadow;
  if (!(s.regs.eflags & fl::RF) && execute_breakpoints_armed(s.sys)) {
    // SDM vol. 3, 17.3.1.1: an instruction breakpoint is a fault; the
    // handler sets RF in the image so the instruction runs after iret.
    if (const uint32_t hits = execute_breakpoint_hits(s.sys, s.regs.sreg(Seg::CS).base + s.regs.eip)) {
      s.sys.dr[6] |= hits;
      return deliver_event(Event::exception(make_fault(vec::DB)));
    }
  }
  const InsnCheck c = check_instruction(s, m_mmu->linear_memory());
  if (c.interpret) return interpret();
  if (c.fault && !c.rep_iterations) return deliver_event(Event::exception(*c.fault));
  const uint32_t eip = s.regs.eip;
  uint32_t& ecx = s.regs.gpr[runtime::ECX];
  if (c.rep_iterations) ecx = *c.rep_iterations;  // 32-bit addressing: the translator runs no other
  const uint64_t callouts_before = m_callout_seq;
  translator::RunResult r = translator.run_one(s.regs);
  uint32_t ecx_run = 0;
  if (c.rep_iterations) {
    // The iterations not run are still to do.
    ecx_run = ecx;
    ecx += c.rep_count - *c.rep_iterations;
  }
  if (m_callout_stop) {
    auto stop = m_callout_stop;
    m_callout_stop.reset();
    return stop;
  }
  if (shadow) s.interrupt_shadow = false;
  switch (r.stop) {
    case translator::RunStop::kMaxBlocks:
    case translator::RunStop::kIrqWindow:
      break;  // it ran
    case translator::RunStop::kCallout:
    case translator::RunStop::kExitRequested:
      return std::nullopt;  // the interpreter ran it (with its own single-step trap), or nothing ran
    case translator::RunStop::kNeedsInterpretation:
    case translator::RunStop::kUnsupportedState:
      return interpret();
    case translator::RunStop::kGuestFault:
      return translated_fault(r.fault, s.cpl == 3 ? mmu::Window::kUser : mmu::Window::kKernel);
    case translator::RunStop::kInternalError:
      return Stop{StopReason::kHostError, 3, "translator: " + r.detail};
  }
  if (m_callout_seq != callouts_before) return std::nullopt;  // the interpreter ran it
  if (c.rep_iterations) {
    // The allowed iterations ran; the next one faults unless the repe/repne
    // condition ended the instruction first.
    const bool zf = s.regs.eflags & fl::ZF;
    const bool ended = ecx_run != 0 || (c.repe && !zf) || (c.repne && zf);
    if (!ended) {
      s.regs.eip = eip;
      return deliver_event(Event::exception(*c.fault));
    }
  }
  s.regs.eflags &= ~fl::RF;  // cleared after every instruction that completes
  if (tf) {
    s.sys.dr[6] |= 1u << 14;  // DR6.BS
    return deliver_event(Event::exception(make_fault(vec::DB)));
  }
  return std::nullopt;
}

// A host fault inside a guest window: a hidden fault (the shadow lagged:
// map and retry), a true fault (the guest's #PF), or an access bt86 cannot
// serve (no RAM behind it).
std::optional<Stop> PcMachine::resolve_page_fault(mmu::Window window, uint32_t lin, Access kind) {
  mmu::HostFaultOutcome o = m_mmu->handle_host_fault(window, lin, kind);
  const char* who = window == mmu::Window::kUser ? "user" : "kernel";
  switch (o.kind) {
    case mmu::HostFaultOutcome::Kind::kHidden:
      ++(window == mmu::Window::kUser ? m_stats.hidden_faults_user : m_stats.hidden_faults_kernel);
      return std::nullopt;
    case mmu::HostFaultOutcome::Kind::kGuestFault:
      ++m_stats.true_faults;
      if (window == mmu::Window::kUser) m_user_exit_neutral = true;
      m_prefault = PendingPrefault{true, window, lin, m_vcpu.regs.eip, m_vcpu.sys.cr3, kind};
      return deliver_event(Event::exception(o.fault));
    case mmu::HostFaultOutcome::Kind::kNotRam:
      if (window == mmu::Window::kKernel && map_unbacked(lin)) return std::nullopt;
      return guest_error(fmt::format("guest {} code at eip {:#x} accessed linear {:#x} = physical {:#x}, which is "
                                     "not RAM (memory-mapped devices are not emulated)",
                                     who, m_vcpu.regs.eip, lin, o.phys));
    case mmu::HostFaultOutcome::Kind::kTableNotRam:
      return guest_error(fmt::format("the guest's page tables point outside RAM (entry at {:#x}) for linear {:#x}",
                                     o.phys, lin));
    case mmu::HostFaultOutcome::Kind::kUnmappable:
      return guest_error(fmt::format("guest {} code at eip {:#x} uses linear page {:#x}, which bt86 cannot map "
                                     "in the host (page 0 of the user window)",
                                     who, m_vcpu.regs.eip, lin));
    case mmu::HostFaultOutcome::Kind::kNotExecutable:
      // Direct execution fetched from a user page the host must not run
      // (it may hold cpuid, or it is writable): the page is mapped for
      // reads, and the user translator runs the code (run_user).
      ++m_stats.not_executable;
      m_translate_user_next = window == mmu::Window::kUser;
      return std::nullopt;
    case mmu::HostFaultOutcome::Kind::kHostError:
      return Stop{StopReason::kHostError, 3, "shadow paging: " + o.error};
  }
  return std::nullopt;
}

// A guest #PF handler fixes the entry and IRETs to the faulting instruction,
// which would now take a second host fault (the shadow does not know the
// new entry yet: the guest need not INVLPG a page it makes present, SDM
// vol. 3, 4.10.4.3), costing another host signal and engine exit. Instead,
// at that IRET, if it returns to the faulting EIP in the same address space
// and privilege and the guest's tables now allow the access, the page is
// mapped at once, like a speculative TLB fill (A set, D not: the mapping is
// made for a read; a write to a clean page still faults to set D).
void PcMachine::prefault_after_iret() {
  const PendingPrefault p = m_prefault;
  m_prefault.valid = false;
  const bool user = p.window == mmu::Window::kUser;
  if (m_vcpu.regs.eip != p.eip || m_vcpu.sys.cr3 != p.cr3 || user != (m_vcpu.cpl == 3)) return;
  const mmu::PagingControl pc{m_vcpu.sys.cr0, m_vcpu.sys.cr3, m_vcpu.sys.cr4};
  const mmu::Translation t = mmu::translate(*m_memory, pc, p.lin, p.kind, user);
  if (t.status != mmu::WalkStatus::kOk) return;  // still a true fault (or not RAM): the retry says so
  if (auto s = m_mmu->lookup(p.window, p.lin); s && s->phys == (t.phys & ~0xfffu)) return;  // mapped meanwhile
  if (m_mmu->handle_host_fault(p.window, p.lin, Access::kRead).kind == mmu::HostFaultOutcome::Kind::kHidden)
    ++m_stats.prefaults;
}

// An access to a physical address with no RAM behind it: a PC's bus reads
// all-ones there and drops writes (early Linux reads fs:[0xc...] before
// paging is on, and carries on with whatever it got). The page gets a
// private anonymous page of 0xff bytes in the kernel window; writes land in
// it (a simplification: they are not dropped). Every paging change drops
// these pages again, so they never hide a real mapping.
bool PcMachine::map_unbacked(uint32_t lin) {
  if (m_unbacked.size() >= 4096) return false;
  const uint32_t page = lin & ~0xfffu;
  void* at = reinterpret_cast<void*>(m_config.kernel_window_base + page);
  void* p = mmap(at, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return false;
  std::memset(p, 0xff, 0x1000);
  m_unbacked.push_back(page);
  ++m_stats.unbacked_pages;
  return true;
}

void PcMachine::drop_unbacked() {
  for (uint32_t page : m_unbacked)
    mmap(reinterpret_cast<void*>(m_config.kernel_window_base + page), 0x1000, PROT_NONE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  m_unbacked.clear();
}

// A guest GDT selector loaded natively by user code reaches the host's GDT
// (runtime/ldt_mirror.h): the exit reports it with an empty cache. Load the
// guest's own descriptor in its place; true if anything was fixed.
bool PcMachine::fix_host_gdt_selectors() {
  bool fixed = false;
  for (int i = 0; i < runtime::kNumSegs; ++i) {
    runtime::SegmentCache& sc = m_vcpu.regs.seg[i];
    if (i == int(Seg::CS) || sc.attr != 0 || (sc.selector & ~3) == 0) continue;
    runtime::SegmentCache cache;
    LoadRules rules{m_vcpu.cpl, vec::GP, false};
    if (check_segment_load(m_vcpu, m_mmu->linear_memory(), Seg(i), sc.selector, rules, cache)) continue;
    sc = cache;
    fixed = true;
    ++m_stats.segment_fixups;
  }
  return fixed;
}

std::optional<Stop> PcMachine::run_direct() {
  ++m_stats.direct_runs;
  runtime::ExitRecord x = m_direct->run(m_vcpu.regs);
  m_vcpu.interrupt_shadow = false;
  // The faults a stale host selector causes are bt86's, not the guest's:
  // fix the segment and run the instruction again.
  if (fix_host_gdt_selectors() &&
      (x.kind == runtime::ExitKind::PageFault || x.kind == runtime::ExitKind::GeneralProtection ||
       x.kind == runtime::ExitKind::SegmentLimit || x.kind == runtime::ExitKind::StackFault))
    return std::nullopt;
  ExitAction a = action_for_exit(x, m_vcpu);
  switch (a.kind) {
    case ExitActionKind::kNone:
      return std::nullopt;
    case ExitActionKind::kDeliver:
      return deliver_event(a.event);
    case ExitActionKind::kInterpret: {
      ExecuteOptions o;
      o.unimplemented_fault = a.page_fault;
      return interpret(o);
    }
    case ExitActionKind::kPageFault: {
      // The host's error code: I/D (bit 4) for a fetch, the host has NX.
      const Access kind = (a.page_fault.error & 0x10) ? Access::kFetch
                          : (a.page_fault.error & pf::W) ? Access::kWrite
                                                          : Access::kRead;
      return resolve_page_fault(mmu::Window::kUser, a.page_fault.cr2, kind);
    }
    case ExitActionKind::kSegmentLimit:
      // A limit bt86 cut (the guest's own limit is larger): the access is to
      // a supervisor address through a user segment; the guest sees the #PF
      // its own MMU would raise (user access to a supervisor page).
      return deliver_event(Event::exception(GuestFault{vec::PF, true, pf::U | pf::P, x.fault_address}));
    case ExitActionKind::kGuestError:
      return guest_error(a.reason);
  }
  return std::nullopt;
}

void PcMachine::control_register_written(int cr, uint32_t old_value, uint32_t new_value) {
  drop_unbacked();
  if (cr == 3) {
    m_mmu->load_cr3(m_vcpu.sys.cr3);  // a CR3 write flushes even when the value is the same
    m_kernel_code.revalidate(true);
    m_user_code.mark_stale(true);
    return;
  }
  m_mmu->set_control_registers(m_vcpu.sys.cr0, m_vcpu.sys.cr3, m_vcpu.sys.cr4);
  // Translations are keyed by linear EIP. When paging is switched on or off,
  // or PSE changes, the same EIP may mean other bytes: drop them all. Any
  // other CR0/CR4 write (Linux toggles CR4.PGE to flush global TLB entries,
  // and CR0.TS for the FPU) keeps them, but a global flush may have moved
  // kernel pages, so their linear-to-physical binding is checked as on CR3
  // loads. CR3 loads keep translations: kernel code is mapped identically in
  // every address space of the guests bt86 runs (documented limit in
  // machine/README.md).
  const uint32_t layout_bits = cr == 0 ? (cr0::PE | cr0::PG) : cr4::PSE;
  if ((old_value ^ new_value) & layout_bits) {
    m_translator->flush();
    m_user_translator->flush();
    m_kernel_code.clear();
    m_user_code.clear();
  } else {
    m_kernel_code.revalidate(false);
    m_user_code.mark_stale(false);
  }
}

std::string PcMachine::stats_text() const {
  std::string s;
  const LoopStats& l = m_stats;
  s += fmt::format(
      "machine: translated runs {}, user translated runs {} (pages not executable by the host: refused {}, known beforehand {}), direct runs {}, mode switches {}, callouts {}, interpreted {}\n"
      "machine: interrupts {}, exceptions and int n {}, halts {} ({:.1f} ms asleep), segment fixups {}\n"
      "machine: hidden faults user {} kernel {}, true faults {} (prefaulted at the handler's iret {}), pages without RAM "
      "mapped as all-ones {}\n"
      "machine: checked kernel steps {}, host ticks armed {}\n",
      l.translated_runs, l.user_translated_runs, l.not_executable, l.not_executable_known, l.direct_runs, l.mode_switches, l.callouts, l.interpreted, l.interrupts, l.exceptions,
      l.halts, l.halt_ns / 1e6, l.segment_fixups, l.hidden_faults_user, l.hidden_faults_kernel, l.true_faults, l.prefaults,
      l.unbacked_pages, l.checked_steps, l.ticks_armed);
  const mmu::ShadowStats& ms = m_mmu->stats();
  s += fmt::format(
      "mmu: hidden faults {}, true faults {}, dirty upgrades {}, pages mapped {} in {} mmap calls, "
      "pages dropped {} in {} calls ({} parked, {} unparked, {} evicted), pages parked ahead {} in {} calls, CR3 loads {} ({} pages kept across them), full flushes {}, INVLPGs {}, code pages protected {}, "
      "code write faults {} (+{} by the CPU model)\n",
      ms.hidden_faults, ms.true_faults, ms.dirty_upgrades, ms.pages_mapped, ms.map_calls, ms.pages_dropped,
      ms.unmap_calls, ms.pages_parked, ms.pages_unparked, ms.parked_evicted, ms.parked_ahead, ms.park_ahead_calls, ms.cr3_loads, ms.pages_kept, ms.full_flushes, ms.invlpgs, ms.code_pages_protected, ms.code_write_faults,
      ms.code_writes_by_cpu);
  const mmu::PagedMemoryStats& ps = m_mmu->paged_memory().stats();
  s += fmt::format("mmu: CPU model TLB hits {}, misses {}, flushes {}, invlpgs {}\n", ps.tlb_hits, ps.tlb_misses,
                   ps.tlb_flushes, ps.tlb_invlpgs);
  s += fmt::format("mmu: user pages scanned for cpuid {} ({} holding one), fetches the host refused {}, clean frames "
                   "written {}\n",
                   ms.exec_scans, ms.exec_dirty_scans, ms.not_executable_faults, ms.exec_revoked);
  s += m_translator->format_stats();
  // The same counters for guest user code, each line marked.
  const std::string user = m_user_translator->format_stats();
  for (size_t at = 0; at < user.size();) {
    const size_t end = user.find('\n', at);
    s += "user " + user.substr(at, end == std::string::npos ? std::string::npos : end + 1 - at);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  const auto ds = m_direct->stats();
  s += fmt::format("direct: entries {}, ldt writes {}\n", ds.entries, ds.ldt_writes);
  s += fmt::format("io: unknown port reads {}, writes {}\n", m_bus.unknown_reads(), m_bus.unknown_writes());
  return s;
}

}  // namespace
}  // namespace bt86::machine
