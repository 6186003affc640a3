// A minimal machine for direct-execution tests: guest RAM, the guest window
// at host address 0 and one DirectExecutor, shared by every test in the
// process (only one window and one executor can exist). Guest layout:
//   0x00400000  code (64 KiB, read+exec)     0x00500000 data (64 KiB, rw)
//   0x00600000  stack (64 KiB, rw)           0x00700000 never mapped
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>
#include <span>

#include "mmu/guest_memory.h"
#include "mmu/guest_window.h"
#include "runtime/direct_executor.h"

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

struct TestMachine {
  std::optional<mmu::GuestMemory> memory;
  std::optional<mmu::GuestWindow> window;
  std::unique_ptr<runtime::DirectExecutor> executor;

  static TestMachine& get() {
    static TestMachine* m = [] {
      auto* t = new TestMachine;
      auto mem = mmu::GuestMemory::create(16);
      if (!mem) { ADD_FAILURE() << mem.error().message; std::abort(); }
      t->memory.emplace(std::move(mem.value()));
      auto win = mmu::GuestWindow::reserve(*t->memory, 0);
      if (!win) { ADD_FAILURE() << win.error().message; std::abort(); }
      t->window.emplace(std::move(win.value()));
      using mmu::GuestPhys, mmu::GuestVirt, mmu::Prot;
      auto ok = t->window->map(GuestVirt(kCode), GuestPhys(kCodePa), kRegion, Prot::ReadExec) &&
                t->window->map(GuestVirt(kData), GuestPhys(kDataPa), kRegion, Prot::ReadWrite) &&
                t->window->map(GuestVirt(kStack), GuestPhys(kStackPa), kRegion, Prot::ReadWrite);
      if (!ok) std::abort();
      runtime::DirectConfig config;
      config.segment_boundary = 0xC0000000;
      config.tick_period = std::chrono::microseconds(2000);
      auto ex = runtime::DirectExecutor::create(config);
      if (!ex) { ADD_FAILURE() << ex.error().message; std::abort(); }
      t->executor = std::move(ex.value());
      return t;
    }();
    return *m;
  }

  uint8_t* data() { return memory->host(mmu::GuestPhys(kDataPa), kRegion); }

  static CpuState initial_state() { return CpuState::flat_user(kCode, kStackTop); }

  // Loads code at kCode and runs until an exit that is not a preemption
  // tick (ticks are a legitimate exit at any point; the code just resumes).
  ExitRecord run(std::span<const uint8_t> code, CpuState& cpu, bool stop_on_tick = false) {
    std::memcpy(memory->host(mmu::GuestPhys(kCodePa), kRegion), code.data(), code.size());
    for (;;) {
      ExitRecord x = executor->run(cpu);
      if (x.kind != ExitKind::Preempted || stop_on_tick) return x;
    }
  }
};

}  // namespace bt86::test
