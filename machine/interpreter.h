// The interpreter of sensitive instructions: decodes the instruction at
// CS:EIP (Zydis; 16- or 32-bit by CS.D), executes it architecturally and
// advances EIP, or delivers the exception it raises (interrupts.h). It is
// what the translator's callouts and direct execution's #GP exits end in
// (cli/sti, pushf/popf, in/out/ins/outs, hlt, mov CRn/DRn, descriptor-table
// instructions, lar/lsl/verr/verw, invlpg, cpuid, rdtsc, rdmsr/wrmsr,
// int n/int3/into/iret, far jmp/call/ret, segment-register loads and
// stores, pusha/popa, enter/leave). Anything else raises #UD (logged once
// per mnemonic and counted), never an abort.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>
#include <optional>
#include <string>

#include "machine/cpu_hooks.h"
#include "machine/interrupts.h"
#include "machine/linear_memory.h"
#include "machine/vcpu_state.h"

namespace bt86::machine {

enum class StepKind : uint8_t {
  kContinue,  // go on at CS:EIP (the next instruction, a far target, or a handler)
  kHalted,    // HLT executed: wait for an interrupt (state.halted is set)
  kShutdown,  // triple fault: stop the machine (StepResult::shutdown_reason)
};

struct ExecuteOptions {
  // What to deliver instead of #UD when the instruction is not one the
  // interpreter implements (e.g. the #GP a direct-execution exit carried).
  std::optional<GuestFault> unimplemented_fault;
  // The instruction at CS:EIP as the caller already decoded it (the
  // translator's callouts: the block it runs in was decoded from the same
  // bytes). Used instead of fetching and decoding again when it was decoded
  // in the current code and stack size and lies within the CS limit;
  // otherwise the interpreter fetches as usual. Saves a page walk and a
  // Zydis decode (about 150 ns) per callout.
  const ZydisDecodedInstruction* decoded = nullptr;
  // ZYDIS_MAX_OPERAND_COUNT entries, as ZydisDecoderDecodeFull writes them
  // (every slot, hidden operands included); read in place, not copied.
  const ZydisDecodedOperand* decoded_ops = nullptr;
};

struct StepResult {
  StepKind kind = StepKind::kContinue;
  bool delivered = false;      // an exception or INT n was delivered: CS:EIP is its handler
  Event event;                 // ... this one (after double-fault promotion)
  bool unimplemented = false;  // the instruction is not implemented (its fault was delivered)
  bool mode_changed = false;   // CPL, CR0.PE or CR0.PG changed: maybe switch execution engine
  bool paging_changed = false; // CR0.PG/WP, CR3 or CR4.PSE/PGE changed
  uint8_t length = 0;          // length of the decoded instruction (0 if it could not be fetched)
  std::string shutdown_reason;
};

StepResult execute(VcpuState& state, LinearMemory& mem, CpuHooks& hooks, const ExecuteOptions& options = {});

// How many instructions were refused as unimplemented since start-up.
uint64_t unimplemented_count();

}  // namespace bt86::machine
