// GuestWindow: 4 GiB of host address space that stands for the guest linear
// address space. The user window lives at host address 0, so that guest code
// running directly in compatibility mode uses its own linear addresses
// unchanged. At construction the whole range is reserved PROT_NONE
// (MAP_FIXED_NOREPLACE) so that no host allocation can ever land inside it;
// "unmapping" a guest page puts PROT_NONE back instead of opening a hole.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "mmu/address.h"
#include "mmu/guest_memory.h"
#include "mmu/page_mapper.h"

namespace bt86::mmu {

struct WindowStats {
  uint64_t maps = 0;      // map() calls that succeeded
  uint64_t unmaps = 0;    // unmap() calls that succeeded
  uint64_t protects = 0;  // protect() calls that succeeded
  uint64_t parks = 0;     // park() calls that succeeded
};

class GuestWindow final : public PageMapper {
 public:
  static constexpr uint64_t kSize = uint64_t(1) << 32;

  // Reserves [base, base + 4 GiB). base must be 4 GiB aligned. At base 0 the
  // first page stays unmappable (vm.mmap_min_addr).
  static Result<GuestWindow> reserve(const GuestMemory& memory, uintptr_t base = 0);

  GuestWindow(GuestWindow&& other) noexcept;
  GuestWindow& operator=(GuestWindow&&) = delete;
  GuestWindow(const GuestWindow&) = delete;
  ~GuestWindow() override;

  Status map(GuestVirt va, GuestPhys pa, uint64_t len, Prot prot) override;
  Status unmap(GuestVirt va, uint64_t len) override;
  Status protect(GuestVirt va, uint64_t len, Prot prot) override;
  Status park(GuestVirt va, uint64_t len) override;

  uintptr_t base() const { return m_base; }
  // The host address that stands for guest linear address va.
  uint8_t* host(GuestVirt va) const { return reinterpret_cast<uint8_t*>(m_base + va.value); }
  const WindowStats& stats() const { return m_stats; }

 private:
  GuestWindow(const GuestMemory& memory, uintptr_t base, uintptr_t reserved_start)
      : m_memory(&memory), m_base(base), m_reserved_start(reserved_start) {}
  Status check_range(GuestVirt va, uint64_t len) const;

  const GuestMemory* m_memory;
  uintptr_t m_base;
  uintptr_t m_reserved_start;  // first reserved host address (base, or 0x1000 at base 0)
  WindowStats m_stats;
};

}  // namespace bt86::mmu
