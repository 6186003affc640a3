#include "machine/code_view.h"

#include <algorithm>
#include <vector>

#include "mmu/page_walk.h"
#include "translator/translator.h"

namespace bt86::machine {

size_t CodeView::read(mmu::GuestVirt va, std::span<uint8_t> out) const {
  const mmu::PagingControl pc{m_vcpu->sys.cr0, m_vcpu->sys.cr3, m_vcpu->sys.cr4};
  size_t done = 0;
  while (done < out.size()) {
    const uint32_t lin = uint32_t(va.value + done);
    const mmu::Translation t = mmu::translate(*m_memory, pc, lin, Access::kFetch, m_user);
    if (t.status != mmu::WalkStatus::kOk) break;
    const size_t n = std::min<size_t>(out.size() - done, 0x1000 - (lin & 0xfff));
    if (!m_memory->read(mmu::GuestPhys{t.phys}, out.subspan(done, n))) break;
    done += n;
  }
  return done;
}

uint32_t CodeView::phys_page(mmu::GuestVirt va) const {
  const mmu::PagingControl pc{m_vcpu->sys.cr0, m_vcpu->sys.cr3, m_vcpu->sys.cr4};
  const mmu::Translation t = mmu::translate(*m_memory, pc, uint32_t(va.value), Access::kFetch, m_user);
  const uint32_t page = t.status == mmu::WalkStatus::kOk ? t.phys >> 12 : uint32_t(va.value >> 12);
  const bool global = t.status == mmu::WalkStatus::kOk && t.global;
  const uint32_t lin = uint32_t(va.value >> 12);
  m_pages[lin] = page | (global ? kGlobal : 0);
  if (global)
    m_local.erase(lin);
  else
    m_local.insert(lin);
  return page;
}

void CodeView::revalidate_page(uint32_t lin_page) {
  auto it = m_pages.find(lin_page);
  if (it == m_pages.end()) return;
  const mmu::PagingControl pc{m_vcpu->sys.cr0, m_vcpu->sys.cr3, m_vcpu->sys.cr4};
  const mmu::Translation t = mmu::translate(*m_memory, pc, lin_page << 12, Access::kFetch, m_user);
  if (t.status == mmu::WalkStatus::kOk && t.phys >> 12 == (it->second & ~kGlobal)) return;
  m_translator->detach_code_page(it->second & ~kGlobal);
  m_pages.erase(it);
  m_local.erase(lin_page);
}

void CodeView::revalidate(bool keep_global) {
  std::vector<uint32_t> pages;
  if (keep_global) {
    pages.assign(m_local.begin(), m_local.end());
  } else {
    pages.reserve(m_pages.size());
    for (const auto& [lin, phys] : m_pages) pages.push_back(lin);
  }
  for (uint32_t lin : pages) revalidate_page(lin);
}

}  // namespace bt86::machine
