// Segmentation as a 686 does it in protected mode (Intel SDM vol. 3, ch. 3
// and 5): reading descriptors from the GDT/LDT, the architectural checks of
// every segment-register load (null selector, table limit, type, S, DPL/RPL/
// CPL, present) with the fault and error code each check raises, the
// accessed and busy bits, LLDT/LTR and the LAR/LSL/VERR/VERW tests, and the
// limit/type checks of an access through a loaded segment.
//
// Every function that can fault returns a Fault (an optional GuestFault):
// empty on success, otherwise the exception to deliver; on a fault nothing
// in the VcpuState has changed (memory may hold an accessed bit that was set).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "machine/linear_memory.h"
#include "machine/vcpu_state.h"
#include "runtime/cpu_state.h"

namespace bt86::machine {

// An optional GuestFault, returned by every CPU-model function that can
// fault. Not std::optional<GuestFault>: GCC builds an empty optional by
// storing its flag byte alone and then reloads all 16 bytes to return them
// in registers, and a load that spans a smaller store cannot be forwarded
// from it (a store-forwarding stall, ~15 cycles). That happened at every
// level of every memory access: an int 0x80 + iret pair crossed ~40 such
// returns. Two integers are built and returned in registers instead.
class Fault {
 public:
  constexpr Fault() = default;
  constexpr Fault(std::nullopt_t) {}  // NOLINT: implicit, like std::optional
  constexpr Fault(const GuestFault& f)  // NOLINT
      : m_lo(kPresent | f.vector | (f.has_error ? kHasError : 0) | (uint64_t(f.error) << 32)), m_hi(f.cr2) {}
  constexpr Fault(const std::optional<GuestFault>& f) : Fault(f ? Fault(*f) : Fault()) {}  // NOLINT

  constexpr explicit operator bool() const { return m_lo & kPresent; }
  constexpr bool has_value() const { return m_lo & kPresent; }
  // The fault (all zeros when empty).
  constexpr GuestFault value() const {
    return {uint8_t(m_lo), (m_lo & kHasError) != 0, uint32_t(m_lo >> 32), uint32_t(m_hi)};
  }
  constexpr GuestFault operator*() const { return value(); }
  // f->vector: the GuestFault lives in the returned temporary.
  struct Arrow {
    GuestFault fault;
    constexpr const GuestFault* operator->() const { return &fault; }
  };
  constexpr Arrow operator->() const { return {value()}; }
  constexpr void reset() { *this = Fault(); }
  constexpr operator std::optional<GuestFault>() const {  // NOLINT
    return has_value() ? std::optional<GuestFault>(value()) : std::nullopt;
  }

  friend constexpr bool operator==(const Fault& a, const Fault& b) { return a.m_lo == b.m_lo && a.m_hi == b.m_hi; }
  friend constexpr bool operator==(const Fault& a, std::nullopt_t) { return !a; }
  friend constexpr bool operator==(const Fault& a, const GuestFault& b) { return a == Fault(b); }

 private:
  static constexpr uint64_t kHasError = 1u << 8, kPresent = 1u << 9;
  uint64_t m_lo = 0;  // vector, kHasError, kPresent, error code << 32
  uint64_t m_hi = 0;  // CR2
};

// Propagates a fault out of a function that itself returns Fault.
#define BT86_TRY_FAULT(expr)            \
  do {                                  \
    if (::bt86::machine::Fault f_ = (expr)) return f_; \
  } while (0)

inline GuestFault make_fault(uint8_t vector, uint32_t error) { return {vector, true, error, 0}; }
inline GuestFault make_fault(uint8_t vector) { return {vector, false, 0, 0}; }
// The selector error code (SDM vol. 3, 6.13): index and TI of the selector,
// EXT when the fault happened while delivering an external event.
inline uint32_t selector_error(uint16_t selector, bool ext) { return (selector & 0xfffcu) | (ext ? 1u : 0u); }
inline GuestFault selector_fault(uint8_t vector, uint16_t selector, bool ext) {
  return make_fault(vector, selector_error(selector, ext));
}

// System descriptor types (S = 0), SDM vol. 3, table 3-2.
namespace desc_type {
inline constexpr uint8_t kTss16Avail = 1, kLdt = 2, kTss16Busy = 3, kCallGate16 = 4, kTaskGate = 5,
                         kIntGate16 = 6, kTrapGate16 = 7, kTss32Avail = 9, kTss32Busy = 0xb,
                         kCallGate32 = 0xc, kIntGate32 = 0xe, kTrapGate32 = 0xf;
inline constexpr uint8_t kAccessed = 1;  // code/data types: bit 0
inline constexpr uint8_t kBusy = 2;      // TSS types: bit 1
}  // namespace desc_type

// One 8-byte descriptor as it lies in a table (SDM vol. 3, figure 3-8).
struct Descriptor {
  uint32_t lo = 0, hi = 0;

  uint32_t base() const { return (lo >> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000u); }
  uint32_t raw_limit() const { return (lo & 0xffff) | (hi & 0xf0000); }
  bool granular() const { return hi & (1u << 23); }
  // The limit in bytes, granularity applied (SDM vol. 3, 3.4.5).
  uint32_t limit() const { return granular() ? (raw_limit() << 12) | 0xfff : raw_limit(); }
  // Bits 40..47 and 52..55 packed as runtime::SegmentCache::attr.
  uint16_t attr() const { return uint16_t(((hi >> 8) & 0xff) | ((hi >> 12) & 0xf00)); }
  uint8_t type() const { return (hi >> 8) & 0xf; }
  bool s() const { return hi & (1u << 12); }
  uint8_t dpl() const { return (hi >> 13) & 3; }
  bool present() const { return hi & (1u << 15); }
  bool big() const { return hi & (1u << 22); }
  bool code() const { return s() && (type() & 8); }
  bool data() const { return s() && !(type() & 8); }
  bool conforming() const { return code() && (type() & 4); }
  bool readable() const { return data() || (code() && (type() & 2)); }
  bool writable() const { return data() && (type() & 2); }
  // Gate fields (SDM vol. 3, figures 5-8 and 6-2).
  uint16_t gate_selector() const { return uint16_t(lo >> 16); }
  uint32_t gate_offset() const { return (lo & 0xffff) | (hi & 0xffff0000u); }
  uint8_t gate_params() const { return hi & 0x1f; }

  runtime::SegmentCache cache(uint16_t selector) const { return {selector, base(), limit(), attr()}; }
  // cache() stored into `c` field by field, for the hot paths (see set_cache).
  void load_into(runtime::SegmentCache& c, uint16_t selector) const {
    c.selector = selector;
    c.base = base();
    c.limit = limit();
    c.attr = attr();
  }
};

// Copies a segment cache field by field. A plain struct copy moves bytes
// 0..7 and 6..13 as two 8-byte words; right after the fields were stored
// one by one (2 and 4 bytes), such a load spans several stores and cannot
// be forwarded from them: a ~15-cycle stall per copy, and an interrupt or
// IRET copies each new CS and SS twice.
inline void set_cache(runtime::SegmentCache& d, const runtime::SegmentCache& s) {
  d.selector = s.selector;
  d.base = s.base;
  d.limit = s.limit;
  d.attr = s.attr;
}

// A descriptor and the linear address it was read from (to set bits in it).
struct DescriptorRef {
  Descriptor desc;
  uint32_t address = 0;
};

// Reads the descriptor `selector` names, from the GDT or (TI = 1) the LDT,
// with supervisor accesses. A selector beyond the table limit, or TI = 1
// with no usable LDT, raises `vector` (#GP, or #TS during a task switch)
// with the selector error code; a page fault comes back as is. The caller
// handles null selectors before calling this.
Fault read_descriptor(const VcpuState& state, LinearMemory& mem, uint16_t selector, DescriptorRef& out,
                      uint8_t vector = vec::GP, bool ext = false);
// Sets the accessed bit of a code/data descriptor if it is clear (SDM vol. 3, 3.4.5.1).
Fault set_accessed(LinearMemory& mem, DescriptorRef& ref);

// How a segment-register load is checked: against which privilege, and
// which vector a bad selector raises (#GP for instructions and IRET, #TS
// for a task switch or an interrupt's stack switch) and with which EXT bit.
struct LoadRules {
  uint8_t cpl = 0;
  uint8_t vector = vec::GP;
  bool ext = false;
};

// The checks of MOV/POP/LxS to DS, ES, FS, GS or SS in protected mode (SDM
// vol. 2, MOV; vol. 3, 5.5-5.7). On success `out` holds the new cache
// (accessed bit set) and the state is untouched: the caller commits it.
Fault check_segment_load(const VcpuState& state, LinearMemory& mem, runtime::Seg seg, uint16_t selector,
                         LoadRules rules, runtime::SegmentCache& out);
// check_segment_load + commit, with the current CPL; in real mode only the
// base changes (selector << 4). Not for CS (far transfers load CS).
Fault load_segment(VcpuState& state, LinearMemory& mem, runtime::Seg seg, uint16_t selector);

// A null selector's cache: unusable, any access through it faults.
inline runtime::SegmentCache null_segment(uint16_t selector) { return {selector, 0, 0, 0}; }

// LLDT and LTR (SDM vol. 2): CPL 0 is checked by the caller.
Fault load_ldtr(VcpuState& state, LinearMemory& mem, uint16_t selector);
Fault load_tr(VcpuState& state, LinearMemory& mem, uint16_t selector);

// LAR/LSL/VERR/VERW (SDM vol. 2): nullopt when ZF would be cleared. A page
// fault while reading the descriptor is returned through `fault`.
std::optional<uint32_t> lar(const VcpuState& state, LinearMemory& mem, uint16_t selector, Fault& fault);
std::optional<uint32_t> lsl(const VcpuState& state, LinearMemory& mem, uint16_t selector, Fault& fault);
bool verr(const VcpuState& state, LinearMemory& mem, uint16_t selector, Fault& fault);
bool verw(const VcpuState& state, LinearMemory& mem, uint16_t selector, Fault& fault);

// Checks an access of `size` bytes at `offset` through segment `seg` (SDM
// vol. 3, 5.3 limit incl. expand-down, 5.4 type: no write to code or
// read-only data, no read of execute-only code, no use of a null segment)
// and gives the linear address. Faults are #SS(0) for SS, #GP(0) otherwise.
// `cache_linear` does the same for a cache not (yet) in a segment register,
// raising `bad` on failure.
Fault cache_linear(const runtime::SegmentCache& cache, bool protected_mode, uint32_t offset, uint32_t size,
                   Access kind, const GuestFault& bad, uint32_t& linear);
Fault segment_linear(const VcpuState& state, runtime::Seg seg, uint32_t offset, uint32_t size, Access kind,
                     uint32_t& linear);
// segment_linear + the LinearMemory access at the current CPL.
Fault read_segmented(const VcpuState& state, LinearMemory& mem, runtime::Seg seg, uint32_t offset,
                     std::span<uint8_t> out, Access kind = Access::kRead);
Fault write_segmented(const VcpuState& state, LinearMemory& mem, runtime::Seg seg, uint32_t offset,
                      std::span<const uint8_t> in);

// Little-endian helpers for the few-byte values the CPU model moves.
// The host is little-endian (x86-64): 2- and 4-byte values are one move.
static_assert(std::endian::native == std::endian::little);
inline uint32_t load_le(std::span<const uint8_t> b) {
  if (b.size() >= 4) {
    uint32_t v;
    std::memcpy(&v, b.data(), 4);
    return v;
  }
  if (b.size() == 2) {
    uint16_t v;
    std::memcpy(&v, b.data(), 2);
    return v;
  }
  uint32_t v = 0;
  for (size_t i = 0; i < b.size(); ++i) v |= uint32_t(b[i]) << (8 * i);
  return v;
}
inline void store_le(std::span<uint8_t> b, uint32_t v) {
  if (b.size() >= 4) {
    std::memcpy(b.data(), &v, 4);
  } else if (b.size() == 2) {
    const uint16_t h = uint16_t(v);
    std::memcpy(b.data(), &h, 2);
  } else {
    for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(v >> (8 * i));
  }
}
// Supervisor (implicit) reads and writes of a dword/word at a linear address.
Fault read_linear(LinearMemory& mem, uint32_t lin, uint32_t size, uint32_t& value, bool user = false);
Fault write_linear(LinearMemory& mem, uint32_t lin, uint32_t size, uint32_t value, bool user = false);

}  // namespace bt86::machine
