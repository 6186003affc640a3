// Expansions of everything that is not stack, flags or control flow:
// re-encoded instructions, AH..DH next to ESP, string instructions with
// non-zero segment bases, the BCD instructions and salc (in C++, called with
// the guest state on the host stack), arpl; and the per-kind dispatch.
#include <cstddef>

#include "runtime/cpu_state.h"
#include "translator/expand.h"

namespace bt86::translator {
namespace expand {
namespace {

using namespace asmjit;
namespace rf = runtime::flags;

void embed(ExpandContext& ctx, const HostBytes& b) { ctx.as().embed(b.bytes.data(), b.size); }

// AH..DH with an ESP-based memory operand: borrow a guest register T the
// instruction does not use, save it in R13, put the address in T, run the
// instruction on [T] (no REX), restore T. lea and mov leave the flags alone.
void high_byte_via_temp(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  const GuestInsn& g = insn.guest;
  const ZydisDecodedOperand* mem = nullptr;
  for (const ZydisDecodedOperand& op : g.visible())
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) mem = &op;
  const int32_t disp = int32_t(uint32_t(mem->mem.disp.value) + seg_base(ctx, mem->mem.segment));
  x86::Gp t32 = x86::gpd(ZydisRegisterGetId(insn.temp));
  x86::Gp t64 = x86::gpq(ZydisRegisterGetId(insn.temp));
  x86::Mem addr = mem->mem.index == ZYDIS_REGISTER_NONE
                      ? x86::ptr(host_gp(mem->mem.base), disp)
                      : x86::ptr(host_gp(mem->mem.base), host_gp(mem->mem.index), __builtin_ctz(mem->mem.scale), disp);
  a.mov(x86::r13, t64);
  ctx.borrowed_in_r13(ZydisRegisterGetId(insn.temp));
  a.lea(t32, addr);
  embed(ctx, insn.host);
  a.mov(t64, x86::r13);
}

// A re-encoded instruction whose FS/GS memory operand is [R11D + X + disp]
// (reencoder.h, seg_base_in_r11): R11D = the segment's current base from
// CpuState, R10D = base + index * scale when the guest address has both.
// mov and lea leave the flags alone; 32-bit lea wraps as the guest's linear
// address does.
void seg_base_at_run(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  const GuestInsn& g = insn.guest;
  const ZydisDecodedOperand* mem = nullptr;
  for (const ZydisDecodedOperand& op : g.visible())
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.type == ZYDIS_MEMOP_TYPE_MEM) mem = &op;
  constexpr int32_t kBaseOff = int32_t(offsetof(runtime::CpuState, seg) + offsetof(runtime::SegmentCache, base));
  // FS/GS may be non-flat now even though they were flat at translation
  // (Linux: the user's null FS until the entry code loads the per-CPU
  // segment): then leave before the instruction (kNeedsChecks). Flag-free:
  // RCX parked in R13, jrcxz on the byte.
  if (ctx.block().seg_guards) {
    Label flat = a.newLabel();
    a.mov(x86::r13, x86::rcx);
    a.movzx(x86::ecx, x86::byte_ptr(x86::r15, ctx_off::kSegChecked + int32_t(insn.seg)));
    a.jecxz(x86::rcx, flat);
    a.mov(x86::rcx, x86::r13);
    ctx.exit_to(g.eip, ExitReason::kNeedsChecks);
    a.bind(flat);
    a.mov(x86::rcx, x86::r13);
  }
  a.mov(x86::r11, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.mov(x86::r11d, x86::dword_ptr(x86::r11, kBaseOff + int32_t(insn.seg * sizeof(runtime::SegmentCache))));
  if (mem->mem.base != ZYDIS_REGISTER_NONE && mem->mem.index != ZYDIS_REGISTER_NONE)
    a.lea(x86::r10d, x86::ptr(host_gp(mem->mem.base), host_gp(mem->mem.index), __builtin_ctz(mem->mem.scale)));
  embed(ctx, insn.host);
}

// AH..DH with ESP/SP as a register operand (movzx esp, ah): T stands in for
// ESP around the instruction.
void high_byte_esp_reg(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  x86::Gp t32 = x86::gpd(ZydisRegisterGetId(insn.temp));
  x86::Gp t64 = x86::gpq(ZydisRegisterGetId(insn.temp));
  a.mov(x86::r13, t64);
  ctx.borrowed_in_r13(ZydisRegisterGetId(insn.temp));
  a.mov(t32, x86::r12d);
  embed(ctx, insn.host);
  a.mov(x86::r12d, t32);
  a.mov(t64, x86::r13);
}

// A string instruction (movs, cmps, stos, lods, scas). The guest's ESI/EDI
// are 32-bit linear offsets, but the kernel window is not at host address 0
// and 64-bit mode cannot put a base in front of ES:EDI (no override), so the
// instruction runs with 64-bit addressing on pointers made around it:
//   RSI = window + (ESI + DS base mod 2^32), RDI = window + (EDI + ES base),
//   RCX = ECX zero-extended (rep counts with RCX in 64-bit addressing),
// and the low 32 bits are taken back (the window is 4 GiB aligned, so the
// low halves advance exactly as the guest's registers do). Only flag-free
// instructions (mov r32, lea) are used. A run that walks off either end of
// the window lands in the guard areas the machine reserves around it.
void string_biased(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  uint32_t src = 0, dst = 0;
  bool uses_src = false, uses_dst = false;
  for (const ZydisDecodedOperand& op : insn.guest.all()) {
    if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) continue;
    if (op.mem.base == ZYDIS_REGISTER_EDI || op.mem.base == ZYDIS_REGISTER_DI) {
      uses_dst = true;
      dst = seg_base(ctx, op.mem.segment);
    } else {
      uses_src = true;
      src = seg_base(ctx, op.mem.segment);
    }
  }
  const bool rep = insn.guest.insn.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REPNE);
  ctx.string_bias(uses_src ? src : 0, uses_dst ? dst : 0);
  if (uses_src) a.lea(x86::esi, x86::ptr(x86::esi, int32_t(src)));
  if (uses_dst) a.lea(x86::edi, x86::ptr(x86::edi, int32_t(dst)));
  if (rep) a.mov(x86::ecx, x86::ecx);
  a.mov(x86::r14, x86::qword_ptr(x86::r15, ctx_off::kWindowBase));
  if (uses_src) a.lea(x86::rsi, x86::ptr(x86::rsi, x86::r14));
  if (uses_dst) a.lea(x86::rdi, x86::ptr(x86::rdi, x86::r14));
  // The re-encoded bytes with 32-bit addressing, minus the 0x67 prefix.
  HostBytes host = insn.host;
  HostBytes wide;
  bool dropped = false;
  for (size_t i = 0; i < host.size; ++i) {
    if (!dropped && host.bytes[i] == 0x67) {
      dropped = true;
      continue;
    }
    wide.bytes[wide.size++] = host.bytes[i];
  }
  embed(ctx, wide);
  if (uses_src) a.lea(x86::esi, x86::ptr(x86::esi, -int32_t(src)));
  if (uses_dst) a.lea(x86::edi, x86::ptr(x86::edi, -int32_t(dst)));
}

// The guest state a C++ helper sees: the caller-saved host registers and
// RFLAGS as pushed by call_helper (lowest address first).
struct HelperFrame {
  uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax, rflags;
};

// The BCD instructions and salc (SDM vol. 2, DAA DAS AAA AAS AAM AAD; salc is
// undocumented: AL = CF ? 0xFF : 0, flags unchanged). Only general registers
// may be used here: the guest's x87/SSE state is live.
__attribute__((target("general-regs-only"))) void decimal_helper(HelperFrame* f, uint64_t op) {
  const ZydisMnemonic m = ZydisMnemonic(op & 0xffff);
  const uint8_t imm = uint8_t(op >> 16);
  uint32_t fl = uint32_t(f->rflags);
  uint8_t al = uint8_t(f->rax), ah = uint8_t(f->rax >> 8);
  const bool cf = fl & rf::CF, af = fl & rf::AF;
  bool new_cf = cf, new_af = af;
  bool szp = true;  // SF, ZF, PF from AL
  switch (m) {
    case ZYDIS_MNEMONIC_DAA: {
      const uint8_t old_al = al;
      new_cf = false;
      if ((al & 0xf) > 9 || af) {
        new_cf = cf || al > 0xf9;
        al = uint8_t(al + 6);
        new_af = true;
      } else {
        new_af = false;
      }
      if (old_al > 0x99 || cf) {
        al = uint8_t(al + 0x60);
        new_cf = true;
      } else {
        new_cf = false;
      }
      break;
    }
    case ZYDIS_MNEMONIC_DAS: {
      const uint8_t old_al = al;
      new_cf = false;
      if ((al & 0xf) > 9 || af) {
        new_cf = cf || al < 6;
        al = uint8_t(al - 6);
        new_af = true;
      } else {
        new_af = false;
      }
      if (old_al > 0x99 || cf) {
        al = uint8_t(al - 0x60);
        new_cf = true;
      }
      break;
    }
    case ZYDIS_MNEMONIC_AAA:
    case ZYDIS_MNEMONIC_AAS: {
      uint16_t ax = uint16_t(al | (ah << 8));
      if ((al & 0xf) > 9 || af) {
        ax = m == ZYDIS_MNEMONIC_AAA ? uint16_t(ax + 0x106) : uint16_t(ax - 6);
        if (m == ZYDIS_MNEMONIC_AAS) ax = uint16_t(ax - 0x100);
        new_af = new_cf = true;
      } else {
        new_af = new_cf = false;
      }
      al = uint8_t(ax & 0x0f);
      ah = uint8_t(ax >> 8);
      break;
    }
    case ZYDIS_MNEMONIC_AAM:  // imm != 0 (aam 0 is a callout: #DE)
      ah = uint8_t(al / imm);
      al = uint8_t(al % imm);
      new_cf = new_af = false;
      break;
    case ZYDIS_MNEMONIC_AAD:
      al = uint8_t(al + ah * imm);
      ah = 0;
      new_cf = new_af = false;
      break;
    default:  // salc
      al = cf ? 0xff : 0;
      szp = false;
      break;
  }
  f->rax = (f->rax & ~uint64_t(0xffff)) | al | (uint32_t(ah) << 8);
  if (m == ZYDIS_MNEMONIC_SALC) return;
  fl &= ~(rf::CF | rf::AF | rf::OF);
  if (new_cf) fl |= rf::CF;
  if (new_af) fl |= rf::AF;
  if (szp) {
    fl &= ~(rf::SF | rf::ZF | rf::PF);
    if (al & 0x80) fl |= rf::SF;
    if (al == 0) fl |= rf::ZF;
    if (!(__builtin_popcount(al) & 1)) fl |= rf::PF;
  }
  f->rflags = (f->rflags & ~uint64_t(0xffffffff)) | fl;
}

// Calls fn(frame, arg) with the caller-saved registers and RFLAGS in a
// HelperFrame on the host stack; the helper's changes to them are loaded
// back. DF is cleared for the call (C ABI), RSP aligned to 16.
void call_helper(ExpandContext& ctx, void (*fn)(HelperFrame*, uint64_t), uint64_t arg) {
  x86::Assembler& a = ctx.as();
  a.pushfq();
  for (x86::Gp r : {x86::rax, x86::rcx, x86::rdx, x86::rsi, x86::rdi, x86::r8, x86::r9, x86::r10, x86::r11}) a.push(r);
  a.cld();
  a.mov(x86::rdi, x86::rsp);
  a.mov(x86::r13, x86::rsp);
  a.and_(x86::rsp, -16);
  a.mov(x86::rsi, Imm(arg));
  a.mov(x86::rax, Imm(reinterpret_cast<uint64_t>(fn)));
  a.call(x86::rax);
  a.mov(x86::rsp, x86::r13);
  for (x86::Gp r : {x86::r11, x86::r10, x86::r9, x86::r8, x86::rdi, x86::rsi, x86::rdx, x86::rcx, x86::rax}) a.pop(r);
  a.popfq();
}

void decimal(ExpandContext& ctx, const GuestInsn& g) {
  uint64_t imm = 0;
  if (g.insn.mnemonic == ZYDIS_MNEMONIC_AAM || g.insn.mnemonic == ZYDIS_MNEMONIC_AAD) imm = g.ops[0].imm.value.u & 0xff;
  call_helper(ctx, decimal_helper, uint64_t(g.insn.mnemonic) | (imm << 16));
}

// arpl r/m16, r16: if dest.RPL < src.RPL, dest.RPL = src.RPL and ZF = 1,
// else ZF = 0 (SDM vol. 2, ARPL); no other flag changes.
Status arpl(ExpandContext& ctx, const GuestInsn& g) {
  x86::Assembler& a = ctx.as();
  const ZydisDecodedOperand& dst = g.ops[0];
  const bool in_mem = dst.type == ZYDIS_OPERAND_TYPE_MEMORY;
  if (in_mem) {
    // Load, then store the same value back: a write fault happens here,
    // before ZF changes (precise faults; single vCPU, so nothing can change
    // the word in between).
    if (auto s = mem_move(ctx, dst, ZYDIS_REGISTER_R13W, false); !s) return s;
    if (auto s = mem_move(ctx, dst, ZYDIS_REGISTER_R13W, true); !s) return s;
  } else {
    a.mov(x86::r13w, host_gp(dst.reg.value));
  }
  a.movzx(x86::r14d, host_gp(g.ops[1].reg.value));
  a.pushfq();
  a.and_(x86::r14d, 3);
  a.mov(x86::r8d, x86::r13d);
  a.and_(x86::r8d, 3);
  Label no = a.newLabel(), done = a.newLabel();
  a.cmp(x86::r8d, x86::r14d);
  a.jae(no);
  a.and_(x86::r13d, ~3);
  a.or_(x86::r13d, x86::r14d);
  a.or_(x86::qword_ptr(x86::rsp), rf::ZF);
  a.popfq();
  if (in_mem) {
    if (auto s = mem_move(ctx, dst, ZYDIS_REGISTER_R13W, true); !s) return s;
  } else {
    a.mov(host_gp(dst.reg.value), x86::r13w);
  }
  a.jmp(done);
  a.bind(no);
  a.and_(x86::qword_ptr(x86::rsp), int32_t(~rf::ZF));
  a.popfq();
  a.bind(done);
  return Ok{};
}

}  // namespace

x86::Gp host_gp(ZydisRegister guest) {
  if (guest == ZYDIS_REGISTER_ESP) return x86::r12d;
  if (guest == ZYDIS_REGISTER_SP) return x86::r12w;
  const uint32_t id = uint32_t(ZydisRegisterGetId(guest));
  switch (ZydisRegisterGetClass(guest)) {
    case ZYDIS_REGCLASS_GPR8: return id >= 4 ? x86::Gp(x86::gpb_hi(id - 4)) : x86::Gp(x86::gpb_lo(id));
    case ZYDIS_REGCLASS_GPR16: return x86::gpw(id);
    default: return x86::gpd(id);
  }
}

uint32_t seg_base(const ExpandContext& ctx, ZydisRegister segment) {
  return ctx.block().seg_base[seg_index(segment)];
}

Status mem_move(ExpandContext& ctx, const ZydisDecodedOperand& mem, ZydisRegister reg, bool store) {
  auto b = encode_guest_mem_move(mem, reg, store, seg_base(ctx, mem.mem.segment));
  if (!b) return b.error();
  embed(ctx, b.value());
  return Ok{};
}

// rdtsc at CPL 0 with the guest TSC = host TSC + offset (the CPU model's
// guest_tsc): EDX:EAX = host TSC + *ctx.tsc_offset, 64-bit add. The shl/or/
// add/shr clobber RFLAGS, so they run inside pushfq/popfq; rdtsc itself
// changes no flag (SDM vol. 2, RDTSC). Nothing here can fault.
void rdtsc(ExpandContext& ctx) {
  x86::Assembler& a = ctx.as();
  a.pushfq();
  a.rdtsc();
  a.shl(x86::rdx, 32);
  a.or_(x86::rax, x86::rdx);
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kTscOffset));
  a.add(x86::rax, x86::qword_ptr(x86::r13));
  a.mov(x86::rdx, x86::rax);
  a.shr(x86::rdx, 32);
  a.popfq();
}

bool misc_kind(ExpandContext& ctx, const BlockInsn& insn, Status& result) {
  result = Ok{};
  switch (insn.kind) {
    case InsnKind::kInnocuous: embed(ctx, insn.host); return true;
    case InsnKind::kHighByteViaTemp: high_byte_via_temp(ctx, insn); return true;
    case InsnKind::kSegBaseAtRun: seg_base_at_run(ctx, insn); return true;
    case InsnKind::kHighByteEspReg: high_byte_esp_reg(ctx, insn); return true;
    case InsnKind::kStringBiased: string_biased(ctx, insn); return true;
    case InsnKind::kDecimal: decimal(ctx, insn.guest); return true;
    case InsnKind::kArpl: result = arpl(ctx, insn.guest); return true;
    case InsnKind::kRdtsc: rdtsc(ctx); return true;
    default: return false;
  }
}

}  // namespace expand

Status expand_insn(ExpandContext& ctx, const BlockInsn& insn) {
  Status s = Ok{};
  if (!expand::misc_kind(ctx, insn, s) && !expand::stack_kind(ctx, insn, s) && !expand::branch_kind(ctx, insn, s) &&
      !expand::segment_kind(ctx, insn, s))
    return make_error(std::string("no expansion for ") + insn_kind_name(insn.kind));
  if (!s) return s;
  // sti's shadow instruction (if it does not end the block): leave after it
  // if an interrupt is pending.
  if (insn.shadow_check && !ends_block(insn.kind)) emit_irq_check(ctx, insn.guest.next_eip());
  return Ok{};
}

}  // namespace bt86::translator
