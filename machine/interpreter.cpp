// The interpreter of sensitive instructions; see interpreter.h. One class
// per executed instruction: fetch and decode, one handler per mnemonic
// family that either commits the instruction's effects or returns the fault
// it raises without changing the state (except rep string I/O, which keeps
// the progress of completed iterations, as hardware does), then EIP, the
// interrupt shadow, a pending INT n and the single-step trap.
#include "machine/interpreter.h"

#include <Zydis/Zydis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <set>

#include "machine/cpu_log.h"
#include "machine/cpu_model.h"
#include "machine/descriptors.h"

namespace bt86::machine {

using runtime::Reg;
using runtime::Seg;
using runtime::SegmentCache;
namespace fl = runtime::flags;

namespace {

std::atomic<uint64_t> g_unimplemented{0};

void note_unimplemented(ZydisMnemonic mnemonic, uint32_t eip) {
  g_unimplemented.fetch_add(1, std::memory_order_relaxed);
  static std::mutex mutex;
  static std::set<int> logged;
  std::lock_guard lock(mutex);
  if (logged.insert(int(mnemonic)).second) {
    cpu_logger().warn("interpreter: {} at {:#x} is not implemented; raising the fallback fault (#UD unless the "
                  "caller gave one). Further ones are only counted",
                  ZydisMnemonicGetString(mnemonic), eip);
  }
}

GuestFault gp0() { return make_fault(vec::GP, 0); }
GuestFault ud() { return make_fault(vec::UD); }

uint32_t size_mask(unsigned bytes) { return bytes >= 4 ? 0xffffffffu : (1u << (8 * bytes)) - 1; }

constexpr uint32_t kRepIterationsPerStep = 65536;  // then EIP stays and the loop can poll interrupts

class Interpreter {
 public:
  Interpreter(VcpuState& s, LinearMemory& mem, CpuHooks& hooks, const ExecuteOptions& options)
      : m_s(s), m_mem(mem), m_hooks(hooks), m_options(options) {}

  StepResult run();

 private:
  bool protected_mode() const { return m_s.protected_mode() && !(m_s.regs.eflags & fl::VM); }
  bool user() const { return m_s.cpl == 3; }
  uint32_t iopl() const { return (m_s.regs.eflags & fl::IOPL) >> 12; }
  bool privileged() const { return m_s.cpl == 0; }
  uint32_t& gpr(Reg r) { return m_s.regs.reg(r); }
  uint32_t stack_mask() const { return m_s.regs.sreg(Seg::SS).big() ? 0xffffffffu : 0xffffu; }
  uint32_t addr_mask() const { return m_asize == 2 ? 0xffffu : 0xffffffffu; }

  Fault fetch_decode();
  Fault dispatch();

  // Operands.
  uint32_t get_reg(ZydisRegister r) const;
  void set_reg(ZydisRegister r, uint32_t v);
  Seg seg_of(ZydisRegister r) const { return Seg(ZydisRegisterGetId(r)); }
  void mem_address(const ZydisDecodedOperand& op, Seg& seg, uint32_t& off) const;
  Fault read_op(const ZydisDecodedOperand& op, uint32_t& v, unsigned bytes);
  Fault write_op(const ZydisDecodedOperand& op, uint32_t v, unsigned bytes);
  Fault read_mem(Seg seg, uint32_t off, unsigned bytes, uint32_t& v);
  Fault write_mem(Seg seg, uint32_t off, unsigned bytes, uint32_t v);

  // Stack (SS.B decides ESP or SP).
  Fault push(std::initializer_list<uint32_t> values, unsigned width);
  Fault peek(uint32_t skip, unsigned count, unsigned width, uint32_t* out);
  void add_sp(uint32_t bytes) {
    uint32_t& esp = gpr(runtime::ESP);
    esp = (esp & ~stack_mask()) | ((esp + bytes) & stack_mask());
  }

  // Instruction families.
  Fault io_permitted(uint16_t port, unsigned size);
  Fault do_in_out(bool in);
  Fault do_string_io(bool in, unsigned size);
  // MOV to or from a control/debug register: the direction, the special
  // register's number and the general register.
  struct SpecialMove {
    bool to_special;
    int id;
    ZydisRegister gp;
  };
  SpecialMove special_move(ZydisRegisterClass special_class) const;
  Fault do_mov_cr();
  Fault do_mov_dr();
  Fault write_cr0(uint32_t value);
  Fault do_far_jmp_call(bool call);
  Fault far_transfer(uint16_t selector, uint32_t offset, bool call);
  // The two halves far JMP/CALL and RET far share: a real-mode CS load
  // (base = selector << 4) with the new EIP, and the protected-mode read of
  // the target's descriptor (#GP(0) for a null selector).
  void real_mode_far_jump(uint16_t selector, uint32_t eip);
  Fault read_far_target(uint16_t selector, DescriptorRef& ref);
  Fault do_far_ret();
  Fault do_enter();
  Fault do_popa();
  Fault do_load_far_pointer(Seg seg);
  Fault do_descriptor_test(ZydisMnemonic m);

  VcpuState& m_s;
  LinearMemory& m_mem;
  CpuHooks& m_hooks;
  const ExecuteOptions& m_options;
  // The instruction being run: the caller's decode (ExecuteOptions::decoded)
  // or m_decoded_*. Pointers, not copies: a callout is ~1 KiB of Zydis
  // structures, and zeroing plus copying them cost more than the rest of a
  // simple callout. The buffers are written whole by ZydisDecoderDecodeFull
  // (every operand slot) before anything reads them.
  const ZydisDecodedInstruction* m_insn = &m_decoded_insn;
  const ZydisDecodedOperand* m_ops = m_decoded_ops;
  ZydisDecodedInstruction m_decoded_insn;
  ZydisDecodedOperand m_decoded_ops[ZYDIS_MAX_OPERAND_COUNT];
  uint32_t m_next = 0;       // EIP after the instruction
  unsigned m_osize = 4, m_asize = 4;
  bool m_jumped = false;     // the instruction set CS:EIP itself
  bool m_halt = false;
  bool m_shadow = false;     // sti / mov ss / pop ss: no interrupt before the next instruction
  bool m_unimplemented = false;
  bool m_suppress_step = false;
  bool m_rep_incomplete = false;
  std::optional<Event> m_event;  // INT n / INT3 / INTO / INT1 to deliver after EIP moved on
  // m_event = e as whole words (see Event::make): deliver() reads it at once.
  void raise(const Event& e) {
    m_event.emplace();
    copy_event(*m_event, e);
  }
};

Fault Interpreter::fetch_decode() {
  const SegmentCache& cs = m_s.regs.sreg(Seg::CS);
  const uint32_t eip = m_s.regs.eip;
  if (eip > cs.limit) return gp0();
  if (const ZydisDecodedInstruction* d = m_options.decoded) {
    const ZydisMachineMode mode = !m_s.protected_mode() ? ZYDIS_MACHINE_MODE_REAL_16
                                  : cs.big()           ? ZYDIS_MACHINE_MODE_LEGACY_32
                                                       : ZYDIS_MACHINE_MODE_LEGACY_16;
    const ZydisStackWidth stack = m_s.regs.sreg(Seg::SS).big() ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16;
    if (d->machine_mode == mode && d->stack_width == (stack == ZYDIS_STACK_WIDTH_32 ? 32 : 16) &&
        uint64_t(eip) + d->length - 1 <= cs.limit) {
      m_insn = d;
      m_ops = m_options.decoded_ops;
      const uint32_t ip_mask = cs.big() && m_s.protected_mode() ? 0xffffffffu : 0xffffu;
      m_next = (eip + m_insn->length) & ip_mask;
      m_osize = m_insn->operand_width == 16 ? 2 : 4;
      m_asize = m_insn->address_width == 16 ? 2 : 4;
      return std::nullopt;
    }
  }
  const uint32_t avail = uint32_t(std::min<uint64_t>(ZYDIS_MAX_INSTRUCTION_LENGTH, uint64_t(cs.limit) - eip + 1));
  std::array<uint8_t, ZYDIS_MAX_INSTRUCTION_LENGTH> buf{};
  const uint32_t lin = cs.base + eip;
  uint32_t n = avail;
  Fault pending;
  if (Fault f = m_mem.read(lin, std::span(buf.data(), avail), Access::kFetch, user())) {
    // The instruction may end before the page that faulted: decode what the
    // first page holds and raise the fault only if the bytes run out.
    const uint32_t first = 0x1000 - (lin & 0xfff);
    if (first >= avail) return f;
    BT86_TRY_FAULT(m_mem.read(lin, std::span(buf.data(), first), Access::kFetch, user()));
    n = first;
    pending = f;
  }
  ZydisDecoder decoder;
  const ZydisMachineMode mode = !m_s.protected_mode() ? ZYDIS_MACHINE_MODE_REAL_16
                                : cs.big()           ? ZYDIS_MACHINE_MODE_LEGACY_32
                                                     : ZYDIS_MACHINE_MODE_LEGACY_16;
  const ZydisStackWidth stack = m_s.regs.sreg(Seg::SS).big() ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16;
  ZydisDecoderInit(&decoder, mode, stack);
  const ZyanStatus status = ZydisDecoderDecodeFull(&decoder, buf.data(), n, &m_decoded_insn, m_decoded_ops);
  if (!ZYAN_SUCCESS(status)) {
    if (status == ZYDIS_STATUS_NO_MORE_DATA) {
      if (pending) return pending;
      if (n < ZYDIS_MAX_INSTRUCTION_LENGTH) return gp0();  // runs past the CS limit
    }
    return ud();
  }
  const uint32_t ip_mask = cs.big() && m_s.protected_mode() ? 0xffffffffu : 0xffffu;
  m_next = (eip + m_insn->length) & ip_mask;
  m_osize = m_insn->operand_width == 16 ? 2 : 4;
  m_asize = m_insn->address_width == 16 ? 2 : 4;
  return std::nullopt;
}

uint32_t Interpreter::get_reg(ZydisRegister r) const {
  const int id = ZydisRegisterGetId(r);
  switch (ZydisRegisterGetClass(r)) {
    case ZYDIS_REGCLASS_GPR32: return m_s.regs.gpr[id];
    case ZYDIS_REGCLASS_GPR16: return m_s.regs.gpr[id] & 0xffff;
    case ZYDIS_REGCLASS_GPR8: return id < 4 ? m_s.regs.gpr[id] & 0xff : (m_s.regs.gpr[id - 4] >> 8) & 0xff;
    case ZYDIS_REGCLASS_SEGMENT: return m_s.regs.seg[id].selector;
    default: return 0;
  }
}

void Interpreter::set_reg(ZydisRegister r, uint32_t v) {
  const int id = ZydisRegisterGetId(r);
  switch (ZydisRegisterGetClass(r)) {
    case ZYDIS_REGCLASS_GPR32: m_s.regs.gpr[id] = v; break;
    case ZYDIS_REGCLASS_GPR16: m_s.regs.gpr[id] = (m_s.regs.gpr[id] & 0xffff0000u) | (v & 0xffff); break;
    case ZYDIS_REGCLASS_GPR8:
      if (id < 4) {
        m_s.regs.gpr[id] = (m_s.regs.gpr[id] & ~0xffu) | (v & 0xff);
      } else {
        m_s.regs.gpr[id - 4] = (m_s.regs.gpr[id - 4] & ~0xff00u) | ((v & 0xff) << 8);
      }
      break;
    default: break;
  }
}

void Interpreter::mem_address(const ZydisDecodedOperand& op, Seg& seg, uint32_t& off) const {
  uint64_t a = 0;
  if (op.mem.base != ZYDIS_REGISTER_NONE) a += get_reg(op.mem.base);
  if (op.mem.index != ZYDIS_REGISTER_NONE) a += uint64_t(get_reg(op.mem.index)) * op.mem.scale;
  if (op.mem.disp.has_displacement) a += uint64_t(op.mem.disp.value);
  off = uint32_t(a) & addr_mask();
  seg = seg_of(op.mem.segment);
}

Fault Interpreter::read_mem(Seg seg, uint32_t off, unsigned bytes, uint32_t& v) {
  std::array<uint8_t, 4> b{};
  BT86_TRY_FAULT(read_segmented(m_s, m_mem, seg, off, std::span(b.data(), bytes)));
  v = load_le(std::span(b.data(), bytes));
  return std::nullopt;
}

Fault Interpreter::write_mem(Seg seg, uint32_t off, unsigned bytes, uint32_t v) {
  std::array<uint8_t, 4> b{};
  store_le(std::span(b.data(), bytes), v);
  return write_segmented(m_s, m_mem, seg, off, std::span<const uint8_t>(b.data(), bytes));
}

Fault Interpreter::read_op(const ZydisDecodedOperand& op, uint32_t& v, unsigned bytes) {
  switch (op.type) {
    case ZYDIS_OPERAND_TYPE_REGISTER: v = get_reg(op.reg.value) & size_mask(bytes); return std::nullopt;
    case ZYDIS_OPERAND_TYPE_IMMEDIATE: v = uint32_t(op.imm.value.u) & size_mask(bytes); return std::nullopt;
    case ZYDIS_OPERAND_TYPE_MEMORY: {
      Seg seg;
      uint32_t off;
      mem_address(op, seg, off);
      return read_mem(seg, off, bytes, v);
    }
    default: return ud();
  }
}

Fault Interpreter::write_op(const ZydisDecodedOperand& op, uint32_t v, unsigned bytes) {
  if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    set_reg(op.reg.value, v);
    return std::nullopt;
  }
  if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) return ud();
  Seg seg;
  uint32_t off;
  mem_address(op, seg, off);
  return write_mem(seg, off, bytes, v);
}

Fault Interpreter::push(std::initializer_list<uint32_t> values, unsigned width) {
  const uint32_t esp = gpr(runtime::ESP);
  const uint32_t size = uint32_t(values.size()) * width;
  const uint32_t sp = (esp - size) & stack_mask();
  std::array<uint8_t, 64> bytes{};
  size_t i = 0;
  for (uint32_t v : values) store_le(std::span(bytes).subspan((values.size() - 1 - i++) * width, width), v);
  BT86_TRY_FAULT(write_segmented(m_s, m_mem, Seg::SS, sp, std::span<const uint8_t>(bytes.data(), size)));
  gpr(runtime::ESP) = (esp & ~stack_mask()) | sp;
  return std::nullopt;
}

Fault Interpreter::peek(uint32_t skip, unsigned count, unsigned width, uint32_t* out) {
  const uint32_t sp = (gpr(runtime::ESP) + skip) & stack_mask();
  std::array<uint8_t, 64> bytes{};
  BT86_TRY_FAULT(read_segmented(m_s, m_mem, Seg::SS, sp, std::span(bytes.data(), count * width)));
  for (unsigned i = 0; i < count; ++i) out[i] = load_le(std::span(bytes).subspan(i * width, width));
  return std::nullopt;
}

// SDM vol. 1, 19.5: CPL <= IOPL, or every bit of the port in the TSS's I/O
// permission bitmap clear (and within the TSS limit).
Fault Interpreter::io_permitted(uint16_t port, unsigned size) {
  if (!protected_mode() || m_s.cpl <= iopl()) return std::nullopt;
  const SegmentCache& tr = m_s.sys.tr;
  if (!tr.present() || !(tr.type() & 8) || tr.limit < 0x67) return gp0();
  uint32_t map_base = 0;
  BT86_TRY_FAULT(read_linear(m_mem, tr.base + 0x66, 2, map_base));
  const uint32_t byte = map_base + port / 8;
  if (byte + 1 > tr.limit) return gp0();
  uint32_t bits = 0;
  BT86_TRY_FAULT(read_linear(m_mem, tr.base + byte, 2, bits));
  const uint32_t wanted = ((1u << size) - 1) << (port & 7);
  if (bits & wanted) return gp0();
  return std::nullopt;
}

Fault Interpreter::do_in_out(bool in) {
  const ZydisDecodedOperand& data = in ? m_ops[0] : m_ops[1];
  const ZydisDecodedOperand& port_op = in ? m_ops[1] : m_ops[0];
  const unsigned size = data.size / 8;
  const uint16_t port =
      port_op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE ? uint16_t(port_op.imm.value.u & 0xff) : uint16_t(gpr(runtime::EDX));
  BT86_TRY_FAULT(io_permitted(port, size));
  if (in) {
    set_reg(data.reg.value, m_hooks.io_in(port, size) & size_mask(size));
  } else {
    m_hooks.io_out(port, size, get_reg(data.reg.value) & size_mask(size));
  }
  return std::nullopt;
}

Fault Interpreter::do_string_io(bool in, unsigned size) {
  const uint16_t port = uint16_t(gpr(runtime::EDX));
  BT86_TRY_FAULT(io_permitted(port, size));
  const bool rep = m_insn->attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REPNE);
  const uint32_t am = addr_mask();
  // OUTS reads DS:ESI (segment override allowed), INS writes ES:EDI.
  Seg src_seg = Seg::DS;
  for (unsigned i = 0; i < m_insn->operand_count; ++i) {
    if (m_ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY) src_seg = seg_of(m_ops[i].mem.segment);
  }
  const Reg index = in ? runtime::EDI : runtime::ESI;
  const int32_t step = (m_s.regs.eflags & fl::DF) ? -int32_t(size) : int32_t(size);
  uint32_t iterations = 0;
  for (;;) {
    if (rep && (gpr(runtime::ECX) & am) == 0) break;
    if (iterations == kRepIterationsPerStep) {
      m_rep_incomplete = true;  // resume at the same instruction
      break;
    }
    const uint32_t off = gpr(index) & am;
    if (in) {
      // Check the destination before the port read, so a faulting INS
      // does not lose a value a device already gave away.
      uint32_t lin = 0;
      BT86_TRY_FAULT(segment_linear(m_s, Seg::ES, off, size, Access::kWrite, lin));
      const uint32_t v = m_hooks.io_in(port, size) & size_mask(size);
      BT86_TRY_FAULT(write_mem(Seg::ES, off, size, v));
    } else {
      uint32_t v = 0;
      BT86_TRY_FAULT(read_mem(src_seg, off, size, v));
      m_hooks.io_out(port, size, v);
    }
    gpr(index) = (gpr(index) & ~am) | ((gpr(index) + step) & am);
    ++iterations;
    if (!rep) break;
    gpr(runtime::ECX) = (gpr(runtime::ECX) & ~am) | ((gpr(runtime::ECX) - 1) & am);
  }
  return std::nullopt;
}

// MOV to CR0 (SDM vol. 2, MOV—Move to/from Control Registers; vol. 3, 2.5).
Fault Interpreter::write_cr0(uint32_t value) {
  if ((value & cr0::PG) && !(value & cr0::PE)) return gp0();
  if ((value & cr0::NW) && !(value & cr0::CD)) return gp0();
  constexpr uint32_t kWritable = cr0::PE | cr0::MP | cr0::EM | cr0::TS | cr0::NE | cr0::WP | cr0::AM | cr0::NW |
                                 cr0::CD | cr0::PG;
  const uint32_t old = m_s.sys.cr0;
  m_s.sys.cr0 = (value & kWritable) | cr0::ET;  // ET is hardwired to 1 since the P6
  m_hooks.control_register_written(0, old, m_s.sys.cr0);
  return std::nullopt;
}

Interpreter::SpecialMove Interpreter::special_move(ZydisRegisterClass special_class) const {
  const bool to_special = ZydisRegisterGetClass(m_ops[0].reg.value) == special_class;
  const ZydisRegister special = to_special ? m_ops[0].reg.value : m_ops[1].reg.value;
  return {to_special, ZydisRegisterGetId(special), to_special ? m_ops[1].reg.value : m_ops[0].reg.value};
}

Fault Interpreter::do_mov_cr() {
  if (!privileged()) return gp0();
  const auto [to_cr, cr, gp_reg] = special_move(ZYDIS_REGCLASS_CONTROL);
  if (cr != 0 && cr != 2 && cr != 3 && cr != 4) return ud();
  if (!to_cr) {
    const uint32_t v = cr == 0 ? m_s.sys.cr0 : cr == 2 ? m_s.sys.cr2 : cr == 3 ? m_s.sys.cr3 : m_s.sys.cr4;
    set_reg(gp_reg, v);
    return std::nullopt;
  }
  const uint32_t v = get_reg(gp_reg);
  switch (cr) {
    case 0: return write_cr0(v);
    case 2: m_s.sys.cr2 = v; return std::nullopt;
    case 3: {
      // Without PAE only PWT, PCD and the directory base exist.
      const uint32_t old = m_s.sys.cr3;
      m_s.sys.cr3 = v & 0xfffff018u;
      m_hooks.control_register_written(3, old, m_s.sys.cr3);
      return std::nullopt;
    }
    default: {
      // CR4 bits of features CPUID does not report are reserved: #GP(0).
      if (v & ~kCr4Supported) return gp0();
      const uint32_t old = m_s.sys.cr4;
      m_s.sys.cr4 = v;
      m_hooks.control_register_written(4, old, v);
      return std::nullopt;
    }
  }
}

Fault Interpreter::do_mov_dr() {
  if (!privileged()) return gp0();
  const auto [to_dr, dr_id, gp_reg] = special_move(ZYDIS_REGCLASS_DEBUG);
  int dr = dr_id;
  if (dr > 7) return ud();
  if (dr == 4 || dr == 5) dr += 2;  // CR4.DE is never set on this CPU: DR4/DR5 alias DR6/DR7
  if (!to_dr) {
    set_reg(gp_reg, m_s.sys.dr[dr]);
    return std::nullopt;
  }
  uint32_t v = get_reg(gp_reg);
  // DR6/DR7 reserved bits read as the P6 fixes them (SDM vol. 3, 17.2.3, 17.2.4).
  if (dr == 6) v = (v & 0x0000e00fu) | 0xffff0ff0u;
  if (dr == 7) v = (v & 0xffff23ffu) | 0x400u;
  m_s.sys.dr[dr] = v;
  return std::nullopt;
}

void Interpreter::real_mode_far_jump(uint16_t sel, uint32_t eip) {
  SegmentCache& cs = m_s.regs.sreg(Seg::CS);
  cs.selector = sel;
  cs.base = uint32_t(sel) << 4;
  m_s.regs.eip = eip;
  m_jumped = true;
}

Fault Interpreter::read_far_target(uint16_t sel, DescriptorRef& ref) {
  if ((sel & 0xfffc) == 0) return gp0();
  return read_descriptor(m_s, m_mem, sel, ref);
}

Fault Interpreter::far_transfer(uint16_t sel, uint32_t offset, bool call) {
  if (m_osize == 2) offset &= 0xffff;
  SegmentCache& cs = m_s.regs.sreg(Seg::CS);
  if (!protected_mode()) {
    if (offset > cs.limit) return gp0();
    if (call) BT86_TRY_FAULT(push({cs.selector, m_next}, m_osize));
    real_mode_far_jump(sel, offset);
    return std::nullopt;
  }
  DescriptorRef ref;
  BT86_TRY_FAULT(read_far_target(sel, ref));
  const Descriptor& d = ref.desc;
  const uint8_t rpl = sel & 3;
  if (d.code()) {
    // SDM vol. 2, JMP/CALL far to a code segment (vol. 3, 5.8.1).
    if (d.conforming() ? d.dpl() > m_s.cpl : (rpl > m_s.cpl || d.dpl() != m_s.cpl))
      return selector_fault(vec::GP, sel, false);
    if (!d.present()) return selector_fault(vec::NP, sel, false);
    if (offset > d.limit()) return gp0();
    if (call) BT86_TRY_FAULT(push({cs.selector, m_next}, m_osize));
    BT86_TRY_FAULT(set_accessed(m_mem, ref));
    cs = ref.desc.cache(uint16_t((sel & 0xfffc) | m_s.cpl));
    m_s.regs.eip = offset;
    m_jumped = true;
    m_hooks.segments_changed();
    return std::nullopt;
  }
  if (d.s()) return selector_fault(vec::GP, sel, false);  // data segment
  uint16_t tss_sel = sel;
  DescriptorRef tss = ref;
  switch (d.type()) {
    case desc_type::kTaskGate:
    case desc_type::kTss32Avail:
    case desc_type::kTss16Avail:
      break;
    case desc_type::kCallGate16:
    case desc_type::kCallGate32:
      // Known gap: call gates are refused (Linux i386 does not use them).
      cpu_logger().warn("far {} through call gate {:#x}: call gates are not supported, raising #GP",
                    call ? "call" : "jmp", sel);
      return selector_fault(vec::GP, sel, false);
    default:
      return selector_fault(vec::GP, sel, false);
  }
  if (d.dpl() < m_s.cpl || d.dpl() < rpl) return selector_fault(vec::GP, sel, false);
  if (!d.present()) return selector_fault(vec::NP, sel, false);
  if (d.type() == desc_type::kTaskGate) {
    tss_sel = d.gate_selector();
    if (tss_sel & 4) return selector_fault(vec::GP, tss_sel, false);
    BT86_TRY_FAULT(read_descriptor(m_s, m_mem, tss_sel, tss));
    const uint8_t t = tss.desc.type();
    if (tss.desc.s() || (t != desc_type::kTss32Avail && t != desc_type::kTss16Avail))
      return selector_fault(vec::GP, tss_sel, false);
    if (!tss.desc.present()) return selector_fault(vec::NP, tss_sel, false);
  }
  m_jumped = true;
  BT86_TRY_FAULT(task_switch(m_s, m_mem, m_hooks, tss_sel, tss,
                             call ? TaskSwitchReason::kCall : TaskSwitchReason::kJmp, false, m_next));
  if (m_s.regs.eip > m_s.regs.sreg(Seg::CS).limit) return gp0();
  return std::nullopt;
}

Fault Interpreter::do_far_jmp_call(bool call) {
  const ZydisDecodedOperand& op = m_ops[0];
  if (op.type == ZYDIS_OPERAND_TYPE_POINTER) return far_transfer(op.ptr.segment, op.ptr.offset, call);
  if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) return ud();
  Seg seg;
  uint32_t off, offset = 0, sel = 0;
  mem_address(op, seg, off);
  BT86_TRY_FAULT(read_mem(seg, off, m_osize, offset));
  BT86_TRY_FAULT(read_mem(seg, (off + m_osize) & addr_mask(), 2, sel));
  return far_transfer(uint16_t(sel), offset, call);
}

Fault Interpreter::do_far_ret() {
  const uint32_t imm = m_insn->operand_count_visible > 0 ? uint32_t(m_ops[0].imm.value.u & 0xffff) : 0;
  const unsigned w = m_osize;
  uint32_t v[2] = {};
  BT86_TRY_FAULT(peek(0, 2, w, v));
  const uint32_t new_eip = v[0];
  const uint16_t sel = uint16_t(v[1]);
  SegmentCache& cs = m_s.regs.sreg(Seg::CS);
  if (!protected_mode()) {
    if (new_eip > cs.limit) return gp0();
    add_sp(2 * w + imm);
    real_mode_far_jump(sel, new_eip);
    return std::nullopt;
  }
  // SDM vol. 2, RET far (vol. 3, 5.8.6).
  DescriptorRef ref;
  BT86_TRY_FAULT(read_far_target(sel, ref));
  const Descriptor& d = ref.desc;
  const uint8_t rpl = sel & 3;
  if (!d.code() || rpl < m_s.cpl) return selector_fault(vec::GP, sel, false);
  if (d.conforming() ? d.dpl() > rpl : d.dpl() != rpl) return selector_fault(vec::GP, sel, false);
  if (!d.present()) return selector_fault(vec::NP, sel, false);
  const bool outer = rpl > m_s.cpl;
  SegmentCache new_ss = m_s.regs.sreg(Seg::SS);
  uint32_t new_esp = 0;
  if (outer) {
    uint32_t sv[2] = {};
    BT86_TRY_FAULT(peek(2 * w + imm, 2, w, sv));
    BT86_TRY_FAULT(check_segment_load(m_s, m_mem, Seg::SS, uint16_t(sv[1]), LoadRules{rpl, vec::GP, false}, new_ss));
    const uint32_t m = new_ss.big() ? 0xffffffffu : 0xffffu;
    new_esp = (sv[0] & ~m) | ((sv[0] + imm) & m);
  }
  if (new_eip > d.limit()) return gp0();
  BT86_TRY_FAULT(set_accessed(m_mem, ref));
  cs = ref.desc.cache(sel);
  m_s.regs.eip = new_eip;
  m_jumped = true;
  if (outer) {
    m_s.regs.sreg(Seg::SS) = new_ss;
    gpr(runtime::ESP) = new_esp;
    m_s.cpl = rpl;
    for (Seg seg : {Seg::ES, Seg::DS, Seg::FS, Seg::GS}) {
      const SegmentCache& c = m_s.regs.sreg(seg);
      if ((c.data() || (c.code() && !c.conforming())) && c.dpl() < rpl) m_s.regs.sreg(seg) = null_segment(0);
    }
  } else {
    add_sp(2 * w + imm);
  }
  m_hooks.segments_changed();
  return std::nullopt;
}

Fault Interpreter::do_enter() {
  // SDM vol. 2, ENTER: nesting levels 0..31 copy the enclosing frame pointers.
  const uint32_t alloc = uint32_t(m_ops[0].imm.value.u & 0xffff);
  const uint32_t level = uint32_t(m_ops[1].imm.value.u & 31);
  const unsigned w = m_osize;
  const uint32_t mask = stack_mask();
  uint32_t esp = gpr(runtime::ESP);
  uint32_t ebp = gpr(runtime::EBP);
  auto put = [&](uint32_t v) -> Fault {
    esp = (esp & ~mask) | ((esp - w) & mask);
    return write_mem(Seg::SS, esp & mask, w, v);
  };
  BT86_TRY_FAULT(put(ebp));
  const uint32_t frame_temp = esp;
  if (level > 0) {
    for (uint32_t i = 1; i < level; ++i) {
      ebp = (ebp & ~mask) | ((ebp - w) & mask);
      uint32_t v = 0;
      BT86_TRY_FAULT(read_mem(Seg::SS, ebp & mask, w, v));
      BT86_TRY_FAULT(put(v));
    }
    BT86_TRY_FAULT(put(frame_temp));
  }
  if (w == 2) {
    gpr(runtime::EBP) = (gpr(runtime::EBP) & 0xffff0000u) | (frame_temp & 0xffff);
  } else {
    gpr(runtime::EBP) = frame_temp;
  }
  gpr(runtime::ESP) = (esp & ~mask) | ((esp - alloc) & mask);
  return std::nullopt;
}

Fault Interpreter::do_popa() {
  const unsigned w = m_osize;
  uint32_t v[8] = {};
  BT86_TRY_FAULT(peek(0, 8, w, v));
  // Lowest address: EDI, ESI, EBP, (ESP, skipped), EBX, EDX, ECX, EAX.
  const Reg order[8] = {runtime::EDI, runtime::ESI, runtime::EBP, runtime::ESP,
                        runtime::EBX, runtime::EDX, runtime::ECX, runtime::EAX};
  for (int i = 0; i < 8; ++i) {
    if (order[i] == runtime::ESP) continue;
    uint32_t& r = gpr(order[i]);
    r = w == 2 ? (r & 0xffff0000u) | (v[i] & 0xffff) : v[i];
  }
  add_sp(8 * w);
  return std::nullopt;
}

Fault Interpreter::do_load_far_pointer(Seg seg) {
  if (m_ops[1].type != ZYDIS_OPERAND_TYPE_MEMORY) return ud();
  Seg src;
  uint32_t off, offset = 0, sel = 0;
  mem_address(m_ops[1], src, off);
  BT86_TRY_FAULT(read_mem(src, off, m_osize, offset));
  BT86_TRY_FAULT(read_mem(src, (off + m_osize) & addr_mask(), 2, sel));
  BT86_TRY_FAULT(load_segment(m_s, m_mem, seg, uint16_t(sel)));
  set_reg(m_ops[0].reg.value, offset);
  if (seg == Seg::SS) m_shadow = true;
  m_hooks.segments_changed();
  return std::nullopt;
}

Fault Interpreter::do_descriptor_test(ZydisMnemonic m) {
  if (!protected_mode()) return ud();
  const bool two = m == ZYDIS_MNEMONIC_LAR || m == ZYDIS_MNEMONIC_LSL;
  uint32_t sel = 0;
  BT86_TRY_FAULT(read_op(m_ops[two ? 1 : 0], sel, 2));
  Fault fault;
  std::optional<uint32_t> value;
  bool ok = false;
  switch (m) {
    case ZYDIS_MNEMONIC_LAR: value = lar(m_s, m_mem, uint16_t(sel), fault); break;
    case ZYDIS_MNEMONIC_LSL: value = lsl(m_s, m_mem, uint16_t(sel), fault); break;
    case ZYDIS_MNEMONIC_VERR: ok = verr(m_s, m_mem, uint16_t(sel), fault); break;
    default: ok = verw(m_s, m_mem, uint16_t(sel), fault); break;
  }
  if (fault) return fault;
  if (two) {
    ok = value.has_value();
    if (ok) {
      uint32_t v = *value;
      if (m_osize == 2) v &= m == ZYDIS_MNEMONIC_LAR ? 0xff00u : 0xffffu;
      set_reg(m_ops[0].reg.value, v);
    }
  }
  m_s.regs.eflags = ok ? (m_s.regs.eflags | fl::ZF) : (m_s.regs.eflags & ~fl::ZF);
  return std::nullopt;
}

Fault Interpreter::dispatch() {
  const ZydisMnemonic m = m_insn->mnemonic;
  const bool far = m_insn->meta.branch_type == ZYDIS_BRANCH_TYPE_FAR;
  uint32_t v = 0;
  switch (m) {
    // Flags and interrupts (SDM vol. 2 CLI/STI: IOPL vs CPL; VME/PVI do not exist here).
    case ZYDIS_MNEMONIC_CLI:
      if (protected_mode() && m_s.cpl > iopl()) return gp0();
      m_s.regs.eflags &= ~fl::IF;
      return std::nullopt;
    case ZYDIS_MNEMONIC_STI:
      if (protected_mode() && m_s.cpl > iopl()) return gp0();
      if (!(m_s.regs.eflags & fl::IF)) m_shadow = true;
      m_s.regs.eflags |= fl::IF;
      return std::nullopt;
    case ZYDIS_MNEMONIC_PUSHF:
    case ZYDIS_MNEMONIC_PUSHFD:
      // The image has VM and RF cleared.
      return push({m_s.regs.eflags & ~(fl::VM | fl::RF)}, m_osize);
    case ZYDIS_MNEMONIC_POPF:
    case ZYDIS_MNEMONIC_POPFD:
      BT86_TRY_FAULT(peek(0, 1, m_osize, &v));
      m_s.regs.eflags = merge_eflags(m_s.regs.eflags, v, m_s.cpl, m_osize, false);
      add_sp(m_osize);
      return std::nullopt;
    case ZYDIS_MNEMONIC_HLT:
      if (!privileged()) return gp0();
      m_halt = true;
      return std::nullopt;

    // Port I/O.
    case ZYDIS_MNEMONIC_IN: return do_in_out(true);
    case ZYDIS_MNEMONIC_OUT: return do_in_out(false);
    case ZYDIS_MNEMONIC_INSB: return do_string_io(true, 1);
    case ZYDIS_MNEMONIC_INSW: return do_string_io(true, 2);
    case ZYDIS_MNEMONIC_INSD: return do_string_io(true, 4);
    case ZYDIS_MNEMONIC_OUTSB: return do_string_io(false, 1);
    case ZYDIS_MNEMONIC_OUTSW: return do_string_io(false, 2);
    case ZYDIS_MNEMONIC_OUTSD: return do_string_io(false, 4);

    // Control, debug and descriptor-table registers.
    case ZYDIS_MNEMONIC_MOV: {
      const ZydisRegisterClass c0 = m_ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER
                                        ? ZydisRegisterGetClass(m_ops[0].reg.value) : ZYDIS_REGCLASS_INVALID;
      const ZydisRegisterClass c1 = m_ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER
                                        ? ZydisRegisterGetClass(m_ops[1].reg.value) : ZYDIS_REGCLASS_INVALID;
      if (c0 == ZYDIS_REGCLASS_CONTROL || c1 == ZYDIS_REGCLASS_CONTROL) return do_mov_cr();
      if (c0 == ZYDIS_REGCLASS_DEBUG || c1 == ZYDIS_REGCLASS_DEBUG) return do_mov_dr();
      if (c0 == ZYDIS_REGCLASS_SEGMENT) {
        const Seg seg = seg_of(m_ops[0].reg.value);
        if (seg == Seg::CS) return ud();
        BT86_TRY_FAULT(read_op(m_ops[1], v, 2));
        BT86_TRY_FAULT(load_segment(m_s, m_mem, seg, uint16_t(v)));
        if (seg == Seg::SS) m_shadow = m_suppress_step = true;
        m_hooks.segments_changed();
        return std::nullopt;
      }
      if (c1 == ZYDIS_REGCLASS_SEGMENT) {
        // A register destination of 32 bits gets the zero-extended selector.
        const uint32_t sel = get_reg(m_ops[1].reg.value);
        return write_op(m_ops[0], sel, m_ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER ? m_ops[0].size / 8 : 2);
      }
      break;  // an ordinary mov: not the interpreter's business
    }
    case ZYDIS_MNEMONIC_LGDT:
    case ZYDIS_MNEMONIC_LIDT: {
      if (!privileged()) return gp0();
      Seg seg;
      uint32_t off, limit = 0, base = 0;
      mem_address(m_ops[0], seg, off);
      BT86_TRY_FAULT(read_mem(seg, off, 2, limit));
      BT86_TRY_FAULT(read_mem(seg, (off + 2) & addr_mask(), 4, base));
      if (m_osize == 2) base &= 0xffffff;  // 24-bit base with a 16-bit operand
      TableReg& t = m == ZYDIS_MNEMONIC_LGDT ? m_s.sys.gdtr : m_s.sys.idtr;
      t = TableReg{base, uint16_t(limit)};
      if (m == ZYDIS_MNEMONIC_LGDT) m_hooks.segments_changed();
      return std::nullopt;
    }
    case ZYDIS_MNEMONIC_SGDT:
    case ZYDIS_MNEMONIC_SIDT: {
      // No UMIP on a 686: allowed at any CPL.
      const TableReg& t = m == ZYDIS_MNEMONIC_SGDT ? m_s.sys.gdtr : m_s.sys.idtr;
      Seg seg;
      uint32_t off;
      mem_address(m_ops[0], seg, off);
      std::array<uint8_t, 6> b{};
      store_le(std::span(b).first(2), t.limit);
      store_le(std::span(b).subspan(2), m_osize == 2 ? t.base & 0xffffff : t.base);
      return write_segmented(m_s, m_mem, seg, off, b);
    }
    case ZYDIS_MNEMONIC_LLDT:
    case ZYDIS_MNEMONIC_LTR:
      if (!protected_mode()) return ud();
      if (!privileged()) return gp0();
      BT86_TRY_FAULT(read_op(m_ops[0], v, 2));
      BT86_TRY_FAULT(m == ZYDIS_MNEMONIC_LLDT ? load_ldtr(m_s, m_mem, uint16_t(v)) : load_tr(m_s, m_mem, uint16_t(v)));
      m_hooks.segments_changed();
      return std::nullopt;
    case ZYDIS_MNEMONIC_SLDT:
    case ZYDIS_MNEMONIC_STR: {
      if (!protected_mode()) return ud();
      const uint16_t sel = m == ZYDIS_MNEMONIC_SLDT ? m_s.sys.ldtr.selector : m_s.sys.tr.selector;
      if (m_ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER) {
        set_reg(m_ops[0].reg.value, sel);  // a 32-bit register gets it zero-extended
        return std::nullopt;
      }
      return write_op(m_ops[0], sel, 2);
    }
    case ZYDIS_MNEMONIC_SMSW:
      if (m_ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER) {
        set_reg(m_ops[0].reg.value, m_s.sys.cr0);
        return std::nullopt;
      }
      return write_op(m_ops[0], m_s.sys.cr0 & 0xffff, 2);
    case ZYDIS_MNEMONIC_LMSW: {
      if (!privileged()) return gp0();
      BT86_TRY_FAULT(read_op(m_ops[0], v, 2));
      // Only PE, MP, EM, TS; PE can be set but not cleared.
      return write_cr0((m_s.sys.cr0 & ~0xeu) | (v & 0xf));
    }
    case ZYDIS_MNEMONIC_CLTS:
      if (!privileged()) return gp0();
      return write_cr0(m_s.sys.cr0 & ~cr0::TS);
    case ZYDIS_MNEMONIC_LAR:
    case ZYDIS_MNEMONIC_LSL:
    case ZYDIS_MNEMONIC_VERR:
    case ZYDIS_MNEMONIC_VERW:
      return do_descriptor_test(m);
    case ZYDIS_MNEMONIC_INVLPG: {
      if (!privileged()) return gp0();
      Seg seg;
      uint32_t off;
      mem_address(m_ops[0], seg, off);
      m_hooks.invlpg(m_s.regs.sreg(seg).base + off);
      return std::nullopt;
    }
    case ZYDIS_MNEMONIC_WBINVD:
    case ZYDIS_MNEMONIC_INVD:
      if (!privileged()) return gp0();
      m_hooks.cache_flush();
      return std::nullopt;

    // CPU model.
    case ZYDIS_MNEMONIC_CPUID: {
      const CpuidLeaf r = cpuid(gpr(runtime::EAX), gpr(runtime::ECX));
      gpr(runtime::EAX) = r.eax;
      gpr(runtime::EBX) = r.ebx;
      gpr(runtime::ECX) = r.ecx;
      gpr(runtime::EDX) = r.edx;
      return std::nullopt;
    }
    case ZYDIS_MNEMONIC_RDTSC: {
      if ((m_s.sys.cr4 & cr4::TSD) && protected_mode() && m_s.cpl != 0) return gp0();
      const uint64_t tsc = guest_tsc(m_s, m_hooks.host_tsc());
      gpr(runtime::EAX) = uint32_t(tsc);
      gpr(runtime::EDX) = uint32_t(tsc >> 32);
      return std::nullopt;
    }
    case ZYDIS_MNEMONIC_RDMSR: {
      if (!privileged()) return gp0();
      const std::optional<uint64_t> r = read_msr(m_s, gpr(runtime::ECX), m_hooks.host_tsc());
      if (!r) return gp0();
      gpr(runtime::EAX) = uint32_t(*r);
      gpr(runtime::EDX) = uint32_t(*r >> 32);
      return std::nullopt;
    }
    case ZYDIS_MNEMONIC_WRMSR: {
      if (!privileged()) return gp0();
      const uint64_t value = uint64_t(gpr(runtime::EDX)) << 32 | gpr(runtime::EAX);
      if (!write_msr(m_s, gpr(runtime::ECX), value, m_hooks.host_tsc())) return gp0();
      return std::nullopt;
    }
    case ZYDIS_MNEMONIC_RDPMC:
      // No performance counters are exposed: #GP(0) at any CPL (known gap).
      return gp0();
    case ZYDIS_MNEMONIC_SYSENTER:
    case ZYDIS_MNEMONIC_SYSEXIT:
    case ZYDIS_MNEMONIC_SYSCALL:
    case ZYDIS_MNEMONIC_SYSRET:
      // CPUID reports neither SEP nor SYSCALL: the instructions do not exist.
      return ud();
    // CET's landing pads are hint NOPs on a CPU without CET (SDM vol. 1,
    // 18.3.1): gcc -fcf-protection puts them at every function entry.
    case ZYDIS_MNEMONIC_ENDBR32:
    case ZYDIS_MNEMONIC_ENDBR64:
      return std::nullopt;
    case ZYDIS_MNEMONIC_UD0:
    case ZYDIS_MNEMONIC_UD1:
    case ZYDIS_MNEMONIC_UD2:
      return ud();

    // Interrupts.
    case ZYDIS_MNEMONIC_INT:
      raise(Event::software(uint8_t(m_ops[0].imm.value.u), m_insn->length));
      return std::nullopt;
    case ZYDIS_MNEMONIC_INT3:
      raise(Event::software_exception(vec::BP, m_insn->length));
      return std::nullopt;
    case ZYDIS_MNEMONIC_INTO:
      if (m_s.regs.eflags & fl::OF) raise(Event::software_exception(vec::OF, m_insn->length));
      return std::nullopt;
    case ZYDIS_MNEMONIC_BOUND: {
      // The translator calls out only when the index is out of range, but
      // the check is done here in full (SDM vol. 2, BOUND): two signed
      // bounds at m and m + size, #BR (a fault) outside [lower, upper].
      Seg seg;
      uint32_t off, lower = 0, upper = 0;
      if (m_ops[1].type != ZYDIS_OPERAND_TYPE_MEMORY) return ud();
      mem_address(m_ops[1], seg, off);
      BT86_TRY_FAULT(read_mem(seg, off, m_osize, lower));
      BT86_TRY_FAULT(read_mem(seg, (off + m_osize) & addr_mask(), m_osize, upper));
      const uint32_t index = get_reg(m_ops[0].reg.value);
      auto sext = [&](uint32_t x) { return m_osize == 2 ? int32_t(int16_t(x)) : int32_t(x); };
      if (sext(index) < sext(lower) || sext(index) > sext(upper)) return make_fault(vec::BR);
      return std::nullopt;
    }
    case ZYDIS_MNEMONIC_INT1:
      // ICEBP: a #DB trap delivered like a hardware event (no DPL check).
      raise(Event::exception(make_fault(vec::DB)));
      return std::nullopt;
    case ZYDIS_MNEMONIC_IRET:
    case ZYDIS_MNEMONIC_IRETD:
      BT86_TRY_FAULT(iret(m_s, m_mem, m_hooks, m_osize, m_next));
      m_jumped = true;
      return std::nullopt;

    // Far control transfers.
    case ZYDIS_MNEMONIC_JMP:
      if (far) return do_far_jmp_call(false);
      break;
    case ZYDIS_MNEMONIC_CALL:
      if (far) return do_far_jmp_call(true);
      break;
    case ZYDIS_MNEMONIC_RET:
      if (far) return do_far_ret();
      break;

    // Segment registers and the stack.
    case ZYDIS_MNEMONIC_PUSH:
      if (m_ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
          ZydisRegisterGetClass(m_ops[0].reg.value) == ZYDIS_REGCLASS_SEGMENT) {
        const uint32_t sel = get_reg(m_ops[0].reg.value);
        if (m_osize == 2) return push({sel}, 2);
        // A 32-bit push of a segment register writes only the low word
        // (what recent Intel CPUs do, SDM vol. 2, PUSH), ESP moves by 4.
        const uint32_t esp = gpr(runtime::ESP);
        const uint32_t sp = (esp - 4) & stack_mask();
        BT86_TRY_FAULT(segment_linear(m_s, Seg::SS, sp, 4, Access::kWrite, v));
        BT86_TRY_FAULT(write_mem(Seg::SS, sp, 2, sel));
        gpr(runtime::ESP) = (esp & ~stack_mask()) | sp;
        return std::nullopt;
      }
      break;
    case ZYDIS_MNEMONIC_POP:
      if (m_ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
          ZydisRegisterGetClass(m_ops[0].reg.value) == ZYDIS_REGCLASS_SEGMENT) {
        const Seg seg = seg_of(m_ops[0].reg.value);
        BT86_TRY_FAULT(peek(0, 1, m_osize, &v));
        BT86_TRY_FAULT(load_segment(m_s, m_mem, seg, uint16_t(v)));
        add_sp(m_osize);
        if (seg == Seg::SS) m_shadow = m_suppress_step = true;
        m_hooks.segments_changed();
        return std::nullopt;
      }
      break;
    case ZYDIS_MNEMONIC_LDS: return do_load_far_pointer(Seg::DS);
    case ZYDIS_MNEMONIC_LES: return do_load_far_pointer(Seg::ES);
    case ZYDIS_MNEMONIC_LFS: return do_load_far_pointer(Seg::FS);
    case ZYDIS_MNEMONIC_LGS: return do_load_far_pointer(Seg::GS);
    case ZYDIS_MNEMONIC_LSS: return do_load_far_pointer(Seg::SS);
    case ZYDIS_MNEMONIC_PUSHA:
    case ZYDIS_MNEMONIC_PUSHAD: {
      const auto& g = m_s.regs.gpr;
      return push({g[runtime::EAX], g[runtime::ECX], g[runtime::EDX], g[runtime::EBX], g[runtime::ESP],
                   g[runtime::EBP], g[runtime::ESI], g[runtime::EDI]},
                  m_osize);
    }
    case ZYDIS_MNEMONIC_POPA:
    case ZYDIS_MNEMONIC_POPAD:
      return do_popa();
    case ZYDIS_MNEMONIC_ENTER: return do_enter();
    case ZYDIS_MNEMONIC_LEAVE: {
      const uint32_t mask = stack_mask();
      const uint32_t frame = gpr(runtime::EBP) & mask;
      BT86_TRY_FAULT(read_mem(Seg::SS, frame, m_osize, v));
      gpr(runtime::ESP) = (gpr(runtime::ESP) & ~mask) | ((frame + m_osize) & mask);
      uint32_t& ebp = gpr(runtime::EBP);
      ebp = m_osize == 2 ? (ebp & 0xffff0000u) | (v & 0xffff) : v;
      return std::nullopt;
    }
    default:
      break;
  }
  m_unimplemented = true;
  note_unimplemented(m, m_s.regs.eip);
  return m_options.unimplemented_fault ? *m_options.unimplemented_fault : ud();
}

StepResult Interpreter::run() {
  StepResult result;
  // Only what the result compares (a whole VcpuState would initialise an
  // FXSAVE area on every callout).
  const uint8_t cpl_before = m_s.cpl;
  const uint32_t cr0_before = m_s.sys.cr0, cr3_before = m_s.sys.cr3, cr4_before = m_s.sys.cr4;
  const bool tf = m_s.regs.eflags & fl::TF;
  m_s.interrupt_shadow = false;  // the shadow covered this instruction at most

  Fault f = fetch_decode();
  if (!f) {
    result.length = m_insn->length;
    f = dispatch();
  }
  // The event to deliver, read in place: copying m_event whole right after
  // it was stored field by field would stall on store forwarding.
  Event raised;
  const Event* to_deliver = nullptr;
  if (f) {
    // A fault: EIP still at the instruction (or wherever a task switch left it).
    raised = Event::exception(*f);
    to_deliver = &raised;
  } else {
    if (!m_jumped && !m_rep_incomplete) m_s.regs.eip = m_next;
    if (m_shadow) m_s.interrupt_shadow = true;
    if (m_halt) {
      m_s.halted = true;
      result.kind = StepKind::kHalted;
    }
    if (m_event) {
      to_deliver = &*m_event;
    } else if (tf && !m_suppress_step && !m_rep_incomplete) {
      // Single-step trap after the instruction (SDM vol. 3, 17.3.1.4).
      m_s.sys.dr[6] |= 1u << 14;
      raised = Event::exception(make_fault(vec::DB));
      to_deliver = &raised;
    }
  }
  if (to_deliver) {
    const DeliveryResult d = deliver(m_s, *to_deliver, m_mem, m_hooks);
    result.delivered = true;
    copy_event(result.event, d.delivered);
    if (d.shutdown) {
      result.kind = StepKind::kShutdown;
      result.shutdown_reason = d.shutdown_reason;
    } else if (result.kind == StepKind::kHalted && to_deliver->vector == vec::DB) {
      result.kind = StepKind::kContinue;  // the #DB handler runs first
      m_s.halted = false;
    }
  }
  result.unimplemented = m_unimplemented;
  const uint32_t mode_bits = cr0::PE | cr0::PG;
  result.mode_changed = m_s.cpl != cpl_before || ((m_s.sys.cr0 ^ cr0_before) & mode_bits);
  result.paging_changed = ((m_s.sys.cr0 ^ cr0_before) & (cr0::PG | cr0::WP | cr0::PE)) || m_s.sys.cr3 != cr3_before ||
                          ((m_s.sys.cr4 ^ cr4_before) & (cr4::PSE | cr4::PGE | cr4::PAE));
  return result;
}

}  // namespace

StepResult execute(VcpuState& state, LinearMemory& mem, CpuHooks& hooks, const ExecuteOptions& options) {
  return Interpreter(state, mem, hooks, options).run();
}

uint64_t unimplemented_count() { return g_unimplemented.load(std::memory_order_relaxed); }

}  // namespace bt86::machine
