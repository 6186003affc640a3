// Callouts: how translated code hands a sensitive or privileged guest
// instruction (in/out, mov crN, lgdt, cpuid, int n, iret, hlt, far
// transfers, segment loads ...) to C++ (the machine's CPU model).
//
// A callout is an ordinary 64-bit call from the TC into C++: the block jumps
// to the callout stub with R13 = the CalloutSite; the stub stores the guest
// registers, flags and FPU state into CpuState exactly like the exit stub,
// switches to the host FPU state and calls callout_entry(ctx, site), which
// calls CalloutHandler::callout(). The block always ends at a callout:
// execution continues at the cpu.eip the handler set (next instruction, jump
// target, exception handler), or run() returns (kStop).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "runtime/cpu_state.h"
#include "translator/context.h"
#include "translator/reencoder.h"

namespace bt86::translator {

enum class CalloutAction : uint8_t {
  kContinue,  // carry on translated at cpu.eip
  kStop,      // return from Translator::run() with RunStop::kCallout (mode change, halt, shutdown...)
};

// The guest instruction a callout is for: the Zydis decoding (insn.insn,
// insn.ops, insn.insn.length) at insn.eip. id() names it for counters.
struct CalloutInsn {
  GuestInsn insn;
  ZydisMnemonic id() const { return insn.insn.mnemonic; }
};

class CalloutHandler {
 public:
  virtual ~CalloutHandler() = default;
  // cpu holds every guest register, EFLAGS (IF/IOPL included) and the FPU
  // state; cpu.eip is the instruction's own EIP. The handler performs the
  // instruction (or raises a guest exception), sets cpu.eip, and may change
  // any register: translated code reloads them all.
  virtual CalloutAction callout(runtime::CpuState& cpu, const CalloutInsn& insn) = 0;
};

// What one translator keeps for its callouts: the handler, the sites that
// blocks point at, counters by mnemonic, and the stub's address.
class CalloutRuntime {
 public:
  CalloutHandler* handler = nullptr;
  uint64_t stub = 0;  // host address of the callout stub (Translator::emit_stubs)
  uint64_t count[ZYDIS_MNEMONIC_MAX_VALUE + 1] = {};
  uint64_t total = 0;
  ZydisMnemonic last_stop = ZYDIS_MNEMONIC_INVALID;  // the instruction whose handler said kStop
  // Set: called after the handler of every mov, pop and verw callout
  // returned, with the guest ESP from before it (the translator remembers
  // completed segment loads and verw results: TranslatorConfig::
  // fast_segment_loads).
  void (*after_segment_callout)(void* opaque, const runtime::CpuState& cpu, const CalloutInsn& insn,
                                uint32_t esp_before) = nullptr;
  void* after_opaque = nullptr;

  // A site that lives until clear() (TC flush): blocks embed its address.
  const CalloutInsn* new_site(const GuestInsn& g) {
    m_sites.push_back({g});
    return &m_sites.back();
  }
  // Called by a flush, possibly from inside a handler (a flush in a
  // callout): the site being handled must outlive it, so the sites are set
  // aside and freed when the callout returns (bt86_callout_entry used to
  // copy the ~1.1 KiB CalloutInsn on every callout instead).
  void clear() {
    if (in_callout) {
      m_retired.push_back(std::move(m_sites));
      m_sites = {};
    } else {
      m_sites.clear();
    }
  }
  void free_retired() { m_retired.clear(); }
  bool has_retired() const { return !m_retired.empty(); }
  size_t sites() const { return m_sites.size(); }
  bool in_callout = false;  // inside bt86_callout_entry's call of the handler

  // "cpuid: 12, in: 3400 ..." (most frequent first) for --stats.
  std::string format_counts() const;

 private:
  std::deque<CalloutInsn> m_sites;  // deque: addresses stay valid as it grows
  // Site lists cleared during a callout. A moved-from deque hands over its
  // blocks, so the elements keep their addresses.
  std::vector<std::deque<CalloutInsn>> m_retired;
};

// Called by the callout stub (System V ABI) with the guest state stored in
// *ctx->cpu and cpu->eip = the instruction. Sets ctx->next_eip and
// ctx->exit_reason (kCallout or kCalloutStop).
extern "C" void bt86_callout_entry(TranslatorContext* ctx, const CalloutInsn* site, CalloutRuntime* rt);

}  // namespace bt86::translator
