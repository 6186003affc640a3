// Expansions of control flow: direct and indirect jmp/call/ret with 32- and
// 16-bit operand size, jcc, loop/loope/loopne/jcxz/jecxz, callouts (with
// into and bound, whose slow path is a callout), and the pending-interrupt
// check after sti's shadow instruction.
#include "translator/callout.h"
#include "translator/expand.h"

namespace bt86::translator::expand {
namespace {

using namespace asmjit;

// Exits of an instruction that may be sti's shadow: leave with kIrqWindow
// instead when an interrupt is pending.
void leave_to(ExpandContext& ctx, const BlockInsn& insn, uint32_t target) {
  if (insn.shadow_check) emit_irq_check(ctx, target);
  ctx.exit_to(target, ExitReason::kBlockEnd);
}
void leave_indirect(ExpandContext& ctx, const BlockInsn& insn) {
  if (insn.shadow_check) {  // as emit_irq_check, with ECX parked in R14 (R13 holds the target)
    x86::Assembler& a = ctx.as();
    Label no = a.newLabel();
    a.mov(x86::r14, x86::rcx);
    a.movzx(x86::ecx, x86::byte_ptr(x86::r15, ctx_off::kIrqPending));
    a.jecxz(x86::rcx, no);
    a.mov(x86::rcx, x86::r14);
    ctx.exit_r13(ExitReason::kIrqWindow);
    a.bind(no);
    a.mov(x86::rcx, x86::r14);
  }
  ctx.exit_indirect();
}

void push_imm(ExpandContext& ctx, uint32_t value, uint32_t w) {
  x86::Assembler& a = ctx.as();
  a.mov(stack_slot(ctx, -int32_t(w), w), w == 2 ? (value & 0xffff) : value);
  a.lea(x86::r12d, x86::ptr(x86::r12d, -int32_t(w)));
}

// R13D = the target of jmp/call r/m (zero-extended for 16 bit), read before
// any push: `call [esp+4]` uses the old ESP.
Status load_indirect_target(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const ZydisDecodedOperand& op = g.ops[0];
  const bool w16 = g.insn.operand_width == 16;
  if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    if (w16)
      a.movzx(x86::r13d, host_gp(op.reg.value));
    else
      a.mov(x86::r13d, host_gp(op.reg.value));
    return Ok{};
  }
  if (auto s = mem_move(ctx, op, w16 ? ZYDIS_REGISTER_R13W : ZYDIS_REGISTER_R13D, false); !s) return s;
  if (w16) a.movzx(x86::r13d, x86::r13w);
  return Ok{};
}

void jcc(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  const GuestInsn& g = insn.guest;
  const uint32_t cc = g.insn.opcode & 0xf;
  if (insn.side_exit) {
    // Inside a superblock: leave on the taken arm only, continue with the
    // next instruction otherwise; once linked, one branch either way.
    ctx.exit_side(cc, insn.target);
    return;
  }
  if (!insn.shadow_check) {
    // jcc straight to the taken block once linked (loop back edges and
    // forward arms alike: one branch on the taken path).
    ctx.exit_jcc(cc, insn.target, g.next_eip());
    return;
  }
  if (insn.target <= g.eip) {
    // A backward branch is most likely a loop's back edge: lay the taken
    // exit out first so that, once chained, an iteration costs one taken
    // branch (the linked jmp) instead of two. cc ^ 1 is the opposite test.
    Label fall = a.newLabel();
    a.j(x86::CondCode(cc ^ 1), fall);
    leave_to(ctx, insn, insn.target);
    a.bind(fall);
    leave_to(ctx, insn, g.next_eip());
    return;
  }
  Label taken = a.newLabel();
  a.j(x86::CondCode(cc), taken);
  leave_to(ctx, insn, g.next_eip());
  a.bind(taken);
  leave_to(ctx, insn, insn.target);
}

// ret [n]: pop EIP (w bytes, zero-extended), release n more bytes.
void ret(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  const GuestInsn& g = insn.guest;
  const uint32_t w = g.insn.operand_width / 8;
  uint32_t release = w;
  if (g.insn.operand_count_visible > 0 && g.ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
    release += uint32_t(g.ops[0].imm.value.u & 0xffff);
  if (w == 2)
    a.movzx(x86::r13d, stack_slot(ctx, 0, 2));
  else
    a.mov(x86::r13d, stack_slot(ctx, 0, 4));
  a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(release)));
  leave_indirect(ctx, insn);
}

Status branch(ExpandContext& ctx, const BlockInsn& insn) {
  const GuestInsn& g = insn.guest;
  const uint32_t w = g.insn.operand_width / 8;
  switch (g.insn.mnemonic) {
    case ZYDIS_MNEMONIC_JMP:
      if (g.ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
        leave_to(ctx, insn, insn.target);
        return Ok{};
      }
      if (auto s = load_indirect_target(ctx, g); !s) return s;
      leave_indirect(ctx, insn);
      return Ok{};
    case ZYDIS_MNEMONIC_CALL:
      if (g.ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
        push_imm(ctx, g.next_eip(), w);
        leave_to(ctx, insn, insn.target);
        return Ok{};
      }
      if (auto s = load_indirect_target(ctx, g); !s) return s;
      push_imm(ctx, g.next_eip(), w);
      leave_indirect(ctx, insn);
      return Ok{};
    case ZYDIS_MNEMONIC_RET:
      ret(ctx, insn);
      return Ok{};
    default:  // jcc
      jcc(ctx, insn);
      return Ok{};
  }
}

// loop/loope/loopne decrement ECX (CX with a 16-bit address size) without
// touching flags; jcxz/jecxz only test it (SDM vol. 2, LOOPcc, JCXZ).
void loop(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  const GuestInsn& g = insn.guest;
  const bool cx16 = g.insn.address_width == 16;
  const ZydisMnemonic m = g.insn.mnemonic;
  const bool test_only = m == ZYDIS_MNEMONIC_JCXZ || m == ZYDIS_MNEMONIC_JECXZ;
  if (!test_only) {
    if (cx16)
      a.lea(x86::cx, x86::ptr(x86::ecx, -1));
    else
      a.lea(x86::ecx, x86::ptr(x86::ecx, -1));
  }
  Label zero = a.newLabel(), nonzero = a.newLabel();
  // Is the count zero? jecxz keeps the flags; a 16-bit count is tested on a
  // zero-extended copy with the guest RCX parked in R13.
  if (cx16) {
    a.mov(x86::r13, x86::rcx);
    a.movzx(x86::ecx, x86::cx);
    Label z = a.newLabel();
    a.jecxz(x86::ecx, z);
    a.mov(x86::rcx, x86::r13);
    a.jmp(nonzero);
    a.bind(z);
    a.mov(x86::rcx, x86::r13);
    a.jmp(zero);
  } else {
    a.jecxz(x86::ecx, zero);
    a.jmp(nonzero);
  }
  a.bind(nonzero);
  if (test_only) {
    leave_to(ctx, insn, g.next_eip());
    a.bind(zero);
    leave_to(ctx, insn, insn.target);
    return;
  }
  if (m == ZYDIS_MNEMONIC_LOOPE) a.jne(zero);   // ZF = 0: fall through
  if (m == ZYDIS_MNEMONIC_LOOPNE) a.je(zero);   // ZF = 1: fall through
  leave_to(ctx, insn, insn.target);
  a.bind(zero);
  leave_to(ctx, insn, g.next_eip());
}

// The jump to the callout stub: R13 = the site, next_eip = the instruction.
void callout(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  CalloutRuntime* rt = ctx.block().callouts;
  const CalloutInsn* site = rt->new_site(g);
  a.mov(x86::r13, Imm(reinterpret_cast<uint64_t>(site)));
  a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), g.eip);
  a.jmp(Imm(rt->stub));
}

// into: OF set -> callout (the handler raises #OF); otherwise nothing.
void into(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  Label no = a.newLabel();
  a.jno(no);
  callout(ctx, g);
  a.bind(no);
}

// bound r, m: index below [m] or above [m + w] (signed) -> callout (#BR).
Status bound(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const uint32_t w = g.insn.operand_width / 8;
  ZydisDecodedOperand lower = g.ops[1];
  lower.size = uint16_t(w * 8);
  ZydisDecodedOperand upper = lower;
  upper.mem.disp.has_displacement = true;
  upper.mem.disp.value = lower.mem.disp.value + w;
  const ZydisRegister r13 = w == 2 ? ZYDIS_REGISTER_R13W : ZYDIS_REGISTER_R13D;
  const x86::Gp index = host_gp(g.ops[0].reg.value);
  const x86::Gp scratch = w == 2 ? x86::Gp(x86::r14w) : x86::Gp(x86::r14d);
  if (auto s = mem_move(ctx, lower, r13, false); !s) return s;
  a.mov(scratch, w == 2 ? x86::Gp(x86::r13w) : x86::Gp(x86::r13d));
  if (auto s = mem_move(ctx, upper, r13, false); !s) return s;
  Label fail = a.newLabel(), ok = a.newLabel();
  a.pushfq();
  a.cmp(index, scratch);
  a.jl(fail);
  a.cmp(index, w == 2 ? x86::Gp(x86::r13w) : x86::Gp(x86::r13d));
  a.jg(fail);
  a.popfq();
  a.jmp(ok);
  a.bind(fail);
  a.popfq();
  callout(ctx, g);
  a.bind(ok);
  return Ok{};
}

}  // namespace

void emit_callout(ExpandContext& ctx, const GuestInsn& g) { callout(ctx, g); }

bool branch_kind(ExpandContext& ctx, const BlockInsn& insn, Status& result) {
  result = Ok{};
  switch (insn.kind) {
    case InsnKind::kJmp: case InsnKind::kJcc: case InsnKind::kCall: case InsnKind::kRet:
    case InsnKind::kJmpIndirect: case InsnKind::kCallIndirect: case InsnKind::kBranch16:
      result = branch(ctx, insn);
      return true;
    case InsnKind::kLoop: loop(ctx, insn); return true;
    case InsnKind::kCallout: callout(ctx, insn.guest); return true;
    case InsnKind::kInto: into(ctx, insn.guest); return true;
    case InsnKind::kBound: result = bound(ctx, insn.guest); return true;
    default: return false;
  }
}

}  // namespace bt86::translator::expand

namespace bt86::translator {

// Flag-free (the guest's flags are live): the byte is tested with jrcxz on a
// copy in RCX, guest ECX parked in R13.
void emit_irq_check(ExpandContext& ctx, uint32_t next_eip) {
  using namespace asmjit;
  x86::Assembler& a = ctx.as();
  Label no = a.newLabel();
  a.mov(x86::r13, x86::rcx);
  a.movzx(x86::ecx, x86::byte_ptr(x86::r15, ctx_off::kIrqPending));
  a.jecxz(x86::rcx, no);
  a.mov(x86::rcx, x86::r13);
  ctx.exit_to(next_eip, ExitReason::kIrqWindow);
  a.bind(no);
  a.mov(x86::rcx, x86::r13);
}

}  // namespace bt86::translator
