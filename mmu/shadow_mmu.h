// ShadowMmu: shadow paging with the host page tables of two guest windows as
// the shadow (DESIGN.md §1, §3; mmu/README.md).
//
// - The USER window (host base 0 in bt86) is what guest user code running
//   directly in compatibility mode sees. It only ever maps pages a CPL-3
//   access may touch (U/S = 1 at both levels), writable only where a user
//   write is allowed.
// - The KERNEL window (a 4 GiB-aligned base, e.g. 1 << 36) is what translated
//   CPL-0 code sees through its GS base. It maps every present page, writable
//   by supervisor rules (CR0.WP = 0 lets the supervisor write read-only pages).
//
// Both windows are filled lazily from host faults: the run loop hands every
// host fault inside a window to handle_host_fault(), which walks the guest
// page tables and either maps the page (a hidden fault: retry the
// instruction), returns the #PF to inject (a true fault), or reports that the
// physical address is not RAM (MMIO: emulate the access). Like a TLB, the
// shadow may lag guest page-table writes until the guest flushes with a CR3
// load or INVLPG (SDM vol. 3A, 4.10.4), so guest page tables are not
// write-protected.
//
// Guest user code must never run the host's cpuid (this host cannot make
// cpuid fault, and the guest must see its virtual CPU in both modes). With
// ShadowConfig::exec_only_clean the user window maps a page executable only
// when it is read-only there and its frame was scanned and holds no cpuid
// ("exec-clean"); such a frame is write-protected everywhere so that a write
// revokes the execute permission before it lands. A fetch the host must not
// make comes back as HostFaultOutcome::Kind::kNotExecutable: run it translated.
//
// Not thread-safe, not async-signal-safe: call it from the run loop after the
// signal handler has returned.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "machine/linear_memory.h"
#include "mmu/guest_memory.h"
#include "mmu/page_mapper.h"
#include "mmu/page_walk.h"
#include "mmu/paged_memory.h"

namespace bt86::mmu {

enum class Window : uint8_t { kUser = 0, kKernel = 1 };

struct ShadowConfig {
  uintptr_t user_base = 0;                     // 0 in bt86; tests may move it
  uintptr_t kernel_base = uintptr_t(1) << 36;  // 4 GiB aligned, not overlapping user_base
  // On a hidden fault on a 4 KiB page, present neighbours in the aligned
  // cluster of this many pages (power of two, 1..1024) are mapped too, one
  // mmap per physically contiguous run. The faulting page's own run is
  // always extended across its whole page table (that costs no extra call).
  uint32_t prefault_cluster_pages = 16;
  // Dropped 4 KiB mappings are parked (PageMapper::park) rather than
  // unmapped, so that re-installing the same page at the same address is a
  // protect, not a new mapping. At most this many pages per window stay
  // parked (each may be a host VMA; vm.max_map_count is 65530): beyond it
  // the oldest are unmapped for real. 0 disables parking.
  uint32_t max_parked_pages = 4096;
  // Guest kernels often hand out physically ascending frames to a process
  // that touches fresh memory in ascending order (Linux: memset of a new
  // buffer). When a 4 KiB page just installed extends such a run (the page
  // before it maps the frame before it), up to this many following pages
  // whose guest entries are not present yet, and which the shadow holds
  // nothing for, are mapped to the following frames at once, parked
  // (inaccessible): if the guest then gives them those frames, installing
  // them is a protect (about 2 us here) instead of an mmap (4-5 us). A wrong
  // guess costs nothing but the one mmap that parked them. Needs parking
  // (max_parked_pages > 0); 0 disables.
  uint32_t park_ahead_pages = 16;
  // Guest user code may only run on the host from pages that cannot hold a
  // cpuid instruction (0F A2): a user-window mapping gets PROT_EXEC only if
  // it is read-only and its frame is exec-clean (scanned on a fetch fault,
  // then write-protected in both windows until written). Fetches from other
  // user pages return kNotExecutable. false: every user-window mapping is
  // PROT_READ|PROT_EXEC as before (tests that run foreign code without a
  // translator). Off by default until the run loop handles kNotExecutable.
  bool exec_only_clean = false;
  // After a CR3 load, re-map at once (one mmap per run, A set as for a
  // speculative fill) the 4 KiB pages the new tables give a different frame,
  // instead of parking them until the next touch. Off: no clear win measured
  // on forkwait (fewer hidden faults, more pages mapped, more fetches from
  // pages not yet known exec-clean).
  bool remap_after_cr3 = false;
};

struct HostFaultOutcome {
  enum class Kind : uint8_t {
    kHidden,       // mapped: retry the instruction
    kGuestFault,   // inject `fault` (#PF, CR2 = the linear address)
    kNotRam,       // allowed, but `phys` is not guest RAM: emulate the access (MMIO)
    kTableNotRam,  // the guest's page-table entry at `phys` is not in RAM: guest error
    kUnmappable,   // allowed, but the host cannot map it (user page 0 at base 0)
    kHostError,    // mmap/mprotect failed (`error`): stop bt86 with the message
    // Only for a fetch in the user window with exec_only_clean: the guest
    // may execute this page but the host must not (the frame `phys` holds a
    // cpuid, or the page is writable in the shadow): run it translated. The
    // page is mapped readable (writable as the guest allows), never
    // executable; A is set. Retrying directly would fault again.
    kNotExecutable,
  };
  Kind kind = Kind::kHidden;
  machine::GuestFault fault;
  uint32_t phys = 0;
  std::string error;
};

struct ShadowStats {
  uint64_t hidden_faults = 0;
  uint64_t true_faults = 0;
  uint64_t not_ram_faults = 0;      // MMIO (and page tables outside RAM)
  uint64_t dirty_upgrades = 0;      // write faults that only set D and made a page writable
  uint64_t pages_mapped = 0;        // pages installed by map or protect calls
  uint64_t map_calls = 0;
  uint64_t protect_calls = 0;
  uint64_t pages_dropped = 0;
  uint64_t pages_kept = 0;  // mappings a CR3 load left in place (the new tables agreed)
  uint64_t pages_remapped = 0;  // mappings a CR3 load re-mapped at once to the new tables' frame
  uint64_t unmap_calls = 0;          // park or unmap calls for those drops
  uint64_t pages_parked = 0;         // dropped pages parked (of pages_dropped)
  uint64_t pages_unparked = 0;       // parked pages re-installed by a protect call
  uint64_t parked_evicted = 0;       // parked pages unmapped for real (over the cap)
  uint64_t evict_calls = 0;          // unmap calls for those
  uint64_t parked_ahead = 0;         // pages parked ahead of an ascending run (park_ahead_pages)
  uint64_t park_ahead_calls = 0;     // map calls for those
  uint64_t cr3_loads = 0;
  uint64_t full_flushes = 0;        // paging-mode changes (PG, WP, PSE, PGE, PAE)
  uint64_t invlpgs = 0;
  uint64_t code_pages_protected = 0;
  uint64_t code_write_faults = 0;   // host write faults on protected code pages
  uint64_t code_writes_by_cpu = 0;  // CPU-model writes (PagedMemory) to protected code pages
  // exec_only_clean:
  uint64_t exec_scans = 0;             // frames scanned for cpuid (fetch faults only)
  uint64_t exec_dirty_scans = 0;       // of those, frames that hold one (or start with A2)
  uint64_t not_executable_faults = 0;  // kNotExecutable returned
  uint64_t exec_revoked = 0;           // exec-clean frames written (execute permission revoked)
};

// What the shadow holds for one linear page of one window.
struct ShadowPage {
  uint32_t phys = 0;  // page address
  bool writable = false;
  bool global = false;
  bool large = false;  // part of a guest 4 MiB page (or paging off)
  bool executable = false;  // mapped with PROT_EXEC (user window only)
};

class ShadowMmu final : private PhysWriteObserver {
 public:
  // Reserves both windows (GuestWindow) at the configured bases.
  static Result<std::unique_ptr<ShadowMmu>> create(GuestMemory& memory, const ShadowConfig& config);
  // Over any PageMapper pair (a stub process, test doubles). The mappers'
  // linear address 0 is the window's base.
  ShadowMmu(GuestMemory& memory, std::unique_ptr<PageMapper> user,
            std::unique_ptr<PageMapper> kernel, const ShadowConfig& config);
  ~ShadowMmu() override;
  ShadowMmu(const ShadowMmu&) = delete;
  ShadowMmu& operator=(const ShadowMmu&) = delete;

  // A host fault at window base + lin; kind from the host #PF error code.
  // The user window takes CPL-3 rights, the kernel window supervisor rights.
  HostFaultOutcome handle_host_fault(Window which, uint32_t lin, machine::Access kind);

  // Takes the current CR0/CR3/CR4 (start-up, snapshot restore, CR0/CR4
  // writes). A change of paging on/off, CR0.WP, CR4.PSE, CR4.PGE or CR4.PAE
  // drops every shadow mapping; otherwise a different CR3 counts as a CR3
  // load (non-global mappings dropped).
  void set_control_registers(uint32_t cr0, uint32_t cr3, uint32_t cr4);
  // MOV to CR3: drops every non-global mapping of both windows (global ones
  // stay when CR4.PGE), even when the value did not change (SDM 4.10.4.1).
  void load_cr3(uint32_t cr3);
  // INVLPG: drops the page of lin in both windows; the whole 4 MiB page if
  // that page came from a guest 4 MiB page.
  void invlpg(uint32_t lin);
  // Drops everything (both windows).
  void flush_all();

  // Self-modifying code. A protected physical page is mapped read-only in
  // every window at every linear address, now and when mapped later. A write
  // to it that the guest's rights allow (a host write fault, or a CPU-model
  // write through linear_memory()) unprotects it and calls the callback
  // first, so the translator drops its blocks. The callback must not
  // protect the same page again from inside the call.
  void protect_code_page(uint32_t phys);
  void unprotect_code_page(uint32_t phys);
  bool code_page_protected(uint32_t phys) const;
  void set_code_write_callback(std::function<void(uint32_t phys_page)> callback) {
    m_on_code_write = std::move(callback);
  }
  // exec_only_clean: whether the frame is known to hold no cpuid (and is
  // therefore write-protected in both windows). Independent of
  // code_page_protected(): unprotect_code_page() leaves it alone.
  bool exec_clean(uint32_t phys) const;

  // The guest linear address space for the CPU model (same control registers).
  machine::LinearMemory& linear_memory() { return m_linear; }
  PagedMemory& paged_memory() { return m_linear; }  // its TLB switch and stats
  const PagingControl& control() const { return m_control; }
  uintptr_t window_base(Window which) const {
    return which == Window::kUser ? m_config.user_base : m_config.kernel_base;
  }
  const ShadowStats& stats() const { return m_stats; }
  // Introspection (tests, --stats, debugging).
  std::optional<ShadowPage> lookup(Window which, uint32_t lin) const;
  uint64_t mapped_pages(Window which) const { return m_windows[int(which)].pages; }
  uint64_t parked_pages(Window which) const { return m_windows[int(which)].parked; }
  // Whether the 4 KiB page of lin is parked (dropped, its host mapping kept
  // inaccessible), and with which physical page.
  std::optional<uint32_t> parked_phys(Window which, uint32_t lin) const;

 private:
  // One shadow entry per linear page, grouped by 4 MiB region so that drops
  // only visit regions that hold something.
  static constexpr uint32_t kPagesPerRegionWords = 1024 / 64;
  struct Slot {
    uint32_t entry = 0;  // phys page | kSlot* flags
    uint32_t node = 0;   // reverse-map node; when parked, the park tick
  };
  struct Region {
    std::array<Slot, 1024> slots{};
    uint32_t count = 0;
    uint32_t local = 0;  // valid slots without kSlotGlobal (CR3 loads visit only regions with some)
    uint32_t parked = 0;  // parked slots (not counted in count)
    // One bit per valid slot: drops and CR3 revalidation visit only these
    // (a region typically holds a few dozen pages of its 1024 slots).
    std::array<uint64_t, kPagesPerRegionWords> valid{};
  };
  struct WindowState {
    std::unique_ptr<PageMapper> mapper;
    std::array<std::unique_ptr<Region>, 1024> regions;
    uint64_t pages = 0;
    uint32_t parked = 0;
    // Parked pages, oldest first, as (linear page, tick): an entry is stale
    // once its slot is no longer parked with that tick (re-installed, or
    // parked again later).
    std::deque<std::pair<uint32_t, uint32_t>> park_fifo;
    uint32_t park_tick = 0;
  };
  // Reverse map: physical page -> every (window, linear page) that maps it,
  // a doubly linked list per physical page so removal is O(1) even for a
  // page with thousands of aliases (the guest's zero page).
  struct RmapNode {
    uint32_t key;  // linear page number << 1 | window
    uint32_t prev;
    uint32_t next;
  };
  // A page the current fault wants installed.
  struct Candidate {
    uint32_t index;  // linear page number
    uint32_t pfn;
    Prot prot;
    uint32_t flags;  // kSlotGlobal | kSlotLarge
  };

  Prot prot_for(Window which, bool user_page, bool writable_page, bool dirty, uint32_t pfn) const;
  // Makes every writable mapping of the frame read-only (both windows).
  void write_protect_frame(uint32_t pfn);
  void take_from_aliases(uint32_t pfn, uint32_t flag);
  // A write the guest's rights allow is about to land in the frame (host
  // write fault), or just landed (CPU-model write; no guest code ran in
  // between): drop its exec-clean state (removing PROT_EXEC from every user
  // mapping) and its code protection (calling the code-write callback).
  void frame_written(uint32_t pfn, bool by_cpu);
  // Whether the frame is exec-clean; scans it if not known (the verdict
  // "holds cpuid" is cached with its offset and re-checked in O(1)). A
  // frame found clean becomes exec-clean and write-protected.
  bool make_exec_clean(uint32_t pfn);
  HostFaultOutcome install(Window which, std::vector<Candidate>& pages);
  bool same_mapping(Window which, const Candidate& c) const;
  void record(Window which, uint32_t page, uint32_t pfn, uint32_t flags);
  // Removes the mapping of a valid slot; with park, leaves the slot parked
  // with its physical page (the caller parks the host mapping).
  void forget(Window which, uint32_t page, bool park = false);
  // Clears a parked slot (re-mapped, or unmapped for real).
  void unpark(Window which, uint32_t page);
  // Parks (or unmaps) one run of dropped pages, whose slots forget() has
  // already parked (or cleared).
  void drop_run(Window which, uint32_t start, uint32_t len, bool park);
  // After a 4 KiB install of `page` (frame pfn, page-table entries
  // `entries`): parks the following frames ahead of an ascending run
  // (ShadowConfig::park_ahead_pages).
  void park_ahead(Window which, uint32_t page, uint32_t pfn, const uint32_t* entries);
  // Makes a slot parked with frame pfn (the caller mapped it PROT_NONE, or
  // the slot was valid and forget() just unlinked it).
  void park_slot(Window which, uint32_t page, uint32_t pfn);
  // Unmaps the oldest parked pages while the window holds more than the cap.
  void evict_parked(Window which);
  // Drops every mapping of the given window's regions for which
  // keep(linear page, slot) is false; contiguous linear pages go in one
  // unmap call. local_only: skip regions without non-global mappings.
  template <typename Keep>
  void drop_where(Window which, uint32_t first_region, uint32_t end_region, bool local_only, Keep keep);
  void drop_all_where(bool keep_global);
  // After a CR3 load: keep each non-global mapping that the new page tables
  // give the same physical page with at least the rights mapped, drop the rest.
  void revalidate_after_cr3();
  // Whether the current tables still translate this mapped page as its slot
  // says (same frame and size, rights at least those mapped; a writable
  // mapping the tables now make read-only is write-protected here). Sets A as
  // a refill would. Global slots are the caller's business.
  bool still_valid(Window which, uint32_t page, Slot& slot);
  // What the current tables make of a mapped (non-global) page: keep it as
  // it is, keep it after write-protecting it, or drop it (t is the walk).
  enum class Verdict : uint8_t { kKeep, kWriteProtect, kDrop };
  Verdict check(Window which, uint32_t page, uint32_t entry, Translation& t) const;
  // Keeps a slot check() accepted: sets A as a refill would, marks it
  // global if the tables now say so.
  void keep(Window which, uint32_t page, Slot& slot, const Translation& t);
  void phys_page_written(uint32_t phys_page) override;

  GuestMemory* m_memory;
  ShadowConfig m_config;
  PagingControl m_control;
  std::array<WindowState, 2> m_windows;
  std::vector<uint32_t> m_rmap_head;  // per physical page; kNone if unmapped
  std::vector<RmapNode> m_rmap_nodes;
  uint32_t m_rmap_free = 0;           // free-list head (kNone if empty)
  // Per physical page: kFrame* bits (translated code, exec-clean, holds cpuid).
  std::vector<uint8_t> m_frame;
  std::vector<uint16_t> m_cpuid_at;   // kFrameCpuid: offset of the A2 byte found
  std::function<void(uint32_t)> m_on_code_write;
  PagedMemory m_linear;
  ShadowStats m_stats;
  std::vector<Candidate> m_scratch;
  std::vector<uint32_t> m_evict_scratch;
  std::vector<Candidate> m_remap_scratch;
};

}  // namespace bt86::mmu
