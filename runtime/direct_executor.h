// DirectExecutor: runs guest user code (CPL 3) natively in 32-bit
// compatibility mode inside this process (DESIGN.md §2 "Guest CPL 3").
//
// Only one may exist per process: signal handlers, the host LDT, the seccomp
// filter and cpuid/rdtsc faulting are per-process or per-thread state, and
// run() must always be called from the thread that created it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "base/result.h"
#include "runtime/host_signals.h"
#include "runtime/ldt_mirror.h"
#include "runtime/tick_timer.h"
#include "runtime/user_executor.h"
#include "runtime/world_switch.h"

namespace bt86::runtime {

struct DirectConfig {
  // Segments are cut so that no byte at or above this linear address is
  // reachable through them (e.g. 0xC0000000 for Linux, 0x80000000 for xv6).
  uint64_t segment_boundary = uint64_t(1) << 32;
  // Period of the preemption tick; zero disables it (a machine that arms
  // its own TickTimer at device deadlines in this thread).
  std::chrono::microseconds tick_period{4000};
  // Make rdtsc/rdtscp in guest user code exit (where the host can). A
  // machine whose guest TSC equals the host TSC (no TSC offset, CR4.TSD
  // clear) lets them run natively and keeps the host's vDSO clock fast.
  bool trap_rdtsc = true;
};

struct DirectStats {
  uint64_t entries = 0;
  uint64_t exits_by_kind[32] = {};
  uint64_t ldt_writes = 0;
};

class DirectExecutor final : public UserExecutor {
 public:
  static Result<std::unique_ptr<DirectExecutor>> create(const DirectConfig& config);
  ~DirectExecutor() override;

  ExitRecord run(CpuState& cpu) override;
  void request_exit() override;

  // Makes guest LDT entry index natively loadable by guest user code (see
  // LdtMirror). Call whenever the guest changes its LDT.
  Status mirror_ldt_entry(uint16_t index, const SegmentCache& desc);

  bool cpuid_faulting() const { return detail::host_features().cpuid_faulting; }
  bool tsc_faulting() const { return detail::host_features().tsc_faulting; }
  DirectStats stats() const;

 private:
  explicit DirectExecutor(const DirectConfig& config);
  ExitRecord classify(CpuState& cpu);

  DirectConfig m_config;
  std::unique_ptr<detail::WorldContext> m_ctx;
  detail::LdtMirror m_ldt;
  TickTimer m_timer;
  DirectStats m_stats;
};

}  // namespace bt86::runtime
