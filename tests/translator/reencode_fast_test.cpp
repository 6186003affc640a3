// The fast re-encoding path (reencoder.cpp reencode_fast: the guest's bytes
// rewritten for 64-bit mode) against the general path (Zydis' encoder plus a
// checking decode): for a large structured sample of 32-bit instructions,
// both results, decoded again in 64-bit mode, must be the same instruction
// with the same operands (registers, memory base/index/scale/displacement,
// immediates, sizes) and 32-bit addressing. Byte-identical output is not
// required: the encoder picks its own forms (inc r32 as ff /0, ...).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "translator/reencoder.h"

namespace bt86::translator {
namespace {

struct Decoded64 {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

bool decode64(const HostBytes& b, Decoded64& out) {
  ZydisDecoder d;
  ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&d, b.bytes.data(), b.size, &out.insn, out.ops)) &&
         out.insn.length == b.size;
}

// Empty when the two decodings describe the same operation.
std::string difference(const Decoded64& a, const Decoded64& b) {
  if (a.insn.mnemonic != b.insn.mnemonic) return "mnemonic";
  // operand_width itself may differ where the size prefix is ignored (x87:
  // the fast path keeps a guest's 66, the encoder drops it); what it changes
  // shows in the operand sizes.
  if (a.insn.operand_count != b.insn.operand_count) return "operand count";
  if ((a.insn.attributes & ZYDIS_ATTRIB_HAS_LOCK) != (b.insn.attributes & ZYDIS_ATTRIB_HAS_LOCK)) return "lock";
  constexpr ZydisInstructionAttributes kRep =
      ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REPNE;
  if ((a.insn.attributes & kRep) != (b.insn.attributes & kRep)) return "rep";
  for (uint8_t k = 0; k < a.insn.operand_count; ++k) {
    const ZydisDecodedOperand& x = a.ops[k];
    const ZydisDecodedOperand& y = b.ops[k];
    const std::string at = "operand " + std::to_string(k) + ": ";
    if (x.type != y.type) return at + "type";
    // An immediate may be encoded shorter (sign-extended imm8): compare values.
    if (x.size != y.size && x.type != ZYDIS_OPERAND_TYPE_IMMEDIATE) return at + "size";
    if (x.actions != y.actions) return at + "actions";
    switch (x.type) {
      case ZYDIS_OPERAND_TYPE_REGISTER:
        if (x.reg.value != y.reg.value) return at + "register";
        break;
      case ZYDIS_OPERAND_TYPE_MEMORY:
        if (x.mem.type != y.mem.type) return at + "memory type";
        if (x.mem.segment != y.mem.segment) return at + "segment";
        if (x.mem.base != y.mem.base) return at + "base";
        if (x.mem.index != y.mem.index) return at + "index";
        if (x.mem.index != ZYDIS_REGISTER_NONE && x.mem.scale != y.mem.scale) return at + "scale";
        if (uint32_t(x.mem.disp.value) != uint32_t(y.mem.disp.value)) return at + "displacement";
        if (x.mem.base == ZYDIS_REGISTER_RIP || x.mem.base == ZYDIS_REGISTER_EIP) return at + "rip-relative";
        if (a.insn.address_width != 32 || b.insn.address_width != 32) return at + "address width";
        break;
      case ZYDIS_OPERAND_TYPE_IMMEDIATE:
        if (x.imm.value.u != y.imm.value.u) {
          const unsigned w = a.insn.operand_width;
          const uint64_t mask = w >= 64 ? ~uint64_t(0) : (uint64_t(1) << w) - 1;
          if (x.size == y.size || ((x.imm.value.u ^ y.imm.value.u) & mask) != 0) return at + "immediate";
        }
        break;
      default:
        break;
    }
  }
  return {};
}

std::string hex(std::span<const uint8_t> b) {
  std::string s;
  char buf[4];
  for (uint8_t v : b) {
    std::snprintf(buf, sizeof buf, "%02x ", v);
    s += buf;
  }
  return s;
}

// Candidate instruction bytes: optional prefixes, an opcode from the
// one-byte, 0f, 0f38 or 0f3a maps, then ModRM, SIB, displacement and
// immediate bytes (whatever the decoder does not use is ignored).
std::vector<uint8_t> candidate(std::mt19937& rng) {
  std::vector<uint8_t> b;
  static constexpr uint8_t kPrefixes[] = {0x66, 0xf2, 0xf3, 0xf0, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65};
  const int npre = int(rng() % 4) == 0 ? int(rng() % 3) : 0;
  for (int k = 0; k < npre; ++k) b.push_back(kPrefixes[rng() % std::size(kPrefixes)]);
  switch (rng() % 8) {
    case 0: case 1: case 2: case 3: b.push_back(uint8_t(rng())); break;
    case 4: case 5: b.push_back(0x0f); b.push_back(uint8_t(rng())); break;
    case 6: b.push_back(0x0f); b.push_back(0x38); b.push_back(uint8_t(rng())); break;
    default: b.push_back(0x0f); b.push_back(0x3a); b.push_back(uint8_t(rng())); break;
  }
  // ModRM biased towards ESP/EBP forms and [disp32].
  uint8_t modrm = uint8_t(rng());
  switch (rng() % 4) {
    case 0: modrm = uint8_t((modrm & 0xc7) | 0x20); break;  // reg = ESP
    case 1: modrm = uint8_t((modrm & 0xf8) | 4); break;     // rm = ESP / SIB
    case 2: modrm = uint8_t((modrm & 0x38) | 5); break;     // [disp32]
    default: break;
  }
  b.push_back(modrm);
  uint8_t sib = uint8_t(rng());
  if (rng() % 3 == 0) sib = uint8_t((sib & 0xf8) | 4);  // base ESP
  if (rng() % 4 == 0) sib = uint8_t((sib & 0xf8) | 5);  // no base with mod 0
  b.push_back(sib);
  for (int k = 0; k < 8; ++k) b.push_back(uint8_t(rng()));
  return b;
}

TEST(ReencodeFast, AgreesWithTheZydisEncoderPath) {
  std::mt19937 rng(1);
  const std::array<uint32_t, 6> bases = {0, 0, 0x1000, 0x10000, 0xfffff000, 0x12345678};
  int compared = 0, fast_only = 0, general_ok = 0;
  for (int n = 0; n < 300000; ++n) {
    const std::vector<uint8_t> bytes = candidate(rng);
    GuestInsn g;
    if (!decode32(bytes, 0x1000, g)) continue;
    ReencodeOptions ro;
    std::array<uint32_t, 6> seg{};
    if (rng() % 2) {
      for (uint32_t& s : seg) s = bases[rng() % bases.size()];
      ro.seg_base = &seg;
    }
    HostBytes fast;
    auto general = reencode64_general(g, ro);
    if (general.ok()) ++general_ok;
    if (!reencode64_fast(g, ro, fast)) continue;
    const std::string what = hex({bytes.data(), g.insn.length}) + "(" + format_insn(g) + ") fast: " +
                             disassemble(fast.span(), 0, true);
    Decoded64 f;
    ASSERT_TRUE(decode64(fast, f)) << what;
    if (!general.ok()) {
      // Zydis cannot encode it; the old path stopped the block there.
      if (++fast_only < 40 && std::getenv("REENCODE_FAST_SHOW"))
        std::printf("fast only: %s: %s\n", what.c_str(), general.error().message.c_str());
      continue;
    }
    Decoded64 s;
    ASSERT_TRUE(decode64(general.value(), s)) << what;
    const std::string d = difference(f, s);
    ASSERT_TRUE(d.empty()) << what << " general: " << disassemble(general->span(), 0, true) << ": " << d;
    ++compared;
  }
  // Most instructions the general path handles take the fast one.
  EXPECT_GT(compared, general_ok / 2);
  // Instructions only the fast path re-encodes are rare corners of the
  // encoder's tables; a jump in this number means the fast path grew.
  EXPECT_LT(fast_only, compared / 100);
  std::printf("general path: %d instructions; fast path: %d of them the same, %d the general path cannot encode\n",
              general_ok, compared, fast_only);
}

}  // namespace
}  // namespace bt86::translator
