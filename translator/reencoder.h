// Decoding of guest (32-bit) instructions and their one-for-one re-encoding as
// 64-bit host instructions: 32-bit addressing (0x67), guest ESP -> R12D, and a
// GS override on every guest memory operand so it lands in the guest window.
#pragma once

#include <Zydis/Zydis.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"

namespace bt86::translator {

struct GuestInsn {
  // GuestInsn(kNoZero) leaves insn and ops unwritten (~1 KiB), for a
  // decode32 that follows at once: Zydis writes all of both (every operand
  // slot, used or not). build_block's hot path; everyone else gets zeros.
  struct NoZero {};
  static constexpr NoZero kNoZero{};
  GuestInsn() : insn{}, ops{} {}
  explicit GuestInsn(NoZero) {}

  uint32_t eip = 0;
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  // The guest's bytes (insn.length of them; filled by decode32): the fast
  // re-encoding path rewrites them instead of going through Zydis' encoder.
  std::array<uint8_t, ZYDIS_MAX_INSTRUCTION_LENGTH> bytes{};
  bool has_bytes = false;

  uint32_t next_eip() const { return eip + insn.length; }
  std::span<const ZydisDecodedOperand> visible() const { return {ops, insn.operand_count_visible}; }
  std::span<const ZydisDecodedOperand> all() const { return {ops, insn.operand_count}; }
};

struct HostBytes {
  std::array<uint8_t, ZYDIS_MAX_INSTRUCTION_LENGTH> bytes{};
  uint8_t size = 0;
  std::span<const uint8_t> span() const { return {bytes.data(), size}; }
};

// Decodes one instruction of 32-bit protected-mode code at guest address eip.
bool decode32(std::span<const uint8_t> bytes, uint32_t eip, GuestInsn& out);

// The host register that holds a guest register of the same width (ESP/SP
// become R12D/R12W, all others are the same register).
ZydisRegister host_reg(ZydisRegister guest);

struct ReencodeOptions {
  // Add a GS override to memory operands (the guest window). String
  // instructions never get one: their ES:EDI operand cannot be overridden.
  bool window_segment = true;
  // If set, the explicit memory operand becomes [this register] (its address
  // was computed there beforehand). Used to avoid R12 in the AH..DH case.
  ZydisRegister mem_address_in = ZYDIS_REGISTER_NONE;
  // If set, register operands ESP/SP become this register (32/16 bit)
  // instead of R12D/R12W: AH..DH next to ESP (kHighByteEspReg).
  ZydisRegister esp_as = ZYDIS_REGISTER_NONE;
  // Guest segment bases by runtime::Seg (null: all zero). The base of each
  // explicit memory operand's segment is added to its displacement: with
  // 32-bit addressing the sum wraps modulo 4 GiB exactly like the guest's
  // linear address (limits are not checked).
  const std::array<uint32_t, 6>* seg_base = nullptr;
  // If set, the explicit memory operand becomes [R11D + X + disp] with the
  // segment base in R11D (loaded beforehand, kSegBaseAtRun): X is the guest
  // base or index, or R10D holding base + index * scale when it has both.
  bool seg_base_in_r11 = false;
};

// Re-encodes an innocuous guest instruction for 64-bit mode, or says why not.
Result<HostBytes> reencode64(const GuestInsn& guest, const ReencodeOptions& options = {});
// The two paths of reencode64, exposed for the test that holds them to the
// same result: the fast one rewrites the guest's bytes (false: not an
// instruction it handles), the general one goes through Zydis' encoder and
// a checking decode.
bool reencode64_fast(const GuestInsn& guest, const ReencodeOptions& options, HostBytes& out);
Result<HostBytes> reencode64_general(const GuestInsn& guest, const ReencodeOptions& options = {});

// Intel-syntax disassembly for golden tests, traces and mismatch reports.
std::string disassemble(std::span<const uint8_t> bytes, uint64_t address, bool long_mode);
std::string format_insn(const GuestInsn& guest);

}  // namespace bt86::translator

namespace bt86::translator {
// mov reg, [guest mem] (load) or mov [guest mem], reg (store) for a host
// scratch register (R13D/R13W), with the guest memory operand remapped as in
// reencode64. Used by expansions of push/pop/jmp/call with memory operands.
// seg_base is added to the displacement (the operand's segment base).
Result<HostBytes> encode_guest_mem_move(const ZydisDecodedOperand& mem, ZydisRegister reg, bool store,
                                        uint32_t seg_base = 0);
// The runtime::Seg index (ES 0, CS 1, SS 2, DS 3, FS 4, GS 5) of a segment register.
int seg_index(ZydisRegister segment);
}  // namespace bt86::translator
