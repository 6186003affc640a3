// Time for devices that count it (the 8254 PIT). Devices never read a host
// clock directly: they are handed a NowFn, so that the monitor gives them
// CLOCK_MONOTONIC and tests give them a clock they step by hand.
#pragma once

#include <cstdint>
#include <functional>

namespace bt86::devices {

// Nanoseconds since an arbitrary fixed origin; never goes backwards.
using NowFn = std::function<uint64_t()>;

// CLOCK_MONOTONIC in nanoseconds.
uint64_t monotonic_now_ns();

// A deadline meaning "nothing is scheduled".
inline constexpr uint64_t kNoDeadline = UINT64_MAX;

}  // namespace bt86::devices
