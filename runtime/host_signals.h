// Host-side plumbing for direct execution: the signal handler that turns
// every trap out of the guest into an exit, the seccomp filter that turns a
// guest's 32-bit system calls into SIGSYS, the preemption timer and the
// faulting of cpuid/rdtsc. Internal to runtime/.
#pragma once

#include <signal.h>
#include <ucontext.h>

#include <chrono>
#include <csignal>
#include <cstdint>

#include "base/result.h"

namespace bt86::runtime::detail {

struct HostFeatures {
  bool fsgsbase = false;        // wrfsbase usable from user space
  bool cpuid_faulting = false;  // arch_prctl(ARCH_SET_CPUID, 0) works
  bool tsc_faulting = false;    // prctl(PR_SET_TSC, PR_TSC_SIGSEGV) works
};

// Probes the host once.
const HostFeatures& host_features();

// The signal that carries the preemption tick.
int tick_signal();

// Installs the handlers (SA_ONSTACK, SA_NODEFER, nothing blocked while they
// run: they leave by bt86_signal_resume, not rt_sigreturn) and
// an alternate signal stack for the calling thread. Idempotent.
Status install_signal_handlers();

// Installs the seccomp filter that returns SECCOMP_RET_TRAP for every system
// call made with the i386 ABI (int 0x80, sysenter, compat syscall), and for
// every 64-bit call made from code below 4 GiB (escaped guest code). Once
// installed it stays for the life of the process; idempotent.
Status install_seccomp_filter();

// Makes cpuid and rdtsc fault in this thread while the guest runs. The host
// (vDSO clock_gettime, AsmJit's CPU probe) may use them too: a host fault on
// either disarms the faulting, and arm() re-arms it before the next entry.
void arm_instruction_faulting(bool tsc = true);

}  // namespace bt86::runtime::detail

namespace bt86::runtime {

// Faults and ticks while translated code runs (translator/, DESIGN.md §2).
// The translator publishes one hook before it enters its translation cache and
// withdraws it afterwards (same thread). While it is published:
// - SIGSEGV, SIGBUS, SIGFPE and SIGILL whose RIP lies in [tc_begin, tc_end)
//   go to on_fault (called inside the signal handler: it must be
//   async-signal-safe). It edits the interrupted context and returns true if
//   it took the fault; false lets the handler treat it as a bt86 fault.
// - the tick signal sets *exit_flag when exit_flag is not null and calls
//   on_tick when that is set, with timer true for the periodic tick and false
//   for a kick (the same signal sent by tgkill, SI_TKILL).
struct TranslatedCodeHook {
  uintptr_t tc_begin = 0;
  uintptr_t tc_end = 0;
  bool (*on_fault)(void* opaque, int signo, siginfo_t* si, ucontext_t* uc) = nullptr;
  void* opaque = nullptr;
  volatile uint8_t* exit_flag = nullptr;
  // Also called on the tick (async-signal-safe, same rules as on_fault).
  void (*on_tick)(void* opaque, ucontext_t* uc, bool timer) = nullptr;
};

// nullptr withdraws the hook. The hook object must outlive its publication.
void set_translated_code_hook(const TranslatedCodeHook* hook);

// Installs the runtime's signal handlers and the alternate signal stack for
// the calling thread (what DirectExecutor::create does). Idempotent.
Status install_host_signal_handlers();

}  // namespace bt86::runtime
