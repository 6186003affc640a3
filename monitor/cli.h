// Command line of the bt86 executable, QEMU style: `bt86 [options] KERNEL`.
// Parsing only checks the syntax and value ranges; whether the files exist
// is the loaders' business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace bt86::monitor {

// Exit statuses of bt86 itself; 0..255 otherwise come from the guest's exit().
inline constexpr int kExitUsage = 2;       // bad command line or input file
inline constexpr int kExitHostFailure = 3; // the host refused a resource (mmap, seccomp...)
inline constexpr int kExitGuestError = 4;  // the guest faulted or did something bt86 cannot run

struct Module {
  std::string file;
  std::string cmdline;
};

struct Options {
  uint32_t memory_mib = 256;
  std::string kernel;
  std::optional<std::string> initrd;
  std::optional<std::string> append;
  std::string log_level = "warn";
  std::vector<Module> modules;
  // Guest user code: "auto" (direct, translated while a process traps
  // often), "direct" or "translated" (always).
  std::string user_code = "auto";
  bool stats = false;
  bool trace_bt = false;
  bool help = false;
};

class Cli {
 public:
  // Parses argv[1..]. The error message is one line without the "bt86: "
  // prefix, naming the offending option or value.
  static Result<Options> parse(const std::vector<std::string>& args);
  static std::string usage();
};

}  // namespace bt86::monitor
