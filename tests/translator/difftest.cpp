#include "tests/translator/difftest.h"

#include <Zydis/Zydis.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <spdlog/fmt/fmt.h>
#include <memory>
#include <random>
#include <vector>

#include "tests/runtime/direct_test_machine.h"
#include "translator/reencoder.h"
#include "translator/translator.h"

namespace bt86::test {
namespace {

using runtime::CpuState;
namespace rf = runtime::flags;

// Guest layout (inside TestMachine's regions). EBP and ESI are never written
// by generated code: EBP points into the data page, ESI is a small index.
constexpr uint32_t kDataBase = kData + 0x1000;     // EBP
constexpr uint32_t kDataSnap = kData, kDataSnapLen = 0x2000;
constexpr uint32_t kStackInit = kStack + 0x8000;   // ESP
constexpr uint32_t kStackSnap = kStack + 0x7000, kStackSnapLen = 0x2000;
// The ends of the mapped regions, where generated faults happen after partial
// work (pusha below the stack, popa above it, rep stos past the data).
constexpr std::array<uint32_t, 3> kEdges = {kStack, kStackTop - 0x100, kData + kRegion - 0x100};
constexpr uint32_t kEdgeLen = 0x100;
// Never mapped, below the direct executor's segment boundary (0xC0000000).
constexpr uint32_t kBadLow = 0x01000000, kBadSpan = 0x3f000000;

using Rng = std::mt19937_64;

template <typename T, size_t N>
T pick(Rng& rng, const std::array<T, N>& a) { return a[rng() % N]; }
uint32_t below(Rng& rng, uint32_t n) { return uint32_t(rng() % n); }
bool chance(Rng& rng, uint32_t percent) { return below(rng, 100) < percent; }

constexpr std::array<ZydisRegister, 5> kW32 = {ZYDIS_REGISTER_EAX, ZYDIS_REGISTER_ECX, ZYDIS_REGISTER_EDX,
                                               ZYDIS_REGISTER_EBX, ZYDIS_REGISTER_EDI};
constexpr std::array<ZydisRegister, 8> kR32 = {ZYDIS_REGISTER_EAX, ZYDIS_REGISTER_ECX, ZYDIS_REGISTER_EDX,
                                               ZYDIS_REGISTER_EBX, ZYDIS_REGISTER_EDI, ZYDIS_REGISTER_EBP,
                                               ZYDIS_REGISTER_ESI, ZYDIS_REGISTER_ESP};
constexpr std::array<ZydisRegister, 5> kW16 = {ZYDIS_REGISTER_AX, ZYDIS_REGISTER_CX, ZYDIS_REGISTER_DX,
                                               ZYDIS_REGISTER_BX, ZYDIS_REGISTER_DI};
constexpr std::array<ZydisRegister, 8> kR16 = {ZYDIS_REGISTER_AX, ZYDIS_REGISTER_CX, ZYDIS_REGISTER_DX,
                                               ZYDIS_REGISTER_BX, ZYDIS_REGISTER_DI, ZYDIS_REGISTER_BP,
                                               ZYDIS_REGISTER_SI, ZYDIS_REGISTER_SP};
constexpr std::array<ZydisRegister, 8> kW8 = {ZYDIS_REGISTER_AL, ZYDIS_REGISTER_CL, ZYDIS_REGISTER_DL,
                                              ZYDIS_REGISTER_BL, ZYDIS_REGISTER_AH, ZYDIS_REGISTER_CH,
                                              ZYDIS_REGISTER_DH, ZYDIS_REGISTER_BH};
constexpr std::array<ZydisMnemonic, 9> kAlu2 = {ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_ADC,
                                                ZYDIS_MNEMONIC_SBB, ZYDIS_MNEMONIC_AND, ZYDIS_MNEMONIC_OR,
                                                ZYDIS_MNEMONIC_XOR, ZYDIS_MNEMONIC_CMP, ZYDIS_MNEMONIC_TEST};
constexpr std::array<ZydisMnemonic, 4> kAlu1 = {ZYDIS_MNEMONIC_INC, ZYDIS_MNEMONIC_DEC, ZYDIS_MNEMONIC_NEG,
                                                ZYDIS_MNEMONIC_NOT};
constexpr std::array<ZydisMnemonic, 7> kShift = {ZYDIS_MNEMONIC_ROL, ZYDIS_MNEMONIC_ROR, ZYDIS_MNEMONIC_RCL,
                                                 ZYDIS_MNEMONIC_RCR, ZYDIS_MNEMONIC_SHL, ZYDIS_MNEMONIC_SHR,
                                                 ZYDIS_MNEMONIC_SAR};
constexpr std::array<ZydisMnemonic, 4> kBt = {ZYDIS_MNEMONIC_BT, ZYDIS_MNEMONIC_BTS, ZYDIS_MNEMONIC_BTR,
                                              ZYDIS_MNEMONIC_BTC};
constexpr std::array<ZydisMnemonic, 16> kSetcc = {
    ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETNB,
    ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE,
    ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETNP,
    ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE, ZYDIS_MNEMONIC_SETNLE};
constexpr std::array<ZydisMnemonic, 16> kCmovcc = {
    ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVNB,
    ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ, ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVNBE,
    ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVNP,
    ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVLE, ZYDIS_MNEMONIC_CMOVNLE};

ZydisEncoderOperand reg(ZydisRegister r) {
  ZydisEncoderOperand o{};
  o.type = ZYDIS_OPERAND_TYPE_REGISTER;
  o.reg.value = r;
  return o;
}
ZydisEncoderOperand imm(int64_t v) {
  ZydisEncoderOperand o{};
  o.type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
  o.imm.s = v;
  return o;
}
// A memory operand inside the data page ([ebp+...], [ebp+esi*s+...]) or the
// stack ([esp+...]), of the given size in bytes.
ZydisEncoderOperand mem(Rng& rng, uint16_t size) {
  ZydisEncoderOperand o{};
  o.type = ZYDIS_OPERAND_TYPE_MEMORY;
  o.mem.size = size;
  switch (below(rng, 4)) {
    case 0:
      o.mem.base = ZYDIS_REGISTER_ESP;
      o.mem.displacement = int32_t(below(rng, 0x100)) - 0x80;
      break;
    case 1:
      o.mem.base = ZYDIS_REGISTER_EBP;
      o.mem.index = ZYDIS_REGISTER_ESI;
      o.mem.scale = uint8_t(1u << below(rng, 4));
      o.mem.displacement = chance(rng, 50) ? int32_t(below(rng, 0x100)) - 0x80 : int32_t(below(rng, 0x1000)) - 0x800;
      break;
    default:
      o.mem.base = ZYDIS_REGISTER_EBP;
      o.mem.displacement = chance(rng, 50) ? int32_t(below(rng, 0x100)) - 0x80 : int32_t(below(rng, 0x1000)) - 0x800;
      break;
  }
  return o;
}
int64_t imm_for(Rng& rng, int bits) {
  if (bits == 8 || chance(rng, 40)) return int8_t(rng());
  if (bits == 16) return int16_t(rng());
  return int32_t(rng());
}

struct Generated {
  std::vector<uint8_t> code;
  uint32_t instructions = 0;
};

class Generator {
 public:
  explicit Generator(Rng& rng) : m_rng(rng) {}

  Generated sequence() {
    Generated g;
    const uint32_t n = 1 + below(m_rng, 16);
    uint32_t pushed = 0;
    while (g.instructions < n || pushed) {
      bool ok;
      if (pushed && (g.instructions >= n || chance(m_rng, 30))) {
        ok = pop(g);
        if (ok) --pushed;
      } else if (pushed < 4 && chance(m_rng, 8)) {
        ok = push(g);
        if (ok) ++pushed;
      } else {
        ok = chance(m_rng, 25) ? extra(g) : one(g);
      }
      (void)ok;
    }
    if (chance(m_rng, 12)) fault(g);  // ends the run early in both engines
    g.code.push_back(0xcc);  // int3: the end
    return g;
  }

  // One instruction that faults (#PF or #DE), after set-up that makes it so:
  // the translated run must stop at it with the native state (precise
  // faults), including the partial work of rep and the expansions.
  void fault(Generated& g) {
    static constexpr std::array<ZydisRegister, 4> kBase = {ZYDIS_REGISTER_EAX, ZYDIS_REGISTER_EBX,
                                                           ZYDIS_REGISTER_EDX, ZYDIS_REGISTER_EDI};
    const uint32_t bad = (kBadLow + below(m_rng, kBadSpan)) & ~3u;
    const ZydisRegister r = pick(m_rng, kBase);
    auto at = [&](ZydisRegister base, uint16_t size) {
      ZydisEncoderOperand o{};
      o.type = ZYDIS_OPERAND_TYPE_MEMORY;
      o.mem.size = size;
      o.mem.base = base;
      o.mem.displacement = int32_t(below(m_rng, 0x40));
      return o;
    };
    switch (below(m_rng, 9)) {
      case 0:  // plain load or store
        emit(g, ZYDIS_MNEMONIC_MOV, {reg(r), imm(int64_t(bad))});
        if (chance(m_rng, 50)) emit(g, ZYDIS_MNEMONIC_ADD, {reg(ZYDIS_REGISTER_ECX), at(r, 4)});
        else emit(g, ZYDIS_MNEMONIC_MOV, {at(r, 4), reg(ZYDIS_REGISTER_ECX)});
        return;
      case 1: {  // divide by zero
        emit(g, ZYDIS_MNEMONIC_XOR, {reg(ZYDIS_REGISTER_ECX), reg(ZYDIS_REGISTER_ECX)});
        const ZydisMnemonic m = chance(m_rng, 50) ? ZYDIS_MNEMONIC_DIV : ZYDIS_MNEMONIC_IDIV;
        emit(g, m, {reg(chance(m_rng, 50) ? ZYDIS_REGISTER_ECX : ZYDIS_REGISTER_CL)});
        return;
      }
      case 2: {  // stack writes below the stack region (pushes, call, enter, pushfd, pusha)
        static constexpr std::array<std::array<uint8_t, 4>, 5> kOps = {{{0x60}, {0x66, 0x60}, {0x50}, {0x9c},
                                                                        {0xc8, 0x10, 0x00, 0x00}}};
        const auto& op = pick(m_rng, kOps);
        raw(g, {0xbc});  // mov esp, kStack + small
        raw32(g, kStack + 4 * below(m_rng, 8));
        size_t n = op[0] == 0x66 ? 2 : op[0] == 0xc8 ? 4 : 1;
        g.code.insert(g.code.end(), op.begin(), op.begin() + n);
        ++g.instructions;
        return;
      }
      case 3: {  // stack reads above the stack region (popa, pop, ret, popfd, leave)
        static constexpr std::array<uint8_t, 5> kOps = {0x61, 0x58, 0xc3, 0x9d, 0xc9};
        const uint8_t op = pick(m_rng, kOps);
        // A one-dword read must fault (a popfd image or a ret target from
        // random bytes would diverge legitimately: CPL 3 vs CPL 0, a fetch).
        raw(g, {0xbc});  // mov esp, kStackTop - small
        raw32(g, op == 0x61 ? kStackTop - 4 * below(m_rng, 8) : kStackTop);
        if (op == 0xc9) {  // leave reads [ebp]
          raw(g, {0xbd});
          raw32(g, kStackTop);
        }
        raw(g, {op});
        return;
      }
      case 4: {  // rep stos/movs running off the end of the data region
        g.code.insert(g.code.end(), {0xbf});  // mov edi, data end - small
        raw32(g, kData + kRegion - 4 * below(m_rng, 16));
        g.code.insert(g.code.end(), {0xb9});  // mov ecx, 32
        raw32(g, 32);
        g.code.insert(g.code.end(), {0x8d, 0x75, 0x00});  // lea esi, [ebp]
        g.instructions += 3;
        raw(g, {0xfc, 0xf3, uint8_t(chance(m_rng, 50) ? 0xab : 0xa5)}, 2);  // cld; rep stosd / movsd
        return;
      }
      case 5:  // indirect call/jmp through unmapped memory
        emit(g, ZYDIS_MNEMONIC_MOV, {reg(r), imm(int64_t(bad))});
        emit(g, chance(m_rng, 50) ? ZYDIS_MNEMONIC_CALL : ZYDIS_MNEMONIC_JMP, {at(r, 4)});
        return;
      case 6: {  // x87 / SSE / cmpxchg8b / push m / pop m on unmapped memory
        emit(g, ZYDIS_MNEMONIC_MOV, {reg(r), imm(int64_t(bad))});
        switch (below(m_rng, 5)) {
          case 0: emit(g, ZYDIS_MNEMONIC_MOVUPS, {reg(ZYDIS_REGISTER_XMM1), at(r, 16)}); return;
          case 1: emit(g, ZYDIS_MNEMONIC_FLD, {at(r, 8)}); return;
          case 2: emit(g, ZYDIS_MNEMONIC_CMPXCHG8B, {at(r, 8)}); return;
          case 3: emit(g, ZYDIS_MNEMONIC_PUSH, {at(r, 4)}); return;
          default: emit(g, ZYDIS_MNEMONIC_POP, {at(r, 4)}); return;
        }
      }
      case 7:  // AH..DH with an ESP-based operand (the borrowed-register fixup)
        raw(g, {0xbc});
        raw32(g, bad);
        emit(g, chance(m_rng, 50) ? ZYDIS_MNEMONIC_MOV : ZYDIS_MNEMONIC_ADD,
             {reg(ZYDIS_REGISTER_AH), at(ZYDIS_REGISTER_ESP, 1)});
        return;
      default:  // arpl / bcd-free read-modify-write on unmapped memory
        emit(g, ZYDIS_MNEMONIC_MOV, {reg(r), imm(int64_t(bad))});
        if (chance(m_rng, 50)) emit(g, ZYDIS_MNEMONIC_ARPL, {at(r, 2), reg(ZYDIS_REGISTER_CX)});
        else emit(g, ZYDIS_MNEMONIC_XADD, {at(r, 4), reg(ZYDIS_REGISTER_ECX)});
        return;
    }
  }

 private:
  bool emit(Generated& g, ZydisMnemonic m, std::initializer_list<ZydisEncoderOperand> ops) {
    ZydisEncoderRequest req{};
    req.machine_mode = ZYDIS_MACHINE_MODE_LEGACY_32;
    req.mnemonic = m;
    req.operand_count = uint8_t(ops.size());
    int i = 0;
    bool has_mem = false;
    for (const auto& o : ops) {
      req.operands[i++] = o;
      if (o.type == ZYDIS_OPERAND_TYPE_MEMORY && m != ZYDIS_MNEMONIC_LEA) has_mem = true;
    }
    // A segment override now and then (never CS: not writable).
    static constexpr std::array<ZydisInstructionAttributes, 5> kOverrides = {
        ZYDIS_ATTRIB_HAS_SEGMENT_ES, ZYDIS_ATTRIB_HAS_SEGMENT_SS, ZYDIS_ATTRIB_HAS_SEGMENT_DS,
        ZYDIS_ATTRIB_HAS_SEGMENT_FS, ZYDIS_ATTRIB_HAS_SEGMENT_GS};
    if (has_mem && chance(m_rng, 20)) req.prefixes |= pick(m_rng, kOverrides);
    uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
    ZyanUSize len = sizeof buf;
    if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, buf, &len))) return false;
    g.code.insert(g.code.end(), buf, buf + len);
    ++g.instructions;
    return true;
  }
  ZydisRegister wreg(int bits) {
    return bits == 8 ? pick(m_rng, kW8) : bits == 16 ? pick(m_rng, kW16) : pick(m_rng, kW32);
  }
  ZydisRegister rreg(int bits) {
    return bits == 8 ? pick(m_rng, kW8) : bits == 16 ? pick(m_rng, kR16) : pick(m_rng, kR32);
  }
  int size() { return std::array{8, 16, 32, 32}[below(m_rng, 4)]; }

  bool push(Generated& g) {
    switch (below(m_rng, 5)) {
      case 0: return emit(g, ZYDIS_MNEMONIC_PUSH, {reg(pick(m_rng, kR32))});
      case 1: return emit(g, ZYDIS_MNEMONIC_PUSH, {imm(imm_for(m_rng, 32))});
      case 2: return emit(g, ZYDIS_MNEMONIC_PUSH, {mem(m_rng, 4)});
      case 3: return emit(g, ZYDIS_MNEMONIC_PUSHFD, {});
      default:  // a flags image popfd can take in user mode too (no TF/AC/IF change)
        return emit(g, ZYDIS_MNEMONIC_PUSH, {imm(int32_t((rng32() & (rf::Arith | rf::DF)) | rf::Fixed1 | rf::IF))}) &&
               (--g.instructions, emit(g, ZYDIS_MNEMONIC_POPFD, {})) && emit(g, ZYDIS_MNEMONIC_PUSHFD, {});
    }
  }
  bool pop(Generated& g) {
    if (chance(m_rng, 70)) return emit(g, ZYDIS_MNEMONIC_POP, {reg(pick(m_rng, kW32))});
    return emit(g, ZYDIS_MNEMONIC_POP, {mem(m_rng, 4)});
  }
  uint32_t rng32() { return uint32_t(m_rng()); }

  ZydisEncoderOperand rm(int bits, bool writable) {
    if (chance(m_rng, 40)) return mem(m_rng, uint16_t(bits / 8));
    return reg(writable ? wreg(bits) : rreg(bits));
  }

  void raw(Generated& g, std::initializer_list<uint8_t> bytes, uint32_t insns = 1) {
    g.code.insert(g.code.end(), bytes);
    g.instructions += insns;
  }
  void raw32(Generated& g, uint32_t v) {
    for (int i = 0; i < 4; ++i) g.code.push_back(uint8_t(v >> (8 * i)));
  }
  // A register-only instruction that leaves ESP, EBP, ESI and ECX alone.
  bool plain(Generated& g) {
    static constexpr std::array<ZydisRegister, 4> kSafe = {ZYDIS_REGISTER_EAX, ZYDIS_REGISTER_EDX,
                                                           ZYDIS_REGISTER_EBX, ZYDIS_REGISTER_EDI};
    ZydisMnemonic m = pick(m_rng, kAlu2);
    return chance(m_rng, 50) ? emit(g, m, {reg(pick(m_rng, kSafe)), reg(pick(m_rng, kSafe))})
                             : emit(g, m, {reg(pick(m_rng, kSafe)), imm(int8_t(rng32()))});
  }
  uint8_t modrm_reg(ZydisRegister r) { return uint8_t(ZydisRegisterGetId(r)); }

  // The instruction classes that need set-up around them (strings, div,
  // loops, enter/leave, pusha/popa, BCD, x87/SSE, indirect branches).
  bool extra(Generated& g) {
    switch (below(m_rng, 12)) {
      case 0: {  // string instruction, with or without rep, either direction
        static constexpr std::array<uint8_t, 5> kOps = {0xa4, 0xa6, 0xaa, 0xac, 0xae};  // movs cmps stos lods scas
        raw(g, {0x56});  // push esi (ESI is the small index elsewhere)
        g.code.insert(g.code.end(), {0x8d, 0xb5});  // lea esi, [ebp + d]
        raw32(g, uint32_t(int32_t(below(m_rng, 0x800)) - 0x400));
        g.code.insert(g.code.end(), {0x8d, 0xbd});  // lea edi, [ebp + d]
        raw32(g, uint32_t(int32_t(below(m_rng, 0x800)) - 0x400));
        g.instructions += 2;
        g.code.push_back(0xb9);  // mov ecx, n
        raw32(g, below(m_rng, 8));
        ++g.instructions;
        raw(g, {uint8_t(chance(m_rng, 50) ? 0xfc : 0xfd)});  // cld / std
        const uint32_t size = below(m_rng, 3);  // b, w, d
        if (size == 1) g.code.push_back(0x66);
        const uint32_t rep = below(m_rng, 3);
        if (rep == 1) g.code.push_back(0xf3);
        if (rep == 2) g.code.push_back(0xf2);
        raw(g, {uint8_t(pick(m_rng, kOps) + (size ? 1 : 0))});
        raw(g, {0x5e});  // pop esi
        return true;
      }
      case 1: {  // div / idiv with a divisor that cannot fault
        static constexpr std::array<ZydisRegister, 3> kDiv = {ZYDIS_REGISTER_EBX, ZYDIS_REGISTER_EDI, ZYDIS_REGISTER_ECX};
        const int bits = std::array{8, 16, 32}[below(m_rng, 3)];
        const bool sign = chance(m_rng, 50);
        ZydisRegister d32 = pick(m_rng, kDiv);
        if (bits == 8 && d32 == ZYDIS_REGISTER_EDI) d32 = ZYDIS_REGISTER_EBX;  // DI has no 8-bit form here (id 7 is BH)
        emit(g, ZYDIS_MNEMONIC_AND, {reg(d32), imm(bits == 8 ? 0x7f : 0x7fff)});
        emit(g, ZYDIS_MNEMONIC_OR, {reg(d32), imm(1)});
        ZydisRegister d = bits == 32 ? d32 : bits == 16 ? ZydisRegisterEncode(ZYDIS_REGCLASS_GPR16, ZydisRegisterGetId(d32))
                                                        : ZydisRegisterEncode(ZYDIS_REGCLASS_GPR8, ZydisRegisterGetId(d32));
        if (bits == 8) {  // AX = AL (zero- or sign-extended): the quotient fits in AL
          if (sign) emit(g, ZYDIS_MNEMONIC_CBW, {});
          else emit(g, ZYDIS_MNEMONIC_MOVZX, {reg(ZYDIS_REGISTER_AX), reg(ZYDIS_REGISTER_AL)});
        } else if (sign) {
          emit(g, bits == 16 ? ZYDIS_MNEMONIC_CWD : ZYDIS_MNEMONIC_CDQ, {});
        } else {
          emit(g, ZYDIS_MNEMONIC_XOR, {reg(bits == 16 ? ZYDIS_REGISTER_DX : ZYDIS_REGISTER_EDX),
                                       reg(bits == 16 ? ZYDIS_REGISTER_DX : ZYDIS_REGISTER_EDX)});
        }
        const ZydisMnemonic m = sign ? ZYDIS_MNEMONIC_IDIV : ZYDIS_MNEMONIC_DIV;
        if (chance(m_rng, 30)) {
          ZydisEncoderOperand slot = mem(m_rng, uint16_t(bits / 8));
          return emit(g, ZYDIS_MNEMONIC_MOV, {slot, reg(d)}) && emit(g, m, {slot});
        }
        return emit(g, m, {reg(d)});
      }
      case 2:  // cmpxchg8b (lock sometimes), mul/imul widening
        if (chance(m_rng, 50)) {
          if (chance(m_rng, 30)) g.code.push_back(0xf0);
          return emit(g, ZYDIS_MNEMONIC_CMPXCHG8B, {mem(m_rng, 8)});
        }
        return emit(g, chance(m_rng, 50) ? ZYDIS_MNEMONIC_MUL : ZYDIS_MNEMONIC_IMUL, {rm(size(), false)});
      case 3: {  // loop / loope / loopne (32- or 16-bit count) over a small body
        const uint32_t n = 1 + below(m_rng, 5);
        g.code.push_back(0xb9);  // mov ecx, n
        raw32(g, n);
        ++g.instructions;
        const size_t top = g.code.size();
        plain(g);
        if (chance(m_rng, 50)) plain(g);
        const bool cx16 = chance(m_rng, 25);
        if (cx16) g.code.push_back(0x67);
        const uint8_t op = std::array<uint8_t, 3>{0xe2, 0xe1, 0xe0}[below(m_rng, 3)];
        const int rel = int(top) - int(g.code.size() + 2);
        raw(g, {op, uint8_t(int8_t(rel))});
        return true;
      }
      case 4: {  // jecxz / jcxz over one instruction
        if (chance(m_rng, 50)) emit(g, ZYDIS_MNEMONIC_XOR, {reg(ZYDIS_REGISTER_ECX), reg(ZYDIS_REGISTER_ECX)});
        Generated next;
        while (!plain(next)) {}
        if (chance(m_rng, 25)) g.code.push_back(0x67);
        raw(g, {0xe3, uint8_t(next.code.size())});
        g.code.insert(g.code.end(), next.code.begin(), next.code.end());
        g.instructions += next.instructions;
        return true;
      }
      case 5: {  // enter n, 0 ... leave (EBP is restored by leave)
        raw(g, {0xc8, uint8_t(below(m_rng, 256)), uint8_t(below(m_rng, 2)), 0x00});
        plain(g);
        raw(g, {0xc9});
        return true;
      }
      case 6: {  // pusha/popa, 32 or 16 bit
        const bool w16 = chance(m_rng, 30);
        if (w16) g.code.push_back(0x66);
        raw(g, {0x60});
        plain(g);
        if (w16) g.code.push_back(0x66);
        raw(g, {0x61});
        return true;
      }
      case 7: {  // BCD and salc; the flags they leave undefined are then cleared
        static constexpr std::array<uint8_t, 7> kOps = {0x27, 0x2f, 0x37, 0x3f, 0xd4, 0xd5, 0xd6};
        const uint8_t op = pick(m_rng, kOps);
        const size_t at = g.code.size();
        if (op == 0xd4 || op == 0xd5) {
          uint8_t base = chance(m_rng, 60) ? 10 : uint8_t(1 + below(m_rng, 255));
          raw(g, {op, base});
        } else {
          raw(g, {op});
        }
        translator::GuestInsn d;
        translator::decode32(std::span(g.code).subspan(at), 0, d);
        const uint32_t undefined = d.insn.cpu_flags ? d.insn.cpu_flags->undefined : 0;
        if (undefined) {  // pushfd; and dword [esp], ~undefined; popfd
          raw(g, {0x9c, 0x81, 0x24, 0x24}, 2);
          raw32(g, ~undefined);
          raw(g, {0x9d});
        }
        return true;
      }
      case 8: {  // arpl r/m16, r16
        return emit(g, ZYDIS_MNEMONIC_ARPL, {rm(16, true), reg(wreg(16))});
      }
      case 9: {  // indirect call/jmp through a register or memory
        const uint32_t here = kCode + uint32_t(g.code.size());
        if (chance(m_rng, 50)) {  // mov edi, ret_pos; call edi; jmp +1; ret
          raw(g, {0xbf});
          raw32(g, here + 5 + 2 + 2);
          raw(g, {0xff, 0xd7, 0xeb, 0x01, 0xc3}, 3);
          return true;
        }
        // mov dword [ebp+d], target; jmp/call dword [ebp+d]
        const int8_t d = int8_t(below(m_rng, 0x80));
        const bool call = chance(m_rng, 50);
        raw(g, {0xc7, 0x45, uint8_t(d)});
        raw32(g, here + 7 + 3 + (call ? 2 : 0));
        raw(g, {0xff, uint8_t(call ? 0x55 : 0x65), uint8_t(d)});
        if (call) raw(g, {0xeb, 0x01, 0xc3}, 2);  // jmp +1; ret (the callee)
        return true;
      }
      case 10:
        return fpu(g);
      default:
        return sse(g);
    }
  }

  // x87: loads, stores and arithmetic on the data page (any bit pattern:
  // NaNs, denormals and stack faults are masked and deterministic).
  bool fpu(Generated& g) {
    static constexpr std::array<ZydisMnemonic, 6> kArith = {ZYDIS_MNEMONIC_FADD, ZYDIS_MNEMONIC_FSUB,
                                                            ZYDIS_MNEMONIC_FMUL, ZYDIS_MNEMONIC_FDIV,
                                                            ZYDIS_MNEMONIC_FSUBR, ZYDIS_MNEMONIC_FDIVR};
    static constexpr std::array<ZydisMnemonic, 6> kNullary = {ZYDIS_MNEMONIC_FLD1, ZYDIS_MNEMONIC_FLDZ,
                                                              ZYDIS_MNEMONIC_FCHS, ZYDIS_MNEMONIC_FABS,
                                                              ZYDIS_MNEMONIC_FSQRT, ZYDIS_MNEMONIC_FLDPI};
    ZydisEncoderOperand st0 = reg(ZYDIS_REGISTER_ST0);
    ZydisEncoderOperand sti = reg(ZydisRegister(ZYDIS_REGISTER_ST0 + below(m_rng, 8)));
    switch (below(m_rng, 7)) {
      case 0: return emit(g, ZYDIS_MNEMONIC_FLD, {mem(m_rng, chance(m_rng, 50) ? 4 : 8)});
      case 1: return emit(g, ZYDIS_MNEMONIC_FILD, {mem(m_rng, chance(m_rng, 50) ? 4 : 2)});
      case 2: return emit(g, chance(m_rng, 50) ? ZYDIS_MNEMONIC_FST : ZYDIS_MNEMONIC_FSTP,
                          {mem(m_rng, chance(m_rng, 50) ? 4 : 8)});
      case 3: return emit(g, pick(m_rng, kArith), {mem(m_rng, chance(m_rng, 50) ? 4 : 8)});
      case 4: return emit(g, pick(m_rng, kArith), {st0, sti});
      case 5: return emit(g, ZYDIS_MNEMONIC_FXCH, {sti});
      default: return emit(g, pick(m_rng, kNullary), {});
    }
  }

  // SSE/SSE2 moves, arithmetic, logic, conversions and compares (which set
  // ZF PF CF) on xmm0-7 and the data page (movups: no alignment faults).
  bool sse(Generated& g) {
    static constexpr std::array<ZydisMnemonic, 14> kOps = {
        ZYDIS_MNEMONIC_ADDPS, ZYDIS_MNEMONIC_MULPS, ZYDIS_MNEMONIC_SUBSS, ZYDIS_MNEMONIC_DIVSD,
        ZYDIS_MNEMONIC_ADDSD, ZYDIS_MNEMONIC_SQRTPS, ZYDIS_MNEMONIC_XORPS, ZYDIS_MNEMONIC_PAND,
        ZYDIS_MNEMONIC_PADDD, ZYDIS_MNEMONIC_PSUBB, ZYDIS_MNEMONIC_MAXPD, ZYDIS_MNEMONIC_PUNPCKLBW,
        ZYDIS_MNEMONIC_PCMPEQB, ZYDIS_MNEMONIC_MINSS};
    auto x = [&] { return reg(ZydisRegister(ZYDIS_REGISTER_XMM0 + below(m_rng, 8))); };
    switch (below(m_rng, 6)) {
      case 0: return emit(g, ZYDIS_MNEMONIC_MOVUPS, {x(), mem(m_rng, 16)});
      case 1: return emit(g, ZYDIS_MNEMONIC_MOVUPS, {mem(m_rng, 16), x()});
      case 2: {  // a memory source must be 16-byte aligned for the packed forms: [ebp + 16k]
        ZydisEncoderOperand m{};
        m.type = ZYDIS_OPERAND_TYPE_MEMORY;
        m.mem.size = 16;
        m.mem.base = ZYDIS_REGISTER_EBP;
        m.mem.displacement = 16 * (int32_t(below(m_rng, 128)) - 64);
        return emit(g, pick(m_rng, kOps), {x(), chance(m_rng, 50) ? x() : m});
      }
      case 3: return emit(g, chance(m_rng, 50) ? ZYDIS_MNEMONIC_MOVD : ZYDIS_MNEMONIC_CVTSI2SD,
                          {x(), reg(rreg(32))});
      case 4: return emit(g, chance(m_rng, 50) ? ZYDIS_MNEMONIC_CVTTSD2SI : ZYDIS_MNEMONIC_MOVD,
                          {reg(wreg(32)), x()});
      default: return emit(g, chance(m_rng, 50) ? ZYDIS_MNEMONIC_COMISS : ZYDIS_MNEMONIC_UCOMISD, {x(), x()});
    }
  }

  bool one(Generated& g) {
    const int bits = size();
    switch (below(m_rng, 18)) {
      case 16: {  // jcc over the next instruction: two blocks, either arm
        Generated next;
        while (!one(next)) {}
        const uint8_t cc = uint8_t(below(m_rng, 16));
        g.code.push_back(uint8_t(0x70 | cc));
        g.code.push_back(uint8_t(next.code.size()));
        g.code.insert(g.code.end(), next.code.begin(), next.code.end());
        g.instructions += 1 + next.instructions;
        return true;
      }
      case 17:  // call +2; jmp +1; ret: call, ret and jmp through the dispatcher
        g.code.insert(g.code.end(), {0xe8, 0x02, 0x00, 0x00, 0x00, 0xeb, 0x01, 0xc3});
        g.instructions += 3;
        return true;
      case 0: case 1: case 2: {  // ALU with two operands
        ZydisMnemonic m = pick(m_rng, kAlu2);
        switch (below(m_rng, 5)) {
          case 0: return emit(g, m, {reg(wreg(bits)), reg(rreg(bits))});
          case 1: return m != ZYDIS_MNEMONIC_TEST && emit(g, m, {reg(wreg(bits)), mem(m_rng, uint16_t(bits / 8))});
          case 2: return emit(g, m, {mem(m_rng, uint16_t(bits / 8)), reg(rreg(bits))});
          case 3: return emit(g, m, {reg(wreg(bits)), imm(imm_for(m_rng, bits))});
          default: return emit(g, m, {mem(m_rng, uint16_t(bits / 8)), imm(imm_for(m_rng, bits))});
        }
      }
      case 3: return emit(g, pick(m_rng, kAlu1), {rm(bits, true)});
      case 4: {  // shifts and rotates
        ZydisMnemonic m = pick(m_rng, kShift);
        switch (below(m_rng, 3)) {
          case 0: return emit(g, m, {rm(bits, true), imm(1)});
          case 1: return emit(g, m, {rm(bits, true), imm(below(m_rng, 36))});
          default: return emit(g, m, {rm(bits, true), reg(ZYDIS_REGISTER_CL)});
        }
      }
      case 5: {  // shld/shrd
        if (bits == 8) return false;
        ZydisMnemonic m = chance(m_rng, 50) ? ZYDIS_MNEMONIC_SHLD : ZYDIS_MNEMONIC_SHRD;
        ZydisEncoderOperand count = chance(m_rng, 50) ? reg(ZYDIS_REGISTER_CL) : imm(below(m_rng, bits));
        return emit(g, m, {rm(bits, true), reg(rreg(bits)), count});
      }
      case 6: {  // mul / imul
        switch (below(m_rng, 3)) {
          case 0: return emit(g, chance(m_rng, 50) ? ZYDIS_MNEMONIC_MUL : ZYDIS_MNEMONIC_IMUL, {rm(bits, false)});
          case 1: return bits != 8 && emit(g, ZYDIS_MNEMONIC_IMUL, {reg(wreg(bits)), rm(bits, false)});
          default:
            return bits != 8 && emit(g, ZYDIS_MNEMONIC_IMUL, {reg(wreg(bits)), rm(bits, false), imm(imm_for(m_rng, bits))});
        }
      }
      case 7: {  // lea with any addressing form (no memory access)
        ZydisEncoderOperand m{};
        m.type = ZYDIS_OPERAND_TYPE_MEMORY;
        m.mem.size = 0;
        if (chance(m_rng, 85)) m.mem.base = pick(m_rng, kR32);
        if (chance(m_rng, 60)) {
          do m.mem.index = pick(m_rng, kR32); while (m.mem.index == ZYDIS_REGISTER_ESP);
          m.mem.scale = uint8_t(1u << below(m_rng, 4));
        }
        switch (below(m_rng, 3)) {
          case 0: break;
          case 1: m.mem.displacement = int8_t(rng32()); break;
          default: m.mem.displacement = int32_t(rng32()); break;
        }
        return emit(g, ZYDIS_MNEMONIC_LEA, {reg(bits == 16 ? wreg(16) : wreg(32)), m});
      }
      case 8: {  // movzx / movsx / mov
        ZydisMnemonic m = std::array{ZYDIS_MNEMONIC_MOVZX, ZYDIS_MNEMONIC_MOVSX, ZYDIS_MNEMONIC_MOV}[below(m_rng, 3)];
        if (m == ZYDIS_MNEMONIC_MOV)
          return chance(m_rng, 50) ? emit(g, m, {reg(wreg(bits)), rm(bits, false)})
                                   : emit(g, m, {rm(bits, true), reg(rreg(bits))});
        int src = chance(m_rng, 50) ? 8 : 16;
        int dst = src == 16 || chance(m_rng, 60) ? 32 : 16;
        return emit(g, m, {reg(wreg(dst)), rm(src, false)});
      }
      case 9: return chance(m_rng, 50) ? emit(g, ZYDIS_MNEMONIC_XCHG, {reg(wreg(bits)), reg(wreg(bits))})
                                       : emit(g, ZYDIS_MNEMONIC_XCHG, {mem(m_rng, uint16_t(bits / 8)), reg(wreg(bits))});
      case 10: return emit(g, ZYDIS_MNEMONIC_BSWAP, {reg(wreg(32))});
      case 11: return emit(g, pick(m_rng, kSetcc), {rm(8, true)});
      case 12: return bits != 8 && emit(g, pick(m_rng, kCmovcc), {reg(wreg(bits)), rm(bits, false)});
      case 13: {  // bit tests: register offsets only on registers (a memory form would leave the page)
        if (bits == 8) return false;
        ZydisMnemonic m = pick(m_rng, kBt);
        if (chance(m_rng, 50)) return emit(g, m, {rm(bits, true), imm(below(m_rng, 256))});
        return emit(g, m, {reg(wreg(bits)), reg(rreg(bits))});
      }
      case 14: {  // flag instructions and conversions
        static constexpr std::array<ZydisMnemonic, 7> kMisc = {ZYDIS_MNEMONIC_CLC, ZYDIS_MNEMONIC_STC, ZYDIS_MNEMONIC_CMC,
                                                               ZYDIS_MNEMONIC_CDQ, ZYDIS_MNEMONIC_CWDE, ZYDIS_MNEMONIC_LAHF,
                                                               ZYDIS_MNEMONIC_SAHF};
        return emit(g, pick(m_rng, kMisc), {});
      }
      default: {  // xadd / cmpxchg on registers and memory
        ZydisMnemonic m = chance(m_rng, 50) ? ZYDIS_MNEMONIC_XADD : ZYDIS_MNEMONIC_CMPXCHG;
        return emit(g, m, {rm(bits, true), reg(wreg(bits))});
      }
    }
  }

  Rng& m_rng;
};

// Flags whose final value is defined (see difftest.h).
uint32_t defined_flags(std::span<const uint8_t> code) {
  uint32_t defined = rf::Arith;
  translator::GuestInsn g;
  size_t off = 0;
  while (off < code.size() && translator::decode32(code.subspan(off), uint32_t(kCode + off), g)) {
    if (g.insn.cpu_flags) {
      const auto& f = *g.insn.cpu_flags;
      defined &= ~f.undefined;
      defined |= (f.modified | f.set_0 | f.set_1) & ~f.undefined & rf::Arith;
    }
    off += g.insn.length;
  }
  return defined;
}

struct Outcome {
  CpuState cpu;
  std::vector<uint8_t> data, stack, edges;
  std::string stop;
};

struct Harness {
  TestMachine* m;
  std::unique_ptr<translator::SpanCodeReader> reader;
  std::unique_ptr<translator::Translator> translator;

  static Harness& get() {
    static Harness* h = [] {
      auto* h = new Harness;
      h->m = &TestMachine::get();
      h->reader = std::make_unique<translator::SpanCodeReader>(
          mmu::GuestVirt(kCode), std::span<const uint8_t>(h->m->code(), kRegion));
      auto t = translator::Translator::create({}, *h->reader);
      if (!t) { std::fprintf(stderr, "%s\n", t.error().message.c_str()); std::abort(); }
      h->translator = std::move(t.value());
      return h;
    }();
    return *h;
  }
  uint8_t* guest(uint32_t va) {
    // Data and stack regions are mapped at their fixed PAs (TestMachine).
    uint32_t pa = va >= kStack ? kStackPa + (va - kStack) : kDataPa + (va - kData);
    return m->memory->host(mmu::GuestPhys(pa), 1);
  }
  void load_memory(const std::vector<uint8_t>& data, const std::vector<uint8_t>& stack,
                   const std::vector<uint8_t>& edges) {
    std::memcpy(guest(kDataSnap), data.data(), data.size());
    std::memcpy(guest(kStackSnap), stack.data(), stack.size());
    for (size_t i = 0; i < kEdges.size(); ++i) std::memcpy(guest(kEdges[i]), edges.data() + i * kEdgeLen, kEdgeLen);
  }
  void save(Outcome& o) {
    o.data.assign(guest(kDataSnap), guest(kDataSnap) + kDataSnapLen);
    o.stack.assign(guest(kStackSnap), guest(kStackSnap) + kStackSnapLen);
    o.edges.clear();
    for (uint32_t e : kEdges) o.edges.insert(o.edges.end(), guest(e), guest(e) + kEdgeLen);
  }
};

std::string regs(const CpuState& c) {
  std::string s;
  static const char* names[8] = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"};
  for (int i = 0; i < 8; ++i) s += fmt::format("{}={:08x} ", names[i], c.gpr[i]);
  s += fmt::format("eflags={:08x} eip={:08x}", c.eflags, c.eip);
  return s;
}

// The architectural x87/SSE state in an FXSAVE image: FCW FSW FTW, MXCSR,
// ST0-7 (80 bits each) and XMM0-7. FOP, FIP and FDP are left out: the
// translated run executes at host addresses.
std::string fpu_diff(const runtime::FpuState& a, const runtime::FpuState& b) {
  auto range = [&](size_t from, size_t len, const char* what) -> std::string {
    for (size_t i = from; i < from + len; ++i)
      if (a.fxsave[i] != b.fxsave[i])
        return fmt::format("fpu {} differs at fxsave byte {}: native {:02x}, translated {:02x}", what, i, a.fxsave[i],
                           b.fxsave[i]);
    return {};
  };
  if (auto d = range(0, 5, "control/status/tag"); !d.empty()) return d;
  if (auto d = range(24, 4, "mxcsr"); !d.empty()) return d;
  for (int r = 0; r < 8; ++r)
    if (auto d = range(32 + 16 * r, 10, "st"); !d.empty()) return d;
  return range(160, 128, "xmm");
}

std::string first_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, uint32_t base) {
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return fmt::format("byte at {:#x}: native {:02x}, translated {:02x}", base + i, a[i], b[i]);
  return {};
}

}  // namespace

std::vector<uint8_t> difftest_sequence(uint64_t seed, uint64_t index) {
  Rng rng(seed * 0x9E3779B97F4A7C15ull + index);
  return Generator(rng).sequence().code;
}

DiffSummary run_difftest(uint64_t seed, uint64_t count, bool stop_at_first) {
  Harness& h = Harness::get();
  DiffSummary summary;
  translator::TranslatorStats before = h.translator->stats();
  const bool trace = std::getenv("BT86_DIFFTEST_TRACE") != nullptr;
  const char* first_env = std::getenv("BT86_DIFFTEST_FIRST");  // start at this sequence (debugging)
  for (uint64_t index = first_env ? std::strtoull(first_env, nullptr, 0) : 0; index < count; ++index) {
    Rng rng(seed * 0x9E3779B97F4A7C15ull + index);
    Generated gen = Generator(rng).sequence();
    CpuState init = TestMachine::initial_state();
    for (int r = 0; r < 8; ++r) init.gpr[r] = uint32_t(rng());
    init.reg(runtime::EBP) = kDataBase;
    init.reg(runtime::ESI) = uint32_t(rng() % 16);
    init.reg(runtime::ESP) = kStackInit;
    init.eflags = rf::Fixed1 | rf::IF | (uint32_t(rng()) & rf::Arith);
    // FS and GS usable; half of the sequences run with non-zero DS/ES/SS/FS/GS
    // bases (DirectExecutor loads them natively through its LDT slots; the
    // translator folds them in). Small enough that every access stays in the
    // compared pages.
    init.sreg(runtime::Seg::FS) = runtime::SegmentCache::flat_data(init.sreg(runtime::Seg::DS).selector);
    init.sreg(runtime::Seg::GS) = runtime::SegmentCache::flat_data(init.sreg(runtime::Seg::DS).selector);
    if (rng() % 2) {
      for (runtime::Seg sg : {runtime::Seg::DS, runtime::Seg::ES, runtime::Seg::SS, runtime::Seg::FS, runtime::Seg::GS})
        init.sreg(sg).base = rng() % 4 ? uint32_t(rng() % 0x80) * 16 : 0;
    }
    for (size_t i = 160; i < 160 + 128; ++i) init.fpu.fxsave[i] = uint8_t(rng());  // xmm0-7
    std::vector<uint8_t> data(kDataSnapLen), stack(kStackSnapLen), edges(kEdges.size() * kEdgeLen);
    for (auto& b : data) b = uint8_t(rng());
    for (auto& b : stack) b = uint8_t(rng());
    for (auto& b : edges) b = uint8_t(rng());

    Outcome native, translated;
    if (trace) {  // before running anything: a sequence that hangs or crashes is the last one shown
      std::string guest;
      translator::GuestInsn g;
      for (size_t off = 0; off < gen.code.size() &&
                           translator::decode32(std::span(gen.code).subspan(off), uint32_t(kCode + off), g);
           off += g.insn.length)
        guest += fmt::format("  {:08x}  {}\n", g.eip, translator::format_insn(g));
      std::fprintf(stderr, "sequence %llu:\n%s", (unsigned long long)index, guest.c_str());
    }
    h.load_memory(data, stack, edges);
    native.cpu = init;
    ExitRecord x = h.m->run(gen.code, native.cpu);
    native.stop = runtime::describe(x, native.cpu);
    // A generated fault (#PF, #DE) stops both runs at the faulting instruction.
    const bool native_fault = x.kind == ExitKind::PageFault || x.kind == ExitKind::DivideError;
    const bool native_ok = x.kind == ExitKind::Breakpoint || native_fault;
    if (x.kind == ExitKind::Breakpoint) native.cpu.eip -= 1;  // the int3 itself, where the translator stops
    h.save(native);

    h.load_memory(data, stack, edges);
    if (trace) std::fprintf(stderr, "  native: %s\n", native.stop.c_str());
    h.translator->flush();  // same guest addresses, new code
    translated.cpu = init;
    translator::RunResult rr = h.translator->run(translated.cpu, 1000);
    translated.stop = fmt::format("{} at {:#x}: {}", translator::run_stop_name(rr.stop), rr.eip, rr.detail);
    h.save(translated);

    ++summary.sequences;
    summary.instructions += gen.instructions;
    if (native_fault) ++summary.faults;
    const uint32_t fmask = defined_flags(gen.code) | rf::DF;
    std::string why;
    if (!native_ok) why = "native run did not reach int3: " + native.stop;
    else if (native_fault && rr.stop != translator::RunStop::kGuestFault)
      why = "translated run did not fault";
    else if (native_fault && rr.fault.vector != x.vector)
      why = fmt::format("fault vector: native {}, translated {}", x.vector, rr.fault.vector);
    else if (native_fault && x.vector == 14 &&
             (rr.fault.linear_address != x.fault_address || (rr.fault.error_code & 3) != (x.error_code & 3)))
      why = fmt::format("#PF: native address {:#x} error {:#x}, translated {:#x} {:#x}", x.fault_address,
                        x.error_code, rr.fault.linear_address, rr.fault.error_code);
    else if (!native_fault &&
             (rr.stop != translator::RunStop::kNeedsInterpretation || rr.detail.find("int3") == std::string::npos))
      why = "translated run did not stop at int3";
    else if (native.cpu.gpr != translated.cpu.gpr) why = "registers differ";
    else if (native.cpu.eip != translated.cpu.eip) why = "eip differs";
    else if ((native.cpu.eflags & fmask) != (translated.cpu.eflags & fmask))
      why = fmt::format("flags differ (compared mask {:#x})", fmask);
    else if (native.cpu.eflags != translated.cpu.eflags && ((native.cpu.eflags ^ translated.cpu.eflags) & ~rf::Arith))
      why = "system flags differ";
    else if (auto d = first_diff(native.data, translated.data, kDataSnap); !d.empty()) why = "data " + d;
    else if (auto d = first_diff(native.stack, translated.stack, kStackSnap); !d.empty()) why = "stack " + d;
    else if (auto d = first_diff(native.edges, translated.edges, 0); !d.empty()) why = "region edges (offset) " + d;
    else if (auto d = fpu_diff(native.cpu.fpu, translated.cpu.fpu); !d.empty()) why = d;
    if (why.empty()) continue;

    ++summary.mismatches;
    if (summary.first_mismatch.empty()) {
      std::string host;
      const translator::Block* b = h.translator->block_at(kCode, init);
      if (b && b->host) host = translator::disassemble({b->host, b->host_size}, uint64_t(b->host), true);
      std::string guest;
      translator::GuestInsn g;
      for (size_t off = 0; off < gen.code.size() &&
                           translator::decode32(std::span(gen.code).subspan(off), uint32_t(kCode + off), g);
           off += g.insn.length)
        guest += fmt::format("  {:08x}  {}\n", g.eip, translator::format_insn(g));
      for (char& c : host)
        if (c == ';') c = '\n';
      summary.first_mismatch = fmt::format(
          "MISMATCH seed {} sequence {}: {}\nguest code:\n{}host code (first block):\n {}\n"
          "initial:    {}\nnative:     {}\n  stop: {}\ntranslated: {}\n  stop: {}\n",
          seed, index, why, guest, host, regs(init), regs(native.cpu), native.stop, regs(translated.cpu),
          translated.stop);
    }
    if (stop_at_first) break;
  }
  const translator::TranslatorStats& after = h.translator->stats();
  for (int k = 0; k < translator::kInsnKindCount; ++k)
    if (uint64_t n = after.insns_by_kind[k] - before.insns_by_kind[k])
      summary.translated_kinds += fmt::format("{}{}: {}", summary.translated_kinds.empty() ? "" : ", ",
                                              translator::insn_kind_name(translator::InsnKind(k)), n);
  return summary;
}

}  // namespace bt86::test
