// Descriptor tables and segment-register loads; see descriptors.h. The check
// order follows the pseudocode of MOV, POP, LLDT, LTR, LAR, LSL, VERR and
// VERW in SDM vol. 2, because the order decides which fault a guest sees
// when a selector is wrong in more than one way.
#include "machine/descriptors.h"

#include <array>

namespace bt86::machine {

using runtime::Seg;
using runtime::SegmentCache;

namespace {

bool is_null(uint16_t selector) { return (selector & 0xfffc) == 0; }

}  // namespace

Fault read_linear(LinearMemory& mem, uint32_t lin, uint32_t size, uint32_t& value, bool user) {
  std::array<uint8_t, 4> b{};
  BT86_TRY_FAULT(mem.read(lin, std::span(b.data(), size), Access::kRead, user));
  value = load_le(std::span(b.data(), size));
  return std::nullopt;
}

Fault write_linear(LinearMemory& mem, uint32_t lin, uint32_t size, uint32_t value, bool user) {
  std::array<uint8_t, 4> b{};
  store_le(std::span(b.data(), size), value);
  return mem.write(lin, std::span<const uint8_t>(b.data(), size), user);
}

Fault read_descriptor(const VcpuState& state, LinearMemory& mem, uint16_t selector, DescriptorRef& out,
                      uint8_t vector, bool ext) {
  uint32_t base, limit;
  if (selector & 4) {
    const SegmentCache& ldtr = state.sys.ldtr;
    // TI = 1 with a null or never-loaded LDTR: the index is outside any table.
    if (is_null(ldtr.selector) || !ldtr.present()) return selector_fault(vector, selector, ext);
    base = ldtr.base;
    limit = ldtr.limit;
  } else {
    base = state.sys.gdtr.base;
    limit = state.sys.gdtr.limit;
  }
  const uint32_t offset = selector & 0xfff8u;
  if (offset + 7 > limit) return selector_fault(vector, selector, ext);
  std::array<uint8_t, 8> b{};
  out.address = base + offset;
  BT86_TRY_FAULT(mem.read(out.address, b, Access::kRead, false));
  out.desc.lo = load_le(std::span(b).first(4));
  out.desc.hi = load_le(std::span(b).subspan(4));
  return std::nullopt;
}

Fault set_accessed(LinearMemory& mem, DescriptorRef& ref) {
  if (!ref.desc.s() || (ref.desc.type() & desc_type::kAccessed)) return std::nullopt;
  const uint8_t byte5 = uint8_t((ref.desc.hi >> 8) | desc_type::kAccessed);
  BT86_TRY_FAULT(mem.write(ref.address + 5, std::span<const uint8_t>(&byte5, 1), false));
  ref.desc.hi |= uint32_t(desc_type::kAccessed) << 8;
  return std::nullopt;
}

Fault check_segment_load(const VcpuState& state, LinearMemory& mem, Seg seg, uint16_t selector, LoadRules rules,
                         SegmentCache& out) {
  const uint8_t rpl = selector & 3;
  DescriptorRef ref;
  if (seg == Seg::SS) {
    // SDM vol. 2, MOV: SS can never be null in 32-bit protected mode, and
    // its RPL and DPL must both equal CPL.
    if (is_null(selector)) return make_fault(rules.vector, rules.ext ? 1 : 0);
    if (rpl != rules.cpl) return selector_fault(rules.vector, selector, rules.ext);
    BT86_TRY_FAULT(read_descriptor(state, mem, selector, ref, rules.vector, rules.ext));
    const Descriptor& d = ref.desc;
    if (!d.writable() || d.dpl() != rules.cpl) return selector_fault(rules.vector, selector, rules.ext);
    if (!d.present()) return selector_fault(vec::SS, selector, rules.ext);
  } else {
    // DS, ES, FS, GS: a null selector loads an unusable segment.
    if (is_null(selector)) {
      out = null_segment(selector);
      return std::nullopt;
    }
    BT86_TRY_FAULT(read_descriptor(state, mem, selector, ref, rules.vector, rules.ext));
    const Descriptor& d = ref.desc;
    if (!d.readable()) return selector_fault(rules.vector, selector, rules.ext);
    // Conforming code may be loaded from any privilege (SDM vol. 3, 5.7).
    if (!d.conforming() && (rpl > d.dpl() || rules.cpl > d.dpl()))
      return selector_fault(rules.vector, selector, rules.ext);
    if (!d.present()) return selector_fault(vec::NP, selector, rules.ext);
  }
  BT86_TRY_FAULT(set_accessed(mem, ref));
  ref.desc.load_into(out, selector);
  return std::nullopt;
}

Fault load_segment(VcpuState& state, LinearMemory& mem, Seg seg, uint16_t selector) {
  SegmentCache& reg = state.regs.sreg(seg);
  if (!state.protected_mode() || (state.regs.eflags & runtime::flags::VM)) {
    // Real mode: only selector and base change (SDM vol. 3, 20.1.1).
    reg.selector = selector;
    reg.base = uint32_t(selector) << 4;
    return std::nullopt;
  }
  SegmentCache cache;
  BT86_TRY_FAULT(check_segment_load(state, mem, seg, selector, LoadRules{state.cpl}, cache));
  reg = cache;
  return std::nullopt;
}

Fault load_ldtr(VcpuState& state, LinearMemory& mem, uint16_t selector) {
  if (is_null(selector)) {
    // A null LDTR is legal; any later TI = 1 reference faults.
    state.sys.ldtr = null_segment(selector);
    return std::nullopt;
  }
  if (selector & 4) return selector_fault(vec::GP, selector, false);
  DescriptorRef ref;
  BT86_TRY_FAULT(read_descriptor(state, mem, selector, ref));
  if (ref.desc.s() || ref.desc.type() != desc_type::kLdt) return selector_fault(vec::GP, selector, false);
  if (!ref.desc.present()) return selector_fault(vec::NP, selector, false);
  state.sys.ldtr = ref.desc.cache(selector);
  return std::nullopt;
}

Fault load_tr(VcpuState& state, LinearMemory& mem, uint16_t selector) {
  if (is_null(selector)) return make_fault(vec::GP, 0);
  if (selector & 4) return selector_fault(vec::GP, selector, false);
  DescriptorRef ref;
  BT86_TRY_FAULT(read_descriptor(state, mem, selector, ref));
  const uint8_t type = ref.desc.type();
  if (ref.desc.s() || (type != desc_type::kTss32Avail && type != desc_type::kTss16Avail))
    return selector_fault(vec::GP, selector, false);
  if (!ref.desc.present()) return selector_fault(vec::NP, selector, false);
  // LTR marks the TSS busy in the GDT (SDM vol. 3, 7.2.4).
  const uint8_t byte5 = uint8_t((ref.desc.hi >> 8) | desc_type::kBusy);
  BT86_TRY_FAULT(mem.write(ref.address + 5, std::span<const uint8_t>(&byte5, 1), false));
  ref.desc.hi |= uint32_t(desc_type::kBusy) << 8;
  state.sys.tr = ref.desc.cache(selector);
  return std::nullopt;
}

namespace {

// The descriptor read of LAR/LSL/VERR/VERW: a selector outside the table
// only clears ZF; a page fault is a real fault.
bool read_for_test(const VcpuState& state, LinearMemory& mem, uint16_t selector, Descriptor& d, Fault& fault) {
  if (is_null(selector)) return false;
  DescriptorRef ref;
  if (Fault f = read_descriptor(state, mem, selector, ref)) {
    if (f->vector == vec::PF) fault = f;
    return false;
  }
  d = ref.desc;
  return true;
}

// The privilege test shared by the four (conforming code skips it).
bool visible(const VcpuState& state, uint16_t selector, const Descriptor& d) {
  if (d.conforming()) return true;
  return d.dpl() >= state.cpl && d.dpl() >= (selector & 3);
}

}  // namespace

std::optional<uint32_t> lar(const VcpuState& state, LinearMemory& mem, uint16_t selector, Fault& fault) {
  Descriptor d;
  if (!read_for_test(state, mem, selector, d, fault)) return std::nullopt;
  if (!d.s()) {
    // Valid system types for LAR (SDM vol. 2, LAR, table 3-52).
    switch (d.type()) {
      case desc_type::kTss16Avail: case desc_type::kLdt: case desc_type::kTss16Busy:
      case desc_type::kCallGate16: case desc_type::kTaskGate: case desc_type::kTss32Avail:
      case desc_type::kTss32Busy: case desc_type::kCallGate32:
        break;
      default:
        return std::nullopt;
    }
  }
  if (!visible(state, selector, d)) return std::nullopt;
  return d.hi & 0x00f0ff00u;
}

std::optional<uint32_t> lsl(const VcpuState& state, LinearMemory& mem, uint16_t selector, Fault& fault) {
  Descriptor d;
  if (!read_for_test(state, mem, selector, d, fault)) return std::nullopt;
  if (!d.s()) {
    switch (d.type()) {
      case desc_type::kTss16Avail: case desc_type::kLdt: case desc_type::kTss16Busy:
      case desc_type::kTss32Avail: case desc_type::kTss32Busy:
        break;
      default:
        return std::nullopt;
    }
  }
  if (!visible(state, selector, d)) return std::nullopt;
  return d.limit();
}

bool verr(const VcpuState& state, LinearMemory& mem, uint16_t selector, Fault& fault) {
  Descriptor d;
  if (!read_for_test(state, mem, selector, d, fault)) return false;
  return d.s() && d.readable() && visible(state, selector, d);
}

bool verw(const VcpuState& state, LinearMemory& mem, uint16_t selector, Fault& fault) {
  Descriptor d;
  if (!read_for_test(state, mem, selector, d, fault)) return false;
  return d.writable() && visible(state, selector, d);
}

Fault cache_linear(const SegmentCache& c, bool protected_mode, uint32_t offset, uint32_t size, Access kind,
                   const GuestFault& bad, uint32_t& linear) {
  if (protected_mode) {
    if (!c.present()) return bad;  // null or never loaded
    switch (kind) {
      case Access::kWrite: if (!c.writable()) return bad; break;
      case Access::kRead: if (!c.readable()) return bad; break;
      case Access::kFetch: if (!c.code()) return bad; break;
    }
  }
  const uint64_t last = uint64_t(offset) + (size ? size - 1 : 0);
  if (protected_mode && c.expand_down()) {
    // Valid offsets are limit+1 .. 0xffff or 0xffffffff (SDM vol. 3, 5.3).
    const uint64_t upper = c.big() ? 0xffffffffull : 0xffffull;
    if (offset <= c.limit || last > upper) return bad;
  } else if (last > c.limit) {
    return bad;
  }
  linear = c.base + offset;
  return std::nullopt;
}

Fault segment_linear(const VcpuState& state, Seg seg, uint32_t offset, uint32_t size, Access kind,
                     uint32_t& linear) {
  const GuestFault bad = seg == Seg::SS ? make_fault(vec::SS, 0) : make_fault(vec::GP, 0);
  const bool protected_mode = state.protected_mode() && !(state.regs.eflags & runtime::flags::VM);
  return cache_linear(state.regs.sreg(seg), protected_mode, offset, size, kind, bad, linear);
}

Fault read_segmented(const VcpuState& state, LinearMemory& mem, Seg seg, uint32_t offset, std::span<uint8_t> out,
                     Access kind) {
  uint32_t lin = 0;
  BT86_TRY_FAULT(segment_linear(state, seg, offset, uint32_t(out.size()), kind, lin));
  return mem.read(lin, out, kind, state.cpl == 3);
}

Fault write_segmented(const VcpuState& state, LinearMemory& mem, Seg seg, uint32_t offset,
                      std::span<const uint8_t> in) {
  uint32_t lin = 0;
  BT86_TRY_FAULT(segment_linear(state, seg, offset, uint32_t(in.size()), Access::kWrite, lin));
  return mem.write(lin, in, state.cpl == 3);
}

}  // namespace bt86::machine
