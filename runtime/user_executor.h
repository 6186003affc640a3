// UserExecutor: "run guest user code until it exits". The monitor loop only
// sees this interface. DirectExecutor runs the code natively in this process
// (compatibility mode); a later implementation will run it in a stub process
// that maps only guest memory (DESIGN.md §6), and another may translate it.
#pragma once

#include "runtime/cpu_state.h"
#include "runtime/exit_record.h"

namespace bt86::runtime {

class UserExecutor {
 public:
  virtual ~UserExecutor() = default;
  // Runs from cpu until the first exit; cpu holds the exact guest state at it.
  virtual ExitRecord run(CpuState& cpu) = 0;
  // Makes the current or next run() return ExitKind::Preempted soon.
  // Async-signal-safe.
  virtual void request_exit() = 0;
};

}  // namespace bt86::runtime
