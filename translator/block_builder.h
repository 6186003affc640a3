// Block builder: decodes one guest basic block and decides, instruction by
// instruction, how each one will be translated (re-encoded as is, expanded,
// or not handled: the block then ends before it).
//
// A block ends after control flow (jmp, jcc, call, ret), before anything the
// translator does not handle (privileged or sensitive instructions, far
// transfers, loop/jcxz, int n, segment overrides with non-flat segments...),
// at a guest page boundary, or at a length cap.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "translator/code_reader.h"
#include "translator/reencoder.h"

namespace bt86::translator {

enum class InsnKind : uint8_t {
  kInnocuous,        // re-encoded one-for-one (host bytes in BlockInsn::host)
  kHighByteViaTemp,  // AH..DH with an ESP-based memory operand: address via a temp register
  kPush,             // push r/m/imm (16 or 32 bit)
  kPop,              // pop r/m (16 or 32 bit)
  kPushfd,
  kPopfd,
  kJmp,              // direct near jmp: ends the block
  kJcc,              // direct conditional branch: ends the block
  kCall,             // direct near call: ends the block
  kRet,              // near ret [imm16]: ends the block
  kJmpIndirect,      // jmp r/m32: ends the block
  kCallIndirect,     // call r/m32: ends the block
};

inline constexpr int kInsnKindCount = int(InsnKind::kCallIndirect) + 1;
const char* insn_kind_name(InsnKind kind);
inline bool ends_block(InsnKind k) { return k >= InsnKind::kJmp; }

struct BlockInsn {
  GuestInsn guest;
  InsnKind kind = InsnKind::kInnocuous;
  HostBytes host;                            // kInnocuous, kHighByteViaTemp
  ZydisRegister temp = ZYDIS_REGISTER_NONE;  // kHighByteViaTemp: 32-bit guest register borrowed
  uint32_t target = 0;                       // kJmp, kJcc, kCall
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
};

struct BuildOptions {
  uint32_t max_insns = 64;
  // All six guest segment bases are zero: explicit segment overrides are
  // harmless and dropped. Otherwise an instruction with one ends the block.
  bool flat_segments = true;
};

DecodedBlock build_block(const GuestCodeReader& reader, uint32_t eip, const BuildOptions& options);

}  // namespace bt86::translator
