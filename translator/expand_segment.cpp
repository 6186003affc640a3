// Segment-register loads in translated kernel code (InsnKind::kSegLoad:
// mov ds/es/fs/gs, r/m16 and pop ds/es/fs/gs; README "Fast segment loads").
//
// A Linux system call, exception or interrupt loads DS, ES and FS on entry
// and pops FS, DS, ES (and GS) on exit: as callouts that is 6-8 round trips
// into the CPU model (~150-200 ns each) for loads that almost always repeat
// the previous one. The expansion remembers completed loads per segment
// register (TranslatorContext::seg_loads, filled by the translator after the
// CPU model did the load with all its checks) and replays one when its
// selector matches and its GDT descriptor still has the same 8 bytes.
// Everything else goes to the callout exactly as before.
//
// verw (InsnKind::kVerw) works the same way: Linux runs it on every return
// to user mode (MDS buffer clearing) on the same selector; its only effect
// is ZF, a function of the selector, the descriptor bytes, CPL 0 and the
// GDTR, so a remembered result (TranslatorContext::verw) is replayed while
// the descriptor bytes are unchanged.
#include <cstddef>

#include "runtime/cpu_state.h"
#include "translator/expand.h"

namespace bt86::translator::expand {
namespace {

using namespace asmjit;

constexpr int32_t kEntrySize = int32_t(sizeof(SegLoadEntry));
constexpr int32_t kCacheOff = int32_t(offsetof(SegLoadEntry, cache));

int32_t ctx_offset_of_entry(runtime::Seg s, int way) {
  return int32_t(offsetof(TranslatorContext, seg_loads)) + (int32_t(s) * kSegLoadWays + way) * kEntrySize;
}

int32_t cpu_seg_offset(runtime::Seg s) {
  return int32_t(offsetof(runtime::CpuState, seg) + size_t(s) * sizeof(runtime::SegmentCache));
}

// The 16-bit register of a guest 16- or 32-bit general register (mov ds, eax
// loads AX).
ZydisRegister reg16(ZydisRegister r) {
  if (ZydisRegisterGetClass(r) == ZYDIS_REGCLASS_GPR32) return ZydisRegister(ZYDIS_REGISTER_AX + (r - ZYDIS_REGISTER_EAX));
  return r;
}

// The 16-bit selector of a register or memory operand into R13D
// (zero-extended); a memory read may fault, precisely.
Status selector_operand(ExpandContext& ctx, const ZydisDecodedOperand& src) {
  x86::Assembler& a = ctx.as();
  if (src.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    a.movzx(x86::r13d, host_gp(reg16(src.reg.value)));
    return Ok{};
  }
  ZydisDecodedOperand m = src;
  m.size = 16;
  if (auto st = mem_move(ctx, m, ZYDIS_REGISTER_R13W, false); !st) return st;
  a.movzx(x86::r13d, x86::r13w);
  return Ok{};
}

// R14 = the first of `ways` remembered entries (at R15 + first, `stride`
// apart, key at key_off) whose key is R13D, then `found`; else `miss`.
void find_entry(x86::Assembler& a, int32_t first, int32_t stride, int32_t key_off, int ways, Label found,
                Label miss) {
  for (int way = 0; way < ways; ++way) {
    a.lea(x86::r14, x86::ptr(x86::r15, first + way * stride));
    a.cmp(x86::dword_ptr(x86::r14, key_off), x86::r13d);
    a.je(found);
  }
  a.jmp(miss);
}

// The descriptor as it is now (at the entry's desc_address, read through the
// guest window with the guest's flags live: a host fault is a guest #PF at
// its linear address, at this instruction) equal to the entry's bytes, else
// `miss`. Runs between pushfq/popfq pairs: leaves the guest flags pushed.
void descriptor_unchanged(x86::Assembler& a, int32_t desc_address_off, int32_t desc_off, Label miss) {
  a.mov(x86::r9d, x86::dword_ptr(x86::r14, desc_address_off));
  a.popfq();
  x86::Mem desc = x86::qword_ptr(x86::r9d);
  desc.setSegment(x86::gs);
  a.mov(x86::r9, desc);
  a.pushfq();
  a.cmp(x86::r9, x86::qword_ptr(x86::r14, desc_off));
  a.jne(miss);
}

// What the slow path (the callout) does that this path must reproduce:
//   the CPU model checks and loads the selector, sets the descriptor's
//   accessed bit, writes CpuState::seg[s] and, for pop, ESP += operand size;
//   then run() resyncs the translator with CpuState before the next block
//   (sync_segments): translations that folded the segment's base or assumed
//   its flatness are dropped if either changed, TranslatorContext::seg_checked
//   is rewritten from the new flatness.
// This path writes the same SegmentCache (recorded from such a completed
// load of the same selector, with the same descriptor bytes, at CPL 0 under
// the same GDTR: the checks are a function of exactly these), needs no
// accessed-bit write (recorded entries have it set), and writes
// seg_checked[s] as run() would. It is taken for a segment that live
// translations depend on (seg_pinned: its base folded in, or its flatness
// assumed) only when the base and the flatness stay what they are, so
// sync_segments would drop nothing; for other segments nothing depends on
// the old values and the next sync just records the new ones.
//
// Precise faults: the selector read (memory operand, [esp] for pop) and the
// descriptor read are the only accesses that may fault; both run with the
// guest's flags live in RFLAGS, the host stack balanced and no guest
// register changed, so the fault handler's state is the state before the
// instruction. Comparisons run inside pushfq/popfq.
Status seg_load(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  const GuestInsn& g = insn.guest;
  const runtime::Seg s = runtime::Seg(insn.seg);
  const bool pop = g.insn.mnemonic == ZYDIS_MNEMONIC_POP;
  const uint32_t w = g.insn.operand_width / 8;

  // 1. The selector into R13D (zero-extended). POP reads operand-size bytes,
  // as the CPU model does.
  if (pop) {
    if (w == 2) {
      a.movzx(x86::r13d, stack_slot(ctx, 0, 2));
    } else {
      a.mov(x86::r13d, stack_slot(ctx, 0, 4));
      a.movzx(x86::r13d, x86::r13w);
    }
  } else if (auto st = selector_operand(ctx, g.ops[1]); !st) {
    return st;
  }

  Label found = a.newLabel(), unpinned = a.newLabel(), commit = a.newLabel(), miss = a.newLabel(),
        done = a.newLabel();
  // 2. The remembered load of this selector (R14 = its entry).
  a.pushfq();
  a.or_(x86::r13d, 0x10000);
  find_entry(a, ctx_offset_of_entry(s, 0), int32_t(sizeof(SegLoadEntry)), int32_t(offsetof(SegLoadEntry, key)),
             kSegLoadWays, found, miss);
  a.bind(found);
  // A segment translations depend on keeps its base and flatness.
  a.cmp(x86::byte_ptr(x86::r15, int32_t(offsetof(TranslatorContext, seg_pinned)) + int32_t(s)), 0);
  a.je(unpinned);
  a.mov(x86::r10, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.mov(x86::r11d, x86::dword_ptr(x86::r10, cpu_seg_offset(s) + int32_t(offsetof(runtime::SegmentCache, base))));
  a.cmp(x86::r11d, x86::dword_ptr(x86::r14, kCacheOff + int32_t(offsetof(runtime::SegmentCache, base))));
  a.jne(miss);
  a.movzx(x86::r11d, x86::byte_ptr(x86::r15, ctx_off::kSegChecked + int32_t(s)));
  a.cmp(x86::r11b, x86::byte_ptr(x86::r14, int32_t(offsetof(SegLoadEntry, checked))));
  a.jne(miss);
  a.bind(unpinned);
  // A null selector reads no descriptor (SDM vol. 2, MOV: DS/ES/FS/GS).
  a.cmp(x86::byte_ptr(x86::r14, int32_t(offsetof(SegLoadEntry, null_selector))), 0);
  a.jne(commit);
  // 3. The descriptor as it is now, through the guest window like any
  // supervisor access of the guest.
  descriptor_unchanged(a, int32_t(offsetof(SegLoadEntry, desc_address)), int32_t(offsetof(SegLoadEntry, desc)), miss);
  // 4. Commit: the segment register, its flatness for kSegBaseAtRun, ESP.
  a.bind(commit);
  a.mov(x86::r10, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.mov(x86::r11, x86::qword_ptr(x86::r14, kCacheOff));
  a.mov(x86::qword_ptr(x86::r10, cpu_seg_offset(s)), x86::r11);
  a.mov(x86::r11, x86::qword_ptr(x86::r14, kCacheOff + 8));
  a.mov(x86::qword_ptr(x86::r10, cpu_seg_offset(s) + 8), x86::r11);
  a.movzx(x86::r11d, x86::byte_ptr(x86::r14, int32_t(offsetof(SegLoadEntry, checked))));
  a.mov(x86::byte_ptr(x86::r15, ctx_off::kSegChecked + int32_t(s)), x86::r11b);
  a.inc(x86::qword_ptr(x86::r15, int32_t(offsetof(TranslatorContext, seg_fast_loads))));
  a.popfq();
  if (pop) a.lea(x86::r12d, x86::ptr(x86::r12d, int32_t(w)));
  a.jmp(done);
  // Anything else: the callout, with the guest state as before the instruction.
  a.bind(miss);
  a.inc(x86::qword_ptr(x86::r15, int32_t(offsetof(TranslatorContext, seg_slow_loads))));
  a.popfq();
  emit_callout(ctx, g);
  a.bind(done);
  return Ok{};
}

int32_t ctx_offset_of_verw(int way) {
  return int32_t(offsetof(TranslatorContext, verw)) + way * int32_t(sizeof(VerwEntry));
}

// verw r/m16 (SDM vol. 2, VERR/VERW): ZF = 1 if the selector is non-null,
// inside the GDT/LDT limit, a writable data segment and DPL >= max(CPL,
// RPL); ZF = 0 otherwise; no other flag, no register changes. The callout
// path: the CPU model reads the operand and the descriptor (either may #PF)
// and sets ZF. This path: the operand into R13D; an entry remembered from
// such a completed callout for this selector (recorded only for null and
// GDT selectors, under the same GDTR, at CPL 0: set_gdt() forgets them);
// the descriptor as it is now equal to the remembered bytes; then only ZF
// in the saved RFLAGS image changes. The operand read and the descriptor
// read run with the guest flags live and nothing changed, so a fault there
// is precise (the state before the instruction), as for seg_load.
Status verw(ExpandContext& ctx, const BlockInsn& insn) {
  x86::Assembler& a = ctx.as();
  const GuestInsn& g = insn.guest;
  if (auto st = selector_operand(ctx, g.ops[0]); !st) return st;
  Label found = a.newLabel(), commit = a.newLabel(), miss = a.newLabel(), done = a.newLabel();
  a.pushfq();
  a.or_(x86::r13d, 0x10000);
  find_entry(a, ctx_offset_of_verw(0), int32_t(sizeof(VerwEntry)), int32_t(offsetof(VerwEntry, key)), kVerwWays,
             found, miss);
  a.bind(found);
  a.cmp(x86::byte_ptr(x86::r14, int32_t(offsetof(VerwEntry, no_read))), 0);
  a.jne(commit);
  descriptor_unchanged(a, int32_t(offsetof(VerwEntry, desc_address)), int32_t(offsetof(VerwEntry, desc)), miss);
  // ZF (bit 6) of the saved guest flags, nothing else.
  a.bind(commit);
  a.and_(x86::qword_ptr(x86::rsp), ~int32_t(0x40));
  a.mov(x86::r11d, x86::dword_ptr(x86::r14, int32_t(offsetof(VerwEntry, zf))));
  a.or_(x86::qword_ptr(x86::rsp), x86::r11);
  a.inc(x86::qword_ptr(x86::r15, int32_t(offsetof(TranslatorContext, verw_fast))));
  a.popfq();
  a.jmp(done);
  a.bind(miss);
  a.inc(x86::qword_ptr(x86::r15, int32_t(offsetof(TranslatorContext, verw_slow))));
  a.popfq();
  emit_callout(ctx, g);
  a.bind(done);
  return Ok{};
}

}  // namespace

bool segment_kind(ExpandContext& ctx, const BlockInsn& insn, Status& result) {
  result = Ok{};
  if (insn.kind == InsnKind::kSegLoad) {
    result = seg_load(ctx, insn);
    return true;
  }
  if (insn.kind == InsnKind::kVerw) {
    result = verw(ctx, insn);
    return true;
  }
  return false;
}

}  // namespace bt86::translator::expand
