// Translator: runs guest kernel code (CPL 0) from the translation cache.
//
// The flow of one guest instruction: build_block (decode + classify,
// block_builder.cpp) -> emit_block (AsmJit, block_emitter.cpp) -> the
// TranslationCache -> run() enters it through the entry stub and gets back
// control at the exit stub with an ExitReason and the next guest EIP.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "base/result.h"
#include "runtime/cpu_state.h"
#include "translator/block_emitter.h"
#include "translator/callout.h"
#include "translator/code_reader.h"
#include "translator/context.h"
#include "translator/translation_cache.h"

namespace bt86::translator {

struct TranslatorConfig {
  size_t tc_size = size_t(16) << 20;
  uint32_t max_block_insns = 64;
  // Host address of the guest window translated code addresses through GS.
  // 4 GiB aligned; 0 is the user window (a separate kernel window is planned).
  uint64_t window_base = 0;
};

struct TranslatorStats {
  uint64_t blocks_translated = 0;
  uint64_t guest_insns = 0;
  uint64_t guest_bytes = 0;
  uint64_t tc_bytes = 0;
  uint64_t tc_flushes = 0;       // flushes because the TC was full
  uint64_t invalidations = 0;    // flush() called by the owner, or segment flatness changed
  uint64_t blocks_run = 0;
  uint64_t insns_by_kind[kInsnKindCount] = {};  // translated guest instructions, by InsnKind
  std::map<std::string, uint64_t> stops;  // why blocks ended before an instruction, by reason
};

enum class RunStop : uint8_t {
  kNeedsInterpretation,  // eip is an instruction the translator does not handle (detail says why)
  kMaxBlocks,            // ran max_blocks blocks; eip is where to continue
  kUnsupportedState,     // CpuState cannot run translated (e.g. non-flat CS/DS/ES/SS)
  kInternalError,        // emission failed (detail); a bug or the TC is too small
  kCallout,              // the CalloutHandler returned kStop; eip = the cpu.eip it set
  kIrqWindow,            // the guest set IF (sti + shadow, popf) with irq_pending set; eip = next
};

struct RunResult {
  RunStop stop = RunStop::kInternalError;
  uint32_t eip = 0;
  std::string detail;
  uint64_t blocks_run = 0;
};

const char* run_stop_name(RunStop stop);

class Translator {
 public:
  static Result<std::unique_ptr<Translator>> create(const TranslatorConfig& config, const GuestCodeReader& code);
  ~Translator();

  // Runs translated blocks from cpu.eip until something the translator does
  // not handle or max_blocks blocks. cpu is updated at every block exit.
  RunResult run(runtime::CpuState& cpu, uint64_t max_blocks);

  // The block at eip, translating it if needed (nullptr on internal error).
  // Exposed for tests and tracing.
  const Block* block_at(uint32_t eip, const runtime::CpuState& cpu);
  // Drops every translation (guest code changed; SMC detection comes later).
  void flush();

  // Sensitive and privileged instructions call handler (callout.h); without
  // one they end blocks with kNeedsInterpretation. Drops all translations.
  void set_callout_handler(CalloutHandler* handler);
  const CalloutRuntime& callouts() const { return m_callouts; }
  // The machine has an interrupt for the guest: translated code leaves with
  // kIrqWindow when the guest sets IF (TranslatorContext::irq_pending).
  void set_irq_pending(bool pending) { m_ctx->irq_pending = pending ? 1 : 0; }

  const TranslatorStats& stats() const { return m_stats; }
  const TranslationCache& cache() const { return *m_tc; }
  TranslatorContext& context() { return *m_ctx; }

 private:
  Translator(const TranslatorConfig& config, const GuestCodeReader& code) : m_config(config), m_code(&code) {}
  Status emit_stubs();
  Result<const Block*> translate(uint32_t eip);
  void drop_blocks();

  using EntryFn = void (*)(TranslatorContext*, const uint8_t* block);

  TranslatorConfig m_config;
  const GuestCodeReader* m_code;
  std::unique_ptr<TranslationCache> m_tc;
  std::unique_ptr<TranslatorContext> m_ctx;
  EntryFn m_enter = nullptr;
  uint64_t m_exit_stub = 0;
  // Segment bases folded into the current translations (DecodedBlock::seg_base)
  // and which segments they used: a change in a used one drops them all.
  std::array<uint32_t, runtime::kNumSegs> m_seg_base{};
  uint8_t m_seg_used = 0;
  CalloutRuntime m_callouts;
  std::unordered_map<uint32_t, std::unique_ptr<Block>> m_blocks;
  TranslatorStats m_stats;
};

}  // namespace bt86::translator
