// Golden tests: which 64-bit host code a guest instruction becomes, as Zydis
// disassembles it. Guest code is written inline (Intel syntax, .code32).
#include <gtest/gtest.h>

#include <vector>

#include "tests/runtime/guest_snippet.h"
#include "translator/block_builder.h"
#include "translator/block_emitter.h"

namespace bt86::translator {
namespace {

constexpr uint32_t kGuestAt = 0x00401000;
constexpr uint64_t kHostAt = 0x7f0000000000, kStub = 0x7f0000100000;

struct Translated {
  DecodedBlock decoded;
  Block meta;
  std::vector<uint8_t> host;
};

// Translates the snippet followed by int3 (which ends the block).
Translated translate(std::span<const uint8_t> guest) {
  std::vector<uint8_t> bytes(guest.begin(), guest.end());
  bytes.push_back(0xcc);
  SpanCodeReader reader(mmu::GuestVirt(kGuestAt), bytes);
  Translated t;
  t.decoded = build_block(reader, kGuestAt, {});
  auto host = emit_block(t.decoded, kHostAt, kStub, t.meta);
  EXPECT_TRUE(host.ok()) << (host.ok() ? "" : host.error().message);
  if (host.ok()) t.host = host.value();
  return t;
}

// Host code of the first guest instruction of the snippet, disassembled.
std::string host_of_first(std::span<const uint8_t> guest) {
  Translated t = translate(guest);
  if (t.decoded.insns.empty()) return "not translated: " + t.decoded.stop_reason;
  uint32_t begin = t.meta.boundaries.at(0).host_offset, end = t.meta.boundaries.at(1).host_offset;
  return disassemble({t.host.data() + begin, end - begin}, kHostAt + begin, true);
}

INTEL(mov_esp4, "mov eax, [esp+4]")
INTEL(add_sib, "add [ebx+ecx*4+8], edx")
INTEL(rep_movsd, "rep movsd")
INTEL(lock_cmpxchg, "lock cmpxchg [esi], ecx")
INTEL(movzx_byte, "movzx eax, byte ptr [edi]")
INTEL(imul3, "imul ecx, [esp+ebx*2+0x10], 7")
INTEL(shl_cl, "shl dword ptr [ebp-8], cl")
INTEL(setcc, "setnz byte ptr [eax]")
INTEL(cmovcc, "cmovbe edx, [esp]")
INTEL(bswap_esp, "bswap esp")
INTEL(x87, "fld qword ptr [esp+8]")
INTEL(sse, "movups xmm1, [edx+0x100]")
INTEL(short_inc, "inc eax")
INTEL(short_dec_esp, "dec esp")
INTEL(abs_high, "mov ecx, [0x82345678]")
INTEL(moffs, "mov eax, [0xc0001000]")
INTEL(ah_esp, "mov ah, [esp+4]")
INTEL(ah_store_index, "add [esp+ebp*2+1], bh")
INTEL(push_reg, "push ebx")
INTEL(push_esp_mem, "push dword ptr [esp+8]")
INTEL(push_imm, "push 0x12345678")
INTEL(pop_esp, "pop esp")
INTEL(pop_mem_esp, "pop dword ptr [esp+4]")
INTEL(pushfd, "pushfd")
INTEL(popfd, "popfd")
INTEL(fs_override, "mov eax, fs:[0x10]")
INTEL(lea_esp, "lea esi, [esp+eax*8-0x20]")

TEST(ReencodeGolden, InnocuousInstructions) {
  EXPECT_EQ(host_of_first(snippet_mov_esp4()), "mov eax, gs:[r12d+0x04]");
  EXPECT_EQ(host_of_first(snippet_add_sib()), "add gs:[ebx+ecx*4+0x08], edx");
  // String instructions run on 64-bit pointers into the window (expand_misc.cpp).
  EXPECT_EQ(host_of_first(snippet_rep_movsd()),
            "lea esi, [esi]; lea edi, [edi]; mov ecx, ecx; mov r14, [r15+0x18]; lea rsi, [rsi+r14*1]; "
            "lea rdi, [rdi+r14*1]; rep movsd; lea esi, [esi]; lea edi, [edi]");
  EXPECT_EQ(host_of_first(snippet_lock_cmpxchg()), "lock cmpxchg gs:[esi], ecx");
  EXPECT_EQ(host_of_first(snippet_movzx_byte()), "movzx eax, byte ptr gs:[edi]");
  EXPECT_EQ(host_of_first(snippet_imul3()), "imul ecx, gs:[r12d+ebx*2+0x10], 0x07");
  EXPECT_EQ(host_of_first(snippet_shl_cl()), "shl dword ptr gs:[ebp-0x08], cl");
  EXPECT_EQ(host_of_first(snippet_setcc()), "setnz gs:[eax]");
  EXPECT_EQ(host_of_first(snippet_cmovcc()), "cmovbe edx, gs:[r12d]");
  EXPECT_EQ(host_of_first(snippet_bswap_esp()), "bswap r12d");
  EXPECT_EQ(host_of_first(snippet_x87()), "fld gs:[r12d+0x08]");  // dd 44 24 08: fld m64
  EXPECT_EQ(host_of_first(snippet_sse()), "movups xmm1, gs:[edx+0x100]");
  EXPECT_EQ(host_of_first(snippet_lea_esp()), "lea esi, [r12d+eax*8-0x20]");
}

TEST(ReencodeGolden, ShortIncDecBecomeModRmForms) {
  EXPECT_EQ(host_of_first(snippet_short_inc()), "inc eax");
  EXPECT_EQ(host_of_first(snippet_short_dec_esp()), "dec r12d");
  Translated t = translate(snippet_short_inc());
  EXPECT_EQ(t.host.at(0), 0xff);  // not 0x40: that is REX in 64-bit mode
}

// A bare [disp32] must stay a zero-extended 32-bit address (0x67), never the
// sign-extended 64-bit SIB form that would leave the window.
TEST(ReencodeGolden, AbsoluteAddressesStay32Bit) {
  EXPECT_EQ(host_of_first(snippet_abs_high()), "mov ecx, gs:[0x0000000082345678]");
  EXPECT_EQ(host_of_first(snippet_moffs()), "mov eax, gs:[0x00000000C0001000]");
}

TEST(ReencodeGolden, HighByteWithEspBorrowsATempRegister) {
  EXPECT_EQ(host_of_first(snippet_ah_esp()),
            "mov r13, rbp; lea ebp, [r12d+0x04]; mov ah, gs:[ebp]; mov rbp, r13");
  EXPECT_EQ(host_of_first(snippet_ah_store_index()),
            "mov r13, rsi; lea esi, [r12d+ebp*2+0x01]; add gs:[esi], bh; mov rsi, r13");
}

TEST(ReencodeGolden, PushPopExpansions) {
  EXPECT_EQ(host_of_first(snippet_push_reg()), "mov gs:[r12d-0x04], ebx; lea r12d, [r12d-0x04]");
  EXPECT_EQ(host_of_first(snippet_push_esp_mem()),
            "mov r13d, gs:[r12d+0x08]; mov gs:[r12d-0x04], r13d; lea r12d, [r12d-0x04]");
  EXPECT_EQ(host_of_first(snippet_push_imm()),
            "mov dword ptr gs:[r12d-0x04], 0x12345678; lea r12d, [r12d-0x04]");
  EXPECT_EQ(host_of_first(snippet_pop_esp()), "mov r12d, gs:[r12d]");
  EXPECT_EQ(host_of_first(snippet_pop_mem_esp()),
            "mov r13d, gs:[r12d]; mov gs:[r12d+0x08], r13d; lea r12d, [r12d+0x04]");
  EXPECT_NE(host_of_first(snippet_pushfd()).find("pushfq"), std::string::npos);
  EXPECT_NE(host_of_first(snippet_popfd()).find("popfq"), std::string::npos);
}

// A segment base is folded into the displacement as a constant (32-bit
// addressing wraps like the guest's linear address), and the block records
// which segments it used.
// DS/ES/SS/CS bases are constants of the translation; FS and GS (a kernel's
// per-CPU segment, the user's TLS segment) change on every system call, so
// their base is read from CpuState when the instruction runs.
TEST(ReencodeGolden, SegmentBasesAreFoldedOrReadAtRunTime) {
  auto build = [](std::vector<uint8_t> bytes) {
    bytes.push_back(0xcc);
    SpanCodeReader reader(mmu::GuestVirt(kGuestAt), bytes);
    BuildOptions options;
    options.seg_base[int(runtime::Seg::DS)] = 0xfff00000;
    options.seg_base[int(runtime::Seg::FS)] = 0x12340000;
    return build_block(reader, kGuestAt, options);
  };
  DecodedBlock ds = build({0xa1, 0x10, 0, 0, 0});  // mov eax, [0x10]
  ASSERT_EQ(ds.insns.size(), 1u) << ds.stop_reason;
  EXPECT_EQ(disassemble(ds.insns[0].host.span(), 0, true), "mov eax, gs:[0x00000000FFF00010]");
  EXPECT_EQ(ds.seg_used, seg_bit(runtime::Seg::DS));

  DecodedBlock fs = build(std::vector<uint8_t>(snippet_fs_override().begin(), snippet_fs_override().end()));
  ASSERT_EQ(fs.insns.size(), 1u) << fs.stop_reason;
  EXPECT_EQ(fs.insns[0].kind, InsnKind::kSegBaseAtRun);
  EXPECT_EQ(fs.seg_used, 0);
  EXPECT_EQ(host_of_first(snippet_fs_override()), "mov r11, [r15]; mov r11d, [r11+0x6C]; mov eax, gs:[r11d+0x10]");

  DecodedBlock both = build({0x64, 0x8b, 0x44, 0xb3, 0x08});  // mov eax, fs:[ebx+esi*4+8]
  ASSERT_EQ(both.insns.size(), 1u) << both.stop_reason;
  EXPECT_EQ(disassemble(both.insns[0].host.span(), 0, true), "mov eax, gs:[r11d+r10d*1+0x08]");
  DecodedBlock esp = build({0x65, 0x8b, 0x44, 0x24, 0x08});  // mov eax, gs:[esp+8]
  ASSERT_EQ(esp.insns.size(), 1u) << esp.stop_reason;
  EXPECT_EQ(disassemble(esp.insns[0].host.span(), 0, true), "mov eax, gs:[r11d+r12d*1+0x08]");
  EXPECT_EQ(esp.insns[0].seg, uint8_t(runtime::Seg::GS));
  DecodedBlock high = build({0x64, 0xa1, 0xe0, 0xe6, 0xe5, 0xc6});  // mov eax, fs:[0xc6e5e6e0] (Linux per-CPU)
  ASSERT_EQ(high.insns.size(), 1u) << high.stop_reason;
  EXPECT_EQ(disassemble(high.insns[0].host.span(), 0, true), "mov eax, gs:[r11d-0x391A1920]");
}

INTEL(cli, "cli")
INTEL(sti_nop, "sti\n nop")

// cli/sti leave the live guest flags alone without pushfq/popfq; the
// instruction after sti is followed by the flag-free pending-IRQ check.
TEST(ReencodeGolden, CliStiAreFlagFree) {
  const std::string cli = host_of_first(snippet_cli());
  EXPECT_EQ(cli.find("pushf"), std::string::npos) << cli;
  EXPECT_NE(cli.find("mov r14b, [r8+r14*1]"), std::string::npos) << cli;
  Translated t = translate(snippet_sti_nop());
  ASSERT_EQ(t.decoded.insns.size(), 2u);
  EXPECT_TRUE(t.decoded.insns[1].shadow_check);
  const uint32_t begin = t.meta.boundaries.at(1).host_offset, end = t.meta.boundaries.at(2).host_offset;
  const std::string nop = disassemble({t.host.data() + begin, end - begin}, kHostAt + begin, true);
  EXPECT_NE(nop.find("jrcxz"), std::string::npos) << nop;
  EXPECT_EQ(nop.find("pushf"), std::string::npos) << nop;
}

INTEL(privileged, "mov eax, 1\n hlt\n nop")
INTEL(sensitive, "add eax, ebx\n cpuid\n")

TEST(BlockBuilder, EndsBeforePrivilegedAndSensitiveInstructions) {
  Translated t = translate(snippet_privileged());
  EXPECT_EQ(t.decoded.insns.size(), 1u);
  EXPECT_EQ(t.decoded.end, BlockEnd::kStop);
  EXPECT_EQ(t.decoded.end_eip, kGuestAt + 5);
  t = translate(snippet_sensitive());
  EXPECT_EQ(t.decoded.insns.size(), 1u);
  EXPECT_EQ(t.decoded.end_eip, kGuestAt + 2);
}

INTEL(three_then_jcc, "mov eax, [esp+4]\n add eax, ebx\n push eax\n jnz .+0x20\n nop")

// Boundaries: one per guest instruction at the host offset its code starts,
// plus the exits of the final branch; guest_eip_at maps back.
TEST(BlockMetadata, HostOffsetsMapBackToGuestEips) {
  Translated t = translate(snippet_three_then_jcc());
  ASSERT_EQ(t.decoded.insns.size(), 4u);
  EXPECT_EQ(t.decoded.end, BlockEnd::kBranch);
  ASSERT_EQ(t.meta.boundaries.size(), 4u);
  const uint32_t eips[4] = {kGuestAt, kGuestAt + 4, kGuestAt + 6, kGuestAt + 7};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(t.meta.boundaries[i].guest_eip, eips[i]);
    if (i) {
      EXPECT_GT(t.meta.boundaries[i].host_offset, t.meta.boundaries[i - 1].host_offset);
    }
  }
  EXPECT_EQ(t.meta.boundaries[0].host_offset, 0u);
  EXPECT_EQ(t.meta.boundaries[1].host_offset, 7u);  // 65 67 41 8b 44 24 04
  EXPECT_EQ(t.meta.guest_eip_at(t.meta.boundaries[2].host_offset + 1), kGuestAt + 6);
  // jnz: a fall-through exit and a taken exit (the chaining hooks).
  ASSERT_EQ(t.meta.exits.size(), 2u);
  EXPECT_EQ(t.meta.exits[0].target_eip, kGuestAt + 9);
  EXPECT_EQ(t.meta.exits[1].target_eip, kGuestAt + 7 + 0x20);
}

}  // namespace
}  // namespace bt86::translator
