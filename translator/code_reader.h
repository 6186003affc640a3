// GuestCodeReader: where the translator fetches guest instruction bytes. The
// machine reads through its MMU; tests feed arrays. The translator never
// touches guest memory for decoding except through this interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "mmu/address.h"

namespace bt86::translator {

class GuestCodeReader {
 public:
  virtual ~GuestCodeReader() = default;
  // Copies up to out.size() bytes starting at guest linear address va and
  // returns how many were readable (0 if va itself is not). The translator
  // never asks across a page boundary it cannot read.
  virtual size_t read(mmu::GuestVirt va, std::span<uint8_t> out) const = 0;
  // The guest physical page number (address >> 12) that holds linear address
  // va, for self-modifying-code tracking (Translator::invalidate_code_page).
  // The machine answers through its page tables; the default is identity.
  virtual uint32_t phys_page(mmu::GuestVirt va) const { return uint32_t(va.value >> 12); }
};

// A run of guest code given as host bytes that stand for [base, base+size).
class SpanCodeReader final : public GuestCodeReader {
 public:
  SpanCodeReader(mmu::GuestVirt base, std::span<const uint8_t> bytes) : m_base(base), m_bytes(bytes) {}
  size_t read(mmu::GuestVirt va, std::span<uint8_t> out) const override;

 private:
  mmu::GuestVirt m_base;
  std::span<const uint8_t> m_bytes;
};

}  // namespace bt86::translator
