#include "translator/code_reader.h"

#include <algorithm>
#include <cstring>

namespace bt86::translator {

size_t SpanCodeReader::read(mmu::GuestVirt va, std::span<uint8_t> out) const {
  if (va.value < m_base.value) return 0;
  uint64_t off = uint64_t(va.value) - m_base.value;
  if (off >= m_bytes.size()) return 0;
  size_t n = std::min<uint64_t>(out.size(), m_bytes.size() - off);
  std::memcpy(out.data(), m_bytes.data() + off, n);
  return n;
}

}  // namespace bt86::translator
