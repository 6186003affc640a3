// LinearMemory: the guest's linear address space as the CPU sees it, paging
// and its protection applied (the MMU implements it; tests may use a flat
// array). The CPU model uses it for every memory access it makes on the
// guest's behalf: descriptor and IDT/TSS reads, interrupt frames, string I/O,
// the operands of the instructions it interprets.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "machine/vcpu_state.h"

namespace bt86::machine {

enum class Access : uint8_t { kRead, kWrite, kFetch };

class LinearMemory {
 public:
  virtual ~LinearMemory() = default;

  // Reads or writes at linear address `lin` (the access may cross a page).
  // `user` is true for an access made with CPL 3 privilege; implicit
  // supervisor accesses (descriptor tables, TSS, IDT) pass false whatever
  // the CPL. On failure nothing is written and the #PF (vector, error code,
  // CR2) is returned; accessed and dirty bits are set as hardware sets them.
  virtual std::optional<GuestFault> read(uint32_t lin, std::span<uint8_t> out, Access kind,
                                         bool user) = 0;
  virtual std::optional<GuestFault> write(uint32_t lin, std::span<const uint8_t> in, bool user) = 0;
};

}  // namespace bt86::machine
