#include "translator/translator.h"

#include <asm/prctl.h>
#include <asmjit/x86.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"

namespace bt86::translator {
namespace {

using namespace asmjit;
namespace rf = runtime::flags;
constexpr uint32_t kLiveFlags = rf::Arith | rf::DF;
constexpr int32_t kGpr = offsetof(runtime::CpuState, gpr);
constexpr int32_t kEflags = offsetof(runtime::CpuState, eflags);
constexpr int32_t kFpu = offsetof(runtime::CpuState, fpu);

// Host register for each guest register, in runtime::Reg order.
const x86::Gp kGuestRegs[8] = {x86::eax, x86::ecx, x86::edx, x86::ebx, x86::r12d, x86::ebp, x86::esi, x86::edi};

uint64_t get_gs_base() {
  unsigned long v = 0;
  syscall(SYS_arch_prctl, ARCH_GET_GS, &v);
  return v;
}
void set_gs_base(uint64_t v) { syscall(SYS_arch_prctl, ARCH_SET_GS, v); }


}  // namespace

const char* exit_reason_name(ExitReason reason) {
  switch (reason) {
    case ExitReason::kNone: return "none";
    case ExitReason::kBlockEnd: return "block-end";
    case ExitReason::kIndirect: return "indirect";
    case ExitReason::kNeedsInterpretation: return "needs-interpretation";
    case ExitReason::kCallout: return "callout";
    case ExitReason::kCalloutStop: return "callout-stop";
    case ExitReason::kIrqWindow: return "irq-window";
  }
  return "?";
}

const char* run_stop_name(RunStop stop) {
  switch (stop) {
    case RunStop::kNeedsInterpretation: return "needs-interpretation";
    case RunStop::kMaxBlocks: return "max-blocks";
    case RunStop::kUnsupportedState: return "unsupported-state";
    case RunStop::kInternalError: return "internal-error";
    case RunStop::kCallout: return "callout";
    case RunStop::kIrqWindow: return "irq-window";
  }
  return "?";
}

Result<std::unique_ptr<Translator>> Translator::create(const TranslatorConfig& config, const GuestCodeReader& code) {
  if (config.window_base % (uint64_t(1) << 32) != 0) return make_error("translator: window base not 4 GiB aligned");
  auto tc = TranslationCache::create(config.tc_size);
  if (!tc) return tc.error();
  std::unique_ptr<Translator> t(new Translator(config, code));
  t->m_tc = std::move(tc.value());
  t->m_ctx = std::make_unique<TranslatorContext>();
  t->m_ctx->window_base = config.window_base;
  if (auto s = t->emit_stubs(); !s) return s.error();
  return t;
}

Translator::~Translator() = default;

// Entry: void enter(TranslatorContext* ctx /*rdi*/, const uint8_t* block /*rsi*/).
// Saves the host callee-saved registers and FPU state, loads the guest's
// registers, live flags and FPU state, and jumps to the block. Exit (reached
// by jmp from every block exit): the reverse, then returns to C++.
Status Translator::emit_stubs() {
  const uint64_t base = reinterpret_cast<uint64_t>(m_tc->stub_area());
  CodeHolder code;
  code.init(Environment(Arch::kX64), base);
  x86::Assembler a(&code);
  Label exit = a.newLabel();

  a.push(x86::rbp);
  a.push(x86::rbx);
  a.push(x86::r12);
  a.push(x86::r13);
  a.push(x86::r14);
  a.push(x86::r15);
  a.sub(x86::rsp, 8);  // keeps RSP 16-byte aligned for callouts later
  a.mov(x86::r15, x86::rdi);
  a.mov(x86::qword_ptr(x86::r15, ctx_off::kHostRsp), x86::rsp);
  a.mov(x86::r14, x86::rsi);
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.fxsave64(x86::ptr(x86::r15, ctx_off::kHostFx));
  a.fxrstor64(x86::ptr(x86::r13, kFpu));
  a.pushfq();
  a.pop(x86::rax);
  a.and_(x86::rax, int32_t(~kLiveFlags));
  a.mov(x86::ecx, x86::dword_ptr(x86::r13, kEflags));
  a.and_(x86::ecx, kLiveFlags);
  a.or_(x86::rax, x86::rcx);
  a.push(x86::rax);
  a.popfq();
  for (int r = 0; r < 8; ++r) a.mov(kGuestRegs[r], x86::dword_ptr(x86::r13, kGpr + 4 * r));
  a.jmp(x86::r14);

  a.align(AlignMode::kCode, 16);
  a.bind(exit);
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  for (int r = 0; r < 8; ++r) a.mov(x86::dword_ptr(x86::r13, kGpr + 4 * r), kGuestRegs[r]);
  a.pushfq();
  a.pop(x86::rax);
  a.and_(x86::eax, kLiveFlags);
  a.mov(x86::ecx, x86::dword_ptr(x86::r13, kEflags));
  a.and_(x86::ecx, ~kLiveFlags);
  a.or_(x86::ecx, x86::eax);
  a.mov(x86::dword_ptr(x86::r13, kEflags), x86::ecx);
  a.cld();  // the C++ ABI wants DF clear
  a.fxsave64(x86::ptr(x86::r13, kFpu));
  a.fxrstor64(x86::ptr(x86::r15, ctx_off::kHostFx));
  a.mov(x86::rsp, x86::qword_ptr(x86::r15, ctx_off::kHostRsp));
  a.add(x86::rsp, 8);
  a.pop(x86::r15);
  a.pop(x86::r14);
  a.pop(x86::r13);
  a.pop(x86::r12);
  a.pop(x86::rbx);
  a.pop(x86::rbp);
  a.ret();

  // Callout (callout.h), reached by jmp with R13 = the CalloutInsn and
  // next_eip = its EIP: store the guest state like the exit stub, switch to
  // the host FPU state, call bt86_callout_entry on the host stack, then
  // return to run() (which continues at cpu.eip or stops).
  a.align(AlignMode::kCode, 16);
  Label callout = a.newLabel();
  a.bind(callout);
  a.mov(x86::r14, x86::r13);
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  for (int r = 0; r < 8; ++r) a.mov(x86::dword_ptr(x86::r13, kGpr + 4 * r), kGuestRegs[r]);
  a.pushfq();
  a.pop(x86::rax);
  a.and_(x86::eax, kLiveFlags);
  a.mov(x86::ecx, x86::dword_ptr(x86::r13, kEflags));
  a.and_(x86::ecx, ~kLiveFlags);
  a.or_(x86::ecx, x86::eax);
  a.mov(x86::dword_ptr(x86::r13, kEflags), x86::ecx);
  a.cld();
  a.fxsave64(x86::ptr(x86::r13, kFpu));
  a.fxrstor64(x86::ptr(x86::r15, ctx_off::kHostFx));
  a.mov(x86::rsp, x86::qword_ptr(x86::r15, ctx_off::kHostRsp));  // 16-byte aligned
  a.mov(x86::rdi, x86::r15);
  a.mov(x86::rsi, x86::r14);
  a.mov(x86::rdx, Imm(reinterpret_cast<uint64_t>(&m_callouts)));
  a.mov(x86::rax, Imm(reinterpret_cast<uint64_t>(&bt86_callout_entry)));
  a.call(x86::rax);
  a.mov(x86::rsp, x86::qword_ptr(x86::r15, ctx_off::kHostRsp));
  a.add(x86::rsp, 8);
  a.pop(x86::r15);
  a.pop(x86::r14);
  a.pop(x86::r13);
  a.pop(x86::r12);
  a.pop(x86::rbx);
  a.pop(x86::rbp);
  a.ret();

  code.flatten();
  code.resolveUnresolvedLinks();
  if (code.relocateToBase(base) != kErrorOk) return make_error("translator: stub relocation failed");
  const CodeBuffer& buf = code.sectionById(0)->buffer();
  if (buf.size() > TranslationCache::kStubArea) return make_error("translator: stubs too large");
  std::memcpy(m_tc->stub_area(), buf.data(), buf.size());
  m_enter = reinterpret_cast<EntryFn>(m_tc->stub_area());
  m_exit_stub = base + code.labelOffset(exit);
  m_callouts.stub = base + code.labelOffset(callout);
  return Ok{};
}

void Translator::drop_blocks() {
  m_blocks.clear();
  m_callouts.clear();
  m_seg_used = 0;
}

void Translator::set_callout_handler(CalloutHandler* handler) {
  flush();
  m_callouts.handler = handler;
}

void Translator::flush() {
  drop_blocks();
  m_tc->flush();
  ++m_stats.invalidations;
}

Result<const Block*> Translator::translate(uint32_t eip) {
  BuildOptions options;
  options.max_insns = m_config.max_block_insns;
  options.seg_base = m_seg_base;
  options.callouts = m_callouts.handler ? &m_callouts : nullptr;
  DecodedBlock decoded = build_block(*m_code, eip, options);
  m_seg_used |= decoded.seg_used;
  if (decoded.end == BlockEnd::kStop) {
    if (m_stats.stops[decoded.stop_reason]++ == 0)
      log::get("translator")->debug("block ends before {:#x}: {}", decoded.end_eip, decoded.stop_reason);
  }
  auto block = std::make_unique<Block>();
  if (decoded.insns.empty() && decoded.end == BlockEnd::kStop) {
    // Nothing to run: remember why, so the dispatcher answers at once next time.
    block->guest_eip = block->guest_end = eip;
    block->end = BlockEnd::kStop;
    block->stop_reason = decoded.stop_reason;
  } else {
    for (int attempt = 0;; ++attempt) {
      auto bytes = emit_block(decoded, m_tc->cursor(), m_exit_stub, *block);
      if (!bytes) return bytes.error();
      uint8_t* at = m_tc->allocate(bytes->size());
      if (!at) {
        if (attempt > 0) return make_error("translator: block larger than the translation cache");
        drop_blocks();
        m_tc->flush();
        ++m_stats.tc_flushes;
        continue;
      }
      std::memcpy(at, bytes->data(), bytes->size());
      block->host = at;
      block->host_size = uint32_t(bytes->size());
      break;
    }
    ++m_stats.blocks_translated;
    m_stats.guest_insns += decoded.insns.size();
    for (const BlockInsn& insn : decoded.insns) ++m_stats.insns_by_kind[int(insn.kind)];
    m_stats.guest_bytes += decoded.end_eip - decoded.eip;
    m_stats.tc_bytes += block->host_size;
  }
  const Block* raw = block.get();
  m_blocks[eip] = std::move(block);
  return raw;
}

const Block* Translator::block_at(uint32_t eip, const runtime::CpuState& cpu) {
  // Segment bases are constants in translated code: if one that some
  // translation used has changed, drop them all (rare: Linux keeps its kernel
  // bases, FS per-CPU included, for good).
  for (int s = 0; s < runtime::kNumSegs; ++s) {
    if ((m_seg_used & (1u << s)) && cpu.seg[s].base != m_seg_base[s]) {
      flush();
      break;
    }
  }
  for (int s = 0; s < runtime::kNumSegs; ++s) m_seg_base[s] = cpu.seg[s].base;
  if (auto it = m_blocks.find(eip); it != m_blocks.end()) return it->second.get();
  auto b = translate(eip);
  if (!b) {
    log::get("translator")->error("translating {:#x}: {}", eip, b.error().message);
    return nullptr;
  }
  return b.value();
}

RunResult Translator::run(runtime::CpuState& cpu, uint64_t max_blocks) {
  using runtime::Seg;
  RunResult result;
  // EIP is fetched as a linear address: CS must be based at 0.
  if (cpu.sreg(Seg::CS).base != 0) {
    result.stop = RunStop::kUnsupportedState;
    result.eip = cpu.eip;
    result.detail = "CS base not zero";
    return result;
  }
  const uint64_t host_gs = get_gs_base();
  if (host_gs != m_ctx->window_base) set_gs_base(m_ctx->window_base);
  m_ctx->cpu = &cpu;

  result.stop = RunStop::kMaxBlocks;
  while (result.blocks_run < max_blocks) {
    const Block* b = block_at(cpu.eip, cpu);
    if (!b) {
      result.stop = RunStop::kInternalError;
      result.detail = "translation failed";
      break;
    }
    if (!b->host) {
      result.stop = RunStop::kNeedsInterpretation;
      result.detail = b->stop_reason;
      break;
    }
    std::string stop_reason = b->end == BlockEnd::kStop ? b->stop_reason : std::string();
    m_ctx->exit_reason = uint32_t(ExitReason::kNone);
    m_enter(m_ctx.get(), b->host);
    ++result.blocks_run;
    cpu.eip = m_ctx->next_eip;
    const ExitReason reason = ExitReason(m_ctx->exit_reason);
    if (reason == ExitReason::kNeedsInterpretation) {
      result.stop = RunStop::kNeedsInterpretation;
      result.detail = std::move(stop_reason);
      break;
    }
    if (reason == ExitReason::kCalloutStop) {
      result.stop = RunStop::kCallout;
      result.detail = ZydisMnemonicGetString(m_callouts.last_stop);
      break;
    }
    if (reason == ExitReason::kIrqWindow) {
      result.stop = RunStop::kIrqWindow;
      break;
    }
  }
  m_stats.blocks_run += result.blocks_run;
  result.eip = cpu.eip;
  m_ctx->cpu = nullptr;
  if (host_gs != m_ctx->window_base) set_gs_base(host_gs);
  return result;
}

}  // namespace bt86::translator
