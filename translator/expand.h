// Expansions: the host code for each InsnKind (block_builder.h). The block
// emitter owns the block's layout, exits and metadata; the expansion code in
// expand_*.cpp writes the body of one guest instruction through this
// interface:
//   expand_stack.cpp   push/pop (r/m/imm/sreg, sp), pushf/popf, cli/sti,
//                      pusha/popa, enter/leave, mov r/m, sreg
//   expand_branch.cpp  jmp/jcc/call/ret (32 and 16 bit, direct and indirect),
//                      loop/jcxz, callouts, into/bound
//   expand_misc.cpp    re-encoded instructions, AH..DH with ESP, string
//                      instructions with segment bases, BCD, salc, arpl
//   expand_segment.cpp segment-register loads (mov sreg, pop sreg) that
//                      complete inline when nothing changed
//
// Conventions (README.md "Register convention"): guest flags are live in host
// RFLAGS, so an expansion that needs flags for itself brackets them with
// pushfq/popfq; R13, R14 and R8-R11 are scratch; RSP is the host stack,
// 16-byte aligned at every guest instruction boundary.
#pragma once

#include <asmjit/x86.h>

#include "base/result.h"
#include "translator/block_builder.h"
#include "translator/context.h"

namespace bt86::translator {

class ExpandContext {
 public:
  virtual ~ExpandContext() = default;
  virtual asmjit::x86::Assembler& as() = 0;
  virtual const DecodedBlock& block() const = 0;
  // A direct exit to a guest EIP (chainable if reason is kBlockEnd).
  virtual void exit_to(uint32_t target, ExitReason reason) = 0;
  // Both arms of a conditional branch: jcc (x86 condition code cc) to
  // taken, otherwise to fall; chainable, the jcc itself is linked to the
  // taken block.
  virtual void exit_jcc(uint32_t cc, uint32_t taken, uint32_t fall) = 0;
  // The taken arm of a jcc inside a superblock (BlockInsn::side_exit): jcc
  // to an exit site laid out after the block's code, linked like exit_jcc's
  // (the jcc's own rel32 goes straight to the taken block); the fall-through
  // is the next host instruction.
  virtual void exit_side(uint32_t cc, uint32_t taken) = 0;
  // An exit to the guest EIP in R13D (ret, indirect jmp/call; in-TC lookup).
  virtual void exit_indirect() = 0;
  // A plain exit to the guest EIP in R13D with the given reason.
  virtual void exit_r13(ExitReason reason) = 0;
  // For a fault inside the current instruction's host code: the guest
  // register with x86 number reg (0 EAX .. 7 EDI) is saved whole in R13.
  virtual void borrowed_in_r13(int reg) { (void)reg; }
  // For a fault inside the current instruction's host code: ESI/EDI hold the
  // guest's values plus these (segment bases of a string instruction).
  virtual void string_bias(uint32_t esi_bias, uint32_t edi_bias) {
    (void)esi_bias;
    (void)edi_bias;
  }
};

// Writes the host code for one guest instruction (and, for kBranch kinds,
// its exits).
Status expand_insn(ExpandContext& ctx, const BlockInsn& insn);

// If IRQ is pending (TranslatorContext::irq_pending), leave with kIrqWindow
// to next_eip. Flags and registers are preserved.
void emit_irq_check(ExpandContext& ctx, uint32_t next_eip);

namespace expand {
// Per-file entry points (nullopt-like: return false if the kind is not theirs).
bool stack_kind(ExpandContext& ctx, const BlockInsn& insn, Status& result);
bool branch_kind(ExpandContext& ctx, const BlockInsn& insn, Status& result);
bool misc_kind(ExpandContext& ctx, const BlockInsn& insn, Status& result);
bool segment_kind(ExpandContext& ctx, const BlockInsn& insn, Status& result);

// Helpers shared by the expand_*.cpp files.
asmjit::x86::Gp host_gp(ZydisRegister guest);  // guest 8/16/32-bit register -> host register
// gs:[r12d + disp] with the guest SS base folded in.
asmjit::x86::Mem stack_slot(const ExpandContext& ctx, int32_t disp, uint32_t size);
// mov r13d/r13w <-> a guest memory operand (its segment base folded in).
Status mem_move(ExpandContext& ctx, const ZydisDecodedOperand& mem, ZydisRegister reg, bool store);
uint32_t seg_base(const ExpandContext& ctx, ZydisRegister segment);
// The jump to the callout stub for g (ends the path it is on).
void emit_callout(ExpandContext& ctx, const GuestInsn& g);
}  // namespace expand

}  // namespace bt86::translator
