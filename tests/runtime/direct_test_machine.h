// A minimal machine for direct-execution tests: guest RAM, the guest window
// at host address 0 and one DirectExecutor, shared by every test in the
// process (only one window and one executor can exist). Guest layout:
//   0x00400000  code (64 KiB, read+exec)     0x00500000 data (64 KiB, rw)
//   0x00600000  stack (64 KiB, rw)           0x00700000 never mapped
#pragma once

#include <chrono>
#include <cstring>
#include <span>

#include "tests/runtime/direct_machine.h"

namespace bt86::test {

using runtime::CpuState;
using runtime::ExitKind;
using runtime::ExitRecord;
using runtime::Seg;
using runtime::SegmentCache;

inline constexpr uint32_t kCode = 0x00400000, kData = 0x00500000, kStack = 0x00600000;
inline constexpr uint32_t kStackTop = 0x00610000, kUnmapped = 0x00700000;
inline constexpr uint32_t kCodePa = 0x100000, kDataPa = 0x200000, kStackPa = 0x300000;
inline constexpr uint32_t kRegion = 0x10000;

struct TestMachine : DirectMachine {
  static TestMachine& get() {
    static TestMachine* m = [] {
      auto* t = new TestMachine;
      using mmu::Prot;
      runtime::DirectConfig config;
      config.segment_boundary = 0xC0000000;
      config.tick_period = std::chrono::microseconds(2000);
      t->build({{kCode, kCodePa, kRegion, Prot::ReadExec},
                {kData, kDataPa, kRegion, Prot::ReadWrite},
                {kStack, kStackPa, kRegion, Prot::ReadWrite}},
               config);
      return t;
    }();
    return *m;
  }

  uint8_t* code() { return host(kCodePa, kRegion); }
  uint8_t* data() { return host(kDataPa, kRegion); }

  // Copies code to kCode.
  void load(std::span<const uint8_t> bytes) { std::memcpy(code(), bytes.data(), bytes.size()); }

  static CpuState initial_state() { return CpuState::flat_user(kCode, kStackTop); }

  // Loads code at kCode and runs until an exit that is not a preemption
  // tick (ticks are a legitimate exit at any point; the code just resumes).
  ExitRecord run(std::span<const uint8_t> bytes, CpuState& cpu, bool stop_on_tick = false) {
    load(bytes);
    for (;;) {
      ExitRecord x = executor->run(cpu);
      if (x.kind != ExitKind::Preempted || stop_on_tick) return x;
    }
  }
};

}  // namespace bt86::test
