// TranslationCache (TC): one RWX host region of bounded size above 4 GiB.
// The first page holds the entry/exit stubs and is never flushed; blocks are
// bump-allocated after it. When the cache is full the owner flushes it whole
// (all blocks at once, counted): cheap, simple, and what chaining needs, since
// no link can then point at a freed block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/result.h"

namespace bt86::translator {

class TranslationCache {
 public:
  static constexpr size_t kStubArea = 4096;
  // The page after the stubs: translated code loads from it at every block
  // entry (Translator::request_exit makes it PROT_NONE). Blocks follow it.
  static constexpr size_t kPollPage = kStubArea;
  static constexpr size_t kBlocksStart = kStubArea + 4096;
  static constexpr size_t kAlign = 16;

  static Result<std::unique_ptr<TranslationCache>> create(size_t size);
  ~TranslationCache();
  TranslationCache(const TranslationCache&) = delete;
  TranslationCache& operator=(const TranslationCache&) = delete;

  uint8_t* stub_area() const { return m_base; }
  uint8_t* poll_page() const { return m_base + kPollPage; }
  // Host address the next block will be placed at.
  uint64_t cursor() const { return reinterpret_cast<uint64_t>(m_base + m_used); }
  // Reserves size bytes at cursor(); nullptr if they do not fit (flush first).
  uint8_t* allocate(size_t size);
  void flush();

  size_t used() const { return m_used - kBlocksStart; }
  size_t capacity() const { return m_size - kBlocksStart; }
  uint64_t flushes() const { return m_flushes; }
  bool contains(const void* p) const {
    auto* b = static_cast<const uint8_t*>(p);
    return b >= m_base && b < m_base + m_size;
  }

 private:
  TranslationCache(uint8_t* base, size_t size) : m_base(base), m_size(size), m_used(kBlocksStart) {}
  uint8_t* m_base;
  size_t m_size;
  size_t m_used;
  uint64_t m_flushes = 0;
};

}  // namespace bt86::translator
