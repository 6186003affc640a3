#include "translator/block_builder.h"

#include <array>
#include <optional>

namespace bt86::translator {
namespace {

constexpr ZydisInstructionAttributes kSegmentAttribs =
    ZYDIS_ATTRIB_HAS_SEGMENT_CS | ZYDIS_ATTRIB_HAS_SEGMENT_SS | ZYDIS_ATTRIB_HAS_SEGMENT_DS |
    ZYDIS_ATTRIB_HAS_SEGMENT_ES | ZYDIS_ATTRIB_HAS_SEGMENT_FS | ZYDIS_ATTRIB_HAS_SEGMENT_GS;

bool is_stack_reg(ZydisRegister r) { return r == ZYDIS_REGISTER_ESP || r == ZYDIS_REGISTER_SP; }
bool is_high_byte(ZydisRegister r) {
  return r == ZYDIS_REGISTER_AH || r == ZYDIS_REGISTER_CH || r == ZYDIS_REGISTER_DH || r == ZYDIS_REGISTER_BH;
}

// Sensitive or 64-bit-invalid instructions that are not caught by category or
// the privileged attribute (Robin & Irvine's unprivileged sensitive ones among
// them). They all end the block and go to the caller.
bool denied_mnemonic(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_CPUID: case ZYDIS_MNEMONIC_RDTSC: case ZYDIS_MNEMONIC_RDTSCP:
    case ZYDIS_MNEMONIC_RDPMC: case ZYDIS_MNEMONIC_SGDT: case ZYDIS_MNEMONIC_SIDT:
    case ZYDIS_MNEMONIC_SLDT: case ZYDIS_MNEMONIC_STR: case ZYDIS_MNEMONIC_SMSW:
    case ZYDIS_MNEMONIC_LAR: case ZYDIS_MNEMONIC_LSL: case ZYDIS_MNEMONIC_VERR:
    case ZYDIS_MNEMONIC_VERW: case ZYDIS_MNEMONIC_CLI: case ZYDIS_MNEMONIC_STI:
    case ZYDIS_MNEMONIC_HLT: case ZYDIS_MNEMONIC_PUSHA: case ZYDIS_MNEMONIC_PUSHAD:
    case ZYDIS_MNEMONIC_POPA: case ZYDIS_MNEMONIC_POPAD: case ZYDIS_MNEMONIC_ENTER:
    case ZYDIS_MNEMONIC_LEAVE: case ZYDIS_MNEMONIC_BOUND: case ZYDIS_MNEMONIC_ARPL:
    case ZYDIS_MNEMONIC_INTO: case ZYDIS_MNEMONIC_INT: case ZYDIS_MNEMONIC_INT1:
    case ZYDIS_MNEMONIC_INT3: case ZYDIS_MNEMONIC_IRET: case ZYDIS_MNEMONIC_IRETD:
    case ZYDIS_MNEMONIC_LDS: case ZYDIS_MNEMONIC_LES: case ZYDIS_MNEMONIC_LFS:
    case ZYDIS_MNEMONIC_LGS: case ZYDIS_MNEMONIC_LSS: case ZYDIS_MNEMONIC_SALC:
    case ZYDIS_MNEMONIC_DAA: case ZYDIS_MNEMONIC_DAS: case ZYDIS_MNEMONIC_AAA:
    case ZYDIS_MNEMONIC_AAS: case ZYDIS_MNEMONIC_AAM: case ZYDIS_MNEMONIC_AAD:
    case ZYDIS_MNEMONIC_UD0: case ZYDIS_MNEMONIC_UD1: case ZYDIS_MNEMONIC_UD2:
    case ZYDIS_MNEMONIC_SYSENTER: case ZYDIS_MNEMONIC_SYSEXIT: case ZYDIS_MNEMONIC_SYSCALL:
    case ZYDIS_MNEMONIC_SYSRET: case ZYDIS_MNEMONIC_IN: case ZYDIS_MNEMONIC_OUT:
    case ZYDIS_MNEMONIC_INSB: case ZYDIS_MNEMONIC_INSW: case ZYDIS_MNEMONIC_INSD:
    case ZYDIS_MNEMONIC_OUTSB: case ZYDIS_MNEMONIC_OUTSW: case ZYDIS_MNEMONIC_OUTSD:
    case ZYDIS_MNEMONIC_MONITOR: case ZYDIS_MNEMONIC_MWAIT: case ZYDIS_MNEMONIC_XGETBV:
    case ZYDIS_MNEMONIC_RDPID: case ZYDIS_MNEMONIC_PUSHF: case ZYDIS_MNEMONIC_POPF:
    case ZYDIS_MNEMONIC_LOOP: case ZYDIS_MNEMONIC_LOOPE: case ZYDIS_MNEMONIC_LOOPNE:
    case ZYDIS_MNEMONIC_JCXZ: case ZYDIS_MNEMONIC_JECXZ:
      return true;
    default:
      return false;
  }
}

bool denied_category(ZydisInstructionCategory c) {
  switch (c) {
    case ZYDIS_CATEGORY_COND_BR: case ZYDIS_CATEGORY_UNCOND_BR: case ZYDIS_CATEGORY_CALL:
    case ZYDIS_CATEGORY_RET: case ZYDIS_CATEGORY_INTERRUPT: case ZYDIS_CATEGORY_SYSCALL:
    case ZYDIS_CATEGORY_SYSRET: case ZYDIS_CATEGORY_SYSTEM: case ZYDIS_CATEGORY_IO:
    case ZYDIS_CATEGORY_IOSTRINGOP: case ZYDIS_CATEGORY_SEGOP: case ZYDIS_CATEGORY_DECIMAL:
    case ZYDIS_CATEGORY_PUSH: case ZYDIS_CATEGORY_POP:
      return true;
    default:
      return false;
  }
}

struct Classified {
  std::optional<BlockInsn> insn;
  std::string stop_reason;
};

Classified stop(std::string why) { return {std::nullopt, std::move(why)}; }

// A guest register the instruction does not mention at all (explicitly or
// implicitly), to borrow as an address register. Never ESP.
ZydisRegister free_temp(const GuestInsn& g) {
  static constexpr std::array<ZydisRegister, 7> kCandidates = {
      ZYDIS_REGISTER_EBP, ZYDIS_REGISTER_ESI, ZYDIS_REGISTER_EDI, ZYDIS_REGISTER_EBX,
      ZYDIS_REGISTER_EDX, ZYDIS_REGISTER_ECX, ZYDIS_REGISTER_EAX};
  auto enclosing = [](ZydisRegister r) {
    return r == ZYDIS_REGISTER_NONE ? r : ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LEGACY_32, r);
  };
  for (ZydisRegister c : kCandidates) {
    bool used = false;
    for (const ZydisDecodedOperand& op : g.all()) {
      if (op.type == ZYDIS_OPERAND_TYPE_REGISTER && enclosing(op.reg.value) == c) used = true;
      if (op.type == ZYDIS_OPERAND_TYPE_MEMORY &&
          (enclosing(op.mem.base) == c || enclosing(op.mem.index) == c))
        used = true;
    }
    if (!used) return c;
  }
  return ZYDIS_REGISTER_NONE;
}

Classified classify(const GuestInsn& g, const BuildOptions& options) {
  const ZydisDecodedInstruction& i = g.insn;
  BlockInsn out;
  out.guest = g;

  if ((i.attributes & kSegmentAttribs) && !options.flat_segments)
    return stop("segment override with non-zero guest segment bases");
  if (i.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) return stop("far transfer");

  const ZydisDecodedOperand& op0 = g.ops[0];
  const bool op0_sreg = op0.type == ZYDIS_OPERAND_TYPE_REGISTER &&
                        ZydisRegisterGetClass(op0.reg.value) == ZYDIS_REGCLASS_SEGMENT;
  const bool size32 = i.operand_width == 32;
  switch (i.mnemonic) {
    case ZYDIS_MNEMONIC_PUSH:
      if (op0_sreg) return stop("push of a segment register");
      out.kind = InsnKind::kPush;
      return {out, {}};
    case ZYDIS_MNEMONIC_POP:
      if (op0_sreg) return stop("pop of a segment register");
      if (op0.type == ZYDIS_OPERAND_TYPE_REGISTER && op0.reg.value == ZYDIS_REGISTER_SP)
        return stop("pop sp");
      out.kind = InsnKind::kPop;
      return {out, {}};
    case ZYDIS_MNEMONIC_PUSHFD:
      out.kind = InsnKind::kPushfd;
      return {out, {}};
    case ZYDIS_MNEMONIC_POPFD:
      out.kind = InsnKind::kPopfd;
      return {out, {}};
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_CALL: {
      const bool call = i.mnemonic == ZYDIS_MNEMONIC_CALL;
      if (!size32) return stop("16-bit near branch");
      if (op0.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
        ZyanU64 target;
        if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&i, &op0, g.eip, &target))) return stop("bad branch target");
        out.kind = call ? InsnKind::kCall : InsnKind::kJmp;
        out.target = uint32_t(target);
        return {out, {}};
      }
      if (op0.type == ZYDIS_OPERAND_TYPE_MEMORY && (i.attributes & kSegmentAttribs) && !options.flat_segments)
        return stop("segment override");
      out.kind = call ? InsnKind::kCallIndirect : InsnKind::kJmpIndirect;
      return {out, {}};
    }
    case ZYDIS_MNEMONIC_RET:
      if (!size32) return stop("16-bit ret");
      out.kind = InsnKind::kRet;
      return {out, {}};
    default:
      break;
  }
  if (i.meta.category == ZYDIS_CATEGORY_COND_BR && !denied_mnemonic(i.mnemonic)) {
    if (!size32 || op0.type != ZYDIS_OPERAND_TYPE_IMMEDIATE) return stop("16-bit conditional branch");
    ZyanU64 target;
    if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&i, &op0, g.eip, &target))) return stop("bad branch target");
    out.kind = InsnKind::kJcc;
    out.target = uint32_t(target);
    return {out, {}};
  }

  if (denied_mnemonic(i.mnemonic)) return stop(std::string("sensitive or 64-bit-invalid: ") + ZydisMnemonicGetString(i.mnemonic));
  if (denied_category(i.meta.category))
    return stop(std::string("category ") + ZydisCategoryGetString(i.meta.category));
  if (i.attributes & ZYDIS_ATTRIB_IS_PRIVILEGED) return stop(std::string("privileged: ") + ZydisMnemonicGetString(i.mnemonic));

  bool high_byte = false, esp_mem = false;
  for (uint8_t k = 0; k < i.operand_count; ++k) {
    const ZydisDecodedOperand& op = g.ops[k];
    const bool hidden = op.visibility != ZYDIS_OPERAND_VISIBILITY_EXPLICIT;
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      ZydisRegisterClass cls = ZydisRegisterGetClass(op.reg.value);
      if (cls == ZYDIS_REGCLASS_SEGMENT || cls == ZYDIS_REGCLASS_CONTROL || cls == ZYDIS_REGCLASS_DEBUG ||
          cls == ZYDIS_REGCLASS_TEST || cls == ZYDIS_REGCLASS_TABLE || cls == ZYDIS_REGCLASS_BOUND)
        return stop("system or segment register operand");
      if (hidden && is_stack_reg(op.reg.value)) return stop("implicit stack use");
      if (!hidden && is_high_byte(op.reg.value)) high_byte = true;
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      if (hidden && is_stack_reg(op.mem.base)) return stop("implicit stack use");
      if (!hidden && (is_stack_reg(op.mem.base) || is_stack_reg(op.mem.index))) esp_mem = true;
      if (op.mem.segment == ZYDIS_REGISTER_FS || op.mem.segment == ZYDIS_REGISTER_GS) {
        if (!options.flat_segments) return stop("fs/gs segment");
      }
    }
  }
  // A REX prefix (needed for R12) makes AH..DH unencodable: compute the
  // address in a borrowed guest register first (BlockEmitter).
  if (high_byte && esp_mem) {
    out.temp = free_temp(g);
    if (out.temp == ZYDIS_REGISTER_NONE) return stop("AH..DH with ESP and no free temp");
    ReencodeOptions ro;
    ro.mem_address_in = out.temp;
    auto bytes = reencode64(g, ro);
    if (!bytes) return stop("re-encode: " + bytes.error().message);
    out.kind = InsnKind::kHighByteViaTemp;
    out.host = bytes.value();
    return {out, {}};
  }
  auto bytes = reencode64(g);
  if (!bytes) return stop("re-encode: " + bytes.error().message);
  out.host = bytes.value();
  return {out, {}};
}

}  // namespace

const char* insn_kind_name(InsnKind kind) {
  switch (kind) {
    case InsnKind::kInnocuous: return "innocuous";
    case InsnKind::kHighByteViaTemp: return "high-byte-via-temp";
    case InsnKind::kPush: return "push";
    case InsnKind::kPop: return "pop";
    case InsnKind::kPushfd: return "pushfd";
    case InsnKind::kPopfd: return "popfd";
    case InsnKind::kJmp: return "jmp";
    case InsnKind::kJcc: return "jcc";
    case InsnKind::kCall: return "call";
    case InsnKind::kRet: return "ret";
    case InsnKind::kJmpIndirect: return "jmp-indirect";
    case InsnKind::kCallIndirect: return "call-indirect";
  }
  return "?";
}

DecodedBlock build_block(const GuestCodeReader& reader, uint32_t eip, const BuildOptions& options) {
  DecodedBlock block;
  block.eip = eip;
  const uint64_t page_end = (uint64_t(eip) & ~uint64_t(mmu::kPageMask)) + mmu::kPageSize;
  uint64_t at = eip;
  for (;;) {
    if (block.insns.size() >= options.max_insns || at >= page_end) {
      block.end = BlockEnd::kFallThrough;
      break;
    }
    std::array<uint8_t, ZYDIS_MAX_INSTRUCTION_LENGTH> buf{};
    size_t n = reader.read(mmu::GuestVirt(uint32_t(at)), buf);
    GuestInsn g;
    if (n == 0 || !decode32({buf.data(), n}, uint32_t(at), g)) {
      block.end = BlockEnd::kStop;
      block.stop_reason = n == 0 ? "code not readable" : "undecodable";
      break;
    }
    // An instruction that crosses into the next page starts a block of its own.
    if (at + g.insn.length > page_end && !block.insns.empty()) {
      block.end = BlockEnd::kFallThrough;
      break;
    }
    Classified c = classify(g, options);
    if (!c.insn) {
      block.end = BlockEnd::kStop;
      block.stop_reason = std::move(c.stop_reason);
      break;
    }
    block.insns.push_back(std::move(*c.insn));
    at += g.insn.length;
    if (ends_block(block.insns.back().kind)) {
      block.end = BlockEnd::kBranch;
      break;
    }
  }
  block.end_eip = uint32_t(at);
  return block;
}

}  // namespace bt86::translator
