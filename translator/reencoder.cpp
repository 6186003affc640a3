#include "translator/reencoder.h"

#include <algorithm>

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
  return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder32(), bytes.data(), bytes.size(), &out.insn, out.ops));
}

ZydisRegister host_reg(ZydisRegister guest) {
  switch (guest) {
    case ZYDIS_REGISTER_ESP: return ZYDIS_REGISTER_R12D;
    case ZYDIS_REGISTER_SP: return ZYDIS_REGISTER_R12W;
    default: return guest;
  }
}

Result<HostBytes> reencode64(const GuestInsn& guest, const ReencodeOptions& options) {
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
