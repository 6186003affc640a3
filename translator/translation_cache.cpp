#include "translator/translation_cache.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace bt86::translator {

Result<std::unique_ptr<TranslationCache>> TranslationCache::create(size_t size) {
  size = (size + 4095) & ~size_t(4095);
  if (size < kBlocksStart + 4096) return make_error("translation cache too small: " + std::to_string(size));
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return make_error(std::string("translation cache: mmap failed: ") + std::strerror(errno));
  // Translated code jumps to the stubs with rel32 and must never share the
  // guest window: both hold because the window reserves [0, 4 GiB).
  if (reinterpret_cast<uintptr_t>(p) < (uint64_t(1) << 32)) {
    munmap(p, size);
    return make_error("translation cache landed below 4 GiB (no guest window reserved?)");
  }
  auto* base = static_cast<uint8_t*>(p);
  if (mprotect(base + kPollPage, 4096, PROT_READ) != 0) {
    munmap(p, size);
    return make_error(std::string("translation cache: mprotect failed: ") + std::strerror(errno));
  }
  return std::unique_ptr<TranslationCache>(new TranslationCache(base, size));
}

TranslationCache::~TranslationCache() { munmap(m_base, m_size); }

uint8_t* TranslationCache::allocate(size_t size) {
  size_t rounded = (size + kAlign - 1) & ~(kAlign - 1);
  if (rounded > m_size - m_used) return nullptr;
  uint8_t* p = m_base + m_used;
  m_used += rounded;
  return p;
}

void TranslationCache::flush() {
  m_used = kBlocksStart;
  ++m_flushes;
}

}  // namespace bt86::translator
