// Callouts: the C++ side of the callout stub (see callout.h).
#include "translator/callout.h"

#include <algorithm>
#include <vector>

#include <spdlog/fmt/fmt.h>

namespace bt86::translator {

extern "C" void bt86_callout_entry(TranslatorContext* ctx, const CalloutInsn* site, CalloutRuntime* rt) {
  // No copy: a flush inside the handler sets the sites aside until the
  // end of this function (CalloutRuntime::clear).
  const CalloutInsn& insn = *site;
  runtime::CpuState& cpu = *ctx->cpu;
  cpu.eip = insn.insn.eip;
  ++rt->count[insn.id()];
  ++rt->total;
  const uint32_t esp_before = cpu.gpr[runtime::ESP];
  rt->in_callout = true;
  CalloutAction action = rt->handler->callout(cpu, insn);
  if (rt->after_segment_callout &&
      (insn.id() == ZYDIS_MNEMONIC_MOV || insn.id() == ZYDIS_MNEMONIC_POP || insn.id() == ZYDIS_MNEMONIC_VERW))
    rt->after_segment_callout(rt->after_opaque, cpu, insn, esp_before);
  rt->in_callout = false;
  ctx->next_eip = cpu.eip;
  if (action == CalloutAction::kStop) {
    rt->last_stop = insn.id();
    ctx->exit_reason = uint32_t(ExitReason::kCalloutStop);
  } else {
    ctx->exit_reason = uint32_t(ExitReason::kCallout);
  }
  if (rt->has_retired()) rt->free_retired();  // insn is not used after this
}

std::string CalloutRuntime::format_counts() const {
  std::vector<std::pair<uint64_t, int>> v;
  for (int m = 0; m <= ZYDIS_MNEMONIC_MAX_VALUE; ++m)
    if (count[m]) v.push_back({count[m], m});
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.first > b.first; });
  std::string s;
  for (auto& [n, m] : v)
    s += fmt::format("{}{}: {}", s.empty() ? "" : ", ", ZydisMnemonicGetString(ZydisMnemonic(m)), n);
  return s;
}

}  // namespace bt86::translator
