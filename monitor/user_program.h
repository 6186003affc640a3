// UserProgram: the direct-execution demo. Loads an ELF32 i386 executable
// into guest RAM, maps it into the guest window at its link addresses, gives
// it a demand-paged stack and runs it as guest user code under a tiny
// Linux-i386 int 0x80 personality (write, exit, exit_group) until it exits.
//
// Known gaps: no argv/envp/auxv on the stack, no brk/mmap, no signals; any
// other system call returns -ENOSYS.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "base/result.h"
#include "mmu/guest_memory.h"
#include "mmu/guest_window.h"
#include "monitor/kernel_image.h"
#include "monitor/virtual_cpu.h"
#include "runtime/cpu_state.h"
#include "runtime/direct_executor.h"

namespace bt86::monitor {

struct UserProgramConfig {
  uint32_t memory_mib = 256;
  bool stats = false;
};

class UserProgram {
 public:
  // Linux i386 user layout: segments below 3 GiB (the kernel's half starts
  // at 0xC0000000), the stack just under it.
  static constexpr uint32_t kSegmentBoundary = 0xc0000000;
  static constexpr uint32_t kStackTop = 0xbfff0000;
  static constexpr uint32_t kStackInitial = 16 * 1024;
  static constexpr uint32_t kStackMax = 8 * 1024 * 1024;
  static constexpr uint32_t kStackLimit = kStackTop - kStackMax;  // lowest stack address

  // Checks that the image's segments fit this layout and guest RAM. The
  // error is the user's (exit status 2).
  static Status check_layout(const KernelImage& image, uint32_t memory_mib);
  // Creates guest RAM, the window and the executor and loads the image.
  // Call check_layout first; an error here is the host's (exit status 3).
  static Result<std::unique_ptr<UserProgram>> create(const KernelImage& image, const UserProgramConfig& config);

  UserProgram(const UserProgram&) = delete;
  UserProgram& operator=(const UserProgram&) = delete;
  ~UserProgram();

  // Runs the guest to its end; returns bt86's exit status (the guest's own
  // exit status, or kExitGuestError).
  int run();

 private:
  struct Page {
    mmu::GuestPhys pa;
    mmu::Prot prot;
  };
  struct Counters {
    uint64_t syscalls = 0;          // handled: write, exit, exit_group
    uint64_t unknown_syscalls = 0;  // answered -ENOSYS
    uint64_t stack_pages = 0;       // demand-paged stack pages
    uint64_t preemptions = 0;
  };

  explicit UserProgram(const UserProgramConfig& config) : m_config(config) {}
  Status load(const KernelImage& image);
  Status map_pages(uint32_t first_vpage, uint32_t count, mmu::Prot prot);
  std::optional<mmu::GuestPhys> alloc_pages(uint32_t count);
  void set_up_cpu(uint32_t entry);

  // Each returns the exit status when the guest is finished, nothing to continue.
  std::optional<int> handle(const runtime::ExitRecord& exit);
  std::optional<int> handle_syscall();
  std::optional<int> handle_page_fault(const runtime::ExitRecord& exit);
  int guest_error(const std::string& what);
  uint32_t sys_write(uint32_t fd, uint32_t buf, uint32_t len);
  bool mapped(uint32_t va, uint32_t len) const;
  void print_stats() const;

  UserProgramConfig m_config;
  std::unique_ptr<mmu::GuestMemory> m_memory;
  std::optional<mmu::GuestWindow> m_window;
  std::unique_ptr<runtime::DirectExecutor> m_executor;
  // What bt86 mapped, by guest virtual page number: the demo's page table.
  std::map<uint32_t, Page> m_pages;
  uint32_t m_next_phys_page = 0;  // bump allocator over guest RAM
  uint32_t m_stack_bottom = kStackTop;
  runtime::CpuState m_cpu;
  VirtualCpu m_vcpu;
  Counters m_counters;
  std::chrono::nanoseconds m_guest_time{0};
  bool m_logged_cpuid = false;
};

}  // namespace bt86::monitor
