#include "translator/block_emitter.h"

#include <asmjit/x86.h>

#include <cstring>

#include "runtime/cpu_state.h"
#include "translator/expand.h"

namespace bt86::translator {
namespace {

using namespace asmjit;

class RecordingErrorHandler : public ErrorHandler {
 public:
  void handleError(asmjit::Error, const char* message, BaseEmitter*) override {
    if (first.empty()) first = message;
  }
  std::string first;
};

class Emitter final : public ExpandContext {
 public:
  Emitter(const DecodedBlock& block, const EmitOptions& options, Block& meta)
      : m_block(block), m_opt(options), m_stub(options.exit_stub), m_meta(meta) {}

  Result<std::vector<uint8_t>> run(uint64_t host_address) {
    m_code.init(Environment(Arch::kX64), host_address);
    m_code.setErrorHandler(&m_errors);
    m_code.attach(&m_a);
    m_meta.boundaries.reserve(m_block.insns.size() + 1);
    m_meta.exits.reserve(2);
    if (m_opt.entry_check) emit_entry_check();
    // Once loaded, the guest's FPU state stays loaded to the end of the
    // block: every way out of the TC goes through the exit stubs, and a
    // block is only ever entered at its start.
    bool fpu_loaded = !m_opt.lazy_fpu;
    for (const BlockInsn& insn : m_block.insns) {
      m_meta.boundaries.push_back({uint32_t(m_a.offset()), insn.guest.eip});
      if (!fpu_loaded && uses_fpu_state(insn.guest)) {
        m_a.call(x86::qword_ptr(x86::r15, ctx_off::kFpuHook));
        fpu_loaded = true;
      }
      if (auto s = emit(insn); !s) return s.error();
    }
    switch (m_block.end) {
      case BlockEnd::kBranch: break;  // the last instruction emitted its exits
      case BlockEnd::kFallThrough:
        m_meta.boundaries.push_back({uint32_t(m_a.offset()), m_block.end_eip});
        exit_to(m_block.end_eip, ExitReason::kBlockEnd);
        break;
      case BlockEnd::kStop:
        m_meta.boundaries.push_back({uint32_t(m_a.offset()), m_block.end_eip});
        exit_to(m_block.end_eip, ExitReason::kNeedsInterpretation);
        break;
    }
    // Side exits (superblocks), out of line after everything else.
    for (const SideExit& side : m_side_exits) {
      m_a.bind(side.site);
      exit_to(side.taken, ExitReason::kBlockEnd);
      if (m_opt.site_stub != 0) m_meta.exits.back().branch_rel_offset = side.jcc_at + 2;
    }
    if (!m_errors.first.empty()) return make_error("asmjit: " + m_errors.first);
    m_code.flatten();
    m_code.resolveUnresolvedLinks();
    if (m_code.relocateToBase(host_address) != kErrorOk) return make_error("asmjit: relocation failed");
    const CodeBuffer& buf = m_code.sectionById(0)->buffer();
    return std::vector<uint8_t>(buf.data(), buf.data() + buf.size());
  }

 private:
  // ExpandContext
  x86::Assembler& as() override { return m_a; }
  const DecodedBlock& block() const override { return m_block; }

  void borrowed_in_r13(int reg) override {
    if (!m_meta.boundaries.empty()) m_meta.boundaries.back().restore_from_r13 = uint8_t(reg + 1);
  }
  void string_bias(uint32_t esi_bias, uint32_t edi_bias) override {
    if (m_meta.boundaries.empty()) return;
    m_meta.boundaries.back().esi_bias = esi_bias;
    m_meta.boundaries.back().edi_bias = edi_bias;
  }

  // Flag-free counter increment (guest flags live in RFLAGS): R13 is free here.
  void count(int32_t ctx_offset) {
    m_a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_offset));
    m_a.lea(x86::r13, x86::ptr(x86::r13, 1));
    m_a.mov(x86::qword_ptr(x86::r15, ctx_offset), x86::r13);
  }

  // Block entry: leave with kExitRequested if TranslatorContext::exit_requested
  // is set. Guest flags are live in RFLAGS, so the test is jrcxz on a copy of
  // the flag in RCX (guest ECX parked in R13): no instruction here writes
  // flags. The leaving path comes first in the block and the entry point
  // after it (Block::entry_offset), so that the common case falls through:
  // jrcxz is taken only when (flag - 1) is zero, i.e. on a request.
  void emit_entry_check() {
    if (m_opt.poll_page != 0) {
      // A plain load: no flags, no register the guest sees, an L1 hit. When
      // an exit is requested the page is PROT_NONE and the fault handler
      // turns the SIGSEGV at this instruction into kExitRequested.
      m_a.movzx(x86::r13d, x86::byte_ptr(m_opt.poll_page));  // movzx: no merge with the old R13
      m_meta.link_offset = uint32_t(m_a.offset());
      if (m_opt.count) count(ctx_off::kBlockEntries);
      return;
    }
    Label leave = m_a.newLabel();
    m_a.bind(leave);
    m_a.mov(x86::rcx, x86::r13);
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), m_block.eip);
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kExitReason), uint32_t(ExitReason::kExitRequested));
    m_a.jmp(Imm(m_stub));
    m_a.align(AlignMode::kCode, 16);
    m_meta.entry_offset = uint32_t(m_a.offset());
    m_meta.link_offset = m_meta.entry_offset;  // the flag test is the whole check: links enter before it
    m_a.mov(x86::r13, x86::rcx);
    m_a.movzx(x86::ecx, x86::byte_ptr(x86::r15, ctx_off::kExitRequested));
    m_a.lea(x86::ecx, x86::ptr(x86::rcx, -1));
    m_a.jecxz(x86::rcx, leave);
    m_a.mov(x86::rcx, x86::r13);
    if (m_opt.count) count(ctx_off::kBlockEntries);
  }

  void exit_to(uint32_t target, ExitReason reason) override {
    const uint32_t at = uint32_t(m_a.offset());
    m_meta.exits.push_back({at, target, reason});
    if (m_opt.site_stub != 0 && reason == ExitReason::kBlockEnd) {
      // Fixed bytes: chaining patches and restores the first five.
      uint8_t bytes[16] = {0x41, 0xc7, 0x47, uint8_t(ctx_off::kNextEip), 0, 0, 0, 0,
                           0x41, 0xc7, 0x47, uint8_t(ctx_off::kExitReason), 0, 0, 0, 0};
      std::memcpy(bytes + 4, &target, 4);
      const uint32_t r = uint32_t(reason);
      std::memcpy(bytes + 12, &r, 4);
      m_a.embed(bytes, sizeof bytes);
      m_a.call(Imm(m_opt.site_stub));
      if (uint32_t(m_a.offset()) - at != kExitSiteSize) m_errors.first = "exit site has an unexpected size";
      return;
    }
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), target);
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kExitReason), uint32_t(reason));
    m_a.jmp(Imm(m_stub));
  }
  void exit_side(uint32_t cc, uint32_t taken) override {
    Label site = m_a.newLabel();
    const uint32_t jcc_at = uint32_t(m_a.offset());
    m_a.long_().j(x86::CondCode(cc), site);  // 0f 8x rel32: the rel32 is patched when linked
    m_side_exits.push_back({site, taken, jcc_at});
  }
  void exit_jcc(uint32_t cc, uint32_t taken, uint32_t fall) override {
    Label site = m_a.newLabel();
    const uint32_t jcc_at = uint32_t(m_a.offset());
    m_a.long_().j(x86::CondCode(cc), site);  // 0f 8x rel32: the rel32 is patched when linked
    exit_to(fall, ExitReason::kBlockEnd);
    m_a.bind(site);
    exit_to(taken, ExitReason::kBlockEnd);
    if (m_opt.site_stub != 0 && uint32_t(m_a.offset()) - jcc_at == 6 + 2 * kExitSiteSize)
      m_meta.exits.back().branch_rel_offset = jcc_at + 2;
  }
  // Exit with the next guest EIP in R13D (ret, indirect jmp/call). With the
  // in-TC lookup: slot = lookup[eip & 0xffff]; a hit (neg_eip + eip == 0,
  // tested with lea/jrcxz, so the guest flags survive) jumps to slot.host.
  // R11 and R14 are scratch; guest ECX is parked in R14 around the test.
  void exit_indirect() override {
    m_meta.exits.push_back({uint32_t(m_a.offset()), 0, ExitReason::kIndirect});
    if (m_opt.inline_lookup) {
      Label hit = m_a.newLabel();
      m_a.mov(x86::r14, x86::rcx);
      m_a.movzx(x86::ecx, x86::r13w);
      m_a.lea(x86::rcx, x86::ptr(x86::rcx, x86::rcx));  // 2 * index: [.. + rcx*8] = 16-byte slots
      m_a.lea(x86::r11, x86::ptr(x86::r15, x86::rcx, 3, ctx_off::kLookup));
      m_a.mov(x86::ecx, x86::dword_ptr(x86::r11));
      m_a.lea(x86::ecx, x86::ptr(x86::rcx, x86::r13));
      m_a.jecxz(x86::rcx, hit);
      m_a.mov(x86::rcx, x86::r14);
      m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), x86::r13d);
      m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kExitReason), uint32_t(ExitReason::kIndirect));
      m_a.jmp(Imm(m_stub));
      m_a.bind(hit);
      m_a.mov(x86::rcx, x86::r14);
      if (m_opt.count) count(ctx_off::kLookupHits);
      m_a.jmp(x86::qword_ptr(x86::r11, 8));
      return;
    }
    exit_r13(ExitReason::kIndirect);
  }
  void exit_r13(ExitReason reason) override {
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), x86::r13d);
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kExitReason), uint32_t(reason));
    m_a.jmp(Imm(m_stub));
  }

  // The per-kind host code lives in expand_*.cpp.
  Status emit(const BlockInsn& insn) { return expand_insn(*this, insn); }

  const DecodedBlock& m_block;
  EmitOptions m_opt;
  uint64_t m_stub;
  Block& m_meta;
  CodeHolder m_code;
  x86::Assembler m_a;
  RecordingErrorHandler m_errors;
  struct SideExit {
    Label site;       // bound where its exit site is emitted, after the block
    uint32_t taken;   // guest EIP of the taken arm
    uint32_t jcc_at;  // host offset of the jcc (its rel32 at +2)
  };
  std::vector<SideExit> m_side_exits;
};

}  // namespace

uint32_t Block::guest_eip_at(uint32_t host_offset) const {
  uint32_t eip = guest_eip;
  for (const InsnBoundary& b : boundaries) {
    if (b.host_offset > host_offset) break;
    eip = b.guest_eip;
  }
  return eip;
}

Result<std::vector<uint8_t>> emit_block(const DecodedBlock& block, uint64_t host_address, uint64_t exit_stub,
                                        Block& meta) {
  EmitOptions options;
  options.exit_stub = exit_stub;
  return emit_block(block, host_address, options, meta);
}

void unlinked_site_bytes(uint32_t target_eip, uint8_t out[kChainPatchSize]) {
  out[0] = 0x41;
  out[1] = 0xc7;
  out[2] = 0x47;
  out[3] = uint8_t(ctx_off::kNextEip);
  out[4] = uint8_t(target_eip);
}

void patch_branch_rel(const Block& block, const ExitSite& site, uint64_t target) {
  if (site.branch_rel_offset == 0) return;
  uint8_t* rel = const_cast<uint8_t*>(block.host) + site.branch_rel_offset;
  const int32_t value = int32_t(int64_t(target) - int64_t(reinterpret_cast<uint64_t>(rel) + 4));
  std::memcpy(rel, &value, 4);
}

void linked_site_bytes(uint64_t site_address, uint64_t target_host, uint8_t out[kChainPatchSize]) {
  const int32_t rel = int32_t(int64_t(target_host) - int64_t(site_address + 5));
  out[0] = 0xe9;
  std::memcpy(out + 1, &rel, 4);
}

Result<std::vector<uint8_t>> emit_block(const DecodedBlock& block, uint64_t host_address, const EmitOptions& options,
                                        Block& meta) {
  meta.guest_eip = block.eip;
  meta.guest_end = block.end_eip;
  meta.guest_insns = uint32_t(block.insns.size());
  meta.end = block.end;
  meta.stop_reason = block.stop_reason;
  meta.boundaries.clear();
  meta.exits.clear();
  meta.entry_offset = 0;
  meta.link_offset = 0;
  Emitter e(block, options, meta);
  return e.run(host_address);
}

}  // namespace bt86::translator
