// Differential test of the translator against the host CPU: random sequences
// of innocuous 32-bit instructions run once natively (runtime::DirectExecutor,
// compatibility mode) and once translated, from the same CpuState and memory;
// registers, the defined arithmetic flags, DF and the touched memory must be
// identical.
//
// Undefined flags: for each instruction Zydis' flag table says which flags it
// leaves undefined (e.g. OF after a shift by more than one, SF/ZF/AF/PF after
// mul/imul, AF after logic ops); a flag is compared only if the last
// instruction that touched it defined it. Values computed FROM an undefined
// flag (adc after mul, setcc, pushfd) are not masked: both runs use the same
// CPU, which produces the same undefined values for the same inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bt86::test {

struct DiffSummary {
  uint64_t sequences = 0;
  uint64_t instructions = 0;
  uint64_t mismatches = 0;
  uint64_t faults = 0;           // sequences that ended in a (generated) #PF or #DE, compared too
  std::string translated_kinds;  // how the translator handled the instructions (InsnKind: count)
  std::string first_mismatch;  // full report of the first one (empty if none)
};

// Runs sequences [0, count) of the given seed; stops at the first mismatch
// if stop_at_first.
DiffSummary run_difftest(uint64_t seed, uint64_t count, bool stop_at_first = true);

// The code of sequence `index` of `seed` (ends with int3); the fuzz mutates these.
std::vector<uint8_t> difftest_sequence(uint64_t seed, uint64_t index);

}  // namespace bt86::test
