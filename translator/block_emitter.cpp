#include "translator/block_emitter.h"

#include <asmjit/x86.h>

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
  Emitter(const DecodedBlock& block, uint64_t exit_stub, Block& meta)
      : m_block(block), m_stub(exit_stub), m_meta(meta) {}

  Result<std::vector<uint8_t>> run(uint64_t host_address) {
    m_code.init(Environment(Arch::kX64), host_address);
    m_code.setErrorHandler(&m_errors);
    m_code.attach(&m_a);
    for (const BlockInsn& insn : m_block.insns) {
      m_meta.boundaries.push_back({uint32_t(m_a.offset()), insn.guest.eip});
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

  void exit_to(uint32_t target, ExitReason reason) override {
    m_meta.exits.push_back({uint32_t(m_a.offset()), target, reason});
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), target);
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kExitReason), uint32_t(reason));
    m_a.jmp(Imm(m_stub));
  }
  // Exit with the next guest EIP in R13D (ret, indirect jmp/call). The fast
  // in-TC lookup of the next slice goes here.
  void exit_indirect() override {
    m_meta.exits.push_back({uint32_t(m_a.offset()), 0, ExitReason::kIndirect});
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
  uint64_t m_stub;
  Block& m_meta;
  CodeHolder m_code;
  x86::Assembler m_a;
  RecordingErrorHandler m_errors;
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
  meta.guest_eip = block.eip;
  meta.guest_end = block.end_eip;
  meta.guest_insns = uint32_t(block.insns.size());
  meta.end = block.end;
  meta.stop_reason = block.stop_reason;
  meta.boundaries.clear();
  meta.exits.clear();
  Emitter e(block, exit_stub, meta);
  return e.run(host_address);
}

}  // namespace bt86::translator
