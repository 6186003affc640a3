// Block builder: decodes one guest basic block and decides, instruction by
// instruction, how each one will be translated (re-encoded as is, expanded,
// or not handled: the block then ends before it).
//
// A block ends after control flow (jmp, jcc, call, ret, loop, callouts),
// before anything the translator does not handle, at a guest page boundary, or
// at a length cap. Sensitive and privileged instructions become callouts when
// a CalloutHandler is set (callout.h), otherwise they end the block before
// themselves (kNeedsInterpretation).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/cpu_state.h"
#include "translator/code_reader.h"
#include "translator/reencoder.h"

namespace bt86::translator {

class CalloutRuntime;

enum class InsnKind : uint8_t {
  kInnocuous,        // re-encoded one-for-one (host bytes in BlockInsn::host)
  kHighByteViaTemp,  // AH..DH with an ESP-based memory operand: address via a temp register
  kPush,             // push r/m/imm (16 or 32 bit)
  kPop,              // pop r/m (16 or 32 bit)
  kPushfd,           // pushf / pushfd (16 or 32 bit)
  kPopfd,            // popf / popfd (16 or 32 bit): IF and IOPL too (CPL 0)
  kCli,
  kSti,              // IF = 1; the next instruction runs, then leave if an IRQ is pending
  kPushSreg,         // push es/cs/ss/ds/fs/gs: the selector from CpuState
  kMovFromSreg,      // mov r/m, sreg
  kPopSp,            // pop sp (16 bit)
  kPusha,            // pusha / pushad
  kPopa,             // popa / popad
  kEnter,
  kLeave,
  kDecimal,          // daa das aaa aas aam aad salc (exact, flag for flag)
  kArpl,
  kBound,            // in range: nothing; out of range: callout (#BR)
  kInto,             // OF clear: nothing; set: callout (#OF)
  kStringBiased,     // string instruction with a non-zero DS/ES/override base
  kHighByteEspReg,   // AH..DH together with ESP/SP as a register operand
  kSegBaseAtRun,     // FS/GS memory operand: the segment base is read from CpuState at run time
  kRdtsc,            // rdtsc inline: host TSC + the owner's offset (BuildOptions::inline_rdtsc)
  kSegLoad,          // mov ds/es/fs/gs, r/m16 or pop ds/es/fs/gs: inline when remembered, else callout
  kVerw,             // verw r/m16: ZF from a remembered result when the descriptor is unchanged, else callout
  kJmp,              // direct near jmp: ends the block
  kJcc,              // direct conditional branch: ends the block
  kCall,             // direct near call: ends the block
  kRet,              // near ret [imm16]: ends the block
  kJmpIndirect,      // jmp r/m32: ends the block
  kCallIndirect,     // call r/m32: ends the block
  kBranch16,         // 16-bit operand size jmp/jcc/call/ret/jmp r/m16/call r/m16: ends the block
  kLoop,             // loop loope loopne jcxz jecxz: ends the block
  kCallout,          // a call into the CalloutHandler: ends the block
};

inline constexpr int kInsnKindCount = int(InsnKind::kCallout) + 1;
const char* insn_kind_name(InsnKind kind);
inline bool ends_block(InsnKind k) { return k >= InsnKind::kJmp; }
constexpr uint8_t seg_bit(runtime::Seg s) { return uint8_t(1u << int(s)); }
// The runtime::Seg of a Zydis segment register (ES for anything else).
runtime::Seg seg_of(ZydisRegister r);

struct BlockInsn {
  BlockInsn() = default;
  // guest.insn/ops unwritten: a decode32 into guest must follow (GuestInsn::kNoZero).
  explicit BlockInsn(GuestInsn::NoZero no_zero) : guest(no_zero) {}

  GuestInsn guest;
  InsnKind kind = InsnKind::kInnocuous;
  HostBytes host;                            // kInnocuous, kHighByteViaTemp
  ZydisRegister temp = ZYDIS_REGISTER_NONE;  // kHighByteViaTemp: 32-bit guest register borrowed
  uint32_t target = 0;                       // kJmp, kJcc, kCall, kBranch16 (direct), kLoop
  uint8_t seg = 0;                           // kSegBaseAtRun: the runtime::Seg whose base is added;
                                             // kSegLoad: the runtime::Seg loaded
  bool shadow_check = false;                 // after this instruction: leave if an IRQ is pending (sti)
  bool side_exit = false;                    // kJcc inside the block (BuildOptions::superblocks): only
                                             // the taken arm leaves, the fall-through continues inline
};

enum class BlockEnd : uint8_t {
  kBranch,       // the last instruction is control flow
  kFallThrough,  // page boundary or length cap: continue at end_eip
  kStop,         // end_eip holds an instruction this slice does not translate (stop_reason)
};

struct DecodedBlock {
  uint32_t eip = 0;
  std::vector<BlockInsn> insns;
  BlockEnd end = BlockEnd::kStop;
  uint32_t end_eip = 0;     // first guest byte after the block's last instruction
  std::string stop_reason;  // kStop: why (for logs and stats)
  // Guest segment bases the block was translated with (folded into its
  // memory operands), and which of them it used (bit per runtime::Seg).
  std::array<uint32_t, runtime::kNumSegs> seg_base{};
  uint8_t seg_used = 0;
  // Segments the block's memory accesses were translated as flat for (or
  // stopped before because they were not: BuildOptions::checked_segs), bit
  // per runtime::Seg; FS/GS read at run time (kSegBaseAtRun) are not in it.
  uint8_t seg_flat = 0;
  bool seg_guards = false;  // BuildOptions::seg_guards
  CalloutRuntime* callouts = nullptr;  // kCallout instructions go here
};

struct BuildOptions {
  uint32_t max_insns = 64;
  // The current guest segment bases (indexed by runtime::Seg). Bases of the
  // segments an instruction uses are folded into its addresses as constants.
  std::array<uint32_t, runtime::kNumSegs> seg_base{};
  // Set: sensitive and privileged instructions become kCallout. Null: they
  // end the block before themselves.
  CalloutRuntime* callouts = nullptr;
  // Segments (bit per runtime::Seg) that are not flat: a memory access
  // through one ends the block before it ("segment needs limit/type checks"),
  // except FS/GS operands whose base is read at run time, which check
  // TranslatorContext::seg_checked at run time instead.
  uint8_t checked_segs = 0;
  // kSegBaseAtRun instructions test TranslatorContext::seg_checked first.
  bool seg_guards = false;
  // x87/MMX/SSE instructions (fpu_state_insn) end the block before them: the
  // guest's CR0.TS/EM or CR4.OSFXSR make them fault (#NM/#UD), which the
  // host FPU would not do (Translator::set_fpu_checked).
  bool fpu_checked = false;
  // rdtsc becomes kRdtsc (host TSC + *TranslatorContext::tsc_offset) instead
  // of a callout. CPL 0 only: CR4.TSD never faults there (SDM vol. 2, RDTSC).
  bool inline_rdtsc = false;
  // With callouts: loads of DS, ES, FS and GS (mov sreg, r/m; pop sreg)
  // become kSegLoad, which completes inline when TranslatorContext::seg_loads
  // remembers the selector and its descriptor is unchanged, and calls out
  // otherwise. verw becomes kVerw the same way (TranslatorContext::verw).
  // CPL 0 only (the entries were filled at CPL 0).
  bool fast_segment_loads = false;
  // CPL 3 code (TranslatorConfig::user_mode): pushf, popf, cli and sti call
  // out, because what they do with IF and IOPL depends on CPL and IOPL (SDM
  // vol. 2, POPF; vol. 1, 3.4.3.3), which the CPU model knows. Needs callouts.
  bool user_mode = false;
  // A direct conditional branch does not end the block: its taken arm becomes
  // a side exit and decoding goes on at its fall-through (same page, same
  // instruction cap), so that a loop whose body holds a rarely taken jcc is
  // one block (README "Superblocks").
  bool superblocks = false;
};

// An instruction that may raise #NM or #UD because of CR0.TS/EM/MP or
// CR4.OSFXSR (SDM vol. 3, table 2-2; vol. 2 "Protected Mode Exceptions"):
// x87 (fwait included), MMX, fxsave/fxrstor and SSE..SSE4.
bool fpu_state_insn(const ZydisDecodedInstruction& i);

// An instruction that reads or writes the x87, MMX, SSE or AVX state (any
// register of those files, MXCSR, the x87 control/status/tag words, or the
// whole state as fxsave/xsave do): it must run with the guest's state
// loaded (EmitOptions::lazy_fpu). Errs on the side of yes.
bool uses_fpu_state(const GuestInsn& g);

// DecodedBlock::stop_reason when not even the first byte could be read (the
// page is not present, or not accessible at the translator's privilege):
// the guest may make it readable at any time, so this is never cached.
inline constexpr const char* kCodeNotReadable = "code not readable";

DecodedBlock build_block(const GuestCodeReader& reader, uint32_t eip, const BuildOptions& options);

}  // namespace bt86::translator
