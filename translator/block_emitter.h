// Block emitter: turns a DecodedBlock into 64-bit host code with AsmJit, at a
// known host address, and records the metadata later slices need: the host
// offset of every guest instruction boundary (precise faults) and every exit
// site (chaining patches these).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "translator/block_builder.h"
#include "translator/context.h"

namespace bt86::translator {

struct InsnBoundary {
  uint32_t host_offset;  // first host byte of the code for this guest instruction
  uint32_t guest_eip;
};

// One way out of a block. The exit sequence is
//   mov dword [r15+next_eip], target ; mov dword [r15+exit_reason], reason ; jmp exit_stub
// (at least 21 bytes): chaining will overwrite its start with a jmp rel32 to
// the target block once that exists. kIndirect exits have no fixed target.
struct ExitSite {
  uint32_t host_offset;
  uint32_t target_eip;
  ExitReason reason;
};

struct Block {
  uint32_t guest_eip = 0;
  uint32_t guest_end = 0;  // first guest byte after the block
  uint32_t guest_insns = 0;
  const uint8_t* host = nullptr;  // nullptr: the first instruction is not translated (stop_reason)
  uint32_t host_size = 0;
  BlockEnd end = BlockEnd::kStop;
  std::string stop_reason;
  std::vector<InsnBoundary> boundaries;  // ascending host_offset; the last one is the final exit
  std::vector<ExitSite> exits;

  // Guest EIP of the instruction whose host code contains host_offset.
  uint32_t guest_eip_at(uint32_t host_offset) const;
};

// Emits the block's host code as if placed at host_address, with exits that
// jump to exit_stub. Fills meta (not host/host_size) and returns the bytes.
Result<std::vector<uint8_t>> emit_block(const DecodedBlock& block, uint64_t host_address,
                                        uint64_t exit_stub, Block& meta);

}  // namespace bt86::translator
