// The smallest machine that runs guest user code directly: guest RAM, the
// guest window at host address 0, a few regions mapped into it, and one
// runtime::DirectExecutor. Shared by the direct-execution tests
// (direct_test_machine.h) and the benchmarks in bench/, which differ only in
// their layout and executor settings. Only one window and one executor can
// exist per process, so each user keeps a single instance for good.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "mmu/guest_memory.h"
#include "mmu/guest_window.h"
#include "runtime/direct_executor.h"

namespace bt86::test {

struct DirectMachine {
  // One guest-virtual range backed by guest-physical memory.
  struct Region {
    uint32_t va, pa, size;
    mmu::Prot prot;
  };

  std::optional<mmu::GuestMemory> memory;
  std::optional<mmu::GuestWindow> window;
  std::unique_ptr<runtime::DirectExecutor> executor;

  // 16 MiB of guest RAM, the window, `regions` mapped and the executor.
  // A fixture cannot do without any of them: a failure is reported and the
  // process aborts.
  void build(std::initializer_list<Region> regions, const runtime::DirectConfig& config) {
    auto mem = mmu::GuestMemory::create(16);
    if (!mem) fatal("guest memory", mem.error().message);
    memory.emplace(std::move(mem.value()));
    auto win = mmu::GuestWindow::reserve(*memory, 0);
    if (!win) fatal("guest window", win.error().message);
    window.emplace(std::move(win.value()));
    for (const Region& r : regions)
      if (!window->map(mmu::GuestVirt(r.va), mmu::GuestPhys(r.pa), r.size, r.prot))
        fatal("map", "cannot map guest region at " + std::to_string(r.va));
    auto ex = runtime::DirectExecutor::create(config);
    if (!ex) fatal("direct executor", ex.error().message);
    executor = std::move(ex.value());
  }

  // Host view of `size` bytes of guest-physical memory at `pa`.
  uint8_t* host(uint32_t pa, uint32_t size) { return memory->host(mmu::GuestPhys(pa), size); }

 private:
  [[noreturn]] static void fatal(const char* what, const std::string& why) {
    std::fprintf(stderr, "DirectMachine: %s: %s\n", what, why.c_str());
    std::abort();
  }
};

}  // namespace bt86::test
