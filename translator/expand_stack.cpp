// Expansions of the stack and flag instructions: push/pop (r/m/imm, segment
// registers, pop sp), pushf/popf (16/32) with the virtual IF/IOPL, cli/sti,
// pusha/popa, enter/leave, mov r/m, sreg. Every guest stack access goes
// through stack_slot (guest SS base folded in); ESP is R12D.
#include <cstddef>

#include "runtime/cpu_state.h"
#include "translator/expand.h"

namespace bt86::translator::expand {
namespace {

using namespace asmjit;
namespace rf = runtime::flags;

constexpr uint32_t kLiveFlags = rf::Arith | rf::DF;
constexpr int32_t kEflagsOff = int32_t(offsetof(runtime::CpuState, eflags));

// The system flags POPF may change at CPL 0 (SDM vol. 2, POPF, "CPL = 0"):
// everything but VM, VIF, VIP and the reserved bits; RF is cleared.
constexpr uint32_t kPopfSystem32 = rf::TF | rf::IF | rf::IOPL | rf::NT | rf::AC | rf::ID;
constexpr uint32_t kPopfSystem16 = rf::TF | rf::IF | rf::IOPL | rf::NT;

int32_t selector_offset(runtime::Seg s) {
  return int32_t(offsetof(runtime::CpuState, seg) + size_t(s) * sizeof(runtime::SegmentCache) +
                 offsetof(runtime::SegmentCache, selector));
}

// R13D = the guest selector of segment register sreg (zero-extended).
void load_selector(x86::Assembler& a, ZydisRegister sreg) {
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.movzx(x86::r13d, x86::word_ptr(x86::r13, selector_offset(seg_of(sreg))));
}

x86::Gp r13_of(uint32_t bytes) { return bytes == 2 ? x86::Gp(x86::r13w) : x86::Gp(x86::r13d); }

Status push(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const ZydisDecodedOperand& op0 = g.ops[0];
  const uint32_t w = g.insn.operand_width / 8;
  if (op0.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    a.mov(stack_slot(ctx, -int32_t(w), w), host_gp(op0.reg.value));
  } else if (op0.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
    a.mov(stack_slot(ctx, -int32_t(w), w), w == 2 ? uint32_t(uint16_t(op0.imm.value.u)) : uint32_t(op0.imm.value.u));
  } else {
    if (auto s = mem_move(ctx, op0, w == 2 ? ZYDIS_REGISTER_R13W : ZYDIS_REGISTER_R13D, false); !s) return s;
    a.mov(stack_slot(ctx, -int32_t(w), w), r13_of(w));
  }
  a.lea(x86::r12d, x86::ptr(x86::r12d, -int32_t(w)));
  return Ok{};
}

Status pop(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const ZydisDecodedOperand& op0 = g.ops[0];
  const uint32_t w = g.insn.operand_width / 8;
  if (op0.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    if (op0.reg.value == ZYDIS_REGISTER_ESP) {  // ESP = [ESP]: the increment is overwritten
      a.mov(x86::r12d, stack_slot(ctx, 0, 4));
      return Ok{};
    }
    a.mov(host_gp(op0.reg.value), stack_slot(ctx, 0, w));
    a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(w)));
    return Ok{};
  }
  // pop m: the address is computed after ESP is incremented (SDM vol. 2,
  // POP). The store goes before the increment (precise faults: no state
  // change before the last access that may fault), so an ESP-based address
  // gets the increment in its displacement instead.
  a.mov(r13_of(w), stack_slot(ctx, 0, w));
  ZydisDecodedOperand dst = op0;
  if (dst.mem.base == ZYDIS_REGISTER_ESP || dst.mem.base == ZYDIS_REGISTER_SP) {
    dst.mem.disp.has_displacement = true;
    dst.mem.disp.value = int64_t(int32_t(uint32_t(dst.mem.disp.value) + w));
  }
  if (auto s = mem_move(ctx, dst, w == 2 ? ZYDIS_REGISTER_R13W : ZYDIS_REGISTER_R13D, true); !s) return s;
  a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(w)));
  return Ok{};
}

// pushf/pushfd: live flags from RFLAGS, everything else from the virtual
// EFLAGS; VM and RF read as 0 (SDM vol. 2, PUSHF).
void pushf(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const uint32_t w = g.insn.operand_width / 8;
  a.pushfq();
  a.mov(x86::r13, x86::qword_ptr(x86::rsp));
  a.and_(x86::r13d, kLiveFlags);
  a.mov(x86::r14, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.mov(x86::r14d, x86::dword_ptr(x86::r14, kEflagsOff));
  a.and_(x86::r14d, ~(kLiveFlags | rf::RF | rf::VM));
  a.or_(x86::r13d, x86::r14d);
  a.popfq();  // the and/or above clobbered the guest flags: back before the store may fault
  a.mov(stack_slot(ctx, -int32_t(w), w), r13_of(w));
  a.lea(x86::r12d, x86::ptr(x86::r12d, -int32_t(w)));
}

// popf/popfd at CPL 0: the live flags go to RFLAGS, IF, IOPL, TF, NT (and AC,
// ID for 32 bit) to the virtual EFLAGS; RF is cleared. If IF is now 1 and an
// interrupt is pending, or TF is now 1, leave right after with kIrqWindow
// (POPF has no interrupt shadow; translated code does not single-step).
void popf(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const uint32_t w = g.insn.operand_width / 8;
  const uint32_t system = w == 2 ? kPopfSystem16 : kPopfSystem32;
  if (w == 2)
    a.movzx(x86::r13d, stack_slot(ctx, 0, 2));
  else
    a.mov(x86::r13d, stack_slot(ctx, 0, 4));
  a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(w)));
  a.pushfq();
  a.mov(x86::r14, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.mov(x86::r8d, x86::dword_ptr(x86::r14, kEflagsOff));
  a.and_(x86::r8d, ~(system | rf::RF));
  a.mov(x86::r9d, x86::r13d);
  a.and_(x86::r9d, system);
  a.or_(x86::r8d, x86::r9d);
  a.mov(x86::dword_ptr(x86::r14, kEflagsOff), x86::r8d);
  a.and_(x86::r13d, kLiveFlags);
  a.and_(x86::qword_ptr(x86::rsp), int32_t(~kLiveFlags));
  a.or_(x86::qword_ptr(x86::rsp), x86::r13);
  Label done = a.newLabel(), leave = a.newLabel();
  // TF set: leave after the popf, so the owner single-steps from the next
  // instruction on (SDM vol. 3, 17.3.1.4: the trap comes after the
  // instruction that follows the popf which set TF).
  a.test(x86::r8d, rf::TF);
  a.jnz(leave);
  a.test(x86::r8d, rf::IF);
  a.jz(done);
  a.cmp(x86::byte_ptr(x86::r15, ctx_off::kIrqPending), 0);
  a.jne(leave);
  a.bind(done);
  a.popfq();
  Label after = a.newLabel();
  a.jmp(after);
  a.bind(leave);
  a.popfq();
  ctx.exit_to(g.next_eip(), ExitReason::kIrqWindow);
  a.bind(after);
}

// Byte 1 of EFLAGS (bits 8-15) with IF (bit 9) cleared / set, for every value.
struct IfTables {
  uint8_t clear[256], set[256];
  constexpr IfTables() : clear(), set() {
    for (int v = 0; v < 256; ++v) {
      clear[v] = uint8_t(v & ~(rf::IF >> 8));
      set[v] = uint8_t(v | (rf::IF >> 8));
    }
  }
};
constexpr IfTables kIfTables;

// cli/sti: only the virtual IF changes (the host's never does). Without
// touching the live guest flags: byte 1 of the virtual EFLAGS goes through a
// 256-entry table (mov only; cheaper than pushfq/popfq on every
// local_irq_save/restore).
void cli_sti(ExpandContext& ctx, bool set) {
  x86::Assembler& a = ctx.as();
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.movzx(x86::r14d, x86::byte_ptr(x86::r13, kEflagsOff + 1));
  a.mov(x86::r8, Imm(reinterpret_cast<uint64_t>(set ? kIfTables.set : kIfTables.clear)));
  a.mov(x86::r14b, x86::byte_ptr(x86::r8, x86::r14));
  a.mov(x86::byte_ptr(x86::r13, kEflagsOff + 1), x86::r14b);
}

// pusha/pushad: EAX ECX EDX EBX (original) ESP EBP ESI EDI, then ESP -= 8w.
// All stores come before ESP changes: a fault leaves the registers as they were.
void pusha(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const uint32_t w = g.insn.operand_width / 8;
  static constexpr uint32_t kOrder[8] = {0, 1, 2, 3, 4, 5, 6, 7};  // x86 register numbers
  for (int k = 0; k < 8; ++k) {
    const uint32_t r = kOrder[k];
    x86::Gp src = r == 4 ? (w == 2 ? x86::Gp(x86::r12w) : x86::Gp(x86::r12d))
                         : (w == 2 ? x86::Gp(x86::gpw(r)) : x86::Gp(x86::gpd(r)));
    a.mov(stack_slot(ctx, -int32_t(w * (k + 1)), w), src);
  }
  a.lea(x86::r12d, x86::ptr(x86::r12d, -int32_t(8 * w)));
}

// popa/popad: EDI ESI EBP (skip) EBX EDX ECX EAX from ascending addresses,
// each straight into its register, ESP last: the SDM's pseudo-code pops one
// by one, and the host CPU (checked by the difftest: a popad that runs off
// the stack) shows EDI loaded and ESP unchanged when a later load faults. A
// retry loads them all again.
void popa(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const uint32_t w = g.insn.operand_width / 8;
  static constexpr uint32_t kRegs[8] = {7, 6, 5, 4, 3, 2, 1, 0};  // EDI first
  for (int k = 0; k < 8; ++k) {
    const uint32_t r = kRegs[k];
    // The saved ESP is discarded, but the host CPU still reads it (a #PF on
    // that slot is reported at its address): R13 takes it.
    x86::Gp dst = r == 4 ? r13_of(w) : w == 2 ? x86::Gp(x86::gpw(r)) : x86::Gp(x86::gpd(r));
    a.mov(dst, stack_slot(ctx, int32_t(w * k), w));
  }
  a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(8 * w)));
}

// The processor also faults "if a write using the final value of the stack
// pointer would cause a page fault" (SDM vol. 2, ENTER, #PF). Measured (the
// difftest): the EBP push is already in memory when that fault is raised, so
// the order is store, then the probe (xchg: a write access that leaves
// memory and flags as they were), then the register changes. A retry stores
// the same value again.
void enter(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const int32_t size = int32_t(g.ops[0].imm.value.u & 0xffff);
  a.mov(stack_slot(ctx, -4, 4), x86::ebp);
  if (size) {
    a.xchg(stack_slot(ctx, -4 - size, 1), x86::r13b);
    a.mov(stack_slot(ctx, -4 - size, 1), x86::r13b);
  }
  a.lea(x86::r12d, x86::ptr(x86::r12d, -4));
  a.mov(x86::ebp, x86::r12d);
  if (size) a.lea(x86::r12d, x86::ptr(x86::r12d, -size));
}

// leave: esp = ebp; pop ebp. The load goes first (precise faults).
void leave(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const uint32_t w = g.insn.operand_width / 8;
  const uint32_t ss = ctx.block().seg_base[int(runtime::Seg::SS)];
  x86::Mem top = x86::ptr(x86::ebp, int32_t(ss), w);
  top.setSegment(x86::gs);
  a.mov(r13_of(w), top);
  a.lea(x86::r12d, x86::ptr(x86::ebp, int32_t(w)));
  a.mov(w == 2 ? x86::Gp(x86::bp) : x86::Gp(x86::ebp), r13_of(w));
}

Status push_sreg(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const uint32_t w = g.insn.operand_width / 8;
  load_selector(a, g.ops[0].reg.value);
  // 32-bit operand size: recent Intel processors write only the low 16 bits
  // of the slot (SDM vol. 2, PUSH); ESP still moves by 4.
  a.mov(stack_slot(ctx, -int32_t(w), 2), x86::r13w);
  a.lea(x86::r12d, x86::ptr(x86::r12d, -int32_t(w)));
  return Ok{};
}

// mov r/m, sreg: a register gets the selector zero-extended (32-bit operand
// size on P6 and later), memory gets 16 bits.
Status mov_from_sreg(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const ZydisDecodedOperand& dst = g.ops[0];
  load_selector(a, g.ops[1].reg.value);
  if (dst.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    x86::Gp r = host_gp(dst.reg.value);
    a.mov(r, r.size() == 2 ? x86::Gp(x86::r13w) : x86::Gp(x86::r13d));
    return Ok{};
  }
  ZydisDecodedOperand m = dst;
  m.size = 16;
  return mem_move(ctx, m, ZYDIS_REGISTER_R13W, true);
}

// pop sp: SP = [SS:ESP]; the 2-byte increment of ESP keeps its upper half.
void pop_sp(ExpandContext& ctx) {
  x86::Assembler& a = ctx.as();
  a.mov(x86::r13w, stack_slot(ctx, 0, 2));
  a.lea(x86::r12d, x86::ptr(x86::r12d, 2));
  a.mov(x86::r12w, x86::r13w);
}

}  // namespace

x86::Mem stack_slot(const ExpandContext& ctx, int32_t disp, uint32_t size) {
  const uint32_t ss = ctx.block().seg_base[int(runtime::Seg::SS)];
  x86::Mem m = x86::ptr(x86::r12d, int32_t(uint32_t(disp) + ss), size);
  m.setSegment(x86::gs);
  return m;
}

bool stack_kind(ExpandContext& ctx, const BlockInsn& insn, Status& result) {
  const GuestInsn& g = insn.guest;
  result = Ok{};
  switch (insn.kind) {
    case InsnKind::kPush: result = push(ctx, g); return true;
    case InsnKind::kPop: result = pop(ctx, g); return true;
    case InsnKind::kPopSp: pop_sp(ctx); return true;
    case InsnKind::kPushfd: pushf(ctx, g); return true;
    case InsnKind::kPopfd: popf(ctx, g); return true;
    case InsnKind::kCli: cli_sti(ctx, false); return true;
    case InsnKind::kSti: cli_sti(ctx, true); return true;
    case InsnKind::kPusha: pusha(ctx, g); return true;
    case InsnKind::kPopa: popa(ctx, g); return true;
    case InsnKind::kEnter: enter(ctx, g); return true;
    case InsnKind::kLeave: leave(ctx, g); return true;
    case InsnKind::kPushSreg: result = push_sreg(ctx, g); return true;
    case InsnKind::kMovFromSreg: result = mov_from_sreg(ctx, g); return true;
    default: return false;
  }
}

}  // namespace bt86::translator::expand
