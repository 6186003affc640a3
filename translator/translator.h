// Translator: runs guest kernel code (CPL 0) from the translation cache.
//
// The flow of one guest instruction: build_block (decode + classify,
// block_builder.cpp) -> emit_block (AsmJit, block_emitter.cpp) -> the
// TranslationCache -> run() enters it through the entry stub and gets back
// control at the exit stub with an ExitReason and the next guest EIP.
#pragma once

#include <array>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "runtime/cpu_state.h"
#include "runtime/host_signals.h"
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
  // Direct exits jump straight to their target block once it exists, and
  // ret / jmp r/m32 / call r/m32 look their target up inside the TC. Off:
  // every block returns to the dispatcher (max_blocks then counts every block).
  bool chain = true;
  // Count block entries and in-TC lookup hits in translated code (three
  // flag-free instructions per block entry / hit).
  bool count_in_tc = false;
  // The runtime's preemption tick (runtime::detail::tick_signal) while
  // translated code runs stops it with RunStop::kExitRequested.
  bool stop_on_host_tick = false;
  // Segment limits and types: accesses through a segment that is not flat
  // (checked_segments() in translator.cpp) are left to the owner
  // (kNeedsInterpretation, detail kNeedsChecksDetail). Off: every segment is
  // taken as flat (tests that run on bare CpuStates).
  bool check_segments = false;
  // Loads of DS/ES/FS/GS (mov sreg, r/m; pop sreg) complete inline when the
  // same selector was loaded before through a callout and its GDT descriptor
  // is unchanged (README "Fast segment loads"), and verw replays a
  // remembered ZF result the same way (README "Inline verw"); the owner
  // keeps the GDTR current with set_gdt(). Only for a translator that runs CPL 0 code in
  // protected mode: the remembered results are those of CPL 0 loads.
  bool fast_segment_loads = false;
  // Guest CPL 3 code (the user-mode translator of the machine, window_base =
  // the user window): pushf/popf/cli/sti become callouts (BuildOptions::
  // user_mode). Everything privileged already calls out and the CPU model
  // applies CPL 3 rules. Do not set_inline_rdtsc() on such a translator:
  // CR4.TSD makes rdtsc fault at CPL 3.
  bool user_mode = false;
  // Blocks go on past direct conditional branches (BuildOptions::superblocks).
  bool superblocks = true;
};

struct TranslatorStats {
  uint64_t blocks_translated = 0;
  uint64_t guest_insns = 0;
  uint64_t guest_bytes = 0;
  uint64_t tc_bytes = 0;
  uint64_t tc_flushes = 0;       // flushes because the TC was full
  uint64_t invalidations = 0;    // flush() called by the owner
  uint64_t blocks_run = 0;        // blocks entered from the dispatcher
  uint64_t chain_links = 0;       // direct exits patched into jumps to their target
  uint64_t chain_unlinks = 0;     // links undone because their target was dropped
  uint64_t links_cut = 0;         // links cut for an exit request (and put back after it)
  uint64_t lookup_misses = 0;     // indirect branches that returned to the dispatcher
  uint64_t lookup_fills = 0;      // lookup slots written by the dispatcher
  uint64_t exit_requests = 0;     // runs stopped by request_exit() / the tick
  uint64_t guest_faults = 0;      // host faults in translated code turned into guest faults
  uint64_t code_page_invalidations = 0;  // invalidate_code_page() calls that dropped blocks
  uint64_t blocks_dropped = 0;    // blocks dropped by invalidate_code_page()
  uint64_t blocks_detached = 0;   // blocks set aside by detach_code_page()
  uint64_t blocks_reattached = 0; // detached blocks found again instead of translating
  uint64_t segment_changes = 0;   // a base or flatness some blocks relied on changed
  uint64_t segment_blocks_dropped = 0;  // the blocks those changes dropped
  uint64_t uncached_steps = 0;    // one-instruction blocks run after a write to their own page
  uint64_t unchecked_steps = 0;   // run_one() calls
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
  kExitRequested,        // request_exit() or the host tick; eip is the next block to run
  kGuestFault,           // the instruction at eip faulted (RunResult::fault); state is before it
};

// RunResult::detail of a kNeedsInterpretation stop before an instruction
// that accesses memory through a non-flat segment (TranslatorContext::
// seg_checked, BuildOptions::checked_segs): the owner checks the access and
// runs it with run_one().
inline constexpr const char* kNeedsChecksDetail = "segment needs limit/type checks";

enum class FaultAccess : uint8_t { kRead, kWrite, kFetch };

// A guest exception raised by an instruction in translated code. The guest
// registers, flags and EIP in CpuState are those before the instruction (it
// had no architectural effect), so the owner can deliver the exception or
// fix the cause (map the page) and run again to retry it.
struct GuestFault {
  uint8_t vector = 0;           // 0 #DE, 6 #UD, 13 #GP, 14 #PF, 16 #MF, 19 #XM
  bool has_error_code = false;  // #GP, #PF
  uint32_t error_code = 0;      // #PF: P (bit 0), W (bit 1), I/D (bit 4); U is 0 (CPL 0)
  uint32_t linear_address = 0;  // #PF: the guest linear address (CR2)
  FaultAccess access = FaultAccess::kRead;
};

struct RunResult {
  RunStop stop = RunStop::kInternalError;
  uint32_t eip = 0;
  std::string detail;       // empty for kGuestFault (a hot path: `fault` says it all)
  uint64_t blocks_run = 0;  // blocks entered from the dispatcher (chained ones are not counted)
  GuestFault fault;         // kGuestFault
};

const char* run_stop_name(RunStop stop);

class Translator {
 public:
  static Result<std::unique_ptr<Translator>> create(const TranslatorConfig& config, const GuestCodeReader& code);
  ~Translator();

  // Runs translated blocks from cpu.eip until something the translator does
  // not handle, a guest fault, an exit request or max_blocks entries from the
  // dispatcher (with chaining, blocks reached through links or the in-TC
  // lookup are not counted: bound the time with request_exit()). cpu is
  // updated whenever translated code returns.
  RunResult run(runtime::CpuState& cpu, uint64_t max_blocks);

  // x87/MMX/SSE instructions fault because of the guest's CR0.TS/EM or a
  // clear CR4.OSFXSR: translations stop before them (the owner decides
  // #NM/#UD). A change drops every translation.
  void set_fpu_checked(bool checked) {
    if (checked == m_fpu_checked) return;
    flush();
    m_fpu_checked = checked;
  }

  // Runs exactly the one instruction at cpu.eip from an uncached translation
  // without chaining, translated as if every segment were flat (the caller
  // has checked its accesses: limits, types, breakpoints). A callout in it
  // still reaches the handler. RunResult as for run(): kMaxBlocks when the
  // instruction completed (cpu.eip is the next one).
  RunResult run_one(runtime::CpuState& cpu);

  // Async-signal-safe, callable from any thread: the running (or next) run()
  // returns kExitRequested at the next block boundary. run() clears the
  // request when it returns for it. From another thread than the one in
  // run(), it also sends that thread the tick signal (a kick), whose handler
  // cuts the links of the block it interrupted (chained jumps skip the
  // entry poll: Block::link_offset).
  void request_exit();

  // The block at eip, translating it if needed (nullptr on internal error).
  // Exposed for tests and tracing.
  const Block* block_at(uint32_t eip, const runtime::CpuState& cpu);
  // Drops every translation and empties the TC.
  void flush();

  // Sensitive and privileged instructions call handler (callout.h); without
  // one they end blocks with kNeedsInterpretation. Drops all translations.
  void set_callout_handler(CalloutHandler* handler);
  // Non-null: rdtsc runs inline (host TSC + *offset, read at every execution,
  // so the owner just keeps its offset up to date) instead of calling out.
  // Only right when the owner's rdtsc is exactly that at CPL 0 (the CPU
  // model's guest_tsc). Drops all translations.
  void set_inline_rdtsc(const int64_t* offset);
  const CalloutRuntime& callouts() const { return m_callouts; }
  // The machine has an interrupt for the guest: translated code leaves with
  // kIrqWindow when the guest sets IF (TranslatorContext::irq_pending).
  void set_irq_pending(bool pending) { m_ctx->irq_pending = pending ? 1 : 0; }
  // The guest's GDTR (fast_segment_loads): remembered segment loads are
  // valid only under the GDTR they were made with, so a change forgets
  // them. Cheap when nothing changed: the owner calls it before every run()
  // and after every callout that may have run lgdt.
  void set_gdt(uint32_t base, uint16_t limit);

  // Self-modifying code: drops every block with bytes on guest physical page
  // phys_page, unlinks the chains into them and empties their lookup slots.
  // Safe while stopped at a guest fault inside one of them: if the faulting
  // instruction's block was on the page, the next run() executes that one
  // instruction from a fresh one-instruction translation that does not
  // re-register the page (so a store into its own page completes), then
  // carries on normally. A page without blocks is a no-op.
  void invalidate_code_page(uint32_t phys_page);
  // The guest no longer maps phys_page where blocks were made from it (the
  // owner saw a CR3 load or INVLPG change the binding), but its bytes did
  // not change: its blocks become unreachable (links into them undone,
  // lookup slots emptied, out of the EIP map) but are kept. When code at the
  // same linear EIP is needed again and the guest maps the same frame(s)
  // there, the block comes back instead of a new translation (a forked
  // child's exit unmaps the frames its parent runs; the parent maps them
  // again). A write to the page (invalidate_code_page) drops them for good.
  void detach_code_page(uint32_t phys_page);
  // Called when a guest physical page gets its first block (again, after an
  // invalidation): the owner write-protects it and calls invalidate_code_page
  // when the guest writes to it.
  void set_code_page_callback(std::function<void(uint32_t phys_page)> cb) { m_on_code_page = std::move(cb); }

  // Guest instructions beside the host code each became (Zydis, Intel syntax).
  std::string trace_block(const Block& block) const;
  // If set, every newly translated block's trace_block() text goes here.
  void set_trace_sink(std::function<void(const std::string&)> sink) { m_trace_sink = std::move(sink); }
  // Counters as readable text (bt86 --stats).
  std::string format_stats() const;

  const TranslatorStats& stats() const { return m_stats; }
  const TranslationCache& cache() const { return *m_tc; }
  TranslatorContext& context() { return *m_ctx; }

 private:
  Translator(const TranslatorConfig& config, const GuestCodeReader& code) : m_config(config), m_code(&code) {}
  Status emit_stubs();
  Result<const Block*> translate(uint32_t eip, bool ephemeral = false, bool unchecked = false);
  void sync_segments(const runtime::CpuState& cpu);
  void drop_blocks();
  void drop_block(Block* b);
  void unreach(Block* b);
  Block* reattach(uint32_t eip);
  void try_link(uint64_t site_return, uint32_t target_eip, const runtime::CpuState& cpu);
  void fill_lookup(uint32_t eip, const Block& b);
  void clear_lookup();
  Block* block_by_host(uint64_t host_address) const;
  static bool on_tc_fault(void* opaque, int signo, siginfo_t* si, ucontext_t* uc);
  static void on_tick(void* opaque, ucontext_t* uc, bool timer);
  void set_poll_page(bool readable);
  void request_exit_here();
  void cut_links(Block* b);
  void heal_cut();
  void update_seg_pinned();
  void drop_segment_blocks(uint8_t segs);
  void record_seg_load(const runtime::CpuState& cpu, const CalloutInsn& insn, uint32_t esp_before);
  void record_verw(const runtime::CpuState& cpu, const CalloutInsn& insn);
  static void after_segment_callout(void* opaque, const runtime::CpuState& cpu, const CalloutInsn& insn,
                                    uint32_t esp_before) {
    auto* t = static_cast<Translator*>(opaque);
    if (insn.id() == ZYDIS_MNEMONIC_VERW) t->record_verw(cpu, insn);
    else t->record_seg_load(cpu, insn, esp_before);
  }

  using EntryFn = void (*)(TranslatorContext*, const uint8_t* block);

  TranslatorConfig m_config;
  const GuestCodeReader* m_code;
  std::unique_ptr<TranslationCache> m_tc;
  std::unique_ptr<TranslatorContext> m_ctx;
  EntryFn m_enter = nullptr;
  uint64_t m_exit_stub = 0;
  // Segment bases folded into the current translations (DecodedBlock::seg_base)
  // and which segments they used: a change in a used one drops the blocks
  // that used it (m_seg_blocks).
  std::array<uint32_t, runtime::kNumSegs> m_seg_base{};
  uint8_t m_seg_used = 0;
  // Per segment, the blocks that folded its base or assumed its flatness
  // (may hold dead blocks; emptied by a drop of that segment or a flush).
  std::array<std::vector<Block*>, runtime::kNumSegs> m_seg_blocks;
  // Segments that are not flat now (checked_segments()), and the segments
  // whose flatness some translation assumed (DecodedBlock::seg_flat).
  uint8_t m_seg_checked = 0;
  uint8_t m_seg_flat = 0;
  // cpu.seg as sync_segments() last saw it (valid once m_seg_synced).
  std::array<runtime::SegmentCache, runtime::kNumSegs> m_seg_snapshot{};
  bool m_seg_synced = false;
  bool m_unchecked_step = false;  // inside run_one()
  bool m_fpu_checked = false;
  CalloutRuntime m_callouts;
  uint64_t m_site_stub = 0;  // exit stub entry for chainable exits (records the site)
  uint64_t m_miss_stub = 0;  // where empty lookup slots point
  // Every block since the last flush, in host address order (the TC is
  // bump-allocated): the fault handler binary-searches it without allocating.
  // Dropped blocks stay (their code may still be on the stack of a fault).
  std::vector<std::unique_ptr<Block>> m_owned;
  Block m_unreadable;  // the answer for code that cannot be read (never cached)
  std::vector<Block*> m_by_host;
  std::unordered_map<uint32_t, Block*> m_blocks;  // live blocks by guest EIP
  // A direct-mapped cache of m_blocks for the dispatcher (block_at), which
  // runs after every callout and exit: the hash map's lookup (a division
  // and two dependent loads) showed up in profiles of system-call loops.
  // A slot never outlives its block's place in m_blocks: drop_blocks,
  // drop_block and unreach empty it.
  struct DispatchSlot {
    uint32_t eip = 0;
    Block* block = nullptr;
  };
  static constexpr uint32_t kDispatchSlots = 1024;
  static uint32_t dispatch_slot(uint32_t eip) { return (eip ^ (eip >> 10)) & (kDispatchSlots - 1); }
  void forget_dispatch(const Block* b) {
    DispatchSlot& d = m_dispatch[dispatch_slot(b->guest_eip)];
    if (d.block == b) d = {};
  }
  std::array<DispatchSlot, kDispatchSlots> m_dispatch{};
  std::unordered_map<uint32_t, std::vector<Block*>> m_pages;  // live blocks by guest physical page
  std::unordered_map<uint32_t, std::vector<Block*>> m_detached;  // detached blocks by guest physical page
  std::vector<uint16_t> m_lookup_used;  // lookup slots written since the last clear
  uint64_t m_generation = 0;            // bumped whenever blocks are freed (flush)
  std::optional<uint32_t> m_step_eip;   // run this EIP as an uncached one-instruction block next
  Block* volatile m_fault_block = nullptr;  // block of the last guest fault (set by the handler)
  uint32_t m_fault_eip = 0;                 // EIP of the last guest fault
  runtime::TranslatedCodeHook m_hook;
  // Blocks whose links an exit request cut (ExitSite::cut), healed by run()
  // before it enters the TC again. One is the norm: after a cut nothing but
  // the cut block runs before the exit (everything else enters by the poll).
  static constexpr uint32_t kMaxCut = 4;
  std::array<Block*, kMaxCut> m_cut{};
  volatile uint32_t m_cut_count = 0;
  // The thread inside run() (0: none) and our process, for request_exit()'s kick.
  std::atomic<int> m_run_tid{0};
  int m_pid = 0;
  int m_kick_signal = 0;
  std::function<void(uint32_t)> m_on_code_page;
  std::function<void(const std::string&)> m_trace_sink;
  TranslatorStats m_stats;
};

}  // namespace bt86::translator
