// Checked execution: the segment checks and execute breakpoints of one
// instruction, decided before it runs (access_check.h). Every memory operand
// Zydis reports (explicit, and the hidden stack and string operands) is one
// access of op.size bits at an offset computed here from the registers; the
// stack ones are placed where the instruction puts them (push below ESP, pop
// at ESP, SDM vol. 2 PUSH/POP/CALL/RET/PUSHA/POPA/ENTER/LEAVE).
#include "machine/access_check.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <array>

#include "translator/block_builder.h"

namespace bt86::machine {

using runtime::Seg;
using runtime::SegmentCache;
namespace fl = runtime::flags;

namespace {

uint32_t reg_value(const VcpuState& s, ZydisRegister r) {
  if (r == ZYDIS_REGISTER_NONE) return 0;
  const int id = ZydisRegisterGetId(r);
  switch (ZydisRegisterGetClass(r)) {
    case ZYDIS_REGCLASS_GPR32: return s.regs.gpr[id];
    case ZYDIS_REGCLASS_GPR16: return s.regs.gpr[id] & 0xffff;
    default: return 0;
  }
}

bool is_stack_reg(ZydisRegister r) { return r == ZYDIS_REGISTER_ESP || r == ZYDIS_REGISTER_SP; }

// Instructions the interpreter runs with its own segment checks (and whose
// order of checks it knows better than a generic operand walk).
bool interpreter_checks(const ZydisDecodedInstruction& i, const ZydisDecodedOperand* ops) {
  if (i.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) return true;
  switch (i.mnemonic) {
    case ZYDIS_MNEMONIC_STI:  // its shadow would join it in a one-instruction translation
    case ZYDIS_MNEMONIC_IRET: case ZYDIS_MNEMONIC_IRETD:
    case ZYDIS_MNEMONIC_INT: case ZYDIS_MNEMONIC_INT3: case ZYDIS_MNEMONIC_INTO: case ZYDIS_MNEMONIC_INT1:
    case ZYDIS_MNEMONIC_INSB: case ZYDIS_MNEMONIC_INSW: case ZYDIS_MNEMONIC_INSD:
    case ZYDIS_MNEMONIC_OUTSB: case ZYDIS_MNEMONIC_OUTSW: case ZYDIS_MNEMONIC_OUTSD:
    case ZYDIS_MNEMONIC_LDS: case ZYDIS_MNEMONIC_LES: case ZYDIS_MNEMONIC_LFS: case ZYDIS_MNEMONIC_LGS:
    case ZYDIS_MNEMONIC_LSS:
      return true;
    case ZYDIS_MNEMONIC_ENTER: return (ops[1].imm.value.u & 31) != 0;
    case ZYDIS_MNEMONIC_MOV: case ZYDIS_MNEMONIC_POP:
      return ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
             ZydisRegisterGetClass(ops[0].reg.value) == ZYDIS_REGCLASS_SEGMENT;
    default: return false;
  }
}

// How many iterations of a string access (size bytes at offset off, moving
// by size each time, backwards with DF) stay inside the segment, at most
// count. 0 when the first one already fails (type or limit).
uint32_t good_iterations(const SegmentCache& c, uint32_t off, uint32_t size, bool df, bool write, uint32_t count) {
  if (!c.present() || (write ? !c.writable() : !c.readable())) return 0;
  const uint64_t last0 = uint64_t(off) + size - 1;
  uint64_t good;
  if (c.expand_down()) {
    // Valid offsets: limit+1 .. upper (SDM vol. 3, 5.3).
    const uint64_t upper = c.big() ? 0xffffffffull : 0xffffull;
    if (off <= c.limit || last0 > upper) return 0;
    good = df ? (uint64_t(off) - c.limit - 1) / size + 1 : (upper - last0) / size + 1;
  } else {
    if (last0 > c.limit) return 0;
    if (c.limit == 0xffffffffu) return count;  // offsets wrap inside the segment
    good = df ? uint64_t(off) / size + 1 : (uint64_t(c.limit) - last0) / size + 1;
  }
  return uint32_t(std::min<uint64_t>(good, count));
}

// #NM / #UD of x87, MMX and SSE instructions from CR0.EM/TS/MP and
// CR4.OSFXSR (SDM vol. 3, table 2-2 and 13.1; vol. 2, each instruction's
// "Protected Mode Exceptions"). Fences, prefetches and movnti never fault.
Fault fpu_fault(const VcpuState& s, const ZydisDecodedInstruction& i) {
  if (!translator::fpu_state_insn(i)) return std::nullopt;
  switch (i.mnemonic) {
    case ZYDIS_MNEMONIC_LFENCE: case ZYDIS_MNEMONIC_MFENCE: case ZYDIS_MNEMONIC_SFENCE:
    case ZYDIS_MNEMONIC_MOVNTI:
      return std::nullopt;
    default:
      break;
  }
  if (i.meta.category == ZYDIS_CATEGORY_PREFETCH) return std::nullopt;
  const uint32_t cr0 = s.sys.cr0;
  const bool em = cr0 & cr0::EM, ts = cr0 & cr0::TS;
  if (i.mnemonic == ZYDIS_MNEMONIC_FWAIT) return ts && (cr0 & cr0::MP) ? Fault(make_fault(vec::NM)) : std::nullopt;
  const bool fxsr = i.mnemonic == ZYDIS_MNEMONIC_FXSAVE || i.mnemonic == ZYDIS_MNEMONIC_FXRSTOR;
  if (i.meta.isa_ext == ZYDIS_ISA_EXT_X87 || fxsr) return em || ts ? Fault(make_fault(vec::NM)) : std::nullopt;
  if (em) return make_fault(vec::UD);
  if (i.meta.isa_ext != ZYDIS_ISA_EXT_MMX && !(s.sys.cr4 & cr4::OSFXSR)) return make_fault(vec::UD);
  if (ts) return make_fault(vec::NM);
  return std::nullopt;
}

}  // namespace

InsnCheck check_instruction(const VcpuState& s, LinearMemory& mem) {
  InsnCheck out;
  const SegmentCache& cs = s.regs.sreg(Seg::CS);
  const uint32_t eip = s.regs.eip;
  if (eip > cs.limit) {
    out.decoded = true;
    out.fault = make_fault(vec::GP, 0);
    return out;
  }
  // Fetch what is there (up to the page that faults): an instruction that
  // cannot be fetched is left to the engine that runs it, which raises the #PF.
  std::array<uint8_t, ZYDIS_MAX_INSTRUCTION_LENGTH> buf{};
  const uint32_t lin = cs.base + eip;
  uint32_t n = ZYDIS_MAX_INSTRUCTION_LENGTH;
  if (mem.read(lin, std::span(buf.data(), n), Access::kFetch, false)) {
    n = std::min<uint32_t>(n, 0x1000 - (lin & 0xfff));
    if (mem.read(lin, std::span(buf.data(), n), Access::kFetch, false)) return out;
  }
  ZydisDecoder decoder;
  ZydisDecoderInit(&decoder, cs.big() ? ZYDIS_MACHINE_MODE_LEGACY_32 : ZYDIS_MACHINE_MODE_LEGACY_16,
                   s.regs.sreg(Seg::SS).big() ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16);
  ZydisDecodedInstruction i;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, buf.data(), n, &i, ops))) return out;
  out.decoded = true;
  out.length = i.length;
  // CS limit: every byte of the instruction (SDM vol. 3, 5.3).
  if (uint64_t(eip) + i.length - 1 > cs.limit) {
    out.fault = make_fault(vec::GP, 0);
    return out;
  }
  if (Fault f = fpu_fault(s, i)) {
    out.fault = f;
    return out;
  }
  if (interpreter_checks(i, ops)) {
    out.interpret = true;
    return out;
  }

  const bool string_op = i.meta.category == ZYDIS_CATEGORY_STRINGOP;
  const bool rep = string_op && (i.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REPNE));
  const uint32_t addr_mask = i.address_width == 16 ? 0xffffu : 0xffffffffu;
  const uint32_t stack_mask = s.regs.sreg(Seg::SS).big() ? 0xffffffffu : 0xffffu;
  const uint32_t osize = i.operand_width / 8;
  const bool df = s.regs.eflags & fl::DF;
  if (rep) {
    out.rep_count = s.regs.gpr[runtime::ECX] & addr_mask;
    const bool cond = i.mnemonic == ZYDIS_MNEMONIC_CMPSB || i.mnemonic == ZYDIS_MNEMONIC_CMPSW ||
                      i.mnemonic == ZYDIS_MNEMONIC_CMPSD || i.mnemonic == ZYDIS_MNEMONIC_SCASB ||
                      i.mnemonic == ZYDIS_MNEMONIC_SCASW || i.mnemonic == ZYDIS_MNEMONIC_SCASD;
    out.repe = cond && (i.attributes & ZYDIS_ATTRIB_HAS_REPE);
    out.repne = cond && (i.attributes & ZYDIS_ATTRIB_HAS_REPNE);
    if (out.rep_count == 0) return out;  // no iteration, no access
  }
  uint32_t iterations = rep ? out.rep_count : 1;
  GuestFault string_fault;
  for (uint8_t k = 0; k < i.operand_count; ++k) {
    const ZydisDecodedOperand& op = ops[k];
    if (op.type != ZYDIS_OPERAND_TYPE_MEMORY || op.mem.type != ZYDIS_MEMOP_TYPE_MEM) continue;
    const Seg seg = Seg(ZydisRegisterGetId(op.mem.segment));
    const bool write = op.actions & (ZYDIS_OPERAND_ACTION_WRITE | ZYDIS_OPERAND_ACTION_CONDWRITE);
    const bool read = op.actions & (ZYDIS_OPERAND_ACTION_READ | ZYDIS_OPERAND_ACTION_CONDREAD);
    uint32_t size = std::max<uint32_t>(op.size / 8, 1);
    uint32_t off;
    const bool hidden = op.visibility != ZYDIS_OPERAND_VISIBILITY_EXPLICIT;
    if (hidden && is_stack_reg(op.mem.base)) {
      const uint32_t esp = s.regs.gpr[runtime::ESP];
      if (i.mnemonic == ZYDIS_MNEMONIC_ENTER) size = osize + uint32_t(ops[0].imm.value.u & 0xffff);
      // Pushes write below ESP, pops read at ESP.
      off = (write ? esp - size : esp) & stack_mask;
    } else {
      uint64_t a = reg_value(s, op.mem.base) + uint64_t(reg_value(s, op.mem.index)) * op.mem.scale;
      if (op.mem.disp.has_displacement) a += uint64_t(op.mem.disp.value);
      // pop m with an ESP-based address uses ESP after the pop (SDM vol. 2, POP).
      if (!hidden && i.mnemonic == ZYDIS_MNEMONIC_POP && is_stack_reg(op.mem.base)) a += osize;
      off = uint32_t(a) & (is_stack_reg(op.mem.base) && hidden ? stack_mask : addr_mask);
    }
    const SegmentCache& c = s.regs.sreg(seg);
    const GuestFault bad = seg == Seg::SS ? make_fault(vec::SS, 0) : make_fault(vec::GP, 0);
    if (string_op) {
      // Each iteration moves ESI/EDI by size; the first bad one faults
      // (#SS(0) if that access was through SS, e.g. movs with ss:).
      for (bool w : {false, true}) {
        if (!(w ? write : read)) continue;
        const uint32_t good = good_iterations(c, off, size, df, w, iterations);
        if (good < iterations) {
          iterations = good;
          string_fault = bad;
        }
      }
      if (iterations == 0) {
        out.fault = string_fault;
        return out;
      }
      continue;
    }
    uint32_t linear;
    if (read) {
      if (Fault f = segment_linear(s, seg, off, size, Access::kRead, linear)) {
        out.fault = f;
        return out;
      }
    }
    if (write) {
      if (Fault f = segment_linear(s, seg, off, size, Access::kWrite, linear)) {
        out.fault = f;
        return out;
      }
    }
  }
  if (rep && iterations < out.rep_count) {
    out.rep_iterations = iterations;
    out.fault = string_fault;
  }
  return out;
}

bool execute_breakpoints_armed(const SystemRegs& sys) {
  const uint32_t dr7 = sys.dr[7];
  if (!(dr7 & 0xff)) return false;  // no L0-3/G0-3 enable: the usual case, asked at every step
  for (int n = 0; n < 4; ++n)
    if ((dr7 & (3u << (2 * n))) && ((dr7 >> (16 + 4 * n)) & 3) == 0) return true;
  return false;
}

uint32_t execute_breakpoint_hits(const SystemRegs& sys, uint32_t lin) {
  const uint32_t dr7 = sys.dr[7];
  uint32_t hits = 0;
  for (int n = 0; n < 4; ++n)
    if ((dr7 & (3u << (2 * n))) && ((dr7 >> (16 + 4 * n)) & 3) == 0 && sys.dr[n] == lin) hits |= 1u << n;
  return hits;
}

}  // namespace bt86::machine
