// TickTimer: the preemption tick. It sends the runtime's tick signal to the
// thread that first starts or arms it; the signal stops whichever engine
// runs there (direct execution returns ExitKind::Preempted, translated code
// leaves at its next block exit), so the monitor can look at its devices.
//
// Two ways to drive it: a fixed period (start), or one shot at a time the
// caller picks (arm_at), which lets a machine stop its guest only when a
// device needs it (a timer interrupt due, console input to feed) instead of
// on every period: each tick costs a host signal and a round trip through
// the run loop, and at 1 kHz that was 2-3% of a compute-bound guest.
#pragma once

#include <chrono>
#include <cstdint>

#include "base/result.h"

namespace bt86::runtime {

class TickTimer {
 public:
  TickTimer() = default;
  ~TickTimer();
  TickTimer(const TickTimer&) = delete;
  TickTimer& operator=(const TickTimer&) = delete;

  // Every `period` from now on, until stop() or arm_at().
  Status start(std::chrono::microseconds period);
  // Once, at CLOCK_MONOTONIC time `monotonic_ns` (at once if that has
  // passed), replacing whatever was armed. A system call: callers that ask
  // often should keep the armed time and re-arm only when it must move.
  Status arm_at(uint64_t monotonic_ns);
  void stop();
  // Makes the host timer now, unarmed, for this thread (start and arm_at
  // do it on first use): a caller that must not run without ticks learns
  // at start-up that it cannot have them.
  Status create();

 private:

  void* m_timer = nullptr;  // a kernel timer id: the first one a process makes is 0
  bool m_created = false;
  bool m_running = false;
};

}  // namespace bt86::runtime
