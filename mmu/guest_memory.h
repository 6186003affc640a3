// Guest physical memory: one memfd of the configured size. The monitor sees it
// through a private host view (above 4 GiB); shadow mappings in the guest
// window map the same memfd pages, so both views are always coherent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/result.h"
#include "mmu/address.h"

namespace bt86::mmu {

class GuestMemory {
 public:
  static constexpr uint32_t kMinMiB = 16;
  static constexpr uint32_t kMaxMiB = 3072;

  // Creates guest RAM of size_mib MiB (kMinMiB..kMaxMiB).
  static Result<GuestMemory> create(uint32_t size_mib);

  GuestMemory(GuestMemory&& other) noexcept;
  GuestMemory& operator=(GuestMemory&& other) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  int fd() const { return m_fd; }
  uint64_t size() const { return m_size; }
  bool contains(GuestPhys pa, uint64_t len) const {
    return uint64_t(pa.value) + len <= m_size && len <= m_size;
  }
  // Host view of [pa, pa+len); nullptr if the range is not inside RAM.
  uint8_t* host(GuestPhys pa, uint64_t len = 1) const {
    return contains(pa, len) ? m_view + pa.value : nullptr;
  }
  // Copies in/out of guest RAM; false if the range leaves RAM.
  bool write(GuestPhys pa, std::span<const uint8_t> bytes);
  bool read(GuestPhys pa, std::span<uint8_t> bytes) const;

 private:
  GuestMemory(int fd, uint8_t* view, uint64_t size) : m_fd(fd), m_view(view), m_size(size) {}
  int m_fd = -1;
  uint8_t* m_view = nullptr;
  uint64_t m_size = 0;
};

}  // namespace bt86::mmu
