#include "translator/reencoder.h"

#include <algorithm>
#include <cstring>

namespace bt86::translator {
namespace {

const ZydisDecoder& decoder32() {
  static ZydisDecoder d = [] {
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32);
    return dec;
  }();
  return d;
}

constexpr ZydisInstructionAttributes kSegmentAttribs =
    ZYDIS_ATTRIB_HAS_SEGMENT_CS | ZYDIS_ATTRIB_HAS_SEGMENT_SS | ZYDIS_ATTRIB_HAS_SEGMENT_DS |
    ZYDIS_ATTRIB_HAS_SEGMENT_ES | ZYDIS_ATTRIB_HAS_SEGMENT_FS | ZYDIS_ATTRIB_HAS_SEGMENT_GS;

}  // namespace

// Encodes a 64-bit request and checks the address-size invariant (below).
static Result<HostBytes> encode_checked(const ZydisEncoderRequest& req, bool has_mem);

bool decode32(std::span<const uint8_t> bytes, uint32_t eip, GuestInsn& out) {
  out.eip = eip;
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder32(), bytes.data(), bytes.size(), &out.insn, out.ops)))
    return false;
  std::copy(bytes.begin(), bytes.begin() + out.insn.length, out.bytes.begin());
  out.has_bytes = true;
  return true;
}

namespace {

// Opcodes (one-byte map) that mean something else, or are invalid, in
// 64-bit mode, or default to a 64-bit operand size there (SDM vol. 2,
// appendix A.2.5 "i64"/"o64"/"d64"/"f64"), plus every one-byte opcode with
// an implicit stack, string or I/O operand. The classifier never hands
// these to the re-encoder as innocuous; the table keeps the fast path safe
// on its own (they take the checked Zydis path instead).
constexpr std::array<bool, 256> make_slow_1byte() {
  std::array<bool, 256> t{};
  for (int op : {0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x62, 0x63, 0x68,
                 0x6a, 0x82, 0x8c, 0x8e, 0x8f, 0x9a, 0x9c, 0x9d, 0xc2, 0xc3, 0xc4, 0xc5, 0xc8, 0xc9, 0xca, 0xcb,
                 0xcc, 0xcd, 0xce, 0xcf, 0xd4, 0xd5, 0xd6, 0xd7, 0xea, 0xf1, 0xf4, 0xfa, 0xfb, 0xff})
    t[op] = true;
  for (int op = 0x40; op <= 0x5f; ++op) t[op] = true;  // inc/dec r (REX in 64-bit mode), push/pop r
  for (int op = 0x6c; op <= 0x7f; ++op) t[op] = true;  // ins/outs, jcc rel8
  for (int op = 0xa4; op <= 0xaf; ++op) t[op] = true;  // string instructions (the test ops a8/a9 too)
  for (int op = 0xe0; op <= 0xef; ++op) t[op] = true;  // loop/jcxz, in/out, call/jmp
  return t;
}
// Two-byte map (0F xx): system instructions, jcc rel32, push/pop fs/gs,
// cpuid, far-pointer loads, ud0/ud1.
constexpr std::array<bool, 256> make_slow_0f() {
  std::array<bool, 256> t{};
  for (int op : {0x00, 0x01, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37,
                 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa, 0xb2, 0xb4, 0xb5, 0xb9, 0xff})
    t[op] = true;
  for (int op = 0x20; op <= 0x27; ++op) t[op] = true;  // mov cr/dr/tr
  t[0x78] = t[0x79] = true;                             // vmread/vmwrite (64-bit operands in 64-bit mode)
  for (int op = 0x80; op <= 0x8f; ++op) t[op] = true;  // jcc rel32
  return t;
}
constexpr std::array<bool, 256> kSlow1 = make_slow_1byte();
constexpr std::array<bool, 256> kSlow0F = make_slow_0f();

bool is_high_byte_reg(ZydisRegister r) {
  return r == ZYDIS_REGISTER_AH || r == ZYDIS_REGISTER_CH || r == ZYDIS_REGISTER_DH || r == ZYDIS_REGISTER_BH;
}

// The fast path of reencode64: the guest's own bytes, rewritten for 64-bit
// mode, for legacy-encoded instructions with plain operands (most of kernel
// code). Returns false when the instruction needs the general (Zydis
// encoder) path. The rewrite:
//   - guest segment overrides dropped; with a memory operand, GS (the
//     window) and 0x67 (32-bit addressing: zero-extended, SDM vol. 1, 3.3.7)
//     go in front; the other prefixes are kept in their order;
//   - ESP in ModRM.reg, ModRM.rm, SIB.base or the opcode becomes R12D through
//     REX.R / REX.B right before the opcode (SDM vol. 2, 2.2.1);
//   - [disp32] (ModRM mod 00, r/m 101), RIP-relative in 64-bit mode, becomes
//     the SIB form without base and index (r/m 100, SIB 0x25);
//   - the segment base of the memory operand is added to the displacement
//     (widened to 32 bits when it is not zero).
// Checked against the Zydis path, operand by operand, by
// ReencodeFast.* in tests/translator.
}  // namespace

bool reencode64_fast(const GuestInsn& g, const ReencodeOptions& options, HostBytes& out) {
  const ZydisDecodedInstruction& i = g.insn;
  if (!g.has_bytes || i.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY || i.address_width != 32 ||
      !options.window_segment || options.mem_address_in != ZYDIS_REGISTER_NONE ||
      options.esp_as != ZYDIS_REGISTER_NONE || options.seg_base_in_r11)
    return false;
  const uint8_t npre = i.raw.prefix_count;
  if (npre >= i.length) return false;
  // Opcode bytes: from the end of the prefixes to ModRM, or to the displacement
  // (moffs) or immediate, or the end.
  const bool has_modrm = (i.attributes & ZYDIS_ATTRIB_HAS_MODRM) != 0;
  uint8_t op_end = i.length;
  if (has_modrm) op_end = i.raw.modrm.offset;
  else if (i.raw.disp.size) op_end = i.raw.disp.offset;
  else if (i.raw.imm[0].size) op_end = i.raw.imm[0].offset;
  if (op_end <= npre) return false;
  const uint8_t first = g.bytes[npre];
  if (i.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT && first >= 0x40 && first <= 0x4f && op_end == i.length) {
    // inc/dec r (40+r / 48+r) are REX prefixes in 64-bit mode: the same
    // operation as ff /0 and ff /1 with a register operand (SDM vol. 2, INC/DEC).
    size_t n = 0;
    for (uint8_t k = 0; k < npre; ++k) {
      const uint8_t p = g.bytes[k];
      if (p == 0x26 || p == 0x2e || p == 0x36 || p == 0x3e || p == 0x64 || p == 0x65) continue;
      if (p == 0x67 || n + 4 > out.bytes.size()) return false;
      out.bytes[n++] = p;
    }
    if ((first & 7) == 4) out.bytes[n++] = 0x41;  // ESP -> R12D
    out.bytes[n++] = 0xff;
    out.bytes[n++] = uint8_t(0xc0 | (first & 8) | (first & 7));
    out.size = uint8_t(n);
    return true;
  }
  switch (i.opcode_map) {
    case ZYDIS_OPCODE_MAP_DEFAULT:
      if (op_end - npre != 1 || kSlow1[first]) return false;
      // xabort / xbegin (c6 f8 / c7 f8): relative or transactional.
      if ((first == 0xc6 || first == 0xc7) && has_modrm && g.bytes[op_end] == 0xf8) return false;
      break;
    case ZYDIS_OPCODE_MAP_0F:
      if (op_end - npre != 2 || kSlow0F[g.bytes[npre + 1]]) return false;
      break;
    case ZYDIS_OPCODE_MAP_0F38: case ZYDIS_OPCODE_MAP_0F3A:
      if (op_end - npre != 3) return false;
      break;
    default:
      return false;
  }

  // System and host-state categories (64-bit operand sizes in 64-bit mode,
  // e.g. invept/invpcid): never innocuous, always the checked path.
  switch (i.meta.category) {
    case ZYDIS_CATEGORY_SYSTEM: case ZYDIS_CATEGORY_VTX: case ZYDIS_CATEGORY_SGX: case ZYDIS_CATEGORY_CET:
    case ZYDIS_CATEGORY_UINTR: case ZYDIS_CATEGORY_MPX: case ZYDIS_CATEGORY_RDWRFSGS: case ZYDIS_CATEGORY_KEYLOCKER:
    case ZYDIS_CATEGORY_KEYLOCKER_WIDE: case ZYDIS_CATEGORY_ENQCMD: case ZYDIS_CATEGORY_PCONFIG:
    case ZYDIS_CATEGORY_INTERRUPT: case ZYDIS_CATEGORY_SYSCALL: case ZYDIS_CATEGORY_SYSRET: case ZYDIS_CATEGORY_IO:
    case ZYDIS_CATEGORY_IOSTRINGOP: case ZYDIS_CATEGORY_STRINGOP: case ZYDIS_CATEGORY_PUSH: case ZYDIS_CATEGORY_POP:
    case ZYDIS_CATEGORY_CALL: case ZYDIS_CATEGORY_RET: case ZYDIS_CATEGORY_COND_BR: case ZYDIS_CATEGORY_UNCOND_BR:
    case ZYDIS_CATEGORY_SEGOP: case ZYDIS_CATEGORY_DECIMAL: case ZYDIS_CATEGORY_AMX_TILE: case ZYDIS_CATEGORY_PT:
    case ZYDIS_CATEGORY_WAITPKG: case ZYDIS_CATEGORY_PKU:
      return false;
    default:
      break;
  }
  if (i.attributes & (ZYDIS_ATTRIB_IS_PRIVILEGED | ZYDIS_ATTRIB_IS_RELATIVE)) return false;

  // Which operands need REX bits, and where the memory operand is.
  uint8_t rex = 0;
  bool high_byte = false, has_mem = false, agen = false;
  ZydisRegister mem_segment = ZYDIS_REGISTER_NONE;
  for (uint8_t k = 0; k < i.operand_count; ++k) {
    const ZydisDecodedOperand& op = g.ops[k];
    const bool hidden = op.visibility != ZYDIS_OPERAND_VISIBILITY_EXPLICIT;
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      const ZydisRegister r = op.reg.value;
      if (is_high_byte_reg(r)) high_byte = true;
      if (r == ZYDIS_REGISTER_ESP || r == ZYDIS_REGISTER_SP || r == ZYDIS_REGISTER_SPL) {
        if (hidden) return false;
        switch (op.encoding) {
          case ZYDIS_OPERAND_ENCODING_MODRM_REG: rex |= 0x44; break;
          case ZYDIS_OPERAND_ENCODING_MODRM_RM: case ZYDIS_OPERAND_ENCODING_OPCODE: rex |= 0x41; break;
          default: return false;
        }
      }
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      if (hidden) return false;  // string instructions, xlat, maskmovq, stack...
      if (op.mem.type == ZYDIS_MEMOP_TYPE_AGEN) {
        agen = true;
      } else if (op.mem.type != ZYDIS_MEMOP_TYPE_MEM) {
        return false;
      }
      if (has_mem) return false;  // one explicit memory operand at most
      has_mem = true;
      mem_segment = op.mem.segment;
      if (op.mem.index == ZYDIS_REGISTER_ESP || op.mem.index == ZYDIS_REGISTER_SP) return false;
      if (op.mem.base == ZYDIS_REGISTER_ESP) rex |= 0x41;
      else if (op.mem.base != ZYDIS_REGISTER_NONE && (op.mem.base < ZYDIS_REGISTER_EAX || op.mem.base > ZYDIS_REGISTER_EDI))
        return false;
    } else if (op.type == ZYDIS_OPERAND_TYPE_POINTER) {
      return false;
    }
  }
  if (rex && high_byte) return false;  // AH..DH cannot be encoded with REX
  if (has_mem && !has_modrm && !(first >= 0xa0 && first <= 0xa3 && i.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT))
    return false;
  if (has_modrm && (i.raw.modrm.mod == 3) == has_mem) return false;
  uint32_t base = 0;
  if (has_mem && !agen && options.seg_base) {
    switch (mem_segment) {
      case ZYDIS_REGISTER_ES: case ZYDIS_REGISTER_CS: case ZYDIS_REGISTER_SS: case ZYDIS_REGISTER_DS:
        base = (*options.seg_base)[seg_index(mem_segment)];
        break;
      default:
        return false;  // FS/GS: read at run time (kSegBaseAtRun)
    }
  }

  // Built in a buffer with room for any combination (checked against 15 at the end).
  uint8_t o[32];
  size_t n = 0;
  auto put = [&](uint8_t b) { o[n++] = b; };
  auto put32 = [&](uint32_t v) {
    std::memcpy(o + n, &v, 4);
    n += 4;
  };
  if (has_mem && !agen) put(0x65);
  if (has_mem) put(0x67);
  for (uint8_t k = 0; k < npre; ++k) {
    const uint8_t p = g.bytes[k];
    if (p == 0x26 || p == 0x2e || p == 0x36 || p == 0x3e || p == 0x64 || p == 0x65) continue;
    if (p == 0x67) return false;
    put(p);
  }
  if (rex) put(rex);
  for (uint8_t k = npre; k < op_end; ++k) put(g.bytes[k]);
  uint8_t tail = op_end;  // first byte after ModRM/SIB/displacement
  if (has_modrm) {
    const uint8_t mod = i.raw.modrm.mod, reg = i.raw.modrm.reg & 7, rm = i.raw.modrm.rm & 7;
    const bool sib = (i.attributes & ZYDIS_ATTRIB_HAS_SIB) != 0;
    tail = uint8_t(i.raw.modrm.offset + 1 + (sib ? 1 : 0) + i.raw.disp.size / 8);
    if (mod == 3) {
      put(g.bytes[i.raw.modrm.offset]);
    } else {
      const bool no_base = (mod == 0 && rm == 5) || (sib && mod == 0 && (i.raw.sib.base & 7) == 5);
      const uint32_t disp = uint32_t(int32_t(i.raw.disp.value)) + base;
      uint8_t new_mod = mod;
      if (!no_base && (base != 0 || mod == 2)) new_mod = 2;  // disp32
      if (mod == 0 && rm == 5) {
        // [disp32] -> SIB without base or index (not RIP-relative).
        put(uint8_t(0x00 | (reg << 3) | 4));
        put(0x25);
        put32(disp);
      } else {
        put(uint8_t((new_mod << 6) | (reg << 3) | rm));
        if (sib) put(g.bytes[i.raw.sib.offset]);
        if (no_base || new_mod == 2) put32(disp);
        else if (new_mod == 1) put(uint8_t(disp));
      }
    }
  } else if (has_mem) {  // moffs (a0-a3): a 32-bit offset with 0x67
    if (i.raw.disp.size != 32) return false;
    put32(uint32_t(i.raw.disp.value) + base);
    tail = uint8_t(i.raw.disp.offset + 4);
  }
  for (uint8_t k = tail; k < i.length; ++k) put(g.bytes[k]);
  if (n > out.bytes.size()) return false;
  std::memcpy(out.bytes.data(), o, n);
  out.size = uint8_t(n);
  return true;
}

ZydisRegister host_reg(ZydisRegister guest) {
  switch (guest) {
    case ZYDIS_REGISTER_ESP: return ZYDIS_REGISTER_R12D;
    case ZYDIS_REGISTER_SP: return ZYDIS_REGISTER_R12W;
    default: return guest;
  }
}

Result<HostBytes> reencode64(const GuestInsn& guest, const ReencodeOptions& options) {
  if (HostBytes fast; reencode64_fast(guest, options, fast)) return fast;
  return reencode64_general(guest, options);
}

Result<HostBytes> reencode64_general(const GuestInsn& guest, const ReencodeOptions& options) {
  ZydisEncoderRequest req;
  if (!ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(
          &guest.insn, guest.ops, guest.insn.operand_count_visible, &req)))
    return make_error("no encoder request for this instruction");
  req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
  req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_32;

  bool has_mem = false;
  for (const ZydisDecodedOperand& op : guest.all())
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.type == ZYDIS_MEMOP_TYPE_MEM) has_mem = true;

  for (uint8_t i = 0; i < req.operand_count; ++i) {
    ZydisEncoderOperand& op = req.operands[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      if (options.esp_as != ZYDIS_REGISTER_NONE && (op.reg.value == ZYDIS_REGISTER_ESP || op.reg.value == ZYDIS_REGISTER_SP))
        op.reg.value = op.reg.value == ZYDIS_REGISTER_SP
                           ? ZydisRegisterEncode(ZYDIS_REGCLASS_GPR16, ZydisRegisterGetId(options.esp_as))
                           : options.esp_as;
      else
        op.reg.value = host_reg(op.reg.value);
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      const ZydisDecodedOperand& dop = guest.ops[i];
      if (options.seg_base_in_r11) {
        const bool both = op.mem.base != ZYDIS_REGISTER_NONE && op.mem.index != ZYDIS_REGISTER_NONE;
        if (both) {
          op.mem.index = ZYDIS_REGISTER_R10D;
          op.mem.scale = 1;
        } else if (op.mem.base != ZYDIS_REGISTER_NONE) {
          op.mem.index = host_reg(op.mem.base);
          op.mem.scale = 1;
        } else if (op.mem.index != ZYDIS_REGISTER_NONE) {
          op.mem.index = host_reg(op.mem.index);
        }
        op.mem.base = ZYDIS_REGISTER_R11D;
        // A 32-bit displacement is sign-extended; with 32-bit addressing the
        // sum wraps the same either way.
        op.mem.displacement = int32_t(uint32_t(op.mem.displacement));
        continue;
      }
      if (options.seg_base && dop.type == ZYDIS_OPERAND_TYPE_MEMORY && dop.mem.type == ZYDIS_MEMOP_TYPE_MEM &&
          options.mem_address_in == ZYDIS_REGISTER_NONE) {
        const uint32_t b = (*options.seg_base)[seg_index(dop.mem.segment)];
        if (b) op.mem.displacement = int32_t(uint32_t(op.mem.displacement) + b);
      }
      if (options.mem_address_in != ZYDIS_REGISTER_NONE) {
        op.mem.base = options.mem_address_in;
        op.mem.index = ZYDIS_REGISTER_NONE;
        op.mem.scale = 0;
        op.mem.displacement = 0;
      } else {
        op.mem.base = host_reg(op.mem.base);
        op.mem.index = host_reg(op.mem.index);
      }
    }
  }
  // Segment prefixes: the caller has already decided the guest's own override
  // is harmless (flat segments); in 64-bit mode only FS/GS have a base.
  req.prefixes &= ~kSegmentAttribs;
  const bool string_op = guest.insn.meta.category == ZYDIS_CATEGORY_STRINGOP;
  if (has_mem && options.window_segment && !string_op) req.prefixes |= ZYDIS_ATTRIB_HAS_SEGMENT_GS;

  return encode_checked(req, has_mem);
}

static Result<HostBytes> encode_checked(const ZydisEncoderRequest& req, bool has_mem) {
  HostBytes out;
  ZyanUSize len = out.bytes.size();
  if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, out.bytes.data(), &len)))
    return make_error("not encodable in 64-bit mode");
  out.size = uint8_t(len);
  if (!has_mem) return out;
  // Invariant: every guest memory access uses 32-bit addressing, so its
  // address is zero-extended and stays inside the window. Zydis picks 64-bit
  // addressing for a bare [disp32] (SIB, no base), which sign-extends; an
  // 0x67 in front turns that very encoding into the zero-extended form.
  ZydisDecoder dec64;
  ZydisDecoderInit(&dec64, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  ZydisDecodedInstruction check;
  ZydisDecodedOperand check_ops[ZYDIS_MAX_OPERAND_COUNT];
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec64, out.bytes.data(), out.size, &check, check_ops)))
    return make_error("re-encoded bytes do not decode");
  for (uint8_t i = 0; i < check.operand_count; ++i) {
    const ZydisDecodedOperand& op = check_ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY &&
        (op.mem.base == ZYDIS_REGISTER_RIP || op.mem.base == ZYDIS_REGISTER_EIP))
      return make_error("re-encoding became instruction-pointer relative");
  }
  if (check.address_width == 32) return out;
  if (out.size + 1 > ZYDIS_MAX_INSTRUCTION_LENGTH) return make_error("no room for an address-size prefix");
  HostBytes fixed;
  fixed.bytes[0] = 0x67;
  std::copy(out.bytes.begin(), out.bytes.begin() + out.size, fixed.bytes.begin() + 1);
  fixed.size = out.size + 1;
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec64, nullptr, fixed.bytes.data(), fixed.size, &check)) ||
      check.address_width != 32 || check.length != fixed.size)
    return make_error("cannot force 32-bit addressing");
  return fixed;
}

int seg_index(ZydisRegister segment) {
  switch (segment) {
    case ZYDIS_REGISTER_CS: return 1;
    case ZYDIS_REGISTER_SS: return 2;
    case ZYDIS_REGISTER_DS: return 3;
    case ZYDIS_REGISTER_FS: return 4;
    case ZYDIS_REGISTER_GS: return 5;
    default: return 0;
  }
}

Result<HostBytes> encode_guest_mem_move(const ZydisDecodedOperand& mem, ZydisRegister reg, bool store,
                                        uint32_t seg_base) {
  ZydisEncoderRequest req{};
  req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
  req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_32;
  req.mnemonic = ZYDIS_MNEMONIC_MOV;
  req.operand_count = 2;
  ZydisEncoderOperand r{}, m{};
  r.type = ZYDIS_OPERAND_TYPE_REGISTER;
  r.reg.value = reg;
  m.type = ZYDIS_OPERAND_TYPE_MEMORY;
  m.mem.base = host_reg(mem.mem.base);
  m.mem.index = host_reg(mem.mem.index);
  m.mem.scale = mem.mem.index == ZYDIS_REGISTER_NONE ? 0 : mem.mem.scale;
  m.mem.displacement = int32_t(uint32_t(mem.mem.disp.has_displacement ? mem.mem.disp.value : 0) + seg_base);
  m.mem.size = uint16_t(mem.size / 8);
  req.operands[0] = store ? m : r;
  req.operands[1] = store ? r : m;
  req.prefixes = ZYDIS_ATTRIB_HAS_SEGMENT_GS;
  return encode_checked(req, true);
}

std::string disassemble(std::span<const uint8_t> bytes, uint64_t address, bool long_mode) {
  ZydisDisassembledInstruction d;
  std::string text;
  size_t off = 0;
  while (off < bytes.size()) {
    if (!ZYAN_SUCCESS(ZydisDisassembleIntel(long_mode ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32,
                                            address + off, bytes.data() + off, bytes.size() - off, &d))) {
      text += "(bad)";
      break;
    }
    if (!text.empty()) text += "; ";
    text += d.text;
    off += d.info.length;
  }
  return text;
}

std::string format_insn(const GuestInsn& guest) {
  ZydisFormatter f;
  ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL);
  char buf[256];
  if (!ZYAN_SUCCESS(ZydisFormatterFormatInstruction(&f, &guest.insn, guest.ops, guest.insn.operand_count_visible,
                                                    buf, sizeof buf, guest.eip, nullptr)))
    return "(bad)";
  return buf;
}

}  // namespace bt86::translator
