#include "translator/block_builder.h"

#include <array>

namespace bt86::translator {
namespace {

constexpr ZydisInstructionAttributes kSegmentAttribs =
    ZYDIS_ATTRIB_HAS_SEGMENT_CS | ZYDIS_ATTRIB_HAS_SEGMENT_SS | ZYDIS_ATTRIB_HAS_SEGMENT_DS |
    ZYDIS_ATTRIB_HAS_SEGMENT_ES | ZYDIS_ATTRIB_HAS_SEGMENT_FS | ZYDIS_ATTRIB_HAS_SEGMENT_GS;

bool is_stack_reg(ZydisRegister r) { return r == ZYDIS_REGISTER_ESP || r == ZYDIS_REGISTER_SP; }
bool is_high_byte(ZydisRegister r) {
  return r == ZYDIS_REGISTER_AH || r == ZYDIS_REGISTER_CH || r == ZYDIS_REGISTER_DH || r == ZYDIS_REGISTER_BH;
}

// Sensitive or privileged instructions that the category or the privileged
// attribute do not catch (Robin & Irvine's unprivileged sensitive ones among
// them, README.md): callouts when a handler is set, block stops otherwise.
bool callout_mnemonic(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_CPUID: case ZYDIS_MNEMONIC_RDTSC: case ZYDIS_MNEMONIC_RDTSCP:
    case ZYDIS_MNEMONIC_RDPMC: case ZYDIS_MNEMONIC_SGDT: case ZYDIS_MNEMONIC_SIDT:
    case ZYDIS_MNEMONIC_SLDT: case ZYDIS_MNEMONIC_STR: case ZYDIS_MNEMONIC_SMSW:
    case ZYDIS_MNEMONIC_LAR: case ZYDIS_MNEMONIC_LSL: case ZYDIS_MNEMONIC_VERR:
    case ZYDIS_MNEMONIC_VERW: case ZYDIS_MNEMONIC_HLT: case ZYDIS_MNEMONIC_INT:
    case ZYDIS_MNEMONIC_INT1: case ZYDIS_MNEMONIC_INT3: case ZYDIS_MNEMONIC_IRET:
    case ZYDIS_MNEMONIC_IRETD: case ZYDIS_MNEMONIC_LDS: case ZYDIS_MNEMONIC_LES:
    case ZYDIS_MNEMONIC_LFS: case ZYDIS_MNEMONIC_LGS: case ZYDIS_MNEMONIC_LSS:
    case ZYDIS_MNEMONIC_UD0: case ZYDIS_MNEMONIC_UD1: case ZYDIS_MNEMONIC_UD2:
    case ZYDIS_MNEMONIC_SYSENTER: case ZYDIS_MNEMONIC_SYSEXIT: case ZYDIS_MNEMONIC_SYSCALL:
    case ZYDIS_MNEMONIC_SYSRET: case ZYDIS_MNEMONIC_IN: case ZYDIS_MNEMONIC_OUT:
    case ZYDIS_MNEMONIC_INSB: case ZYDIS_MNEMONIC_INSW: case ZYDIS_MNEMONIC_INSD:
    case ZYDIS_MNEMONIC_OUTSB: case ZYDIS_MNEMONIC_OUTSW: case ZYDIS_MNEMONIC_OUTSD:
    case ZYDIS_MNEMONIC_MONITOR: case ZYDIS_MNEMONIC_MWAIT: case ZYDIS_MNEMONIC_XGETBV:
    case ZYDIS_MNEMONIC_XSETBV: case ZYDIS_MNEMONIC_RDPID: case ZYDIS_MNEMONIC_INVLPG:
    case ZYDIS_MNEMONIC_WBINVD: case ZYDIS_MNEMONIC_INVD: case ZYDIS_MNEMONIC_RDMSR:
    case ZYDIS_MNEMONIC_WRMSR: case ZYDIS_MNEMONIC_LGDT: case ZYDIS_MNEMONIC_LIDT:
    case ZYDIS_MNEMONIC_LLDT: case ZYDIS_MNEMONIC_LTR: case ZYDIS_MNEMONIC_LMSW:
    case ZYDIS_MNEMONIC_CLTS: case ZYDIS_MNEMONIC_RSM: case ZYDIS_MNEMONIC_BOUND:
    case ZYDIS_MNEMONIC_INTO: case ZYDIS_MNEMONIC_RDFSBASE: case ZYDIS_MNEMONIC_RDGSBASE:
    case ZYDIS_MNEMONIC_WRFSBASE: case ZYDIS_MNEMONIC_WRGSBASE: case ZYDIS_MNEMONIC_VMCALL:
    case ZYDIS_MNEMONIC_VMMCALL: case ZYDIS_MNEMONIC_VMFUNC: case ZYDIS_MNEMONIC_MOVDIR64B:
    case ZYDIS_MNEMONIC_XBEGIN: case ZYDIS_MNEMONIC_XABORT: case ZYDIS_MNEMONIC_XEND:
    case ZYDIS_MNEMONIC_SEAMCALL: case ZYDIS_MNEMONIC_TDCALL:
      return true;
    default:
      return false;
  }
}

// Categories that always leave the translated path (callout or stop). Besides
// the system ones, everything that could touch host state a guest must not
// reach from the TC: PKRU (wrpkru, or xrstor of the PKRU component), FS/GS
// bases, user interrupts (uiret pops a host RIP), shadow stacks, SGX, VMX/SVM
// calls to the host's hypervisor, user waits, AMX tile state, processor trace.
// The CPU model decides what the guest sees (usually #UD).
bool callout_category(ZydisInstructionCategory c) {
  switch (c) {
    case ZYDIS_CATEGORY_INTERRUPT: case ZYDIS_CATEGORY_SYSCALL: case ZYDIS_CATEGORY_SYSRET:
    case ZYDIS_CATEGORY_SYSTEM: case ZYDIS_CATEGORY_IO: case ZYDIS_CATEGORY_IOSTRINGOP:
    case ZYDIS_CATEGORY_PKU: case ZYDIS_CATEGORY_XSAVE: case ZYDIS_CATEGORY_XSAVEOPT:
    case ZYDIS_CATEGORY_RDWRFSGS: case ZYDIS_CATEGORY_UINTR: case ZYDIS_CATEGORY_CET:
    case ZYDIS_CATEGORY_SGX: case ZYDIS_CATEGORY_VTX: case ZYDIS_CATEGORY_WAITPKG:
    case ZYDIS_CATEGORY_AMX_TILE: case ZYDIS_CATEGORY_PT: case ZYDIS_CATEGORY_PCONFIG:
    case ZYDIS_CATEGORY_TSX_LDTRK: case ZYDIS_CATEGORY_ENQCMD: case ZYDIS_CATEGORY_KEYLOCKER:
    case ZYDIS_CATEGORY_KEYLOCKER_WIDE: case ZYDIS_CATEGORY_RDPRU: case ZYDIS_CATEGORY_HRESET:
    case ZYDIS_CATEGORY_PADLOCK: case ZYDIS_CATEGORY_MPX:
      return true;
    default:
      return false;
  }
}

// Categories whose members this file handles one by one; the rest stop.
bool denied_category(ZydisInstructionCategory c) {
  switch (c) {
    case ZYDIS_CATEGORY_COND_BR: case ZYDIS_CATEGORY_UNCOND_BR: case ZYDIS_CATEGORY_CALL:
    case ZYDIS_CATEGORY_RET: case ZYDIS_CATEGORY_SEGOP: case ZYDIS_CATEGORY_DECIMAL:
    case ZYDIS_CATEGORY_PUSH: case ZYDIS_CATEGORY_POP:
      return true;
    default:
      return false;
  }
}

// The classifier fills in the BlockInsn it is given (in the block's own
// vector: BlockInsn is ~1 KiB, copies of it were a large part of the
// translation time); on a stop the caller drops it.
struct Classified {
  bool ok = false;
  std::string stop_reason;
};

Classified stop(std::string why) { return {false, std::move(why)}; }

ZydisRegister enclosing(ZydisRegister r) {
  return r == ZYDIS_REGISTER_NONE ? r : ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LEGACY_32, r);
}

// A guest register the instruction does not mention at all (explicitly or
// implicitly), to borrow as an address register. Never ESP.
ZydisRegister free_temp(const GuestInsn& g) {
  static constexpr std::array<ZydisRegister, 7> kCandidates = {
      ZYDIS_REGISTER_EBP, ZYDIS_REGISTER_ESI, ZYDIS_REGISTER_EDI, ZYDIS_REGISTER_EBX,
      ZYDIS_REGISTER_EDX, ZYDIS_REGISTER_ECX, ZYDIS_REGISTER_EAX};
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

// The segments (bit per runtime::Seg) the instruction reads or writes memory
// through, implicit stack and string operands included (lea and other
// address-only operands are not accesses).
uint8_t memory_segments(const GuestInsn& g) {
  uint8_t segs = 0;
  for (const ZydisDecodedOperand& op : g.all())
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.type == ZYDIS_MEMOP_TYPE_MEM)
      segs |= seg_bit(seg_of(op.mem.segment));
  return segs;
}

// A cs: memory operand that is written: always #GP(0) in protected mode
// (SDM vol. 3, 5.4), left to the caller's checks.
bool writes_through_cs(const GuestInsn& g) {
  for (const ZydisDecodedOperand& op : g.visible())
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.type == ZYDIS_MEMOP_TYPE_MEM &&
        op.mem.segment == ZYDIS_REGISTER_CS &&
        (op.actions & (ZYDIS_OPERAND_ACTION_WRITE | ZYDIS_OPERAND_ACTION_CONDWRITE)))
      return true;
  return false;
}

bool branch_target(const GuestInsn& g, uint32_t& target) {
  const ZydisDecodedOperand& op0 = g.ops[0];
  if (op0.type != ZYDIS_OPERAND_TYPE_IMMEDIATE) return false;
  target = g.next_eip() + uint32_t(op0.imm.value.s);
  // A 16-bit operand size truncates EIP (SDM vol. 2, JMP/Jcc/CALL "IF OperandSize = 16").
  if (g.insn.operand_width == 16) target &= 0xffff;
  return true;
}

class Classifier {
 public:
  Classifier(const BuildOptions& options, DecodedBlock& block) : m_opt(options), m_block(block) {}

  // out.guest holds the decoded instruction.
  Classified classify(BlockInsn& out) {
    m_pending_segs = 0;
    Classified c = classify_inner(out);
    m_block.seg_used |= m_pending_segs;
    // Translated code assumes flat segments (limit 4 GiB, writable data,
    // expand-up); an access through any other one is checked by the caller
    // one instruction at a time (machine/README.md "Checked execution").
    if (m_opt.fpu_checked && fpu_state_insn(out.guest.insn)) return stop("x87/MMX/SSE under CR0.TS/EM or without CR4.OSFXSR");
    uint8_t segs = memory_segments(out.guest);
    if (c.ok && writes_through_cs(out.guest)) return stop("write through CS (#GP)");
    if (c.ok && out.kind == InsnKind::kSegBaseAtRun) segs &= uint8_t(~seg_bit(runtime::Seg(out.seg)));
    m_block.seg_flat |= segs;
    if (segs & m_opt.checked_segs) return stop("segment needs limit/type checks");
    return c;
  }

 private:
  Classified classify_inner(BlockInsn& out);
  void use(runtime::Seg s) { m_block.seg_used |= seg_bit(s); }
  uint32_t base(runtime::Seg s) const { return m_opt.seg_base[int(s)]; }
  Classified callout_or_stop(BlockInsn& out, const std::string& why) {
    if (m_opt.callouts) {
      out.kind = InsnKind::kCallout;
      return {true, {}};
    }
    return stop(why + ZydisMnemonicGetString(out.guest.insn.mnemonic));
  }
  // DS, ES, FS, GS only: a load of SS sets the interrupt shadow, CS is
  // never loaded by mov/pop (#UD).
  bool fast_seg_load(const ZydisDecodedOperand& sreg) const {
    if (!m_opt.fast_segment_loads || !m_opt.callouts) return false;
    const ZydisRegister r = sreg.reg.value;
    return r == ZYDIS_REGISTER_DS || r == ZYDIS_REGISTER_ES || r == ZYDIS_REGISTER_FS || r == ZYDIS_REGISTER_GS;
  }
  Classified seg_load(BlockInsn& out, const ZydisDecodedOperand& sreg) {
    out.seg = uint8_t(seg_of(sreg.reg.value));
    return kind(out, InsnKind::kSegLoad);
  }
  Classified kind(BlockInsn& out, InsnKind k) {
    out.kind = k;
    return {true, {}};
  }
  Classified reencoded(BlockInsn& out, ReencodeOptions ro = {}) {
    ro.seg_base = &m_opt.seg_base;
    if (reencode64_fast(out.guest, ro, out.host)) return {true, {}};  // the common case, without a Result
    auto bytes = reencode64(out.guest, ro);
    if (!bytes) return stop("re-encode: " + bytes.error().message + ": " + format_insn(out.guest));
    out.host = bytes.value();
    return {true, {}};
  }

  const BuildOptions& m_opt;
  DecodedBlock& m_block;
  // FS/GS of explicit memory operands: marked used unless the instruction
  // reads the base at run time (kSegBaseAtRun).
  uint8_t m_pending_segs = 0;
};

Classified Classifier::classify_inner(BlockInsn& out) {
  using runtime::Seg;
  const GuestInsn& g = out.guest;
  const ZydisDecodedInstruction& i = g.insn;

  if (i.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) return callout_or_stop(out, "far transfer: ");
  // 16-bit addressing (0x67: [bx+si], string instructions on SI/DI, xlat on
  // BX) has no 64-bit encoding and wraps at 64 KiB: left to the caller.
  // Stack accesses follow the stack size, not the address size.
  if (i.address_width == 16) {
    for (const ZydisDecodedOperand& op : g.all())
      if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.type == ZYDIS_MEMOP_TYPE_MEM && !is_stack_reg(op.mem.base))
        return stop("16-bit addressing");
  }

  const ZydisDecodedOperand& op0 = g.ops[0];
  const ZydisDecodedOperand& op1 = g.ops[1];
  auto is_sreg = [](const ZydisDecodedOperand& op) {
    return op.type == ZYDIS_OPERAND_TYPE_REGISTER && ZydisRegisterGetClass(op.reg.value) == ZYDIS_REGCLASS_SEGMENT;
  };
  // Explicit memory operands: their segment's base is folded in, except
  // FS/GS in re-encoded instructions (kSegBaseAtRun below): a kernel's
  // per-CPU segment and the user's TLS segment alternate on every system
  // call, and folding their bases would mean retranslating each time.
  const ZydisDecodedOperand* fsgs_mem = nullptr;
  for (const ZydisDecodedOperand& op : g.visible()) {
    if (op.type != ZYDIS_OPERAND_TYPE_MEMORY || op.mem.type != ZYDIS_MEMOP_TYPE_MEM) continue;
    const runtime::Seg s = seg_of(op.mem.segment);
    if (s == Seg::FS || s == Seg::GS) {
      m_pending_segs |= seg_bit(s);
      fsgs_mem = &op;
    } else {
      use(s);
    }
  }

  const bool size32 = i.operand_width == 32;
  switch (i.mnemonic) {
    case ZYDIS_MNEMONIC_PUSH:
      use(Seg::SS);
      return kind(out, is_sreg(op0) ? InsnKind::kPushSreg : InsnKind::kPush);
    case ZYDIS_MNEMONIC_POP:
      if (is_sreg(op0)) {
        if (fast_seg_load(op0)) {
          use(Seg::SS);
          return seg_load(out, op0);
        }
        return callout_or_stop(out, "segment load: ");
      }
      use(Seg::SS);
      if (op0.type == ZYDIS_OPERAND_TYPE_REGISTER && op0.reg.value == ZYDIS_REGISTER_SP)
        return kind(out, InsnKind::kPopSp);
      return kind(out, InsnKind::kPop);
    case ZYDIS_MNEMONIC_PUSHF: case ZYDIS_MNEMONIC_PUSHFD:
      if (m_opt.user_mode) return callout_or_stop(out, "flags at CPL 3: ");
      use(Seg::SS);
      return kind(out, InsnKind::kPushfd);
    case ZYDIS_MNEMONIC_POPF: case ZYDIS_MNEMONIC_POPFD:
      if (m_opt.user_mode) return callout_or_stop(out, "flags at CPL 3: ");
      use(Seg::SS);
      return kind(out, InsnKind::kPopfd);
    case ZYDIS_MNEMONIC_RDTSC:
      if (m_opt.inline_rdtsc) return kind(out, InsnKind::kRdtsc);
      break;
    case ZYDIS_MNEMONIC_CLI:
    case ZYDIS_MNEMONIC_STI:
      if (m_opt.user_mode) return callout_or_stop(out, "IF at CPL 3: ");
      return kind(out, i.mnemonic == ZYDIS_MNEMONIC_CLI ? InsnKind::kCli : InsnKind::kSti);
    case ZYDIS_MNEMONIC_PUSHA: case ZYDIS_MNEMONIC_PUSHAD:
      use(Seg::SS);
      return kind(out, InsnKind::kPusha);
    case ZYDIS_MNEMONIC_POPA: case ZYDIS_MNEMONIC_POPAD:
      use(Seg::SS);
      return kind(out, InsnKind::kPopa);
    case ZYDIS_MNEMONIC_ENTER:
      // Nesting levels above 0 copy frame pointers (SDM vol. 2, ENTER): rare, not expanded.
      if ((g.ops[1].imm.value.u & 31) != 0 || !size32) return stop("enter with a nesting level or 16-bit");
      use(Seg::SS);
      return kind(out, InsnKind::kEnter);
    case ZYDIS_MNEMONIC_LEAVE:
      use(Seg::SS);
      return kind(out, InsnKind::kLeave);
    case ZYDIS_MNEMONIC_DAA: case ZYDIS_MNEMONIC_DAS: case ZYDIS_MNEMONIC_AAA:
    case ZYDIS_MNEMONIC_AAS: case ZYDIS_MNEMONIC_AAD: case ZYDIS_MNEMONIC_SALC:
      return kind(out, InsnKind::kDecimal);
    case ZYDIS_MNEMONIC_AAM:
      if ((op0.imm.value.u & 0xff) == 0) return callout_or_stop(out, "aam 0 (#DE): ");
      return kind(out, InsnKind::kDecimal);
    case ZYDIS_MNEMONIC_ARPL: return kind(out, InsnKind::kArpl);
    case ZYDIS_MNEMONIC_BOUND:
      if (!m_opt.callouts) return stop("bound without a callout handler");
      return kind(out, InsnKind::kBound);
    case ZYDIS_MNEMONIC_INTO:
      if (!m_opt.callouts) return stop("into without a callout handler");
      return kind(out, InsnKind::kInto);
    case ZYDIS_MNEMONIC_VERW:
      // Same conditions as the segment loads: results remembered at CPL 0.
      if (m_opt.fast_segment_loads && m_opt.callouts) return kind(out, InsnKind::kVerw);
      break;
    case ZYDIS_MNEMONIC_MOV:
      if (is_sreg(op0)) return fast_seg_load(op0) ? seg_load(out, op0) : callout_or_stop(out, "segment load: ");
      if (is_sreg(op1)) return kind(out, InsnKind::kMovFromSreg);
      break;
    case ZYDIS_MNEMONIC_LOOP: case ZYDIS_MNEMONIC_LOOPE: case ZYDIS_MNEMONIC_LOOPNE:
    case ZYDIS_MNEMONIC_JCXZ: case ZYDIS_MNEMONIC_JECXZ:
      if (!branch_target(g, out.target)) return stop("bad loop target");
      return kind(out, InsnKind::kLoop);
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_CALL: {
      const bool call = i.mnemonic == ZYDIS_MNEMONIC_CALL;
      if (call) use(Seg::SS);
      if (!size32) {
        branch_target(g, out.target);
        return kind(out, InsnKind::kBranch16);
      }
      if (branch_target(g, out.target)) return kind(out, call ? InsnKind::kCall : InsnKind::kJmp);
      return kind(out, call ? InsnKind::kCallIndirect : InsnKind::kJmpIndirect);
    }
    case ZYDIS_MNEMONIC_RET:
      use(Seg::SS);
      return kind(out, size32 ? InsnKind::kRet : InsnKind::kBranch16);
    default:
      break;
  }
  if (i.meta.category == ZYDIS_CATEGORY_COND_BR) {
    if (!branch_target(g, out.target)) return stop("conditional branch without a target");
    return kind(out, size32 ? InsnKind::kJcc : InsnKind::kBranch16);
  }

  if (callout_mnemonic(i.mnemonic) || callout_category(i.meta.category) ||
      (i.attributes & ZYDIS_ATTRIB_IS_PRIVILEGED))
    return callout_or_stop(out, "sensitive or privileged: ");
  if (denied_category(i.meta.category))
    return stop(std::string("category ") + ZydisCategoryGetString(i.meta.category));
  // Any other instruction with a relative target would be relative to the
  // host code once re-encoded.
  if (i.attributes & ZYDIS_ATTRIB_IS_RELATIVE) return callout_or_stop(out, "relative target: ");

  const bool string_op = i.meta.category == ZYDIS_CATEGORY_STRINGOP;
  bool high_byte = false, esp_mem = false, esp_reg = false;
  for (uint8_t k = 0; k < i.operand_count; ++k) {
    const ZydisDecodedOperand& op = g.ops[k];
    const bool hidden = op.visibility != ZYDIS_OPERAND_VISIBILITY_EXPLICIT;
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      ZydisRegisterClass cls = ZydisRegisterGetClass(op.reg.value);
      if (cls == ZYDIS_REGCLASS_CONTROL || cls == ZYDIS_REGCLASS_DEBUG || cls == ZYDIS_REGCLASS_TEST)
        return callout_or_stop(out, "control or debug register: ");
      if (cls == ZYDIS_REGCLASS_SEGMENT || cls == ZYDIS_REGCLASS_TABLE || cls == ZYDIS_REGCLASS_BOUND)
        return stop("segment or system register operand");
      if (hidden && is_stack_reg(op.reg.value)) return stop("implicit stack use");
      if (!hidden && is_high_byte(op.reg.value)) high_byte = true;
      if (!hidden && is_stack_reg(op.reg.value)) esp_reg = true;
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.type == ZYDIS_MEMOP_TYPE_MEM) {
      if (hidden && is_stack_reg(op.mem.base)) return stop("implicit stack use");
      if (!hidden && (is_stack_reg(op.mem.base) || is_stack_reg(op.mem.index))) esp_mem = true;
      if (hidden && !string_op) {
        // e.g. xlat, maskmovq: the address is implicit, so no base can be folded in.
        use(seg_of(op.mem.segment));
        if (base(seg_of(op.mem.segment)) != 0) return stop("implicit memory operand with a non-zero segment base");
      }
    }
  }
  if (string_op) {
    // Source DS (or the override), destination ES (never overridable).
    bool biased = false;
    for (const ZydisDecodedOperand& op : g.all()) {
      if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) continue;
      use(seg_of(op.mem.segment));
      if (base(seg_of(op.mem.segment)) != 0) biased = true;
    }
    // Always expanded: 64-bit mode gives no way to put the window base (or
    // a guest segment base) in front of ES:EDI, so ESI/EDI become 64-bit
    // pointers into the window around the instruction (expand_misc.cpp).
    (void)biased;
    auto r = reencoded(out);
    if (r.ok) out.kind = InsnKind::kStringBiased;
    return r;
  }
  // A REX prefix (needed for R12) makes AH..DH unencodable: compute the
  // address in, or move ESP through, a borrowed guest register (expand_*.cpp).
  if (high_byte && (esp_mem || esp_reg)) {
    out.temp = free_temp(g);
    if (out.temp == ZYDIS_REGISTER_NONE) return stop("AH..DH with ESP and no free temp");
    ReencodeOptions ro;
    if (esp_mem) {
      ro.mem_address_in = out.temp;
      out.kind = InsnKind::kHighByteViaTemp;
    } else {
      ro.esp_as = out.temp;
      out.kind = InsnKind::kHighByteEspReg;
    }
    return reencoded(out, ro);
  }
  if (fsgs_mem && !string_op && !high_byte) {
    ReencodeOptions ro;
    ro.seg_base_in_r11 = true;
    out.kind = InsnKind::kSegBaseAtRun;
    out.seg = uint8_t(seg_of(fsgs_mem->mem.segment));
    m_pending_segs = 0;
    return reencoded(out, ro);
  }
  return reencoded(out);
}

}  // namespace

bool fpu_state_insn(const ZydisDecodedInstruction& i) {
  switch (i.meta.isa_ext) {
    case ZYDIS_ISA_EXT_X87: case ZYDIS_ISA_EXT_MMX: case ZYDIS_ISA_EXT_SSE: case ZYDIS_ISA_EXT_SSE2:
    case ZYDIS_ISA_EXT_SSE3: case ZYDIS_ISA_EXT_SSSE3: case ZYDIS_ISA_EXT_SSE4:
      return true;
    default:
      return false;
  }
}

bool uses_fpu_state(const GuestInsn& g) {
  if (fpu_state_insn(g.insn)) return true;
  switch (g.insn.meta.isa_ext) {
    case ZYDIS_ISA_EXT_BASE: case ZYDIS_ISA_EXT_LONGMODE: case ZYDIS_ISA_EXT_PAUSE: case ZYDIS_ISA_EXT_BMI1:
    case ZYDIS_ISA_EXT_BMI2: case ZYDIS_ISA_EXT_LZCNT: case ZYDIS_ISA_EXT_MOVBE: case ZYDIS_ISA_EXT_CLFSH:
    case ZYDIS_ISA_EXT_CLFLUSHOPT: case ZYDIS_ISA_EXT_CLWB: case ZYDIS_ISA_EXT_RDRAND: case ZYDIS_ISA_EXT_RDSEED:
    case ZYDIS_ISA_EXT_RDTSCP: case ZYDIS_ISA_EXT_RDPID: case ZYDIS_ISA_EXT_ADOX_ADCX: case ZYDIS_ISA_EXT_MONITOR:
    case ZYDIS_ISA_EXT_SMAP: case ZYDIS_ISA_EXT_CET: case ZYDIS_ISA_EXT_INVPCID:
      break;  // integer-only extensions; an operand check below still applies
    default:
      return true;  // vector, x87, xsave families and anything unknown
  }
  // Zydis numbers the x87 stack and control/status/tag words, MMX, XMM,
  // YMM, ZMM and TMM registers as one run (ST0 .. TMM7): two compares per
  // operand instead of a class lookup (this runs for every translated
  // instruction; the lookup cost 8% of translation speed).
  static_assert(ZYDIS_REGISTER_X87TAG < ZYDIS_REGISTER_MM0 && ZYDIS_REGISTER_MM7 < ZYDIS_REGISTER_XMM0 &&
                ZYDIS_REGISTER_XMM31 < ZYDIS_REGISTER_YMM0 && ZYDIS_REGISTER_ZMM31 < ZYDIS_REGISTER_TMM0);
  for (uint8_t k = 0; k < g.insn.operand_count; ++k) {
    const ZydisDecodedOperand& op = g.ops[k];
    if (op.type != ZYDIS_OPERAND_TYPE_REGISTER) continue;
    const ZydisRegister r = op.reg.value;
    if ((r >= ZYDIS_REGISTER_ST0 && r <= ZYDIS_REGISTER_TMM7) || (r >= ZYDIS_REGISTER_K0 && r <= ZYDIS_REGISTER_K7) ||
        r == ZYDIS_REGISTER_MXCSR)
      return true;
  }
  return false;
}

runtime::Seg seg_of(ZydisRegister r) {
  using runtime::Seg;
  switch (r) {
    case ZYDIS_REGISTER_CS: return Seg::CS;
    case ZYDIS_REGISTER_SS: return Seg::SS;
    case ZYDIS_REGISTER_DS: return Seg::DS;
    case ZYDIS_REGISTER_FS: return Seg::FS;
    case ZYDIS_REGISTER_GS: return Seg::GS;
    default: return Seg::ES;
  }
}

const char* insn_kind_name(InsnKind kind) {
  switch (kind) {
    case InsnKind::kInnocuous: return "innocuous";
    case InsnKind::kHighByteViaTemp: return "high-byte-via-temp";
    case InsnKind::kPush: return "push";
    case InsnKind::kPop: return "pop";
    case InsnKind::kPushfd: return "pushfd";
    case InsnKind::kPopfd: return "popfd";
    case InsnKind::kCli: return "cli";
    case InsnKind::kSti: return "sti";
    case InsnKind::kPushSreg: return "push-sreg";
    case InsnKind::kMovFromSreg: return "mov-from-sreg";
    case InsnKind::kPopSp: return "pop-sp";
    case InsnKind::kPusha: return "pusha";
    case InsnKind::kPopa: return "popa";
    case InsnKind::kEnter: return "enter";
    case InsnKind::kLeave: return "leave";
    case InsnKind::kDecimal: return "decimal";
    case InsnKind::kArpl: return "arpl";
    case InsnKind::kBound: return "bound";
    case InsnKind::kInto: return "into";
    case InsnKind::kStringBiased: return "string-biased";
    case InsnKind::kHighByteEspReg: return "high-byte-esp-reg";
    case InsnKind::kSegBaseAtRun: return "seg-base-at-run";
    case InsnKind::kRdtsc: return "rdtsc";
    case InsnKind::kSegLoad: return "seg-load";
    case InsnKind::kVerw: return "verw";
    case InsnKind::kJmp: return "jmp";
    case InsnKind::kJcc: return "jcc";
    case InsnKind::kCall: return "call";
    case InsnKind::kRet: return "ret";
    case InsnKind::kJmpIndirect: return "jmp-indirect";
    case InsnKind::kCallIndirect: return "call-indirect";
    case InsnKind::kBranch16: return "branch16";
    case InsnKind::kLoop: return "loop";
    case InsnKind::kCallout: return "callout";
  }
  return "?";
}

DecodedBlock build_block(const GuestCodeReader& reader, uint32_t eip, const BuildOptions& options) {
  DecodedBlock block;
  block.eip = eip;
  block.seg_base = options.seg_base;
  block.seg_guards = options.seg_guards;
  block.callouts = options.callouts;
  Classifier classifier(options, block);
  block.insns.reserve(options.max_insns + 1);  // BlockInsn is ~1 KiB: no regrowth copies
  const uint64_t page_end = (uint64_t(eip) & ~uint64_t(mmu::kPageMask)) + mmu::kPageSize;
  uint64_t at = eip;
  bool after_sti = false;  // the previous instruction was sti: this one is its shadow
  bool past_side_exit = false;  // a kJcc side exit came before (superblocks)
  for (;;) {
    // The cap does not split sti from its shadow instruction.
    if ((block.insns.size() >= options.max_insns && !after_sti) || at >= page_end) {
      // sti at the end of a page: its shadow starts another block, so the
      // pending-IRQ check goes right after the sti (one instruction early).
      if (after_sti) block.insns.back().shadow_check = true;
      block.end = BlockEnd::kFallThrough;
      break;
    }
    std::array<uint8_t, ZYDIS_MAX_INSTRUCTION_LENGTH> buf{};
    size_t n = reader.read(mmu::GuestVirt(uint32_t(at)), buf);
    // Decoded and classified in place (no copies of the ~1 KiB BlockInsn);
    // dropped again if the block ends before it.
    BlockInsn& insn = block.insns.emplace_back(GuestInsn::kNoZero);
    const GuestInsn& g = insn.guest;
    if (n == 0 || !decode32({buf.data(), n}, uint32_t(at), insn.guest)) {
      block.insns.pop_back();
      block.end = BlockEnd::kStop;
      block.stop_reason = n == 0 ? kCodeNotReadable : "undecodable";
      break;
    }
    // An instruction that crosses into the next page starts a block of its own.
    if (at + g.insn.length > page_end && block.insns.size() > 1) {
      block.insns.pop_back();
      if (after_sti) block.insns.back().shadow_check = true;
      block.end = BlockEnd::kFallThrough;
      break;
    }
    const uint8_t seg_used_before = block.seg_used, seg_flat_before = block.seg_flat;
    Classified c = classifier.classify(insn);
    // Past a side exit, the code is often cold: an instruction there that
    // folds an FS/GS base (pinning the segment, which makes the kernel's
    // per-CPU and the user's TLS loads miss the fast path and drop the
    // blocks that folded it) starts a block of its own, as it did before
    // superblocks.
    constexpr uint8_t kFsGs = seg_bit(runtime::Seg::FS) | seg_bit(runtime::Seg::GS);
    if (c.ok && past_side_exit && (block.seg_used & ~seg_used_before & kFsGs)) {
      block.seg_used = seg_used_before;
      block.seg_flat = seg_flat_before;
      block.insns.pop_back();
      block.end = BlockEnd::kFallThrough;
      break;
    }
    if (!c.ok) {
      // The shadow instruction itself is left to the caller, which sees the
      // stop right before it and can deliver the interrupt after it.
      block.insns.pop_back();
      block.end = BlockEnd::kStop;
      block.stop_reason = std::move(c.stop_reason);
      break;
    }
    // A callout handler sees IF and the pending interrupt itself (sti; hlt).
    if (after_sti && insn.kind != InsnKind::kCallout) insn.shadow_check = true;
    after_sti = insn.kind == InsnKind::kSti;
    at += g.insn.length;
    if (insn.kind == InsnKind::kJcc && options.superblocks && !insn.shadow_check) {
      insn.side_exit = true;
      past_side_exit = true;
      continue;
    }
    if (ends_block(insn.kind)) {
      block.end = BlockEnd::kBranch;
      break;
    }
  }
  block.end_eip = uint32_t(at);
  return block;
}

}  // namespace bt86::translator
