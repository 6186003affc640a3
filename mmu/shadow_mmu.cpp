// ShadowMmu: hidden/true faults, lazy filling with prefetched neighbours,
// CR3/INVLPG drops, code-page write protection, execute permission only for
// frames without cpuid. See shadow_mmu.h.
#include "mmu/shadow_mmu.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/log.h"
#include "mmu/guest_window.h"

namespace bt86::mmu {
namespace {

using machine::Access;

constexpr uint32_t kNone = 0xffffffffu;
constexpr uint32_t kSlotValid = 1u << 0;
constexpr uint32_t kSlotWritable = 1u << 1;
constexpr uint32_t kSlotGlobal = 1u << 2;
constexpr uint32_t kSlotLarge = 1u << 3;
// Not valid: a dropped 4 KiB mapping whose host mapping is parked
// (inaccessible, still of the physical page in the entry).
constexpr uint32_t kSlotParked = 1u << 4;
// Mapped with PROT_EXEC (user window).
constexpr uint32_t kSlotExec = 1u << 5;
constexpr uint32_t kPagesPerRegion = 1024;

// Per-frame state (ShadowMmu::m_frame).
constexpr uint8_t kFrameCode = 1u << 0;   // protect_code_page: holds translated code
constexpr uint8_t kFrameClean = 1u << 1;  // scanned, holds no cpuid; write-protected
constexpr uint8_t kFrameCpuid = 1u << 2;  // scanned, holds one at m_cpuid_at (not protected)
constexpr uint8_t kFrameWriteProtect = kFrameCode | kFrameClean;

// Where the frame may hold a cpuid (0F A2, SDM vol. 2A "CPUID"): the offset
// of an A2 byte preceded by 0F, or 0 if the frame starts with A2 (the 0F may
// be the last byte of the previous page). -1 if none. Conservative: a pair
// inside another instruction or in data counts too.
int find_cpuid(const uint8_t* p) {
  if (p[0] == 0xa2) return 0;
  const uint8_t* at = p + 1;
  const uint8_t* end = p + kPageSize;
  while (at < end) {
    at = static_cast<const uint8_t*>(std::memchr(at, 0xa2, size_t(end - at)));
    if (!at) return -1;
    if (at[-1] == 0x0f) return int(at - p);
    ++at;
  }
  return -1;
}

// CR0/CR4 bits whose change invalidates every translation the shadow holds
// (SDM vol. 3A, 4.10.4.1: changes to CR0.PG/WP, CR4.PGE/PSE/PAE flush the
// TLBs including global entries).
bool paging_mode_changed(const PagingControl& a, const PagingControl& b) {
  return a.paging() != b.paging() || a.wp() != b.wp() || a.pse() != b.pse() ||
         a.pge() != b.pge() || ((a.cr4 ^ b.cr4) & machine::cr4::PAE);
}

}  // namespace

Result<std::unique_ptr<ShadowMmu>> ShadowMmu::create(GuestMemory& memory,
                                                    const ShadowConfig& config) {
  if (config.user_base == config.kernel_base)
    return make_error("the user and kernel guest windows cannot share a base");
  auto user = GuestWindow::reserve(memory, config.user_base);
  if (!user) return user.error();
  auto kernel = GuestWindow::reserve(memory, config.kernel_base);
  if (!kernel) return kernel.error();
  return std::make_unique<ShadowMmu>(memory, std::make_unique<GuestWindow>(std::move(*user)),
                                     std::make_unique<GuestWindow>(std::move(*kernel)), config);
}

ShadowMmu::ShadowMmu(GuestMemory& memory, std::unique_ptr<PageMapper> user,
                     std::unique_ptr<PageMapper> kernel, const ShadowConfig& config)
    : m_memory(&memory), m_config(config), m_linear(memory) {
  if (m_config.prefault_cluster_pages == 0 || m_config.prefault_cluster_pages > kPagesPerRegion ||
      (m_config.prefault_cluster_pages & (m_config.prefault_cluster_pages - 1)))
    m_config.prefault_cluster_pages = 16;
  m_windows[int(Window::kUser)].mapper = std::move(user);
  m_windows[int(Window::kKernel)].mapper = std::move(kernel);
  const size_t ram_pages = memory.size() / kPageSize;
  m_rmap_head.assign(ram_pages, kNone);
  m_frame.assign(ram_pages, 0);
  m_cpuid_at.assign(ram_pages, 0);
  m_rmap_free = kNone;
  m_linear.set_write_observer(this);
  m_scratch.reserve(kPagesPerRegion);
}

ShadowMmu::~ShadowMmu() = default;

// ---------------------------------------------------------------------------
// The index: slots per window and the reverse map.

std::optional<ShadowPage> ShadowMmu::lookup(Window which, uint32_t lin) const {
  const uint32_t page = lin >> 12;
  const auto& region = m_windows[int(which)].regions[page / kPagesPerRegion];
  if (!region) return std::nullopt;
  const uint32_t e = region->slots[page % kPagesPerRegion].entry;
  if (!(e & kSlotValid)) return std::nullopt;
  return ShadowPage{e & pte::kFrameMask, bool(e & kSlotWritable), bool(e & kSlotGlobal),
                    bool(e & kSlotLarge), bool(e & kSlotExec)};
}

std::optional<uint32_t> ShadowMmu::parked_phys(Window which, uint32_t lin) const {
  const uint32_t page = lin >> 12;
  const auto& region = m_windows[int(which)].regions[page / kPagesPerRegion];
  if (!region) return std::nullopt;
  const uint32_t e = region->slots[page % kPagesPerRegion].entry;
  if (!(e & kSlotParked)) return std::nullopt;
  return e & pte::kFrameMask;
}

void ShadowMmu::record(Window which, uint32_t page, uint32_t pfn, uint32_t flags) {
  WindowState& w = m_windows[int(which)];
  auto& region = w.regions[page / kPagesPerRegion];
  if (!region) region = std::make_unique<Region>();
  Slot& slot = region->slots[page % kPagesPerRegion];
  if (slot.entry & kSlotValid) forget(which, page);
  else if (slot.entry & kSlotParked) unpark(which, page);
  if (!region) region = std::make_unique<Region>();  // forget() may have freed it
  Slot& s = region->slots[page % kPagesPerRegion];

  uint32_t node;
  if (m_rmap_free != kNone) {
    node = m_rmap_free;
    m_rmap_free = m_rmap_nodes[node].next;
  } else {
    node = uint32_t(m_rmap_nodes.size());
    m_rmap_nodes.push_back({});
  }
  const uint32_t head = m_rmap_head[pfn];
  m_rmap_nodes[node] = RmapNode{page << 1 | uint32_t(which), kNone, head};
  if (head != kNone) m_rmap_nodes[head].prev = node;
  m_rmap_head[pfn] = node;

  s.entry = (pfn << 12) | flags | kSlotValid;
  s.node = node;
  region->valid[(page % kPagesPerRegion) / 64] |= uint64_t(1) << (page % 64);
  ++region->count;
  if (!(flags & kSlotGlobal)) ++region->local;
  ++w.pages;
}

void ShadowMmu::forget(Window which, uint32_t page, bool park) {
  WindowState& w = m_windows[int(which)];
  auto& region = w.regions[page / kPagesPerRegion];
  Slot& slot = region->slots[page % kPagesPerRegion];
  const uint32_t pfn = slot.entry >> 12;
  const RmapNode n = m_rmap_nodes[slot.node];
  if (n.prev != kNone) m_rmap_nodes[n.prev].next = n.next;
  else m_rmap_head[pfn] = n.next;
  if (n.next != kNone) m_rmap_nodes[n.next].prev = n.prev;
  m_rmap_nodes[slot.node].next = m_rmap_free;
  m_rmap_free = slot.node;
  if (!(slot.entry & kSlotGlobal)) --region->local;
  region->valid[(page % kPagesPerRegion) / 64] &= ~(uint64_t(1) << (page % 64));
  if (park)
    park_slot(which, page, pfn);
  else
    slot = Slot{};
  --w.pages;
  if (--region->count == 0 && region->parked == 0) region.reset();
}

void ShadowMmu::park_slot(Window which, uint32_t page, uint32_t pfn) {
  WindowState& w = m_windows[int(which)];
  auto& region = w.regions[page / kPagesPerRegion];
  if (!region) region = std::make_unique<Region>();
  Slot& slot = region->slots[page % kPagesPerRegion];
  slot.entry = (pfn << 12) | kSlotParked;
  slot.node = ++w.park_tick;
  ++region->parked;
  ++w.parked;
  w.park_fifo.emplace_back(page, slot.node);
}

void ShadowMmu::unpark(Window which, uint32_t page) {
  WindowState& w = m_windows[int(which)];
  auto& region = w.regions[page / kPagesPerRegion];
  region->slots[page % kPagesPerRegion] = Slot{};
  --w.parked;
  if (--region->parked == 0 && region->count == 0) region.reset();
}

void ShadowMmu::drop_run(Window which, uint32_t start, uint32_t len, bool park) {
  WindowState& w = m_windows[int(which)];
  const GuestVirt va(start << 12);
  const uint64_t bytes = uint64_t(len) << 12;
  Status st = Ok{};
  if (park) {
    st = w.mapper->park(va, bytes);
    if (st) {
      m_stats.pages_parked += len;
    } else {
      // Cannot park: unmap for real.
      log::get("mmu")->warn("parking shadow pages failed ({}); unmapping them", st.error().message);
      for (uint32_t p = start; p < start + len; ++p) unpark(which, p);
      st = w.mapper->unmap(va, bytes);
    }
  } else {
    st = w.mapper->unmap(va, bytes);
  }
  if (!st) log::get("mmu")->error("shadow drop failed: {}", st.error().message);
  ++m_stats.unmap_calls;
  m_stats.pages_dropped += len;
}

void ShadowMmu::evict_parked(Window which) {
  WindowState& w = m_windows[int(which)];
  auto parked_with = [&](uint32_t page, uint32_t tick) {
    const auto& region = w.regions[page / kPagesPerRegion];
    if (!region) return false;
    const Slot& s = region->slots[page % kPagesPerRegion];
    return (s.entry & kSlotParked) && s.node == tick;
  };
  std::vector<uint32_t>& victims = m_evict_scratch;
  victims.clear();
  while (w.parked > m_config.max_parked_pages && !w.park_fifo.empty()) {
    const auto [page, tick] = w.park_fifo.front();
    w.park_fifo.pop_front();
    if (!parked_with(page, tick)) continue;  // stale
    unpark(which, page);
    victims.push_back(page);
  }
  // Stale entries pile up when pages come and go under the cap: drop them
  // once they outnumber the live ones (each live page has exactly one
  // entry, the one with its current tick).
  if (w.park_fifo.size() > 2 * size_t(m_config.max_parked_pages) + 64) {
    std::erase_if(w.park_fifo, [&](const auto& e) { return !parked_with(e.first, e.second); });
  }
  if (victims.empty()) return;
  // One unmap per linear run.
  std::sort(victims.begin(), victims.end());
  size_t i = 0;
  while (i < victims.size()) {
    size_t j = i + 1;
    while (j < victims.size() && victims[j] == victims[j - 1] + 1) ++j;
    if (auto st = w.mapper->unmap(GuestVirt(victims[i] << 12), uint64_t(j - i) << 12); !st)
      log::get("mmu")->error("shadow unmap of parked pages failed: {}", st.error().message);
    ++m_stats.evict_calls;
    m_stats.parked_evicted += j - i;
    i = j;
  }
}

template <typename Keep>
void ShadowMmu::drop_where(Window which, uint32_t first_region, uint32_t end_region, bool local_only, Keep keep) {
  WindowState& w = m_windows[int(which)];
  // 4 KiB mappings are parked; pages of a guest 4 MiB page are unmapped
  // (1024 of them would fill the parking space at once).
  const bool can_park = m_config.max_parked_pages != 0;
  uint32_t run_start = 0, run_len = 0;
  bool run_park = false;
  auto flush = [&] {
    if (run_len == 0) return;
    drop_run(which, run_start, run_len, run_park);
    run_len = 0;
  };
  for (uint32_t r = first_region; r < end_region; ++r) {
    if (!w.regions[r]) continue;
    // The valid slots as they were on entry (forget() clears bits and may
    // free the region with its last page: the loop then stops).
    const auto bits = w.regions[r]->valid;
    for (uint32_t word = 0; word < kPagesPerRegionWords; ++word) {
     for (uint64_t b = bits[word]; b != 0 && w.regions[r] && (!local_only || w.regions[r]->local); b &= b - 1) {
      const uint32_t i = word * 64 + uint32_t(std::countr_zero(b));
      Slot& slot = w.regions[r]->slots[i];
      const uint32_t page = r * kPagesPerRegion + i;
      if (!(slot.entry & kSlotValid) || keep(page, slot)) continue;
      const bool park = can_park && !(slot.entry & kSlotLarge);
      if (run_len != 0 && (page != run_start + run_len || park != run_park)) flush();
      if (run_len == 0) {
        run_start = page;
        run_park = park;
      }
      ++run_len;
      forget(which, page, park);  // frees the region with its last page: the loop stops
     }
    }
  }
  flush();
  if (can_park) evict_parked(which);
}

void ShadowMmu::drop_all_where(bool keep_global) {
  for (Window which : {Window::kUser, Window::kKernel}) {
    if (m_windows[int(which)].pages == 0) continue;
    if (keep_global)
      drop_where(which, 0, kPagesPerRegion, true, [](uint32_t, const Slot& s) { return bool(s.entry & kSlotGlobal); });
    else
      drop_where(which, 0, kPagesPerRegion, false, [](uint32_t, const Slot&) { return false; });
  }
}

// ---------------------------------------------------------------------------
// Control registers and TLB-flush instructions.

void ShadowMmu::set_control_registers(uint32_t cr0, uint32_t cr3, uint32_t cr4) {
  const PagingControl next{cr0, cr3, cr4};
  const PagingControl prev = m_control;
  m_control = next;
  m_linear.set_control(next);
  if (paging_mode_changed(prev, next)) {
    ++m_stats.full_flushes;
    drop_all_where(false);
  } else if (prev.cr3 != next.cr3 && next.paging()) {
    ++m_stats.cr3_loads;
    revalidate_after_cr3();
  }
}

void ShadowMmu::load_cr3(uint32_t cr3) {
  m_control.cr3 = cr3;
  m_linear.load_cr3(cr3);  // flushes the CPU model's TLB even for the same value
  ++m_stats.cr3_loads;
  // With paging off the shadow is the identity map: CR3 does not matter.
  if (m_control.paging()) revalidate_after_cr3();
}

// A CR3 load flushes the non-global TLB entries. The shadow may keep a
// mapping anyway when the new tables translate its page exactly as the
// mapping does (same physical page, rights at least those mapped): such an
// entry is indistinguishable from one refilled at the next access, and it
// gets its accessed bit as that refill would set it. Processes share their
// code and, after fork, most pages, so most of the shadow survives a
// context switch instead of being unmapped and faulted in again.
//
// With ShadowConfig::remap_after_cr3, a 4 KiB page the new tables give a
// different frame (the parent's stack after its child's copy-on-write copy,
// and back) is re-mapped at once,
// like a speculative TLB fill (SDM vol. 3A, 4.10.2.3; A is set as for the
// prefaulted neighbours of a fault): one mmap per contiguous run instead of
// a park now plus a hidden fault and an mmap at the next touch. Pages that
// become read-only are write-protected one mprotect per run.
void ShadowMmu::revalidate_after_cr3() {
  const uint32_t ram_pages = uint32_t(m_rmap_head.size());
  for (Window which : {Window::kUser, Window::kKernel}) {
    WindowState& w = m_windows[int(which)];
    if (w.pages == 0) continue;
    const bool user = which == Window::kUser;
    const uint32_t first_allowed = (user && m_config.user_base == 0) ? 1 : 0;
    std::vector<Candidate>& remaps = m_remap_scratch;
    remaps.clear();
    // Pending write-protect run.
    uint32_t wp_start = 0, wp_len = 0;
    Prot wp_prot = Prot::Read;
    auto flush_wp = [&] {
      if (wp_len == 0) return;
      if (w.mapper->protect(GuestVirt(wp_start << 12), uint64_t(wp_len) << 12, wp_prot)) {
        ++m_stats.protect_calls;
      } else {
        // Cannot write-protect them: unmap them instead (the current page,
        // still valid, keeps its region alive).
        log::get("mmu")->warn("write-protecting shadow pages failed; dropping them");
        for (uint32_t p = wp_start; p < wp_start + wp_len; ++p) forget(which, p);
        (void)w.mapper->unmap(GuestVirt(wp_start << 12), uint64_t(wp_len) << 12);
        ++m_stats.unmap_calls;
        m_stats.pages_dropped += wp_len;
      }
      wp_len = 0;
    };
    Translation t;
    drop_where(which, 0, kPagesPerRegion, true, [&](uint32_t page, Slot& slot) {
      if (slot.entry & kSlotGlobal) return true;
      switch (check(which, page, slot.entry, t)) {
        case Verdict::kKeep:
          keep(which, page, slot, t);
          return true;
        case Verdict::kWriteProtect: {
          const Prot prot = (slot.entry & kSlotExec) ? Prot::ReadExec : Prot::Read;
          if (wp_len != 0 && (page != wp_start + wp_len || prot != wp_prot)) flush_wp();
          if (wp_len == 0) {
            wp_start = page;
            wp_prot = prot;
          }
          ++wp_len;
          slot.entry &= ~kSlotWritable;
          keep(which, page, slot, t);
          return true;
        }
        case Verdict::kDrop:
          break;
      }
      const uint32_t pfn = t.phys >> 12;
      if (m_config.remap_after_cr3 && t.status == WalkStatus::kOk && !t.large && !(slot.entry & kSlotLarge) && (!user || t.user) &&
          pfn < ram_pages && page >= first_allowed) {
        // Re-map with the new frame (install() below replaces the mapping;
        // the slot stays valid until then).
        mark_accessed(*m_memory, t, false);
        remaps.push_back(Candidate{page, pfn, prot_for(which, t.user, t.writable, t.dirty, pfn),
                                   t.global ? kSlotGlobal : 0u});
        return true;
      }
      return false;
    });
    flush_wp();
    if (!remaps.empty()) {
      const HostFaultOutcome out = install(which, remaps);
      if (out.kind != HostFaultOutcome::Kind::kHidden) {
        // Cannot map them: no page may keep its old frame.
        log::get("mmu")->warn("re-mapping shadow pages after a CR3 load failed ({}); dropping them", out.error);
        for (const Candidate& c : remaps) {
          const uint32_t r = c.index / kPagesPerRegion;
          drop_where(which, r, r + 1, false, [&](uint32_t page, const Slot&) { return page != c.index; });
        }
      } else {
        m_stats.pages_remapped += remaps.size();
      }
    }
  }
}

ShadowMmu::Verdict ShadowMmu::check(Window which, uint32_t page, uint32_t e, Translation& t) const {
  const bool user = which == Window::kUser;
  t = translate(*m_memory, m_control, page << 12, Access::kRead, user);
  if (t.status != WalkStatus::kOk || (t.phys >> 12) != (e >> 12) || t.large != bool(e & kSlotLarge) ||
      (user && !t.user))
    return Verdict::kDrop;
  // Same frame, now read-only (after fork both sides' pages are):
  // write-protect the mapping instead of dropping it. Execute permission
  // stays as it was: with exec_only_clean a writable mapping has none.
  if ((e & kSlotWritable) && !has(prot_for(which, t.user, t.writable, t.dirty, e >> 12), Prot::Write))
    return Verdict::kWriteProtect;
  return Verdict::kKeep;
}

void ShadowMmu::keep(Window which, uint32_t page, Slot& slot, const Translation& t) {
  mark_accessed(*m_memory, t, false);
  if (t.global && !(slot.entry & kSlotGlobal)) {
    slot.entry |= kSlotGlobal;
    --m_windows[int(which)].regions[page / kPagesPerRegion]->local;
  }
  ++m_stats.pages_kept;
}

bool ShadowMmu::still_valid(Window which, uint32_t page, Slot& slot) {
  Translation t;
  switch (check(which, page, slot.entry, t)) {
    case Verdict::kDrop:
      return false;
    case Verdict::kWriteProtect: {
      const Prot prot = (slot.entry & kSlotExec) ? Prot::ReadExec : Prot::Read;
      if (!m_windows[int(which)].mapper->protect(GuestVirt(page << 12), kPageSize, prot)) return false;
      ++m_stats.protect_calls;
      slot.entry &= ~kSlotWritable;
      break;
    }
    case Verdict::kKeep:
      break;
  }
  keep(which, page, slot, t);
  return true;
}

void ShadowMmu::flush_all() {
  ++m_stats.full_flushes;
  m_linear.flush_tlb(false);
  drop_all_where(false);
}

void ShadowMmu::invlpg(uint32_t lin) {
  ++m_stats.invlpgs;
  m_linear.invlpg(lin);
  const uint32_t page = lin >> 12;
  const uint32_t r = page / kPagesPerRegion;
  for (Window which : {Window::kUser, Window::kKernel}) {
    auto s = lookup(which, lin);
    if (!s) continue;
    // As after a CR3 load, an entry the tables still give is kept: Linux
    // flushes pages whose entries it did not change (ranges, fork).
    if (s->large) {
      // One TLB entry covered the whole 4 MiB page (SDM 4.10.2.3): drop it all.
      drop_where(which, r, r + 1, false, [](uint32_t, const Slot& s) { return !(s.entry & kSlotLarge); });
    } else {
      Slot& slot = m_windows[int(which)].regions[r]->slots[page % kPagesPerRegion];
      if (still_valid(which, page, slot)) continue;
      const bool park = m_config.max_parked_pages != 0;
      forget(which, page, park);
      drop_run(which, page, 1, park);
      if (park) evict_parked(which);
    }
  }
}

// ---------------------------------------------------------------------------
// Faults.

Prot ShadowMmu::prot_for(Window which, bool user_page, bool writable_page, bool dirty,
                         uint32_t pfn) const {
  (void)user_page;  // the caller leaves supervisor pages out of the user window
  // User writes need R/W; supervisor writes need it only with CR0.WP (SDM 4.6.1).
  const bool may_write = which == Window::kUser ? writable_page
                                                : (writable_page || !m_control.wp());
  // Writable only once dirty: the first write must fault so that D gets set
  // (SDM 4.8); never writable while the frame holds translated code or is
  // exec-clean (a write must first revoke what depends on its contents).
  const bool writable = may_write && dirty && !(m_frame[pfn] & kFrameWriteProtect);
  if (writable) {
    // With exec_only_clean a page the host may write is never one it may
    // execute: its contents could become a cpuid without a fault.
    return which == Window::kUser && !m_config.exec_only_clean ? Prot::All : Prot::ReadWrite;
  }
  // User code runs from the user window (with exec_only_clean: only from
  // frames known to hold no cpuid); nothing executes from the kernel window
  // (translated code lives in the translation cache).
  const bool exec = which == Window::kUser && (!m_config.exec_only_clean || (m_frame[pfn] & kFrameClean));
  return exec ? Prot::ReadExec : Prot::Read;
}

bool ShadowMmu::same_mapping(Window which, const Candidate& c) const {
  auto s = lookup(which, c.index << 12);
  return s && s->phys == (c.pfn << 12) && s->writable == has(c.prot, Prot::Write) &&
         s->executable == has(c.prot, Prot::Exec);
}

HostFaultOutcome ShadowMmu::install(Window which, std::vector<Candidate>& pages) {
  // `pages` is sorted by linear page. One call per run that is contiguous in
  // both linear and physical space with equal protection. A run whose pages
  // are all already mapped to the same physical pages only changes
  // protection (mprotect keeps the host's page-table entries); so does a
  // run of pages parked with the same physical pages. Runs therefore also
  // split where that changes.
  WindowState& w = m_windows[int(which)];
  PageMapper& mapper = *w.mapper;
  auto held = [&](const Candidate& c) {  // 0: remap; 1: mapped to c.pfn; 2: parked with c.pfn
    const auto& region = w.regions[c.index / kPagesPerRegion];
    if (!region) return 0;
    const uint32_t e = region->slots[c.index % kPagesPerRegion].entry;
    if ((e >> 12) != c.pfn) return 0;
    return (e & kSlotValid) ? 1 : (e & kSlotParked) ? 2 : 0;
  };
  size_t i = 0;
  while (i < pages.size()) {
    const bool reuse = held(pages[i]) != 0;
    uint64_t unparked = reuse && held(pages[i]) == 2;
    size_t j = i + 1;
    while (j < pages.size() && pages[j].index == pages[j - 1].index + 1 &&
           pages[j].pfn == pages[j - 1].pfn + 1 && pages[j].prot == pages[i].prot) {
      const int h = held(pages[j]);
      if ((h != 0) != reuse) break;
      unparked += h == 2;
      ++j;
    }
    const bool remap = !reuse;
    const GuestVirt va(pages[i].index << 12);
    const uint64_t len = uint64_t(j - i) << 12;
    Status st = remap ? mapper.map(va, GuestPhys(pages[i].pfn << 12), len, pages[i].prot)
                      : mapper.protect(va, len, pages[i].prot);
    if (!st) {
      HostFaultOutcome out;
      out.kind = HostFaultOutcome::Kind::kHostError;
      out.error = st.error().message;
      return out;
    }
    ++(remap ? m_stats.map_calls : m_stats.protect_calls);
    m_stats.pages_mapped += j - i;
    m_stats.pages_unparked += unparked;
    for (size_t k = i; k < j; ++k) {
      const uint32_t flags = pages[k].flags | (has(pages[k].prot, Prot::Write) ? kSlotWritable : 0) |
                             (has(pages[k].prot, Prot::Exec) ? kSlotExec : 0);
      record(which, pages[k].index, pages[k].pfn, flags);
    }
    i = j;
  }
  return HostFaultOutcome{};
}

HostFaultOutcome ShadowMmu::handle_host_fault(Window which, uint32_t lin, Access kind) {
  using Kind = HostFaultOutcome::Kind;
  const bool user = which == Window::kUser;
  const bool write = kind == Access::kWrite;
  HostFaultOutcome out;
  Translation t = translate(*m_memory, m_control, lin, kind, user);
  switch (t.status) {
    case WalkStatus::kPageFault:
      ++m_stats.true_faults;
      out.kind = Kind::kGuestFault;
      out.fault = machine::GuestFault{machine::vec::PF, true, t.error_code, lin};
      return out;
    case WalkStatus::kTableNotRam:
      ++m_stats.not_ram_faults;
      out.kind = Kind::kTableNotRam;
      out.phys = t.phys;
      return out;
    case WalkStatus::kNotRam:
      // The access goes to a device: it happens, so A/D are set now.
      ++m_stats.not_ram_faults;
      mark_accessed(*m_memory, t, write);
      out.kind = Kind::kNotRam;
      out.phys = t.phys;
      return out;
    case WalkStatus::kOk:
      break;
  }
  const uint32_t page = lin >> 12;
  const uint32_t pfn = t.phys >> 12;
  if (user && m_config.user_base == 0 && page == 0) {
    // vm.mmap_min_addr: the host cannot map linear page 0 of the user window.
    out.kind = Kind::kUnmappable;
    out.phys = t.phys;
    return out;
  }
  // Self-modifying code, or a write to an exec-clean frame: the translator
  // drops the page's blocks and user mappings lose PROT_EXEC before the
  // write can happen; the page is writable from now on.
  if (write && (m_frame[pfn] & kFrameWriteProtect)) frame_written(pfn, false);
  const bool was_dirty = t.dirty;
  mark_accessed(*m_memory, t, write);
  if (write) t.dirty = true;
  if (write && !was_dirty) {
    if (auto s = lookup(which, lin); s && s->phys == (pfn << 12)) ++m_stats.dirty_upgrades;
  }

  // A user fetch with exec_only_clean: the page may become executable only
  // if the shadow maps it read-only and the frame holds no cpuid. Scan the
  // frame now if that is unknown (never on reads or writes: a page merely
  // read is mapped non-executable until its first fetch).
  bool not_executable = false;
  if (kind == Access::kFetch && user && m_config.exec_only_clean) {
    Prot prot = prot_for(which, t.user, t.writable, t.dirty, pfn);
    if (!has(prot, Prot::Exec) && !has(prot, Prot::Write) && make_exec_clean(pfn))
      prot = prot_for(which, t.user, t.writable, t.dirty, pfn);
    if (!has(prot, Prot::Exec)) {
      not_executable = true;
      ++m_stats.not_executable_faults;
      out.kind = Kind::kNotExecutable;
      out.phys = pfn << 12;
      // Already mapped as it should be (the common case when the run loop
      // comes back to this page): nothing to install.
      if (auto s = lookup(which, lin); s && s->phys == (pfn << 12) && s->writable == has(prot, Prot::Write) &&
                                       !s->executable)
        return out;
    }
  }

  std::vector<Candidate>& pages = m_scratch;
  pages.clear();
  const uint32_t* ahead_entries = nullptr;  // the page table of a 4 KiB page (park_ahead)
  const uint32_t region_first = page & ~(kPagesPerRegion - 1);
  const uint32_t ram_pages = uint32_t(m_rmap_head.size());
  const uint32_t first_allowed = (user && m_config.user_base == 0) ? 1 : 0;
  if (t.large) {
    // A guest 4 MiB page (or the identity map with paging off): the whole
    // page in one call, minus what is not RAM.
    const uint32_t base_pfn = (t.phys >> 12) & ~(kPagesPerRegion - 1);
    const uint32_t flags = kSlotLarge | (t.global ? kSlotGlobal : 0);
    for (uint32_t i = 0; i < kPagesPerRegion; ++i) {
      const uint32_t p = base_pfn + i;
      const uint32_t index = region_first + i;
      if (p >= ram_pages || index < first_allowed) continue;
      Candidate c{index, p, prot_for(which, t.user, t.writable, t.dirty, p), flags};
      if (index == page || !same_mapping(which, c)) pages.push_back(c);
    }
  } else {
    // A 4 KiB page: its page table's entries around it, read as needed
    // (the faulting page's physically contiguous run, then the prefault
    // cluster), not the whole table.
    uint32_t pde;
    std::memcpy(&pde, m_memory->host(GuestPhys(t.pde_addr), 4), 4);
    const uint32_t table = pde & pte::kFrameMask;
    uint32_t* entries = reinterpret_cast<uint32_t*>(m_memory->host(GuestPhys(table), kPageSize));
    ahead_entries = entries;
    std::array<Candidate, kPagesPerRegion> all;
    std::array<uint8_t, kPagesPerRegion> state;  // 0 not read yet, 1 mappable, 2 not
    state.fill(0);
    auto ok = [&](uint32_t i) {
      if (state[i] == 0) {
        state[i] = 2;
        uint32_t e;
        std::memcpy(&e, &entries[i], 4);
        const uint32_t index = region_first + i;
        const uint32_t rights = pde & e;
        const bool u = rights & pte::US;
        const uint32_t p = e >> 12;
        // The user window never maps supervisor pages.
        if ((e & pte::P) && index >= first_allowed && (!user || u) && p < ram_pages) {
          // mark_accessed above already set D in the faulting entry on a write.
          all[i] = Candidate{index, p, prot_for(which, u, rights & pte::RW, e & pte::D, p),
                             (e & pte::G) && m_control.pge() ? kSlotGlobal : 0};
          state[i] = 1;
        }
      }
      return state[i] == 1;
    };
    const uint32_t fi = page - region_first;
    if (!ok(fi)) {
      // The walk and the table disagree: cannot happen single-threaded.
      out.kind = Kind::kHostError;
      out.error = "shadow MMU: page table changed during a fault";
      return out;
    }
    std::array<bool, kPagesPerRegion> take;
    take.fill(false);
    take[fi] = true;
    // The faulting page's run, as far as it goes: free to extend.
    auto joins = [&](uint32_t a, uint32_t b) {  // b and a are neighbours; a is taken
      return ok(b) && all[b].pfn + a == all[a].pfn + b && all[b].prot == all[a].prot && !same_mapping(which, all[b]);
    };
    uint32_t lo = fi, hi = fi;
    while (hi + 1 < kPagesPerRegion && joins(hi, hi + 1)) take[++hi] = true;
    while (lo > 0 && joins(lo, lo - 1)) take[--lo] = true;
    // Present neighbours in the prefault cluster.
    const uint32_t cluster = m_config.prefault_cluster_pages;
    const uint32_t c0 = fi & ~(cluster - 1);
    for (uint32_t i = c0; i < c0 + cluster; ++i)
      if (!take[i] && ok(i) && !same_mapping(which, all[i])) take[i] = true;
    lo = std::min(lo, c0);
    hi = std::max(hi, c0 + cluster - 1);
    for (uint32_t i = lo; i <= hi; ++i) {
      if (!take[i]) continue;
      // A neighbour is about to be cached like a speculative TLB fill: set
      // its A bit as the processor would (SDM 4.8, 4.10.2.3).
      if (i != fi) {
        uint32_t e;
        std::memcpy(&e, &entries[i], 4);
        if (!(e & pte::A)) {
          e |= pte::A;
          std::memcpy(&entries[i], &e, 4);
        }
      }
      pages.push_back(all[i]);
    }
  }

  // The faulting page must now allow the access, or we would fault forever.
  for (const Candidate& c : pages) {
    if (c.index != page) continue;
    if (write && !has(c.prot, Prot::Write)) {
      out.kind = Kind::kHostError;
      out.error = "shadow MMU: a write the guest allows was mapped read-only";
      return out;
    }
    if (kind == Access::kFetch && !has(c.prot, Prot::Exec) && !not_executable) {
      out.kind = Kind::kHostError;
      out.error = "shadow MMU: instruction fetch from the kernel window";
      return out;
    }
  }
  HostFaultOutcome installed = install(which, pages);
  if (installed.kind != Kind::kHidden || not_executable) return installed.kind == Kind::kHidden ? out : installed;
  ++m_stats.hidden_faults;
  if (!t.large) park_ahead(which, page, pfn, ahead_entries);
  return installed;
}

void ShadowMmu::park_ahead(Window which, uint32_t page, uint32_t pfn, const uint32_t* entries) {
  const uint32_t want = m_config.park_ahead_pages;
  if (want == 0 || m_config.max_parked_pages == 0) return;
  WindowState& w = m_windows[int(which)];
  const uint32_t in_table = page % kPagesPerRegion;
  if (in_table == 0 || in_table + 1 == kPagesPerRegion) return;
  const auto& region = w.regions[page / kPagesPerRegion];
  if (!region) return;
  // Evidence of an ascending run: the page before maps the frame before.
  const uint32_t before = region->slots[in_table - 1].entry;
  if (!(before & kSlotValid) || (before >> 12) + 1 != pfn) return;
  const uint32_t ram_pages = uint32_t(m_rmap_head.size());
  uint32_t n = 0;
  while (n < want && in_table + 1 + n < kPagesPerRegion && pfn + 1 + n < ram_pages) {
    const uint32_t i = in_table + 1 + n;
    uint32_t e;
    std::memcpy(&e, &entries[i], 4);
    // Only pages the guest has not mapped yet, and slots that hold nothing
    // (the host has only the window's PROT_NONE reservation there).
    if ((e & pte::P) || region->slots[i].entry != 0) break;
    ++n;
  }
  if (n == 0) return;
  if (auto st = w.mapper->map(GuestVirt((page + 1) << 12), GuestPhys((pfn + 1) << 12), uint64_t(n) << 12, Prot::None);
      !st) {
    log::get("mmu")->warn("parking pages ahead failed: {}", st.error().message);
    return;
  }
  ++m_stats.park_ahead_calls;
  m_stats.parked_ahead += n;
  for (uint32_t k = 1; k <= n; ++k) park_slot(which, page + k, pfn + k);
  evict_parked(which);
}

// ---------------------------------------------------------------------------
// Code pages.

void ShadowMmu::write_protect_frame(uint32_t pfn) { take_from_aliases(pfn, kSlotWritable); }

// Takes `flag` (kSlotWritable or kSlotExec) from every mapping of the frame
// that has it: one protect each, with the rights that remain. A mapping that
// cannot be re-protected is dropped instead (the next access maps it again
// with the frame's current rules).
void ShadowMmu::take_from_aliases(uint32_t pfn, uint32_t flag) {
  uint32_t next;
  for (uint32_t n = m_rmap_head[pfn]; n != kNone; n = next) {
    next = m_rmap_nodes[n].next;  // forget() below recycles node n
    const Window which = Window(m_rmap_nodes[n].key & 1);
    const uint32_t page = m_rmap_nodes[n].key >> 1;
    Slot& slot = m_windows[int(which)].regions[page / kPagesPerRegion]->slots[page % kPagesPerRegion];
    if (!(slot.entry & flag)) continue;
    // What stays: never write (both callers take it or it is absent:
    // exec-clean frames have no writable mapping); execute as it was,
    // unless that is what is taken.
    const Prot prot = (slot.entry & kSlotExec & ~flag) ? Prot::ReadExec : Prot::Read;
    if (auto st = m_windows[int(which)].mapper->protect(GuestVirt(page << 12), kPageSize, prot); !st) {
      log::get("mmu")->warn("re-protecting a shadow page failed ({}); dropping it", st.error().message);
      forget(which, page);
      (void)m_windows[int(which)].mapper->unmap(GuestVirt(page << 12), kPageSize);
      ++m_stats.unmap_calls;
      ++m_stats.pages_dropped;
      continue;
    }
    ++m_stats.protect_calls;
    slot.entry &= ~flag;
  }
}

void ShadowMmu::protect_code_page(uint32_t phys) {
  const uint32_t pfn = phys >> 12;
  if (pfn >= m_frame.size() || (m_frame[pfn] & kFrameCode)) return;
  m_frame[pfn] |= kFrameCode;
  ++m_stats.code_pages_protected;
  write_protect_frame(pfn);
}

void ShadowMmu::unprotect_code_page(uint32_t phys) {
  // Mappings stay read-only; the next write takes a hidden fault and maps
  // the page writable (unless the frame is still exec-clean: that write
  // revokes its execute permission first).
  const uint32_t pfn = phys >> 12;
  if (pfn < m_frame.size()) m_frame[pfn] &= uint8_t(~kFrameCode);
}

bool ShadowMmu::code_page_protected(uint32_t phys) const {
  const uint32_t pfn = phys >> 12;
  return pfn < m_frame.size() && (m_frame[pfn] & kFrameCode);
}

bool ShadowMmu::exec_clean(uint32_t phys) const {
  const uint32_t pfn = phys >> 12;
  return pfn < m_frame.size() && (m_frame[pfn] & kFrameClean);
}

bool ShadowMmu::make_exec_clean(uint32_t pfn) {
  uint8_t& f = m_frame[pfn];
  if (f & kFrameClean) return true;
  const uint8_t* p = m_memory->host(GuestPhys(pfn << 12), kPageSize);
  if (f & kFrameCpuid) {
    // The frame is not write-protected, so the verdict may be stale: it
    // holds as long as the pair found is still there.
    const uint32_t at = m_cpuid_at[pfn];
    if (p[at] == 0xa2 && (at == 0 || p[at - 1] == 0x0f)) return false;
    f &= uint8_t(~kFrameCpuid);
  }
  ++m_stats.exec_scans;
  if (const int at = find_cpuid(p); at >= 0) {
    ++m_stats.exec_dirty_scans;
    f |= kFrameCpuid;
    m_cpuid_at[pfn] = uint16_t(at);
    return false;
  }
  // Clean from now until written: no alias may write it without a fault.
  f |= kFrameClean;
  write_protect_frame(pfn);
  return true;
}

void ShadowMmu::frame_written(uint32_t pfn, bool by_cpu) {
  uint8_t& f = m_frame[pfn];
  if (f & kFrameClean) {
    // No user mapping may execute the frame once its contents change.
    f &= uint8_t(~kFrameClean);
    ++m_stats.exec_revoked;
    take_from_aliases(pfn, kSlotExec);
  }
  if (f & kFrameCode) {
    ++(by_cpu ? m_stats.code_writes_by_cpu : m_stats.code_write_faults);
    f &= uint8_t(~kFrameCode);
    if (m_on_code_write) m_on_code_write(pfn << 12);
  }
}

void ShadowMmu::phys_page_written(uint32_t phys_page) {
  // PagedMemory calls this after the write; no guest code ran in between
  // (one virtual CPU, stopped while the CPU model runs), so revoking now is
  // as good as before.
  const uint32_t pfn = phys_page >> 12;
  if (pfn >= m_frame.size() || !(m_frame[pfn] & kFrameWriteProtect)) return;
  frame_written(pfn, true);
}

}  // namespace bt86::mmu
