// CodeView: what one translator sees of guest code, and the bindings its
// translations rely on.
//
// Translations are keyed by linear EIP. The view reads guest code through the
// guest page tables with the rights of the translator's privilege level (a
// CPL-3 fetch of a supervisor page is not code of that translator), and
// remembers linear page -> physical page for every page it read, so that
// when the guest remaps such a page (INVLPG, a CR3 load, a paging change)
// to another frame the blocks made from the old frame are detached
// (Translator::detach_code_page: kept aside, found again if the frame comes
// back at that address). Global mappings
// survive CR3 loads, as in the TLB.
//
// The machine has two: the kernel translator's (supervisor rights) and the
// user translator's (user rights).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "machine/vcpu_state.h"
#include "mmu/guest_memory.h"
#include "translator/code_reader.h"

namespace bt86::translator {
class Translator;
}

namespace bt86::machine {

class CodeView final : public translator::GuestCodeReader {
 public:
  CodeView(const VcpuState& vcpu, bool user) : m_vcpu(&vcpu), m_user(user) {}
  // Guest RAM, and the translator whose blocks the bindings protect: set
  // once, before the translator reads anything.
  void bind(const mmu::GuestMemory& memory, translator::Translator& translator) {
    m_memory = &memory;
    m_translator = &translator;
  }

  // GuestCodeReader.
  size_t read(mmu::GuestVirt va, std::span<uint8_t> out) const override;
  uint32_t phys_page(mmu::GuestVirt va) const override;

  // Drops the blocks of lin_page if the guest tables no longer map it to the
  // frame they were made from (INVLPG).
  void revalidate_page(uint32_t lin_page);
  // The same for every page read (keep_global: only non-global ones, a CR3
  // load).
  void revalidate(bool keep_global);
  // Lazy revalidation, for the user translator: its code runs only while
  // it runs, and never changes the page tables, so the bindings need only
  // hold when it starts. A CR3 load or INVLPG just marks them stale, and
  // revalidate_if_stale() checks them against the tables of the moment.
  // Processes that share frames (fork, the same binary) then keep one set
  // of translations: a child's exit unmaps its pages, but by the time the
  // parent's code runs again the parent's tables map the same frames.
  void mark_stale(bool keep_global) { m_stale = m_stale == kStaleAll || !keep_global ? kStaleAll : kStaleLocal; }
  void revalidate_if_stale() {
    if (m_stale == kFresh) return;
    revalidate(m_stale == kStaleLocal);
    m_stale = kFresh;
  }
  // Forgets every binding (the translator was flushed).
  void clear() {
    m_stale = kFresh;
    m_pages.clear();
    m_local.clear();
  }

 private:
  enum Stale : uint8_t { kFresh, kStaleLocal, kStaleAll };
  Stale m_stale = kFresh;
  // Bit 31 of a binding marks a global mapping.
  static constexpr uint32_t kGlobal = 1u << 31;
  const mmu::GuestMemory* m_memory = nullptr;
  const VcpuState* m_vcpu;
  bool m_user;
  translator::Translator* m_translator = nullptr;
  mutable std::unordered_map<uint32_t, uint32_t> m_pages;  // linear page -> physical page | kGlobal
  mutable std::unordered_set<uint32_t> m_local;            // the keys of m_pages without kGlobal
};

}  // namespace bt86::machine
