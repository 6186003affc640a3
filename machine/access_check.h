// Checked execution of guest kernel code: what has to be decided before one
// instruction runs when translated code cannot be trusted to behave like the
// hardware (machine/README.md "Checked execution"):
//   - the segment limit and type checks of every memory access it makes
//     (SDM vol. 3, 5.3 limits incl. expand-down, 5.4 types; #SS(0) for SS,
//     #GP(0) otherwise; a null segment is #GP(0)), and the CS limit;
//   - DR0-DR3 execute breakpoints (SDM vol. 3, 17.2.4, 17.3.1.1).
// The instruction itself then runs from a one-instruction translation
// (Translator::run_one) or the interpreter.
#pragma once

#include <cstdint>
#include <optional>

#include "machine/descriptors.h"
#include "machine/linear_memory.h"
#include "machine/vcpu_state.h"

namespace bt86::machine {

struct InsnCheck {
  bool decoded = false;    // false: the bytes could not be fetched or decoded (run it: its fault comes out)
  uint8_t length = 0;
  bool interpret = false;  // leave it to the interpreter, which checks its own accesses (sti, iret,
                           // int n, far transfers, segment loads, ins/outs, enter with nesting)
  Fault fault;             // raise this at the instruction before anything of it runs
  // A rep string instruction whose later iterations fault: run only this many
  // iterations (ECX = rep_iterations), then raise `fault` at the instruction
  // with ECX counting the rest, unless the rep condition ended it first.
  std::optional<uint32_t> rep_iterations;
  uint32_t rep_count = 0;  // ECX (or CX) before the instruction
  bool repe = false, repne = false;  // cmps/scas with a repe/repne prefix (ZF may end them)
};

// Decodes the instruction at CS:EIP (CPL 0, 32- or 16-bit code) and checks
// its memory accesses and the CS limit. Pure: changes nothing.
InsnCheck check_instruction(const VcpuState& state, LinearMemory& mem);

// DR7 has an enabled (L or G) breakpoint with R/W = 00 (instruction).
bool execute_breakpoints_armed(const SystemRegs& sys);
// The DR6 B0-B3 bits of the enabled execute breakpoints at linear address lin.
uint32_t execute_breakpoint_hits(const SystemRegs& sys, uint32_t lin);

}  // namespace bt86::machine
