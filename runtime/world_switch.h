// The world switch between bt86 (64-bit) and guest user code (32-bit
// compatibility mode). Internal to runtime/: DirectExecutor owns it.
//
// Enter (world_switch.S, bt86_world_enter): save host callee-saved registers
// and FPU state, load guest FPU state, data segments and general registers,
// and iretq to the guest CS:EIP with the guest SS:ESP and EFLAGS.
// Exit: every way out of the guest is a host signal. The handler
// (host_signals.cpp) copies the guest registers out of the signal frame into
// WorldContext::exit, then edits the frame so that sigreturn resumes at
// bt86_world_landing in 64-bit mode on the host stack, and leaves the handler
// with bt86_signal_resume (no rt_sigreturn); the landing restores the host
// FS/GS bases, FPU state and registers and returns from bt86_world_enter.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bt86::runtime::detail {

// Raw facts copied out of the signal frame; classified later, outside the
// signal handler (exit_classifier.cpp).
struct RawExit {
  int32_t signo;
  int32_t si_code;
  uint64_t trapno;
  uint64_t err;
  uint64_t addr;        // si_addr (fault address) or si_call_addr (SIGSYS)
  int32_t syscall_nr;   // SIGSYS
  uint32_t syscall_arch;
  uint32_t gpr[8];      // x86 order
  uint32_t eip;
  uint32_t eflags;
  uint16_t sel[6];      // live selectors, Seg order
  bool rip_high;        // the host reported a RIP above 4 GiB
};

struct alignas(64) WorldContext {
  // --- read by world_switch.S: offsets checked below ---
  uint64_t host_rsp;        // 0
  uint64_t host_fs_base;    // 8
  uint64_t host_gs_base;    // 16
  uint32_t gpr[8];          // 24: guest registers to load (ESP goes into the iret frame)
  uint32_t eip;             // 56
  uint32_t eflags;          // 60: as the hardware should hold it (IF set, IOPL 0)
  uint16_t sel[6];          // 64: host selectors, Seg order
  uint32_t use_fsgsbase;    // 76: 1 if wrfsbase is usable, else arch_prctl
  uint8_t pad0[48];         // 80
  alignas(16) uint8_t host_fx[512];   // 128: host x87 control word (+0) and MXCSR (+24) only
  alignas(16) uint8_t guest_fx[512];  // 640
  // --- used by C++ only ---
  volatile uint8_t in_guest;          // set around bt86_world_enter
  volatile uint8_t exit_requested;    // tick or request_exit(); cleared by run()
  RawExit exit;
};

static_assert(offsetof(WorldContext, host_rsp) == 0);
static_assert(offsetof(WorldContext, host_fs_base) == 8);
static_assert(offsetof(WorldContext, host_gs_base) == 16);
static_assert(offsetof(WorldContext, gpr) == 24);
static_assert(offsetof(WorldContext, eip) == 56);
static_assert(offsetof(WorldContext, eflags) == 60);
static_assert(offsetof(WorldContext, sel) == 64);
static_assert(offsetof(WorldContext, use_fsgsbase) == 76);
static_assert(offsetof(WorldContext, host_fx) == 128);
static_assert(offsetof(WorldContext, guest_fx) == 640);

// The one context whose guest may be running (bt86 runs one vCPU thread).
extern WorldContext* volatile g_world;

}  // namespace bt86::runtime::detail

extern "C" {
void bt86_world_enter(bt86::runtime::detail::WorldContext* ctx);
void bt86_world_landing();
// Resumes an edited signal context in the host's 64-bit CS without
// rt_sigreturn (world_switch.S). fx: FXSAVE image to load, or null.
[[noreturn]] void bt86_signal_resume(const long long* gregs, const void* fx);
// Fault-tolerant copy; returns the number of bytes copied (world_switch.S).
size_t bt86_probe_read(const void* src, void* dst, size_t n);
void bt86_probe_load();
void bt86_probe_done();
}
