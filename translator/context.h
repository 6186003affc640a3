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
  kExitRequested,       // exit_requested was set: next_eip is the block that was about to run
  kGuestFault,          // a host fault in translated code became a guest fault at next_eip (fault_*)
  kNeedsChecks,         // next_eip accesses memory through a segment that needs limit/type checks
                        // (seg_checked): nothing of it ran
};

// One slot of the in-TC indirect-branch lookup table, indexed by the low 16
// bits of the guest EIP. neg_eip holds -eip (mod 2^32) so that translated
// code can test "eip matches" with lea alone (no flags): lea ecx,[neg_eip +
// eip] is zero exactly on a match. An empty slot is {0, miss stub}: a false
// match on EIP 0 lands in the miss stub, which does the right thing.
struct LookupEntry {
  uint32_t neg_eip = 0;
  uint32_t pad_ = 0;
  uint64_t host = 0;
};
inline constexpr uint32_t kLookupEntries = 1u << 16;

// One remembered segment-register load (TranslatorConfig::fast_segment_loads,
// README "Fast segment loads"): loading `selector` at CPL 0 while the 8 bytes
// at desc_address (in the GDT) are still `desc` gives `cache`. Filled by the
// translator after a segment-load callout the CPU model completed; read by
// translated code. key = 0x10000 | selector (0: empty).
struct SegLoadEntry {
  uint32_t key = 0;           //  0
  uint32_t desc_address = 0;  //  4: guest linear address of the descriptor
  uint64_t desc = 0;          //  8: its bytes as they were (accessed bit set)
  runtime::SegmentCache cache;  // 16: what the load put into CpuState::seg
  uint8_t null_selector = 0;  // 32: a null selector: no descriptor to read or compare
  uint8_t checked = 0;        // 33: the resulting segment is not flat (TranslatorContext::seg_checked)
  uint8_t pad_[14] = {};
};
inline constexpr int kSegLoadWays = 4;

// One remembered verw result (fast_segment_loads, README "Inline verw"):
// verw of `selector` at CPL 0 while the 8 bytes at desc_address (in the GDT)
// are still `desc` sets ZF to `zf`. Filled after a verw callout the CPU
// model completed. key = 0x10000 | selector (0: empty).
struct VerwEntry {
  uint32_t key = 0;           //  0
  uint32_t desc_address = 0;  //  4
  uint64_t desc = 0;          //  8
  uint32_t zf = 0;            // 16: 0x40 (EFLAGS.ZF) or 0
  uint8_t no_read = 0;        // 20: null selector: ZF = 0 without a descriptor read
  uint8_t pad_[11] = {};
};
inline constexpr int kVerwWays = 4;

struct alignas(16) TranslatorContext {
  runtime::CpuState* cpu = nullptr;  //  0: guest registers in/out
  uint64_t host_rsp = 0;             //  8: host stack pointer at entry (restored by the exit stub)
  uint32_t exit_reason = 0;          // 16: ExitReason
  uint32_t next_eip = 0;             // 20: guest EIP to continue at
  uint64_t window_base = 0;          // 24: GS base while translated code runs (4 GiB aligned)
  volatile uint8_t exit_requested = 0;  // 32: tested at every block entry; set by Translator::request_exit()
  // 33: the machine has an interrupt waiting: when the guest sets IF (sti,
  // popf) translated code leaves with kIrqWindow so it can be delivered.
  uint8_t irq_pending = 0;
  // 34: per runtime::Seg, 1 if the segment is not flat (limit below 4 GiB,
  // expand-down, read-only, null, code): an instruction that reads its base
  // at run time (kSegBaseAtRun) leaves with kNeedsChecks instead of running.
  // Written by run() before every entry from the dispatcher.
  uint8_t seg_checked[6] = {};
  // 40: the guest's x87/SSE state is loaded lazily (README "Lazy FPU state"):
  // a block calls through this before its first instruction that uses that
  // state. It points at the loading stub while the host's state is in the
  // registers and at a bare ret once the guest's is; the exit stubs save the
  // guest's state back only in the second case.
  uint64_t fpu_hook = 0;
  alignas(16) uint8_t host_fx[512] = {};  // 48: host x87 control word (+0) and MXCSR (+24) while the guest's state is loaded
  uint64_t last_exit = 0;            // 560: return address of the chainable exit site taken (0: none)
  uint64_t block_entries = 0;        // 568: blocks entered (TranslatorConfig::count_in_tc)
  uint64_t lookup_hits = 0;          // 576: indirect branches resolved in the TC (count_in_tc)
  uint32_t fault_vector = 0;         // 584: kGuestFault: exception vector
  uint32_t fault_error = 0;          // 588: kGuestFault: error code
  uint32_t fault_address = 0;        // 592: kGuestFault: guest linear address (#PF)
  uint32_t fault_access = 0;         // 596: kGuestFault: 0 read, 1 write, 2 fetch
  alignas(16) LookupEntry lookup[kLookupEntries];  // 608: the in-TC lookup table
  // Translator::set_inline_rdtsc: the owner's guest TSC offset (guest TSC =
  // host TSC + *tsc_offset), read by inline rdtsc at every execution.
  const int64_t* tsc_offset = nullptr;  // 608 + 16 * kLookupEntries
  // Fast segment loads (TranslatorConfig::fast_segment_loads; offsets by
  // offsetof, not ctx_off). The guest GDTR as the owner last set it
  // (Translator::set_gdt); the entries were filled under it.
  uint32_t gdt_base = 0;
  uint32_t gdt_limit = 0;
  // Per runtime::Seg: 1 if some live translation folded the segment's base
  // or relied on its flatness (Translator m_seg_used | m_seg_flat): a fast
  // load must then keep both exactly.
  uint8_t seg_pinned[runtime::kNumSegs] = {};
  uint8_t seg_load_victim[runtime::kNumSegs] = {};  // next way to replace, round robin
  uint64_t seg_fast_loads = 0;  // loads completed inline
  uint64_t seg_slow_loads = 0;  // loads the inline path left to the callout
  SegLoadEntry seg_loads[runtime::kNumSegs][kSegLoadWays];
  // Inline verw (same GDTR and lifetime as seg_loads).
  uint64_t verw_fast = 0;  // verw completed inline
  uint64_t verw_slow = 0;  // verw the inline path left to the callout
  uint8_t verw_victim = 0;
  VerwEntry verw[kVerwWays];
  uint64_t fpu_loads = 0;  // times the guest's x87/SSE state was loaded (fpu_hook)
};

namespace ctx_off {
inline constexpr int32_t kCpu = 0, kHostRsp = 8, kExitReason = 16, kNextEip = 20, kWindowBase = 24,
                         kExitRequested = 32, kIrqPending = 33, kSegChecked = 34, kFpuHook = 40, kHostFx = 48, kLastExit = 560, kBlockEntries = 568,
                         kLookupHits = 576, kLookup = 608, kTscOffset = kLookup + 16 * int32_t(kLookupEntries);
}
static_assert(offsetof(TranslatorContext, tsc_offset) == ctx_off::kTscOffset);
static_assert(offsetof(TranslatorContext, cpu) == ctx_off::kCpu);
static_assert(offsetof(TranslatorContext, host_rsp) == ctx_off::kHostRsp);
static_assert(offsetof(TranslatorContext, exit_reason) == ctx_off::kExitReason);
static_assert(offsetof(TranslatorContext, next_eip) == ctx_off::kNextEip);
static_assert(offsetof(TranslatorContext, window_base) == ctx_off::kWindowBase);
static_assert(offsetof(TranslatorContext, exit_requested) == ctx_off::kExitRequested);
static_assert(offsetof(TranslatorContext, host_fx) == ctx_off::kHostFx);
static_assert(offsetof(TranslatorContext, fpu_hook) == ctx_off::kFpuHook);
static_assert(offsetof(TranslatorContext, irq_pending) == ctx_off::kIrqPending);
static_assert(offsetof(TranslatorContext, seg_checked) == ctx_off::kSegChecked);
static_assert(offsetof(TranslatorContext, last_exit) == ctx_off::kLastExit);
static_assert(offsetof(TranslatorContext, block_entries) == ctx_off::kBlockEntries);
static_assert(offsetof(TranslatorContext, lookup_hits) == ctx_off::kLookupHits);
static_assert(offsetof(TranslatorContext, lookup) == ctx_off::kLookup);
static_assert(sizeof(LookupEntry) == 16);
static_assert(sizeof(runtime::SegmentCache) == 16 && offsetof(runtime::SegmentCache, base) == 4);
static_assert(sizeof(SegLoadEntry) == 48 && offsetof(SegLoadEntry, cache) == 16 &&
              offsetof(SegLoadEntry, null_selector) == 32 && offsetof(SegLoadEntry, checked) == 33);
static_assert(sizeof(VerwEntry) == 32 && offsetof(VerwEntry, zf) == 16 && offsetof(VerwEntry, no_read) == 20);

const char* exit_reason_name(ExitReason reason);

}  // namespace bt86::translator
