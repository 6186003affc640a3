// Distinct types for the three address spaces bt86 juggles, so that a guest
// virtual address can never be passed where a guest physical one is meant:
//   GuestVirt  - a guest linear address (after segmentation, before paging)
//   GuestPhys  - an offset into guest RAM (the memfd)
//   host pointers are plain C++ pointers (uint8_t*), never integers.
#pragma once

#include <compare>
#include <cstdint>

namespace bt86::mmu {

inline constexpr uint32_t kPageSize = 4096;
inline constexpr uint32_t kPageMask = kPageSize - 1;

template <typename Tag>
struct Address {
  uint32_t value = 0;

  constexpr Address() = default;
  constexpr explicit Address(uint32_t v) : value(v) {}
  constexpr auto operator<=>(const Address&) const = default;
  constexpr Address page() const { return Address(value & ~kPageMask); }
  constexpr uint32_t offset_in_page() const { return value & kPageMask; }
  constexpr Address operator+(uint32_t delta) const { return Address(value + delta); }
};

struct GuestVirtTag {};
struct GuestPhysTag {};
using GuestVirt = Address<GuestVirtTag>;
using GuestPhys = Address<GuestPhysTag>;

// Host page protections for a shadow mapping (subset of PROT_*).
enum class Prot : uint8_t {
  None = 0,
  Read = 1,
  Write = 2,
  Exec = 4,
  ReadWrite = Read | Write,
  ReadExec = Read | Exec,
  All = Read | Write | Exec,
};
constexpr Prot operator|(Prot a, Prot b) { return Prot(uint8_t(a) | uint8_t(b)); }
constexpr bool has(Prot p, Prot bit) { return (uint8_t(p) & uint8_t(bit)) != 0; }

}  // namespace bt86::mmu
