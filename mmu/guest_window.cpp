#include "mmu/guest_window.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/log.h"

namespace bt86::mmu {
namespace {

int host_prot(Prot p) {
  int r = PROT_NONE;
  if (has(p, Prot::Read)) r |= PROT_READ;
  if (has(p, Prot::Write)) r |= PROT_WRITE;
  if (has(p, Prot::Exec)) r |= PROT_EXEC;
  // Never execute-only: with protection keys the host would make such a page
  // unreadable, and the monitor reads guest instructions to decode exits.
  if (r == PROT_EXEC) r |= PROT_READ;
  return r;
}

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Result<GuestWindow> GuestWindow::reserve(const GuestMemory& memory, uintptr_t base) {
  if (base % kSize != 0) return make_error("guest window base " + hex(base) + " is not 4 GiB aligned");
  const uintptr_t start = base == 0 ? kPageSize : base;
  const uint64_t len = base + kSize - start;
  void* p = mmap(reinterpret_cast<void*>(start), len, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED || p != reinterpret_cast<void*>(start)) {
    int err = errno;
    if (p != MAP_FAILED) munmap(p, len);
    return make_error("cannot reserve the 4 GiB guest window at " + hex(start) + ": " +
                      strerror(err) + " (is bt86 built as a position-independent executable?)");
  }
  log::get("mmu")->debug("guest window reserved at {:#x}..{:#x}", start, base + kSize);
  return GuestWindow(memory, base, start);
}

GuestWindow::GuestWindow(GuestWindow&& other) noexcept
    : m_memory(other.m_memory), m_base(other.m_base), m_reserved_start(other.m_reserved_start),
      m_stats(other.m_stats) {
  other.m_memory = nullptr;
}

GuestWindow::~GuestWindow() {
  if (m_memory) munmap(reinterpret_cast<void*>(m_reserved_start), m_base + kSize - m_reserved_start);
}

Status GuestWindow::check_range(GuestVirt va, uint64_t len) const {
  if ((va.value & kPageMask) || (len & kPageMask) || len == 0)
    return make_error("unaligned guest window range " + hex(va.value) + "+" + hex(len));
  if (uint64_t(va.value) + len > kSize)
    return make_error("guest window range " + hex(va.value) + "+" + hex(len) + " leaves 4 GiB");
  if (m_base + va.value < m_reserved_start)
    return make_error("guest page " + hex(va.value) + " cannot be mapped (below vm.mmap_min_addr)");
  return Ok{};
}

Status GuestWindow::map(GuestVirt va, GuestPhys pa, uint64_t len, Prot prot) {
  if (auto s = check_range(va, len); !s) return s;
  if ((pa.value & kPageMask) || !m_memory->contains(pa, len))
    return make_error("guest physical range " + hex(pa.value) + "+" + hex(len) + " is not in RAM");
  void* p = mmap(host(va), len, host_prot(prot), MAP_SHARED | MAP_FIXED, m_memory->fd(), pa.value);
  if (p == MAP_FAILED) return make_error(std::string("shadow mmap failed: ") + strerror(errno));
  ++m_stats.maps;
  return Ok{};
}

Status GuestWindow::unmap(GuestVirt va, uint64_t len) {
  if (auto s = check_range(va, len); !s) return s;
  // Replace, never munmap: the window must stay reserved.
  void* p = mmap(host(va), len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
                 -1, 0);
  if (p == MAP_FAILED) return make_error(std::string("shadow unmap failed: ") + strerror(errno));
  ++m_stats.unmaps;
  return Ok{};
}

Status GuestWindow::protect(GuestVirt va, uint64_t len, Prot prot) {
  if (auto s = check_range(va, len); !s) return s;
  if (mprotect(host(va), len, host_prot(prot)) != 0)
    return make_error(std::string("shadow mprotect failed: ") + strerror(errno));
  ++m_stats.protects;
  return Ok{};
}

Status GuestWindow::park(GuestVirt va, uint64_t len) {
  if (auto s = check_range(va, len); !s) return s;
  // PROT_NONE over the shared file mapping: inaccessible, yet the VMA and
  // the host page-table entries stay, so protect() brings the page back
  // without an mmap and without a first-touch host fault.
  if (mprotect(host(va), len, PROT_NONE) != 0)
    return make_error(std::string("shadow park (mprotect) failed: ") + strerror(errno));
  ++m_stats.parks;
  return Ok{};
}

}  // namespace bt86::mmu
