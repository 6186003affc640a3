#include "runtime/ldt_mirror.h"

#include <asm/ldt.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace bt86::runtime::detail {
namespace {

// Linux modify_ldt "write, new mode" (func 0x11): lets us write present bits.
long modify_ldt_write(user_desc* d) { return syscall(SYS_modify_ldt, 0x11, d, sizeof *d); }

}  // namespace

Result<uint32_t> LdtMirror::write_entry(uint16_t index, const SegmentCache& c, bool is_cs, bool present) {
  user_desc d{};
  d.entry_number = index;
  uint32_t limit = 0;
  if (present) {
    if (c.system() || !c.present())
      return make_error("descriptor is not a present code or data segment");
    if (m_boundary > 0xffffffffull) {
      // No boundary (the user window holds only user pages): the guest's
      // descriptor as it is, wrap-around at 4 GiB included (glibc's i386
      // TLS reaches its variables at negative offsets from GS).
      limit = c.limit;
    } else if (c.expand_down()) {
      // Valid offsets are (limit, top]; keep it only if it ends below the boundary.
      const uint64_t top = c.big() ? 0xffffffffull : 0xffffull;
      if (uint64_t(c.base) + top >= m_boundary) return make_error("expand-down segment crosses the boundary");
      limit = c.limit;
    } else {
      if (uint64_t(c.base) >= m_boundary) return make_error("segment base lies above the boundary");
      const uint64_t max_limit = m_boundary - 1 - c.base;
      limit = uint32_t(std::min<uint64_t>(c.limit, max_limit));
    }
    d.base_addr = c.base;
    d.seg_32bit = c.big();
    d.useable = (c.attr & SegmentCache::kAvl) ? 1 : 0;
    if (c.code()) {
      d.contents = 2;  // Linux refuses conforming code; nothing at CPL 3 can tell
      d.read_exec_only = c.readable() ? 0 : 1;
    } else {
      if (is_cs) return make_error("CS must hold a code segment");
      d.contents = c.expand_down() ? 1 : 0;
      d.read_exec_only = c.writable() ? 0 : 1;
    }
    if (limit > 0xfffff) {
      // Page granularity rounds down, never up: never reach past the cut.
      const bool round_trip = ((uint64_t(limit) + 1) & 0xfff) == 0;
      d.limit = uint32_t((uint64_t(limit) + 1) / 4096 - 1);
      d.limit_in_pages = 1;
      if (!round_trip) limit = uint32_t((uint64_t(d.limit) + 1) * 4096 - 1);
    } else {
      d.limit = limit;
    }
  } else {
    d.seg_not_present = 1;
    d.read_exec_only = 1;
  }
  if (modify_ldt_write(&d) != 0) return make_error(std::string("modify_ldt failed: ") + strerror(errno));
  ++m_writes;
  return limit;
}

Result<uint16_t> LdtMirror::load_slot(Seg s, const SegmentCache& cache) {
  const int i = static_cast<int>(s);
  const bool is_cs = s == Seg::CS, is_ss = s == Seg::SS;
  const bool null = (cache.selector & ~3) == 0 || !cache.present();
  if (null) {
    if (is_cs || is_ss) return make_error(std::string(seg_name(s)) + " holds a null or absent segment");
    return uint16_t(0);
  }
  if (is_ss && !cache.writable()) return make_error("SS must hold a writable data segment");
  if (!is_cs && cache.code() && !cache.readable())
    return make_error(std::string(seg_name(s)) + " holds an execute-only code segment");
  if (m_slots[i].valid && m_slots[i].guest == cache) return slot_selector(s);
  auto limit = write_entry(kSlotBase + i, cache, is_cs, true);
  if (!limit) {
    // Not representable below the boundary: data segments become null (any
    // access faults and the monitor can emulate it); CS/SS cannot run.
    if (is_cs || is_ss) return make_error(std::string(seg_name(s)) + ": " + limit.error().message);
    m_slots[i].valid = false;
    return uint16_t(0);
  }
  m_slots[i] = {cache, true};
  m_slot_limit[i] = *limit;
  return slot_selector(s);
}

Status LdtMirror::mirror_ldt_entry(uint16_t index, const SegmentCache& desc) {
  if (index >= kLdtMirrorEntries) return make_error("LDT index out of the mirrored range");
  const uint16_t host_index = index;
  auto it = m_mirrored.find(host_index);
  if (it != m_mirrored.end() && it->second == desc) return Ok{};
  bool usable = !desc.system() && desc.present() && desc.dpl() == 3;
  if (usable) {
    auto r = write_entry(host_index, desc, desc.code(), true);
    if (!r) usable = false;
  }
  if (!usable) {
    auto r = write_entry(host_index, desc, false, false);
    if (!r) return Error{r.error()};
  }
  m_mirrored[host_index] = desc;
  return Ok{};
}

std::optional<SegmentCache> LdtMirror::guest_view(Seg s, uint16_t host_selector) const {
  const int i = static_cast<int>(s);
  if (host_selector == slot_selector(s) && m_slots[i].valid) return m_slots[i].guest;
  if ((host_selector & ~3) == 0) return SegmentCache{host_selector, 0, 0, 0};
  if (!(host_selector & 4)) return std::nullopt;  // a host GDT selector
  auto it = m_mirrored.find(uint16_t(host_selector >> 3));
  if (it == m_mirrored.end()) return std::nullopt;
  SegmentCache view = it->second;
  view.selector = host_selector;  // identity: guest LDT selector == host LDT selector
  return view;
}

}  // namespace bt86::runtime::detail
