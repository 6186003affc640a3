#include "mmu/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace bt86::mmu {

Result<GuestMemory> GuestMemory::create(uint32_t size_mib) {
  if (size_mib < kMinMiB || size_mib > kMaxMiB) {
    return make_error("guest memory of " + std::to_string(size_mib) + " MiB is out of range (" +
                      std::to_string(kMinMiB) + ".." + std::to_string(kMaxMiB) + " MiB)");
  }
  const uint64_t size = uint64_t(size_mib) << 20;
  int fd = memfd_create("bt86-guest-ram", MFD_CLOEXEC);
  if (fd < 0) return make_error(std::string("memfd_create failed: ") + strerror(errno));
  if (ftruncate(fd, off_t(size)) != 0) {
    int err = errno;
    close(fd);
    return make_error("cannot size guest memory to " + std::to_string(size_mib) +
                      " MiB: " + strerror(err));
  }
  // MAP_NORESERVE: guest RAM is committed page by page as the guest touches it.
  void* view = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (view == MAP_FAILED) {
    int err = errno;
    close(fd);
    return make_error(std::string("cannot map guest memory: ") + strerror(err));
  }
  return GuestMemory(fd, static_cast<uint8_t*>(view), size);
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : m_fd(other.m_fd), m_view(other.m_view), m_size(other.m_size) {
  other.m_fd = -1;
  other.m_view = nullptr;
  other.m_size = 0;
}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
  if (this != &other) {
    this->~GuestMemory();
    new (this) GuestMemory(std::move(other));
  }
  return *this;
}

GuestMemory::~GuestMemory() {
  if (m_view) munmap(m_view, m_size);
  if (m_fd >= 0) close(m_fd);
}

bool GuestMemory::write(GuestPhys pa, std::span<const uint8_t> bytes) {
  uint8_t* dst = host(pa, bytes.size());
  if (!dst) return false;
  std::memcpy(dst, bytes.data(), bytes.size());
  return true;
}

bool GuestMemory::read(GuestPhys pa, std::span<uint8_t> bytes) const {
  const uint8_t* src = host(pa, bytes.size());
  if (!src) return false;
  std::memcpy(bytes.data(), src, bytes.size());
  return true;
}

}  // namespace bt86::mmu
