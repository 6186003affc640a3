// TranslatorContext: the per-vCPU block of memory that translated code reaches
// through R15. Translated code and the entry/exit stubs address its fields by
// fixed offsets (checked below), so keep it standard layout and append only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/cpu_state.h"

namespace bt86::translator {

// Why translated code returned to C++.
enum class ExitReason : uint32_t {
  kNone = 0,
  kBlockEnd,            // direct branch, fall-through, page boundary or length cap: next_eip
  kIndirect,            // ret / indirect jmp / call: next_eip computed at run time
  kNeedsInterpretation, // next_eip is an instruction the translator does not handle
  kCallout,             // a callout handler said continue: next_eip = cpu.eip
  kCalloutStop,         // a callout handler said stop: next_eip = cpu.eip
  kIrqWindow,           // IF became 1 with irq_pending set (sti + 1 insn, popf): next_eip
};

struct alignas(16) TranslatorContext {
  runtime::CpuState* cpu = nullptr;  //  0: guest registers in/out
  uint64_t host_rsp = 0;             //  8: host stack pointer at entry (restored by the exit stub)
  uint32_t exit_reason = 0;          // 16: ExitReason
  uint32_t next_eip = 0;             // 20: guest EIP to continue at
  uint64_t window_base = 0;          // 24: GS base while translated code runs (4 GiB aligned)
  uint8_t exit_requested = 0;        // 32: hook for chained paths (not checked yet)
  // 33: the machine has an interrupt waiting: when the guest sets IF (sti,
  // popf) translated code leaves with kIrqWindow so it can be delivered.
  uint8_t irq_pending = 0;
  uint8_t pad_[14] = {};
  alignas(16) uint8_t host_fx[512] = {};  // 48: host x87/SSE state while the guest's is loaded
};

namespace ctx_off {
inline constexpr int32_t kCpu = 0, kHostRsp = 8, kExitReason = 16, kNextEip = 20, kWindowBase = 24,
                         kExitRequested = 32, kIrqPending = 33, kHostFx = 48;
}
static_assert(offsetof(TranslatorContext, cpu) == ctx_off::kCpu);
static_assert(offsetof(TranslatorContext, host_rsp) == ctx_off::kHostRsp);
static_assert(offsetof(TranslatorContext, exit_reason) == ctx_off::kExitReason);
static_assert(offsetof(TranslatorContext, next_eip) == ctx_off::kNextEip);
static_assert(offsetof(TranslatorContext, window_base) == ctx_off::kWindowBase);
static_assert(offsetof(TranslatorContext, exit_requested) == ctx_off::kExitRequested);
static_assert(offsetof(TranslatorContext, host_fx) == ctx_off::kHostFx);
static_assert(offsetof(TranslatorContext, irq_pending) == ctx_off::kIrqPending);

const char* exit_reason_name(ExitReason reason);

}  // namespace bt86::translator
