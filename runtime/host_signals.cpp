// Everything here that runs inside the signal handler obeys three rules:
// no thread-local storage (FS may still hold the guest's base), no libc call
// that may set errno (raw system calls only), no allocation.
#include "runtime/host_signals.h"

#include <asm/prctl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "base/log.h"
#include "runtime/tick_timer.h"
#include "runtime/world_switch.h"

#ifndef HWCAP2_FSGSBASE
#define HWCAP2_FSGSBASE (1 << 1)
#endif

namespace bt86::runtime::detail {

WorldContext* volatile g_world = nullptr;

namespace {

const runtime::TranslatedCodeHook* volatile g_tc_hook = nullptr;

constexpr uint16_t kHostCs = 0x33;  // __USER_CS of x86-64 Linux
constexpr uint16_t kHostSs = 0x2b;  // __USER_DS
constexpr uint64_t kWindowEnd = uint64_t(1) << 32;
constexpr size_t kAltStackSize = 256 * 1024;  // AVX-512 signal frames are large

// Signals that a guest can raise, plus the tick.
constexpr int kTrapSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};

volatile bool g_cpuid_armed = false;
volatile bool g_tsc_armed = false;

long raw_syscall2(long nr, long a, long b) {
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
  return ret;
}

void raw_write_hex(uint64_t v);

void raw_write(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(SYS_write), "D"(2), "S"(s), "d"(n) : "rcx", "r11", "memory");
}

void raw_write_hex(uint64_t v) {
  char buf[19] = "0x";
  for (int i = 0; i < 16; ++i) buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
  buf[18] = 0;
  raw_write(buf);
}

// Host code executing cpuid/rdtsc while faulting is armed: disarm and retry.
bool disarm_if_host_cpuid_or_rdtsc(const uint8_t* rip) {
  if (rip[0] == 0x0f && rip[1] == 0xa2 && g_cpuid_armed) {
    raw_syscall2(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    g_cpuid_armed = false;
    return true;
  }
  const bool rdtsc = rip[0] == 0x0f && rip[1] == 0x31;
  const bool rdtscp = rip[0] == 0x0f && rip[1] == 0x01 && rip[2] == 0xf9;
  if ((rdtsc || rdtscp) && g_tsc_armed) {
    raw_syscall2(SYS_prctl, PR_SET_TSC, PR_TSC_ENABLE);
    g_tsc_armed = false;
    return true;
  }
  return false;
}

uint16_t read_sel_ds() { uint16_t v; asm volatile("mov %%ds, %0" : "=r"(v)); return v; }
uint16_t read_sel_es() { uint16_t v; asm volatile("mov %%es, %0" : "=r"(v)); return v; }
uint16_t read_sel_fs() { uint16_t v; asm volatile("mov %%fs, %0" : "=r"(v)); return v; }
uint16_t read_sel_gs() { uint16_t v; asm volatile("mov %%gs, %0" : "=r"(v)); return v; }

__attribute__((no_stack_protector)) void on_signal(int signo, siginfo_t* si, void* ucv) {
  auto* uc = static_cast<ucontext_t*>(ucv);
  greg_t* g = uc->uc_mcontext.gregs;
  WorldContext* ctx = g_world;
  const uint64_t rip = uint64_t(g[REG_RIP]);

  // bt86_probe_read touched a page that is not there: it returns short.
  if ((signo == SIGSEGV || signo == SIGBUS) && rip == reinterpret_cast<uint64_t>(&bt86_probe_load)) {
    g[REG_RIP] = reinterpret_cast<greg_t>(&bt86_probe_done);
    return;
  }

  // Translated code (the translator's cache, far above 4 GiB in CS 0x33).
  if (const runtime::TranslatedCodeHook* hook = g_tc_hook) {
    if (signo == tick_signal()) {
      if (hook->exit_flag) *hook->exit_flag = 1;
      if (hook->on_tick) hook->on_tick(hook->opaque, uc, si->si_code == SI_TIMER);
    }
    const bool trap = signo == SIGSEGV || signo == SIGBUS || signo == SIGFPE || signo == SIGILL;
    // Taken: resume the edited context (the translator's exit stub) without
    // rt_sigreturn, with the translated code's x87/SSE state (guest state).
    if (trap && rip >= hook->tc_begin && rip < hook->tc_end && hook->on_fault(hook->opaque, signo, si, uc))
      bt86_signal_resume(g, uc->uc_mcontext.fpregs);
  }

  // Guest context: the guest was entered and either the CPU is not in the
  // host's 64-bit code segment or it is inside the window. Host code is a
  // PIE far above 4 GiB in CS 0x33; guest code is in the window (even after
  // an escape to 64-bit mode), or, after a stray 32-bit syscall/sysenter,
  // in CS 0x23 at the host's idea of a 32-bit vDSO landing pad.
  const uint16_t cs = uint16_t(g[REG_CSGSFS]);
  if (ctx == nullptr || !ctx->in_guest || (cs == kHostCs && rip >= kWindowEnd)) {
    if (signo == tick_signal()) {
      if (ctx) ctx->exit_requested = 1;
      return;
    }
    if (signo == SIGSEGV && rip >= kWindowEnd &&
        disarm_if_host_cpuid_or_rdtsc(reinterpret_cast<const uint8_t*>(rip)))
      return;
    // A fault in bt86 itself: report and die with the original signal.
    raw_write("bt86: fatal host fault in the monitor: signal ");
    char num[3] = {char('0' + signo / 10), char('0' + signo % 10), 0};
    raw_write(num);
    raw_write(" at rip ");
    raw_write_hex(rip);
    raw_write(" address ");
    raw_write_hex(reinterpret_cast<uint64_t>(si->si_addr));
    raw_write(" cs ");
    raw_write_hex(uint64_t(g[REG_CSGSFS]) & 0xffff);
    raw_write("\n");
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(signo, &dfl, nullptr);
    return;  // re-executes the faulting instruction with the default action
  }

  RawExit& e = ctx->exit;
  e.signo = signo;
  e.si_code = si->si_code;
  e.trapno = uint64_t(g[REG_TRAPNO]);
  e.err = uint64_t(g[REG_ERR]);
  e.addr = reinterpret_cast<uint64_t>(si->si_addr);
  e.syscall_nr = 0;
  e.syscall_arch = 0;
  if (signo == SIGSYS) {
    e.addr = reinterpret_cast<uint64_t>(si->si_call_addr);
    e.syscall_nr = si->si_syscall;
    e.syscall_arch = si->si_arch;
  }
  e.gpr[0] = uint32_t(g[REG_RAX]);
  e.gpr[1] = uint32_t(g[REG_RCX]);
  e.gpr[2] = uint32_t(g[REG_RDX]);
  e.gpr[3] = uint32_t(g[REG_RBX]);
  e.gpr[4] = uint32_t(g[REG_RSP]);
  e.gpr[5] = uint32_t(g[REG_RBP]);
  e.gpr[6] = uint32_t(g[REG_RSI]);
  e.gpr[7] = uint32_t(g[REG_RDI]);
  e.eip = uint32_t(rip);
  e.rip_high = rip >= kWindowEnd;
  e.eflags = uint32_t(g[REG_EFL]);
  const uint64_t csgsfs = uint64_t(g[REG_CSGSFS]);
  e.sel[0] = read_sel_es();
  e.sel[1] = uint16_t(csgsfs);
  e.sel[2] = uint16_t(csgsfs >> 48);  // the kernel stores SS in the old __pad0
  e.sel[3] = read_sel_ds();
  e.sel[4] = read_sel_fs();
  e.sel[5] = read_sel_gs();
  if (uc->uc_mcontext.fpregs)
    __builtin_memcpy(ctx->guest_fx, uc->uc_mcontext.fpregs, sizeof ctx->guest_fx);

  // Resume in the host: 64-bit CS/SS, host stack, flags without TF/AC/DF.
  g[REG_RIP] = reinterpret_cast<greg_t>(&bt86_world_landing);
  g[REG_RSP] = greg_t(ctx->host_rsp);
  g[REG_EFL] = 0x202;
  g[REG_CSGSFS] = greg_t((csgsfs & 0x0000ffffffff0000ull) | kHostCs | (uint64_t(kHostSs) << 48));
  // The landing restores the host FPU state itself.
  bt86_signal_resume(g, nullptr);
}

}  // namespace

int tick_signal() { return SIGRTMIN; }

const HostFeatures& host_features() {
  static const HostFeatures features = [] {
    HostFeatures f;
    f.fsgsbase = (getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE) != 0;
    // Probe by turning each feature on and straight back off.
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) == 0) {
      f.cpuid_faulting = true;
      syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    }
    if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV) == 0) {
      f.tsc_faulting = true;
      prctl(PR_SET_TSC, PR_TSC_ENABLE);
    }
    return f;
  }();
  return features;
}

Status install_signal_handlers() {
  static bool stack_done = false;
  if (!stack_done) {
    void* mem = mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return make_error(std::string("cannot allocate signal stack: ") + strerror(errno));
    stack_t ss{};
    ss.ss_sp = mem;
    ss.ss_size = kAltStackSize;
    if (sigaltstack(&ss, nullptr) != 0)
      return make_error(std::string("sigaltstack failed: ") + strerror(errno));
    stack_done = true;
  }
  static bool handlers_done = false;
  if (handlers_done) return Ok{};
  struct sigaction sa {};
  sa.sa_sigaction = on_signal;
  // SA_NODEFER and an empty mask: the handler runs with the interrupted
  // context's mask, so it can leave by bt86_signal_resume instead of
  // rt_sigreturn (which would be needed to unblock what it blocked). A tick
  // may therefore nest inside the handler; it only sets flags, and sees host
  // code (CS 0x33 above 4 GiB) as the interrupted context.
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  for (int sig : kTrapSignals)
    if (sigaction(sig, &sa, nullptr) != 0)
      return make_error(std::string("sigaction failed: ") + strerror(errno));
  if (sigaction(tick_signal(), &sa, nullptr) != 0)
    return make_error(std::string("sigaction failed: ") + strerror(errno));
  handlers_done = true;
  return Ok{};
}

Status install_seccomp_filter() {
  static bool done = false;
  if (done) return Ok{};
  // 1. Every i386-ABI call (int 0x80, compat syscall/sysenter) traps.
  // 2. So does every 64-bit call made from below 4 GiB: bt86's code is a PIE
  //    far above, so such a call can only come from guest code that escaped
  //    to 64-bit mode (DESIGN.md §6). This does not close that hole (escaped
  //    code can jump into libc), but it stops the direct way out.
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 2, 0),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, instruction_pointer) + 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return make_error(std::string("PR_SET_NO_NEW_PRIVS failed: ") + strerror(errno));
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
    return make_error(std::string("cannot install the seccomp filter: ") + strerror(errno));
  done = true;
  log::get("runtime")->debug("seccomp filter installed: i386 system calls trap");
  return Ok{};
}

void arm_instruction_faulting(bool tsc) {
  const HostFeatures& f = host_features();
  if (f.cpuid_faulting && !g_cpuid_armed) {
    raw_syscall2(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    g_cpuid_armed = true;
  }
  if (tsc && f.tsc_faulting && !g_tsc_armed) {
    raw_syscall2(SYS_prctl, PR_SET_TSC, PR_TSC_SIGSEGV);
    g_tsc_armed = true;
  }
}

}  // namespace bt86::runtime::detail

namespace bt86::runtime {

TickTimer::~TickTimer() {
  stop();
  if (m_created) timer_delete(static_cast<timer_t>(m_timer));
}

Status TickTimer::create() {
  if (m_created) return Ok{};
  sigevent sev{};
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = detail::tick_signal();
  sev._sigev_un._tid = static_cast<pid_t>(syscall(SYS_gettid));
  timer_t t;
  if (timer_create(CLOCK_MONOTONIC, &sev, &t) != 0)
    return make_error(std::string("timer_create failed: ") + strerror(errno));
  m_timer = t;
  m_created = true;
  return Ok{};
}

Status TickTimer::start(std::chrono::microseconds period) {
  if (auto s = create(); !s) return s;
  itimerspec its{};
  its.it_interval.tv_sec = period.count() / 1000000;
  its.it_interval.tv_nsec = (period.count() % 1000000) * 1000;
  its.it_value = its.it_interval;
  if (timer_settime(static_cast<timer_t>(m_timer), 0, &its, nullptr) != 0)
    return make_error(std::string("timer_settime failed: ") + strerror(errno));
  m_running = true;
  return Ok{};
}

Status TickTimer::arm_at(uint64_t monotonic_ns) {
  if (auto s = create(); !s) return s;
  itimerspec its{};
  // 0 would disarm: the earliest representable time instead.
  its.it_value.tv_sec = time_t(monotonic_ns / 1000000000u);
  its.it_value.tv_nsec = long(monotonic_ns % 1000000000u);
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  if (timer_settime(static_cast<timer_t>(m_timer), TIMER_ABSTIME, &its, nullptr) != 0)
    return make_error(std::string("timer_settime failed: ") + strerror(errno));
  m_running = true;
  return Ok{};
}

void TickTimer::stop() {
  if (!m_running) return;
  itimerspec its{};
  timer_settime(static_cast<timer_t>(m_timer), 0, &its, nullptr);
  m_running = false;
}

void set_translated_code_hook(const TranslatedCodeHook* hook) { detail::g_tc_hook = hook; }

Status install_host_signal_handlers() { return detail::install_signal_handlers(); }

}  // namespace bt86::runtime
