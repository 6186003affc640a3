// Event delivery, IRET and task switches; see interrupts.h. The checks and
// their order follow the INT n / IRET / task-switch pseudocode of SDM vol. 2
// (INT n/INTO/INT3/INT1, IRET) and vol. 3 (6.12, 7.3), because the order
// decides which fault and error code a guest sees.
#include "machine/interrupts.h"

#include <spdlog/spdlog.h>

#include <array>

#include "machine/cpu_log.h"

namespace bt86::machine {

using runtime::Seg;
using runtime::SegmentCache;
namespace fl = runtime::flags;

namespace {

bool is_null(uint16_t selector) { return (selector & 0xfffc) == 0; }

bool external(const Event& e) {
  return e.kind == EventKind::kException || e.kind == EventKind::kExternal || e.kind == EventKind::kNmi;
}

uint32_t stack_mask(const SegmentCache& ss) { return ss.big() ? 0xffffffffu : 0xffffu; }

// Writes `values` (in push order, `width` bytes each) below ESP on stack
// `ss`, and gives the ESP after the pushes. Nothing is committed here.
Fault push_frame(LinearMemory& mem, const SegmentCache& ss, bool protected_mode, uint32_t esp,
                 std::span<const uint32_t> values, unsigned width, bool user, const GuestFault& bad,
                 uint32_t& new_esp) {
  const uint32_t mask = stack_mask(ss);
  const uint32_t size = uint32_t(values.size()) * width;
  const uint32_t sp = (esp - size) & mask;
  uint32_t lin = 0;
  BT86_TRY_FAULT(cache_linear(ss, protected_mode, sp, size, Access::kWrite, bad, lin));
  std::array<uint8_t, 64> bytes{};
  for (size_t i = 0; i < values.size(); ++i) {
    // The first value pushed lies at the highest address.
    store_le(std::span(bytes).subspan((values.size() - 1 - i) * width, width), values[i]);
  }
  BT86_TRY_FAULT(mem.write(lin, std::span<const uint8_t>(bytes.data(), size), user));
  new_esp = (esp & ~mask) | sp;
  return std::nullopt;
}

// Reads `count` values of `width` bytes from the top of the current stack,
// `skip` bytes above ESP (values[0] is the one at the lowest address).
Fault pop_frame(const VcpuState& s, LinearMemory& mem, uint32_t skip, unsigned count, unsigned width,
                uint32_t* values) {
  const uint32_t sp = (s.regs.reg(runtime::ESP) + skip) & stack_mask(s.regs.sreg(Seg::SS));
  std::array<uint8_t, 64> bytes{};
  BT86_TRY_FAULT(read_segmented(s, mem, Seg::SS, sp, std::span(bytes.data(), count * width)));
  for (unsigned i = 0; i < count; ++i) values[i] = load_le(std::span(bytes).subspan(i * width, width));
  return std::nullopt;
}

// pop_frame of `count` values at ESP, made only where it cannot differ from
// the pops IRET makes one after the other: a 32-bit stack, all bytes within
// SS's limit and in one page (so no page is touched that the architectural
// pops would not touch, and reading more than they need has no effect).
// False when that does not hold or the read faults: nothing was read, and
// the caller pops in the architectural order, which raises the right fault.
bool pop_frame_at_once(const VcpuState& s, LinearMemory& mem, unsigned count, unsigned width, uint32_t* values) {
  if (!s.regs.sreg(Seg::SS).big()) return false;
  const uint32_t size = count * width;
  uint32_t lin = 0;
  if (segment_linear(s, Seg::SS, s.regs.reg(runtime::ESP), size, Access::kRead, lin)) return false;
  if ((lin & 0xfff) + size > 0x1000) return false;
  std::array<uint8_t, 64> bytes{};
  if (mem.read(lin, std::span(bytes.data(), size), Access::kRead, s.cpl == 3)) return false;
  for (unsigned i = 0; i < count; ++i) values[i] = load_le(std::span(bytes).subspan(i * width, width));
  return true;
}

// The inner-level stack from the TSS (SDM vol. 3, 6.12.1, figure 7-2).
Fault tss_stack(const VcpuState& s, LinearMemory& mem, uint8_t dpl, bool ext, uint16_t& ss, uint32_t& esp) {
  const SegmentCache& tr = s.sys.tr;
  const bool tss32 = tr.type() & 8;
  const uint32_t offset = tss32 ? 4 + dpl * 8u : 2 + dpl * 4u;
  const uint32_t size = tss32 ? 6 : 4;
  if (!tr.present() || offset + size - 1 > tr.limit) return selector_fault(vec::TS, tr.selector, ext);
  // ESPn and SSn are adjacent: one read of both.
  std::array<uint8_t, 6> b{};
  BT86_TRY_FAULT(mem.read(tr.base + offset, std::span(b.data(), size), Access::kRead, false));
  const unsigned esp_size = tss32 ? 4 : 2;
  esp = load_le(std::span(b).first(esp_size));
  ss = uint16_t(load_le(std::span(b).subspan(esp_size, 2)));
  return std::nullopt;
}

// Sets or clears the busy bit of the TSS descriptor at `address`.
Fault set_busy(LinearMemory& mem, uint32_t address, bool busy) {
  uint32_t byte5 = 0;
  BT86_TRY_FAULT(read_linear(mem, address + 5, 1, byte5));
  byte5 = busy ? (byte5 | desc_type::kBusy) : (byte5 & ~uint32_t(desc_type::kBusy));
  return write_linear(mem, address + 5, 1, byte5);
}

// Real mode: the IVT, a 16-bit FLAGS/CS/IP frame, no error code (SDM vol. 3, 20.1.4).
Fault deliver_real(VcpuState& s, const Event& e, LinearMemory& mem) {
  const uint32_t entry = e.vector * 4u;
  if (entry + 3 > s.sys.idtr.limit) return make_fault(vec::GP, 0);
  uint32_t vector_ptr = 0;
  BT86_TRY_FAULT(read_linear(mem, s.sys.idtr.base + entry, 4, vector_ptr));
  const SegmentCache& ss = s.regs.sreg(Seg::SS);
  const std::array<uint32_t, 3> frame{s.regs.eflags & 0xffff, s.regs.sreg(Seg::CS).selector, s.regs.eip & 0xffff};
  uint32_t esp = 0;
  BT86_TRY_FAULT(push_frame(mem, ss, false, s.regs.reg(runtime::ESP), frame, 2, false, make_fault(vec::SS, 0), esp));
  s.regs.reg(runtime::ESP) = esp;
  s.regs.eflags &= ~(fl::IF | fl::TF | fl::AC | fl::RF);
  SegmentCache& cs = s.regs.sreg(Seg::CS);
  cs.selector = uint16_t(vector_ptr >> 16);
  cs.base = uint32_t(cs.selector) << 4;
  s.regs.eip = vector_ptr & 0xffff;
  return std::nullopt;
}

Fault deliver_through_task_gate(VcpuState& s, const Event& e, LinearMemory& mem, CpuHooks& hooks,
                                const Descriptor& gate, bool ext) {
  // SDM vol. 2, INT n, TASK-GATE.
  const uint16_t tss_sel = gate.gate_selector();
  if (tss_sel & 4) return selector_fault(vec::GP, tss_sel, ext);
  DescriptorRef tss;
  BT86_TRY_FAULT(read_descriptor(s, mem, tss_sel, tss, vec::GP, ext));
  const uint8_t type = tss.desc.type();
  if (tss.desc.s() || (type != desc_type::kTss32Avail && type != desc_type::kTss16Avail))
    return selector_fault(vec::GP, tss_sel, ext);
  if (!tss.desc.present()) return selector_fault(vec::NP, tss_sel, ext);
  BT86_TRY_FAULT(task_switch(s, mem, hooks, tss_sel, tss, TaskSwitchReason::kInterrupt, ext, s.regs.eip));
  // From here on faults happen in the new task.
  if (e.has_error) {
    const unsigned width = (s.sys.tr.type() & 8) ? 4 : 2;
    const std::array<uint32_t, 1> frame{e.error};
    uint32_t esp = 0;
    BT86_TRY_FAULT(push_frame(mem, s.regs.sreg(Seg::SS), true, s.regs.reg(runtime::ESP), frame, width, s.cpl == 3,
                              make_fault(vec::SS, ext ? 1 : 0), esp));
    s.regs.reg(runtime::ESP) = esp;
  }
  if (s.regs.eip > s.regs.sreg(Seg::CS).limit) return make_fault(vec::GP, ext ? 1 : 0);
  return std::nullopt;
}

Fault deliver_protected(VcpuState& s, const Event& e, LinearMemory& mem, CpuHooks& hooks) {
  const bool ext = external(e);
  const bool software = e.kind == EventKind::kSoftware || e.kind == EventKind::kSoftwareException;
  // IDT error code: vector, IDT bit, EXT (SDM vol. 3, 6.13).
  const uint32_t idt_error = e.vector * 8u + 2 + (ext ? 1 : 0);
  if (e.vector * 8u + 7 > s.sys.idtr.limit) return make_fault(vec::GP, idt_error);
  std::array<uint8_t, 8> raw{};
  BT86_TRY_FAULT(mem.read(s.sys.idtr.base + e.vector * 8u, raw, Access::kRead, false));
  Descriptor gate{load_le(std::span(raw).first(4)), load_le(std::span(raw).subspan(4))};
  const uint8_t type = gate.type();
  const bool valid_type = !gate.s() && (type == desc_type::kTaskGate || type == desc_type::kIntGate16 ||
                                        type == desc_type::kTrapGate16 || type == desc_type::kIntGate32 ||
                                        type == desc_type::kTrapGate32);
  if (!valid_type) return make_fault(vec::GP, idt_error);
  // Only INT n, INT3 and INTO check the gate's DPL (SDM vol. 3, 6.12.1.1).
  if (software && gate.dpl() < s.cpl) return make_fault(vec::GP, idt_error);
  if (!gate.present()) return make_fault(vec::NP, idt_error);
  if (type == desc_type::kTaskGate) return deliver_through_task_gate(s, e, mem, hooks, gate, ext);

  const uint16_t cs_sel = gate.gate_selector();
  if (is_null(cs_sel)) return make_fault(vec::GP, ext ? 1 : 0);
  DescriptorRef cs;
  BT86_TRY_FAULT(read_descriptor(s, mem, cs_sel, cs, vec::GP, ext));
  if (!cs.desc.code() || cs.desc.dpl() > s.cpl) return selector_fault(vec::GP, cs_sel, ext);
  if (!cs.desc.present()) return selector_fault(vec::NP, cs_sel, ext);

  const bool gate32 = type & 8;
  const unsigned width = gate32 ? 4 : 2;
  const uint32_t offset = gate32 ? gate.gate_offset() : gate.gate_offset() & 0xffff;
  const uint32_t old_eflags = s.regs.eflags;
  const SegmentCache& old_cs = s.regs.sreg(Seg::CS);
  const SegmentCache& old_ss = s.regs.sreg(Seg::SS);
  const uint32_t old_esp = s.regs.reg(runtime::ESP);

  uint8_t new_cpl = s.cpl;
  SegmentCache new_ss = old_ss;
  uint32_t new_esp = 0;
  // SS, ESP (inter-privilege), EFLAGS, CS, EIP, error code, in push order.
  std::array<uint32_t, 6> frame{};
  size_t frame_size = 0;
  GuestFault stack_fault = make_fault(vec::SS, ext ? 1 : 0);
  uint32_t stack_top = old_esp;
  if (!cs.desc.conforming() && cs.desc.dpl() < s.cpl) {
    // Inter-privilege: the handler's stack comes from the TSS.
    new_cpl = cs.desc.dpl();
    uint16_t ss_sel = 0;
    BT86_TRY_FAULT(tss_stack(s, mem, new_cpl, ext, ss_sel, stack_top));
    BT86_TRY_FAULT(check_segment_load(s, mem, Seg::SS, ss_sel, LoadRules{new_cpl, vec::TS, ext}, new_ss));
    stack_fault = selector_fault(vec::SS, ss_sel, ext);
    frame[frame_size++] = old_ss.selector;
    frame[frame_size++] = old_esp;
  } else if (!cs.desc.conforming() && cs.desc.dpl() != s.cpl) {
    return selector_fault(vec::GP, cs_sel, ext);
  }
  frame[frame_size++] = old_eflags;
  frame[frame_size++] = old_cs.selector;
  frame[frame_size++] = s.regs.eip;
  if (e.has_error) frame[frame_size++] = e.error;
  if (offset > cs.desc.limit()) return make_fault(vec::GP, ext ? 1 : 0);
  BT86_TRY_FAULT(push_frame(mem, new_ss, true, stack_top, std::span(frame.data(), frame_size), width, new_cpl == 3,
                            stack_fault, new_esp));
  BT86_TRY_FAULT(set_accessed(mem, cs));

  // Commit (SDM vol. 3, 6.12.1.2: interrupt gates clear IF, both clear TF, NT, RF, VM).
  set_cache(s.regs.sreg(Seg::SS), new_ss);
  s.regs.reg(runtime::ESP) = new_esp;
  cs.desc.load_into(s.regs.sreg(Seg::CS), uint16_t((cs_sel & 0xfffc) | new_cpl));
  s.regs.eip = offset;
  s.cpl = new_cpl;
  s.regs.eflags &= ~(fl::TF | fl::NT | fl::RF | fl::VM);
  if (!(type & 1)) s.regs.eflags &= ~fl::IF;
  return std::nullopt;
}

// Exception classes for double faults (SDM vol. 3, table 6-4 and 6-5).
enum class FaultClass { kBenign, kContributory, kPageFault, kDoubleFault };

FaultClass fault_class(const Event& e) {
  if (e.kind != EventKind::kException) return FaultClass::kBenign;
  switch (e.vector) {
    case vec::DE: case vec::TS: case vec::NP: case vec::SS: case vec::GP: return FaultClass::kContributory;
    case vec::PF: return FaultClass::kPageFault;
    case vec::DF: return FaultClass::kDoubleFault;
    default: return FaultClass::kBenign;
  }
}

}  // namespace

DeliveryResult deliver(VcpuState& state, const Event& event, LinearMemory& mem, CpuHooks& hooks) {
  DeliveryResult result;
  // The event being delivered: `event`, or what replaced it after a fault.
  // Not a copy of `event`: the caller has just stored it field by field, and
  // a whole-struct load across those stores would stall (see set_cache).
  Event nested;
  const Event* current = &event;
  for (;;) {
    if (current->kind == EventKind::kException && current->vector == vec::PF) state.sys.cr2 = current->cr2;
    const uint8_t old_cpl = state.cpl;
    const SegmentCache old_cs = state.regs.sreg(Seg::CS);
    Fault f = state.protected_mode() ? deliver_protected(state, *current, mem, hooks)
                                     : deliver_real(state, *current, mem);
    if (!f) {
      state.halted = false;
      state.interrupt_shadow = false;
      if (state.cpl != old_cpl || !(state.regs.sreg(Seg::CS) == old_cs)) hooks.segments_changed();
      copy_event(result.delivered, *current);
      return result;
    }
    ++result.nested_faults;
    if (current->kind == EventKind::kSoftware || current->kind == EventKind::kSoftwareException)
      state.regs.eip -= current->insn_length;  // the fault belongs to the INT instruction
    const FaultClass first = fault_class(*current);
    const Event second = Event::exception(*f);
    const FaultClass next = fault_class(second);
    if (first == FaultClass::kDoubleFault || result.nested_faults > 8) {
      result.shutdown = true;
      copy_event(result.delivered, *current);
      result.shutdown_reason = fmt::format(
          "triple fault: exception {} (error {:#x}) while delivering the double fault; original event vector {}",
          second.vector, second.error, event.vector);
      return result;
    }
    const bool double_fault =
        (first == FaultClass::kContributory && next == FaultClass::kContributory) ||
        (first == FaultClass::kPageFault && (next == FaultClass::kContributory || next == FaultClass::kPageFault));
    nested = double_fault ? Event::exception(make_fault(vec::DF, 0)) : second;
    current = &nested;
  }
}

uint32_t merge_eflags(uint32_t old, uint32_t popped, uint8_t cpl, unsigned operand_size, bool is_iret) {
  uint32_t mask = fl::Arith | fl::TF | fl::DF | fl::NT | fl::AC | fl::ID;
  if (is_iret) mask |= fl::RF;
  const uint32_t iopl = (old & fl::IOPL) >> 12;
  if (cpl <= iopl) mask |= fl::IF;
  if (cpl == 0) mask |= fl::IOPL;
  if (operand_size == 2) mask &= 0xffff;
  uint32_t result = (old & ~mask) | (popped & mask);
  if (!is_iret) result &= ~fl::RF;
  return result | fl::Fixed1;
}

Fault task_switch(VcpuState& s, LinearMemory& mem, CpuHooks& hooks, uint16_t selector, const DescriptorRef& tss,
                  TaskSwitchReason reason, bool ext, uint32_t return_eip) {
  const Descriptor& d = tss.desc;
  if (!(d.type() & 8)) {
    cpu_logger().warn("task switch to a 16-bit TSS ({:#x}): not supported, raising #TS", selector);
    return selector_fault(vec::TS, selector, ext);
  }
  if (d.limit() < 0x67) return selector_fault(vec::TS, selector, ext);
  const SegmentCache old_tr = s.sys.tr;
  if (!old_tr.present() || !(old_tr.type() & 8) || old_tr.limit < 0x67)
    return selector_fault(vec::TS, old_tr.selector, ext);

  // Read the whole new TSS first, so a page fault leaves everything as it was.
  std::array<uint8_t, 0x68> image{};
  BT86_TRY_FAULT(mem.read(d.base(), image, Access::kRead, false));
  auto field = [&](uint32_t off, unsigned size) { return load_le(std::span(image).subspan(off, size)); };
  uint32_t new_eflags = field(0x24, 4);
  if (new_eflags & fl::VM) {
    cpu_logger().warn("task switch to a virtual-8086 task ({:#x}): not supported, raising #TS", selector);
    return selector_fault(vec::TS, selector, ext);
  }

  // Save the dynamic state in the old TSS (SDM vol. 3, 7.3 step 9).
  uint32_t old_eflags = s.regs.eflags;
  if (reason == TaskSwitchReason::kIret) old_eflags &= ~fl::NT;
  std::array<uint8_t, 0x40> saved{};
  store_le(std::span(saved).subspan(0x00, 4), return_eip);
  store_le(std::span(saved).subspan(0x04, 4), old_eflags);
  for (int i = 0; i < 8; ++i) store_le(std::span(saved).subspan(0x08 + 4 * i, 4), s.regs.gpr[i]);
  for (int i = 0; i < runtime::kNumSegs; ++i) store_le(std::span(saved).subspan(0x28 + 4 * i, 2), s.regs.seg[i].selector);
  BT86_TRY_FAULT(mem.write(old_tr.base + 0x20, saved, false));
  if (reason == TaskSwitchReason::kJmp || reason == TaskSwitchReason::kIret)
    BT86_TRY_FAULT(set_busy(mem, s.sys.gdtr.base + (old_tr.selector & 0xfff8u), false));
  if (reason == TaskSwitchReason::kCall || reason == TaskSwitchReason::kInterrupt) {
    BT86_TRY_FAULT(write_linear(mem, d.base(), 2, old_tr.selector));
    new_eflags |= fl::NT;
  }
  if (reason != TaskSwitchReason::kIret) BT86_TRY_FAULT(set_busy(mem, tss.address, true));

  // Commit: from here on the new task is current (SDM vol. 3, 7.3 steps 10-13).
  SegmentCache tr = d.cache(selector);
  tr.attr |= desc_type::kBusy;
  s.sys.tr = tr;
  s.sys.cr0 |= cr0::TS;
  if (s.paging()) {
    const uint32_t old_cr3 = s.sys.cr3;
    s.sys.cr3 = field(0x1c, 4) & 0xfffff018u;
    hooks.control_register_written(3, old_cr3, s.sys.cr3);
  }
  s.regs.eip = field(0x20, 4);
  s.regs.eflags = (new_eflags & 0x003f7fd7u) | fl::Fixed1;
  for (int i = 0; i < 8; ++i) s.regs.gpr[i] = field(0x28 + 4 * i, 4);
  std::array<uint16_t, runtime::kNumSegs> sel{};
  for (int i = 0; i < runtime::kNumSegs; ++i) {
    sel[i] = uint16_t(field(0x48 + 4 * i, 2));
    s.regs.seg[i] = null_segment(sel[i]);  // unusable until checked below
  }
  const uint16_t ldt_sel = uint16_t(field(0x60, 2));
  s.sys.ldtr = null_segment(ldt_sel);
  s.cpl = sel[int(Seg::CS)] & 3;
  s.halted = false;
  s.interrupt_shadow = false;

  auto load_all = [&]() -> Fault {
    // LDTR first: the other selectors may point into it.
    if (!is_null(ldt_sel)) {
      if (ldt_sel & 4) return selector_fault(vec::TS, ldt_sel, ext);
      DescriptorRef ldt;
      BT86_TRY_FAULT(read_descriptor(s, mem, ldt_sel, ldt, vec::TS, ext));
      if (ldt.desc.s() || ldt.desc.type() != desc_type::kLdt || !ldt.desc.present())
        return selector_fault(vec::TS, ldt_sel, ext);
      s.sys.ldtr = ldt.desc.cache(ldt_sel);
    }
    const uint16_t cs_sel = sel[int(Seg::CS)];
    if (is_null(cs_sel)) return selector_fault(vec::TS, cs_sel, ext);
    DescriptorRef cs;
    BT86_TRY_FAULT(read_descriptor(s, mem, cs_sel, cs, vec::TS, ext));
    const uint8_t rpl = cs_sel & 3;
    if (!cs.desc.code() || (cs.desc.conforming() ? cs.desc.dpl() > rpl : cs.desc.dpl() != rpl))
      return selector_fault(vec::TS, cs_sel, ext);
    if (!cs.desc.present()) return selector_fault(vec::NP, cs_sel, ext);
    BT86_TRY_FAULT(set_accessed(mem, cs));
    s.regs.sreg(Seg::CS) = cs.desc.cache(cs_sel);
    for (Seg seg : {Seg::SS, Seg::DS, Seg::ES, Seg::FS, Seg::GS}) {
      SegmentCache cache;
      BT86_TRY_FAULT(check_segment_load(s, mem, seg, sel[int(seg)], LoadRules{s.cpl, vec::TS, ext}, cache));
      s.regs.sreg(seg) = cache;
    }
    return std::nullopt;
  };
  Fault f = load_all();
  hooks.segments_changed();
  return f;
}

Fault iret(VcpuState& s, LinearMemory& mem, CpuHooks& hooks, unsigned operand_size, uint32_t next_eip) {
  const unsigned w = operand_size;
  uint32_t v[5] = {};
  if (!s.protected_mode()) {
    // Real mode: EIP, CS, EFLAGS; only the segment base follows CS.
    BT86_TRY_FAULT(pop_frame(s, mem, 0, 3, w, v));
    if (v[0] > s.regs.sreg(Seg::CS).limit) return make_fault(vec::GP, 0);
    const uint32_t mask = w == 2 ? 0xffffu : (0x00257fd5u);  // VM, VIP, VIF not loaded
    s.regs.eflags = ((s.regs.eflags & ~mask) | (v[2] & mask)) | fl::Fixed1;
    SegmentCache& cs = s.regs.sreg(Seg::CS);
    cs.selector = uint16_t(v[1]);
    cs.base = uint32_t(cs.selector) << 4;
    s.regs.eip = v[0];
    const uint32_t m = stack_mask(s.regs.sreg(Seg::SS));
    uint32_t& esp = s.regs.reg(runtime::ESP);
    esp = (esp & ~m) | ((esp + 3 * w) & m);
    return std::nullopt;
  }
  if (s.regs.eflags & fl::VM) {
    cpu_logger().warn("iret in virtual-8086 mode: not supported, raising #GP(0)");
    return make_fault(vec::GP, 0);
  }
  if (s.regs.eflags & fl::NT) {
    // Task return through the back link (SDM vol. 3, 7.3; IRET pseudocode TASK-RETURN).
    const SegmentCache& tr = s.sys.tr;
    if (!tr.present() || tr.limit < 1) return selector_fault(vec::TS, tr.selector, false);
    uint32_t link = 0;
    BT86_TRY_FAULT(read_linear(mem, tr.base, 2, link));
    const uint16_t back = uint16_t(link);
    if (back & 4) return selector_fault(vec::TS, back, false);
    DescriptorRef tss;
    BT86_TRY_FAULT(read_descriptor(s, mem, back, tss, vec::TS, false));
    const uint8_t type = tss.desc.type();
    if (tss.desc.s() || (type != desc_type::kTss32Busy && type != desc_type::kTss16Busy))
      return selector_fault(vec::TS, back, false);
    if (!tss.desc.present()) return selector_fault(vec::NP, back, false);
    return task_switch(s, mem, hooks, back, tss, TaskSwitchReason::kIret, false, next_eip);
  }

  // EIP, CS, EFLAGS, and for a return to an outer level ESP, SS: read
  // together when that is safe (one access instead of two).
  const bool popped_five = pop_frame_at_once(s, mem, 5, w, v);
  if (!popped_five) BT86_TRY_FAULT(pop_frame(s, mem, 0, 3, w, v));
  const uint32_t new_eip = v[0];
  const uint16_t cs_sel = uint16_t(v[1]);
  const uint32_t popped_eflags = w == 2 ? v[2] & 0xffff : v[2];
  if (w == 4 && (popped_eflags & fl::VM) && s.cpl == 0) {
    cpu_logger().warn("iret to virtual-8086 mode: not supported, raising #GP(0)");
    return make_fault(vec::GP, 0);
  }
  if (is_null(cs_sel)) return make_fault(vec::GP, 0);
  DescriptorRef cs;
  BT86_TRY_FAULT(read_descriptor(s, mem, cs_sel, cs));
  const uint8_t rpl = cs_sel & 3;
  if (!cs.desc.code() || rpl < s.cpl) return selector_fault(vec::GP, cs_sel, false);
  if (cs.desc.conforming() ? cs.desc.dpl() > rpl : cs.desc.dpl() != rpl) return selector_fault(vec::GP, cs_sel, false);
  if (!cs.desc.present()) return selector_fault(vec::NP, cs_sel, false);

  const bool outer = rpl > s.cpl;
  SegmentCache new_ss = s.regs.sreg(Seg::SS);
  uint32_t new_esp = 0;
  if (outer) {
    // Return to an outer level: SS:ESP follow on the stack.
    uint32_t sv[2] = {v[3], v[4]};
    if (!popped_five) BT86_TRY_FAULT(pop_frame(s, mem, 3 * w, 2, w, sv));
    BT86_TRY_FAULT(check_segment_load(s, mem, Seg::SS, uint16_t(sv[1]), LoadRules{rpl, vec::GP, false}, new_ss));
    new_esp = w == 2 ? (s.regs.reg(runtime::ESP) & 0xffff0000u) | (sv[0] & 0xffff) : sv[0];
  } else {
    const uint32_t m = stack_mask(s.regs.sreg(Seg::SS));
    const uint32_t esp = s.regs.reg(runtime::ESP);
    new_esp = (esp & ~m) | ((esp + 3 * w) & m);
  }
  if (new_eip > cs.desc.limit()) return make_fault(vec::GP, 0);
  BT86_TRY_FAULT(set_accessed(mem, cs));

  s.regs.eflags = merge_eflags(s.regs.eflags, popped_eflags, s.cpl, w, true);
  cs.desc.load_into(s.regs.sreg(Seg::CS), cs_sel);
  s.regs.eip = new_eip;
  set_cache(s.regs.sreg(Seg::SS), new_ss);
  s.regs.reg(runtime::ESP) = new_esp;
  s.cpl = rpl;
  if (outer) {
    // Data segments the outer level may not use become null (SDM vol. 2, IRET).
    for (Seg seg : {Seg::ES, Seg::DS, Seg::FS, Seg::GS}) {
      const SegmentCache& c = s.regs.sreg(seg);
      if ((c.data() || (c.code() && !c.conforming())) && c.dpl() < rpl) s.regs.sreg(seg) = null_segment(0);
    }
  }
  hooks.segments_changed();
  return std::nullopt;
}

ExitAction action_for_exit(const runtime::ExitRecord& exit, VcpuState& state) {
  using runtime::ExitKind;
  ExitAction a;
  auto deliver_fault = [&](GuestFault f) {
    a.kind = ExitActionKind::kDeliver;
    a.event = Event::exception(f);
  };
  switch (exit.kind) {
    case ExitKind::PageFault:
      a.kind = ExitActionKind::kPageFault;
      a.page_fault = GuestFault{vec::PF, true, exit.error_code, exit.fault_address};
      break;
    case ExitKind::GeneralProtection:
      a.kind = ExitActionKind::kInterpret;
      a.page_fault = make_fault(vec::GP, exit.error_code);
      break;
    case ExitKind::SegmentLimit:
      if (exit.beyond_guest_limit) {
        deliver_fault(exit.segment == Seg::SS ? make_fault(vec::SS, 0) : make_fault(vec::GP, 0));
      } else {
        a.kind = ExitActionKind::kSegmentLimit;
      }
      break;
    case ExitKind::StackFault: deliver_fault(make_fault(vec::SS, exit.error_code)); break;
    case ExitKind::SegmentNotPresent: deliver_fault(make_fault(vec::NP, exit.error_code)); break;
    case ExitKind::InvalidOpcode: deliver_fault(make_fault(vec::UD)); break;
    case ExitKind::DivideError: deliver_fault(make_fault(vec::DE)); break;
    case ExitKind::FpuError: deliver_fault(make_fault(vec::MF)); break;
    case ExitKind::SimdError: deliver_fault(make_fault(vec::XM)); break;
    case ExitKind::AlignmentCheck: deliver_fault(make_fault(vec::AC, 0)); break;
    case ExitKind::BoundRange: deliver_fault(make_fault(vec::BR)); break;
    case ExitKind::Overflow:
      a.kind = ExitActionKind::kDeliver;
      a.event = Event::software_exception(vec::OF, 1);
      break;
    case ExitKind::Breakpoint:
      a.kind = ExitActionKind::kDeliver;
      a.event = Event::software_exception(vec::BP, exit.instruction_length ? exit.instruction_length : 1);
      break;
    case ExitKind::SingleStep:
      state.sys.dr[6] |= 1u << 14;  // DR6.BS (SDM vol. 3, 17.2.3)
      deliver_fault(make_fault(vec::DB));
      break;
    case ExitKind::Debug: deliver_fault(make_fault(vec::DB)); break;
    case ExitKind::SoftwareInterrupt:
      a.kind = ExitActionKind::kDeliver;
      a.event = Event::software(exit.vector, 2);
      break;
    case ExitKind::Cpuid:
    case ExitKind::Rdtsc:
      a.kind = ExitActionKind::kInterpret;
      a.page_fault = make_fault(vec::UD);
      break;
    case ExitKind::Sysenter:
      if (exit.detail.find("lost") != std::string::npos) {
        a.kind = ExitActionKind::kGuestError;
        a.reason = "guest user code executed sysenter and the host lost its EIP (this CPU has no SEP)";
        break;
      }
      [[fallthrough]];
    case ExitKind::Syscall:
      // Neither exists on this CPU: #UD at the instruction (0f 34 / 0f 05).
      state.regs.eip -= 2;
      deliver_fault(make_fault(vec::UD));
      break;
    case ExitKind::Preempted:
    case ExitKind::HostSignal:
      a.kind = ExitActionKind::kNone;
      break;
    case ExitKind::Escaped64:
      a.kind = ExitActionKind::kGuestError;
      a.reason = "guest user code reached 64-bit mode; the guest is not trusted further";
      break;
    case ExitKind::InvalidState:
      a.kind = ExitActionKind::kGuestError;
      a.reason = "the guest CPU state cannot be entered (bad CS or SS)";
      break;
  }
  return a;
}

}  // namespace bt86::machine
