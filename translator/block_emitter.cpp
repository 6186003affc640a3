#include "translator/block_emitter.h"

#include <asmjit/x86.h>

#include "runtime/cpu_state.h"

namespace bt86::translator {
namespace {

using namespace asmjit;
namespace rf = runtime::flags;

// Guest flags that live in host RFLAGS inside translated code: the arithmetic
// flags and DF (string instructions run natively).
constexpr uint32_t kLiveFlags = rf::Arith | rf::DF;

class RecordingErrorHandler : public ErrorHandler {
 public:
  void handleError(asmjit::Error, const char* message, BaseEmitter*) override {
    if (first.empty()) first = message;
  }
  std::string first;
};

// Host register holding a guest general register of the given width in bytes.
x86::Gp host_gp(ZydisRegister guest) {
  if (guest == ZYDIS_REGISTER_ESP) return x86::r12d;
  if (guest == ZYDIS_REGISTER_SP) return x86::r12w;
  uint32_t id = ZydisRegisterGetId(guest);
  switch (ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LEGACY_32, guest)) {
    case 16: return x86::gpw(id);
    default: return x86::gpd(id);
  }
}

// [r12d + disp] in the guest window.
x86::Mem stack_slot(int32_t disp, uint32_t size) {
  x86::Mem m = x86::ptr(x86::r12d, disp, size);
  m.setSegment(x86::gs);
  return m;
}

class Emitter {
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
  void embed(const HostBytes& b) { m_a.embed(b.bytes.data(), b.size); }

  Status embed_mem_move(const ZydisDecodedOperand& mem, ZydisRegister reg, bool store) {
    auto b = encode_guest_mem_move(mem, reg, store);
    if (!b) return b.error();
    embed(b.value());
    return Ok{};
  }

  void exit_to(uint32_t target, ExitReason reason) {
    m_meta.exits.push_back({uint32_t(m_a.offset()), target, reason});
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), target);
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kExitReason), uint32_t(reason));
    m_a.jmp(Imm(m_stub));
  }
  // Exit with the next guest EIP in R13D (ret, indirect jmp/call). The fast
  // in-TC lookup of the next slice goes here.
  void exit_indirect() {
    m_meta.exits.push_back({uint32_t(m_a.offset()), 0, ExitReason::kIndirect});
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), x86::r13d);
    m_a.mov(x86::dword_ptr(x86::r15, ctx_off::kExitReason), uint32_t(ExitReason::kIndirect));
    m_a.jmp(Imm(m_stub));
  }
  void push_imm32(uint32_t value) {
    m_a.mov(stack_slot(-4, 4), value);
    m_a.lea(x86::r12d, x86::ptr(x86::r12d, -4));
  }
  // R13D = the branch target of an indirect jmp/call (read before any push:
  // `call [esp+4]` uses the old ESP).
  Status load_indirect_target(const GuestInsn& g) {
    const ZydisDecodedOperand& op = g.ops[0];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      m_a.mov(x86::r13d, host_gp(op.reg.value));
      return Ok{};
    }
    return embed_mem_move(op, ZYDIS_REGISTER_R13D, false);
  }

  Status emit(const BlockInsn& insn) {
    const GuestInsn& g = insn.guest;
    const ZydisDecodedOperand& op0 = g.ops[0];
    switch (insn.kind) {
      case InsnKind::kInnocuous:
        embed(insn.host);
        return Ok{};

      case InsnKind::kHighByteViaTemp: {
        // Borrow a guest register the instruction does not use: save it in
        // R13, put the (ESP-based) address in it, run the instruction on
        // [temp] without REX, restore. lea and mov leave the flags alone.
        const ZydisDecodedOperand* mem = nullptr;
        for (const ZydisDecodedOperand& op : g.visible())
          if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) mem = &op;
        x86::Gp t32 = x86::gpd(ZydisRegisterGetId(insn.temp));
        x86::Gp t64 = x86::gpq(ZydisRegisterGetId(insn.temp));
        x86::Mem addr = mem->mem.index == ZYDIS_REGISTER_NONE
                            ? x86::ptr(host_gp(mem->mem.base), int32_t(mem->mem.disp.value))
                            : x86::ptr(host_gp(mem->mem.base), host_gp(mem->mem.index),
                                       __builtin_ctz(mem->mem.scale), int32_t(mem->mem.disp.value));
        m_a.mov(x86::r13, t64);
        m_a.lea(t32, addr);
        embed(insn.host);
        m_a.mov(t64, x86::r13);
        return Ok{};
      }

      case InsnKind::kPush: {
        const uint32_t w = g.insn.operand_width / 8;
        if (op0.type == ZYDIS_OPERAND_TYPE_REGISTER) {
          m_a.mov(stack_slot(-int32_t(w), w), host_gp(op0.reg.value));
        } else if (op0.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
          m_a.mov(stack_slot(-int32_t(w), w), w == 2 ? uint32_t(uint16_t(op0.imm.value.u)) : uint32_t(op0.imm.value.u));
        } else {
          ZydisRegister scratch = w == 2 ? ZYDIS_REGISTER_R13W : ZYDIS_REGISTER_R13D;
          if (auto s = embed_mem_move(op0, scratch, false); !s) return s;
          m_a.mov(stack_slot(-int32_t(w), w), w == 2 ? x86::Gp(x86::r13w) : x86::Gp(x86::r13d));
        }
        m_a.lea(x86::r12d, x86::ptr(x86::r12d, -int32_t(w)));
        return Ok{};
      }

      case InsnKind::kPop: {
        const uint32_t w = g.insn.operand_width / 8;
        if (op0.type == ZYDIS_OPERAND_TYPE_REGISTER) {
          if (op0.reg.value == ZYDIS_REGISTER_ESP) {  // ESP = [ESP]: the increment is overwritten
            m_a.mov(x86::r12d, stack_slot(0, 4));
            return Ok{};
          }
          m_a.mov(host_gp(op0.reg.value), stack_slot(0, w));
          m_a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(w)));
          return Ok{};
        }
        // pop m: the address is computed after ESP is incremented (SDM vol. 2, POP).
        m_a.mov(w == 2 ? x86::Gp(x86::r13w) : x86::Gp(x86::r13d), stack_slot(0, w));
        m_a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(w)));
        return embed_mem_move(op0, w == 2 ? ZYDIS_REGISTER_R13W : ZYDIS_REGISTER_R13D, true);
      }

      case InsnKind::kPushfd:
        // Image = live flags from RFLAGS + everything else (IF, IOPL, ...)
        // from the virtual EFLAGS; VM and RF read as 0 (SDM vol. 2, PUSHF).
        m_a.pushfq();
        m_a.mov(x86::r13, x86::qword_ptr(x86::rsp));
        m_a.and_(x86::r13d, kLiveFlags);
        m_a.mov(x86::r14, x86::qword_ptr(x86::r15, ctx_off::kCpu));
        m_a.mov(x86::r14d, x86::dword_ptr(x86::r14, offsetof(runtime::CpuState, eflags)));
        m_a.and_(x86::r14d, ~(kLiveFlags | rf::RF | rf::VM));
        m_a.or_(x86::r13d, x86::r14d);
        m_a.mov(stack_slot(-4, 4), x86::r13d);
        m_a.lea(x86::r12d, x86::ptr(x86::r12d, -4));
        m_a.popfq();  // the and/or above clobbered the guest flags
        return Ok{};

      case InsnKind::kPopfd:
        // Only the live flags change; IF, IOPL and the other system flags in
        // the virtual EFLAGS are left alone in this slice.
        m_a.mov(x86::r13d, stack_slot(0, 4));
        m_a.lea(x86::r12d, x86::ptr(x86::r12d, 4));
        m_a.and_(x86::r13d, kLiveFlags);
        m_a.pushfq();
        m_a.and_(x86::qword_ptr(x86::rsp), int32_t(~kLiveFlags));
        m_a.or_(x86::qword_ptr(x86::rsp), x86::r13);
        m_a.popfq();
        return Ok{};

      case InsnKind::kJmp:
        exit_to(insn.target, ExitReason::kBlockEnd);
        return Ok{};

      case InsnKind::kJcc: {
        Label taken = m_a.newLabel();
        m_a.j(x86::CondCode(g.insn.opcode & 0xf), taken);
        exit_to(g.next_eip(), ExitReason::kBlockEnd);
        m_a.bind(taken);
        exit_to(insn.target, ExitReason::kBlockEnd);
        return Ok{};
      }

      case InsnKind::kCall:
        push_imm32(g.next_eip());
        exit_to(insn.target, ExitReason::kBlockEnd);
        return Ok{};

      case InsnKind::kRet: {
        uint32_t release = 4;
        if (g.insn.operand_count_visible > 0 && op0.type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
          release += uint32_t(op0.imm.value.u & 0xffff);
        m_a.mov(x86::r13d, stack_slot(0, 4));
        m_a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(release)));
        exit_indirect();
        return Ok{};
      }

      case InsnKind::kJmpIndirect:
        if (auto s = load_indirect_target(g); !s) return s;
        exit_indirect();
        return Ok{};

      case InsnKind::kCallIndirect:
        if (auto s = load_indirect_target(g); !s) return s;
        push_imm32(g.next_eip());
        exit_indirect();
        return Ok{};
    }
    return make_error("unknown instruction kind");
  }

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
