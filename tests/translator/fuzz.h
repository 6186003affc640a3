// Random-bytes fuzz of the translator: random bytes in the test machine's code
// page run as guest kernel code (callouts stop the run, as a CPU model that
// raises an exception would). Every run must end in a clean stop: a guest
// fault, a callout, an instruction left to the caller, the block budget or an
// exit request from the watchdog; never a crash, a hang, an internal error,
// or a fault outside the guest window.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace bt86::test {

struct FuzzSummary {
  uint64_t runs = 0;
  uint64_t blocks = 0;            // blocks translated
  uint64_t guest_insns = 0;       // guest instructions translated
  std::map<std::string, uint64_t> stops;  // RunStop name -> runs
  uint64_t failures = 0;
  std::string first_failure;      // the guest bytes and what went wrong
};

// Runs `count` random code pages of the given seed.
FuzzSummary run_fuzz(uint64_t seed, uint64_t count);

}  // namespace bt86::test
