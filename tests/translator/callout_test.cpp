// Callouts, the virtual IF (cli/sti/popf and the pending-interrupt exits) and
// segment bases, end to end through a translator with a test CalloutHandler.
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include <x86intrin.h>

#include "tests/runtime/direct_test_machine.h"
#include "tests/runtime/guest_snippet.h"
#include "translator/translator.h"

namespace bt86::test {
namespace {

using namespace runtime;
using translator::CalloutAction;
using translator::CalloutInsn;
using translator::RunStop;

// Records every callout; steps over the instruction, except: hlt stops,
// cpuid writes EAX/EBX/CF, `int n` jumps to int_target, `mov fs, r16`
// gives FS the base fs_base.
struct RecordingHandler final : translator::CalloutHandler {
  CalloutAction callout(CpuState& cpu, const CalloutInsn& insn) override {
    eips.push_back(cpu.eip);
    mnemonics.push_back(insn.id());
    insns.push_back(insn.insn);
    if_at_call.push_back(cpu.eflags & flags::IF);
    cpu.eip += insn.insn.insn.length;
    switch (insn.id()) {
      case ZYDIS_MNEMONIC_HLT: return CalloutAction::kStop;
      case ZYDIS_MNEMONIC_CPUID:
        cpu.reg(EAX) = 0x1000;
        cpu.reg(EBX) = 0x234;
        cpu.eflags |= flags::CF;
        break;
      case ZYDIS_MNEMONIC_INT: cpu.eip = int_target; break;
      case ZYDIS_MNEMONIC_MOV:
        if (insn.insn.ops[0].reg.value == ZYDIS_REGISTER_FS) {
          cpu.sreg(Seg::FS).selector = uint16_t(cpu.reg(EBX));
          cpu.sreg(Seg::FS).base = fs_base;
        }
        break;
      default: break;
    }
    return CalloutAction::kContinue;
  }
  std::vector<uint32_t> eips;
  std::vector<ZydisMnemonic> mnemonics;
  std::vector<translator::GuestInsn> insns;
  std::vector<bool> if_at_call;
  uint32_t int_target = 0;
  uint32_t fs_base = 0;
};

class Callouts : public ::testing::Test {
 protected:
  void SetUp() override {
    m = &TestMachine::get();
    reader = std::make_unique<translator::SpanCodeReader>(
        mmu::GuestVirt(kCode), std::span<const uint8_t>(m->code(), kRegion));
    auto t = translator::Translator::create({}, *reader);
    ASSERT_TRUE(t.ok());
    tr = std::move(t.value());
    tr->set_callout_handler(&handler);
    cpu = TestMachine::initial_state();
    std::memset(m->data(), 0, kRegion);
  }
  translator::RunResult run(std::span<const uint8_t> code, uint64_t max_blocks = 1000) {
    m->load(code);
    return tr->run(cpu, max_blocks);
  }
  TestMachine* m = nullptr;
  std::unique_ptr<translator::SpanCodeReader> reader;
  std::unique_ptr<translator::Translator> tr;
  RecordingHandler handler;
  CpuState cpu;
};

INTEL(all_sensitive,
      "in al, dx\n in eax, 0x60\n out dx, al\n out 0x80, eax\n rep insb\n rep outsd\n insw\n"
      "mov eax, cr0\n mov cr3, eax\n mov cr4, ebx\n mov edx, cr2\n mov eax, dr7\n mov dr0, ecx\n"
      "lgdt [eax]\n lidt [eax]\n lldt ax\n ltr ax\n sgdt [eax]\n sidt [eax]\n sldt eax\n str eax\n"
      "smsw eax\n lmsw ax\n clts\n lar eax, ecx\n lsl eax, ecx\n verr ax\n verw ax\n"
      "invlpg [eax]\n wbinvd\n invd\n cpuid\n rdtsc\n rdtscp\n rdmsr\n wrmsr\n"
      "int 0x80\n int3\n iretd\n sysenter\n sysexit\n"
      "ljmp 0x10, 0x1234\n lcall 0x10, 0x1234\n retf\n retf 8\n"
      "mov ds, ax\n mov ss, [eax]\n pop ds\n pop es\n pop fs\n pop gs\n pop ss\n"
      "lds eax, [ebx]\n les eax, [ebx]\n lfs eax, [ebx]\n lgs eax, [ebx]\n lss esp, [ebx]\n"
      "ud2\n aam 0\n hlt\n")

TEST_F(Callouts, EverySensitiveInstructionReachesTheHandlerAtItsEip) {
  handler.int_target = 0;  // int 0x80 is stepped over below
  const std::vector<ZydisMnemonic> expected = {
      ZYDIS_MNEMONIC_IN, ZYDIS_MNEMONIC_IN, ZYDIS_MNEMONIC_OUT, ZYDIS_MNEMONIC_OUT, ZYDIS_MNEMONIC_INSB,
      ZYDIS_MNEMONIC_OUTSD, ZYDIS_MNEMONIC_INSW, ZYDIS_MNEMONIC_MOV, ZYDIS_MNEMONIC_MOV, ZYDIS_MNEMONIC_MOV,
      ZYDIS_MNEMONIC_MOV, ZYDIS_MNEMONIC_MOV, ZYDIS_MNEMONIC_MOV, ZYDIS_MNEMONIC_LGDT, ZYDIS_MNEMONIC_LIDT,
      ZYDIS_MNEMONIC_LLDT, ZYDIS_MNEMONIC_LTR, ZYDIS_MNEMONIC_SGDT, ZYDIS_MNEMONIC_SIDT, ZYDIS_MNEMONIC_SLDT,
      ZYDIS_MNEMONIC_STR, ZYDIS_MNEMONIC_SMSW, ZYDIS_MNEMONIC_LMSW, ZYDIS_MNEMONIC_CLTS, ZYDIS_MNEMONIC_LAR,
      ZYDIS_MNEMONIC_LSL, ZYDIS_MNEMONIC_VERR, ZYDIS_MNEMONIC_VERW, ZYDIS_MNEMONIC_INVLPG, ZYDIS_MNEMONIC_WBINVD,
      ZYDIS_MNEMONIC_INVD, ZYDIS_MNEMONIC_CPUID, ZYDIS_MNEMONIC_RDTSC, ZYDIS_MNEMONIC_RDTSCP, ZYDIS_MNEMONIC_RDMSR,
      ZYDIS_MNEMONIC_WRMSR, ZYDIS_MNEMONIC_INT, ZYDIS_MNEMONIC_INT3, ZYDIS_MNEMONIC_IRETD, ZYDIS_MNEMONIC_SYSENTER,
      ZYDIS_MNEMONIC_SYSEXIT, ZYDIS_MNEMONIC_JMP, ZYDIS_MNEMONIC_CALL, ZYDIS_MNEMONIC_RET, ZYDIS_MNEMONIC_RET,
      ZYDIS_MNEMONIC_MOV, ZYDIS_MNEMONIC_MOV, ZYDIS_MNEMONIC_POP, ZYDIS_MNEMONIC_POP, ZYDIS_MNEMONIC_POP,
      ZYDIS_MNEMONIC_POP, ZYDIS_MNEMONIC_POP, ZYDIS_MNEMONIC_LDS, ZYDIS_MNEMONIC_LES, ZYDIS_MNEMONIC_LFS,
      ZYDIS_MNEMONIC_LGS, ZYDIS_MNEMONIC_LSS, ZYDIS_MNEMONIC_UD2, ZYDIS_MNEMONIC_AAM, ZYDIS_MNEMONIC_HLT};
  // The handler's int 0x80 jumps to int_target: make it the next instruction.
  // Decode the snippet to know every EIP.
  std::vector<uint32_t> eips;
  auto code = snippet_all_sensitive();
  translator::GuestInsn g;
  for (size_t off = 0; off < code.size() && translator::decode32(code.subspan(off), uint32_t(kCode + off), g);
       off += g.insn.length) {
    eips.push_back(g.eip);
    if (g.insn.mnemonic == ZYDIS_MNEMONIC_INT) handler.int_target = g.next_eip();
  }
  ASSERT_EQ(eips.size(), expected.size());
  auto r = run(code);
  EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(r.detail, "hlt");
  EXPECT_EQ(handler.mnemonics, expected);
  EXPECT_EQ(handler.eips, eips);
  EXPECT_EQ(cpu.eip, kCode + code.size());
  // Operands arrive decoded: `in eax, 0x60`, `mov cr3, eax`, `ljmp 0x10:0x1234`.
  ASSERT_GE(handler.insns.size(), 42u);
  EXPECT_EQ(handler.insns[1].ops[1].imm.value.u, 0x60u);
  EXPECT_EQ(handler.insns[8].ops[0].reg.value, ZYDIS_REGISTER_CR3);
  EXPECT_EQ(handler.insns[41].ops[0].ptr.segment, 0x10);
  EXPECT_EQ(handler.insns[41].ops[0].ptr.offset, 0x1234u);
  // Counted by instruction.
  EXPECT_EQ(tr->callouts().count[ZYDIS_MNEMONIC_POP], 5u);
  EXPECT_EQ(tr->callouts().count[ZYDIS_MNEMONIC_CPUID], 1u);
  EXPECT_EQ(tr->callouts().total, expected.size());
  EXPECT_NE(tr->callouts().format_counts().find("pop: 5"), std::string::npos) << tr->callouts().format_counts();
}

INTEL(rdtsc_twice,
      "stc\n"                 // CF = 1, ZF = 0 must survive
      "rdtsc\n"
      "mov esi, eax\n"
      "mov edi, edx\n"
      "rdtsc\n"
      "setc bl\n"
      "setz bh\n"
      "hlt\n")

// With set_inline_rdtsc, rdtsc runs in the TC: EDX:EAX = host TSC + the
// owner's offset (read at every execution, so a later change counts), no
// callout, flags and the other registers untouched. The offset makes the low
// half carry into the high one.
TEST_F(Callouts, InlineRdtscIsTheHostTscPlusTheOffsetWithoutACallout) {
  int64_t offset = int64_t(0x12345678'fffffff0ull);
  tr->set_inline_rdtsc(&offset);
  cpu.reg(ECX) = 0xc0ffee;
  const uint64_t before = __rdtsc();
  auto r = run(snippet_rdtsc_twice());
  const uint64_t after = __rdtsc();
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(r.detail, "hlt");
  const uint64_t first = (uint64_t(cpu.reg(EDI)) << 32 | cpu.reg(ESI)) - uint64_t(offset);
  const uint64_t second = (uint64_t(cpu.reg(EDX)) << 32 | cpu.reg(EAX)) - uint64_t(offset);
  EXPECT_LE(before, first);
  EXPECT_LE(first, second);
  EXPECT_LE(second, after);
  EXPECT_EQ(cpu.reg(EBX) & 0xffff, 0x0001u);  // setc bl = 1, setz bh = 0
  EXPECT_EQ(cpu.reg(ECX), 0xc0ffeeu);
  EXPECT_EQ(tr->callouts().count[ZYDIS_MNEMONIC_RDTSC], 0u);
  ASSERT_EQ(handler.mnemonics.size(), 1u);  // hlt only
  // The offset is read at run time: a new one applies without retranslation.
  const uint64_t translated = tr->stats().blocks_translated;
  offset = -int64_t(before);
  cpu = TestMachine::initial_state();
  r = run(snippet_rdtsc_twice());
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  const uint64_t small = uint64_t(cpu.reg(EDX)) << 32 | cpu.reg(EAX);
  EXPECT_LE(small, __rdtsc() - before);
  EXPECT_EQ(tr->stats().blocks_translated, translated) << tr->format_stats();
  // Without it (the default), rdtsc is a callout.
  tr->set_inline_rdtsc(nullptr);
  cpu = TestMachine::initial_state();
  run(snippet_rdtsc_twice());
  EXPECT_EQ(tr->callouts().count[ZYDIS_MNEMONIC_RDTSC], 2u);
}

INTEL(cpuid_then_use,
      "mov esi, 7\n"
      "cpuid\n"
      "setc cl\n"
      "add esi, eax\n"
      "add esi, ebx\n"
      "int 0x80\n"
      "mov edi, 1\n"   // skipped: the handler jumps over it
      "1: mov edx, esi\n"
      "hlt\n")

TEST_F(Callouts, RegistersFlagsAndEipSetByTheHandlerAreSeenByTranslatedCode) {
  auto code = snippet_cpuid_then_use();
  handler.int_target = kCode + uint32_t(code.size()) - 1 - 2;  // "1:" = mov edx, esi (2 bytes) before hlt
  cpu.reg(EDI) = 0;
  auto r = run(code);
  EXPECT_EQ(r.stop, RunStop::kCallout);
  EXPECT_EQ(cpu.reg(ESI), 0x1000u + 0x234u + 7u);
  EXPECT_EQ(cpu.reg(EDX), 0x123bu);
  EXPECT_EQ(cpu.reg(ECX) & 0xff, 1u);  // CF set by the handler
  EXPECT_EQ(cpu.reg(EDI), 0u);
}

TEST_F(Callouts, WithoutAHandlerTheyStopBeforeTheInstruction) {
  tr->set_callout_handler(nullptr);
  auto r = run(snippet_cpuid_then_use());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(cpu.eip, kCode + 5);
  EXPECT_TRUE(handler.mnemonics.empty());
}

INTEL(sti_shadow,
      "sti\n"
      "mov eax, 1\n"
      "mov ebx, 2\n"
      "hlt\n")
INTEL(sti_hlt, "sti\n hlt\n")
INTEL(popf_if,
      "push 0x202\n"
      "popfd\n"
      "mov eax, 1\n"
      "hlt\n")
INTEL(cli_pushf,
      "cli\n"
      "pushfd\n"
      "pop eax\n"
      "sti\n"
      "pushfw\n"
      "pop bx\n"
      "hlt\n")

TEST_F(Callouts, StiWithAPendingInterruptLeavesAfterTheShadowInstruction) {
  cpu.eflags = flags::Fixed1;
  tr->set_irq_pending(true);
  auto r = run(snippet_sti_shadow());
  EXPECT_EQ(r.stop, RunStop::kIrqWindow);
  EXPECT_EQ(cpu.eip, kCode + 1 + 5);  // after `mov eax, 1`
  EXPECT_EQ(cpu.reg(EAX), 1u);
  EXPECT_TRUE(cpu.eflags & flags::IF);
  // Nothing pending: straight through to hlt.
  cpu = TestMachine::initial_state();
  cpu.eflags = flags::Fixed1;
  tr->set_irq_pending(false);
  r = run(snippet_sti_shadow());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  EXPECT_EQ(cpu.reg(EBX), 2u);
}

TEST_F(Callouts, StiHltReachesHltWithIfSet) {
  cpu.eflags = flags::Fixed1;
  tr->set_irq_pending(true);
  auto r = run(snippet_sti_hlt());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  ASSERT_EQ(handler.mnemonics.size(), 1u);
  EXPECT_EQ(handler.mnemonics[0], ZYDIS_MNEMONIC_HLT);
  EXPECT_TRUE(handler.if_at_call[0]);
}

TEST_F(Callouts, PopfSettingIfWithAPendingInterruptLeavesRightAfter) {
  cpu.eflags = flags::Fixed1;
  tr->set_irq_pending(true);
  auto r = run(snippet_popf_if());
  EXPECT_EQ(r.stop, RunStop::kIrqWindow);
  EXPECT_EQ(cpu.eip, kCode + 5 + 1);  // after push imm32 (5 bytes) and popfd
  EXPECT_TRUE(cpu.eflags & flags::IF);
}

TEST_F(Callouts, CliAndStiChangeOnlyTheVirtualIf) {
  cpu.eflags = flags::Fixed1 | flags::IF | flags::CF;
  auto r = run(snippet_cli_pushf());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  EXPECT_EQ(cpu.reg(EAX), flags::Fixed1 | flags::CF);
  EXPECT_EQ(cpu.reg(EBX) & 0xffff, flags::Fixed1 | flags::IF | flags::CF);
  EXPECT_TRUE(cpu.eflags & flags::IF);
}

INTEL(fs_reads,
      "mov eax, fs:[4]\n"
      "mov fs, bx\n"
      "mov ecx, fs:[4]\n"
      "mov dword ptr fs:[8], 0x55\n"
      "hlt\n")

// FS with a non-zero base (Linux's per-CPU data, swapped for the user's on
// every return to user mode): read from CpuState when the instruction runs,
// so a base change needs no retranslation.
TEST_F(Callouts, FsBaseIsReadWhenTheInstructionRuns) {
  uint32_t* data = reinterpret_cast<uint32_t*>(m->data());
  data[1] = 0x11111111;      // kData + 4
  data[0x101] = 0x22222222;  // kData + 0x404
  cpu.sreg(Seg::FS).base = kData;
  cpu.reg(EBX) = 0x33;
  handler.fs_base = kData + 0x400;
  auto r = run(snippet_fs_reads());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  EXPECT_EQ(cpu.reg(EAX), 0x11111111u);
  EXPECT_EQ(cpu.reg(ECX), 0x22222222u);
  EXPECT_EQ(data[0x102], 0x55u);
  EXPECT_EQ(data[2], 0u);
  EXPECT_EQ(cpu.sreg(Seg::FS).selector, 0x33);
  // Run again from the start with the old base: the same translation sees it.
  const uint64_t translated = tr->stats().blocks_translated, flushes = tr->stats().invalidations;
  cpu.eip = kCode;
  cpu.sreg(Seg::FS).base = kData;
  data[1] = 0x44444444;
  r = tr->run(cpu, 1000);
  EXPECT_EQ(cpu.reg(EAX), 0x44444444u);
  EXPECT_EQ(tr->stats().invalidations, flushes);
  EXPECT_EQ(tr->stats().blocks_translated, translated) << tr->format_stats();
}

INTEL(string_ds_es,
      "mov ecx, 4\n"
      "rep movsd\n"
      "mov eax, [esi]\n"
      "hlt\n")

// Non-flat DS/ES: explicit operands and string instructions both see the bases.
TEST_F(Callouts, NonZeroDsAndEsBasesApplyToStringInstructions) {
  uint32_t* data = reinterpret_cast<uint32_t*>(m->data());
  for (uint32_t i = 0; i < 8; ++i) data[i] = 0xa0 + i;
  cpu.sreg(Seg::DS).base = kData;
  cpu.sreg(Seg::ES).base = kData + 0x100;
  cpu.reg(ESI) = 0;
  cpu.reg(EDI) = 0;
  auto r = run(snippet_string_ds_es());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(data[0x40 + i], 0xa0 + i);
  EXPECT_EQ(cpu.reg(ESI), 16u);
  EXPECT_EQ(cpu.reg(EDI), 16u);
  EXPECT_EQ(cpu.reg(EAX), 0xa4u);
}

INTEL(rep_movsd_fault,
      "rep movsd\n"
      "hlt\n")

// A fault in the middle of a rep movsd with non-zero DS/ES bases: EIP at the
// instruction, ECX/ESI/EDI with the progress made and without the bases.
TEST_F(Callouts, StringFaultWithSegmentBasesKeepsGuestEsiEdi) {
  cpu.sreg(Seg::DS).base = kData;
  cpu.sreg(Seg::ES).base = kData + 0x100;
  cpu.reg(ESI) = 0;
  cpu.reg(EDI) = kRegion - 0x100 - 8;  // two dwords fit, the third is past the data region
  cpu.reg(ECX) = 4;
  auto r = run(snippet_rep_movsd_fault());
  ASSERT_EQ(r.stop, RunStop::kGuestFault) << r.detail;
  EXPECT_EQ(r.fault.vector, 14);
  EXPECT_EQ(r.fault.linear_address, kData + kRegion);
  EXPECT_EQ(cpu.eip, kCode);
  EXPECT_EQ(cpu.reg(ECX), 2u);
  EXPECT_EQ(cpu.reg(ESI), 8u);
  EXPECT_EQ(cpu.reg(EDI), kRegion - 0x100);
}

INTEL(sregs,
      "push ds\n"
      "push fs\n"
      "pushw gs\n"
      "mov eax, ss\n"
      "mov [ebx], es\n"
      "hlt\n")

TEST_F(Callouts, SegmentRegistersArePushedAndReadFromTheGuestSelectors) {
  cpu.sreg(Seg::DS).selector = 0x7b;
  cpu.sreg(Seg::FS).selector = 0xd8;
  cpu.sreg(Seg::GS).selector = 0xe0;
  cpu.sreg(Seg::SS).selector = 0x68;
  cpu.sreg(Seg::ES).selector = 0x7b;
  cpu.reg(EBX) = kData + 0x10;
  cpu.reg(EAX) = 0xffffffff;
  uint32_t* stack = reinterpret_cast<uint32_t*>(m->memory->host(mmu::GuestPhys(kStackPa + kRegion - 16), 16));
  stack[3] = stack[2] = 0xdeadbeef;
  auto r = run(snippet_sregs());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  EXPECT_EQ(cpu.reg(ESP), kStackTop - 10);
  EXPECT_EQ(stack[3], 0xdead007bu);  // a 32-bit push of a selector writes 16 bits
  EXPECT_EQ(stack[2], 0xdead00d8u);
  uint16_t gs;
  std::memcpy(&gs, reinterpret_cast<uint8_t*>(stack) + 6, 2);
  EXPECT_EQ(gs, 0xe0);
  EXPECT_EQ(cpu.reg(EAX), 0x68u);
  uint16_t es;
  std::memcpy(&es, m->data() + 0x10, 2);
  EXPECT_EQ(es, 0x7b);
}

INTEL(into_bound,
      "mov al, 0x7f\n"
      "add al, 1\n"       // OF = 1
      "into\n"
      "add al, 1\n"       // OF = 0
      "into\n"
      "bound ecx, [ebx]\n"
      "bound edx, [ebx]\n"
      "mov esi, 1\n"
      "hlt\n")

// into and bound: the callout happens only when they raise #OF / #BR.
TEST_F(Callouts, IntoAndBoundCallOutOnlyWhenTheyFault) {
  uint32_t* data = reinterpret_cast<uint32_t*>(m->data());
  data[0] = uint32_t(-3);
  data[1] = 10;
  cpu.reg(EBX) = kData;
  cpu.reg(ECX) = 10;  // in range (inclusive)
  cpu.reg(EDX) = 11;  // above
  auto r = run(snippet_into_bound());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  const std::vector<ZydisMnemonic> expected = {ZYDIS_MNEMONIC_INTO, ZYDIS_MNEMONIC_BOUND, ZYDIS_MNEMONIC_HLT};
  EXPECT_EQ(handler.mnemonics, expected);
  ASSERT_EQ(handler.eips.size(), 3u);
  EXPECT_EQ(handler.eips[0], kCode + 4);
  EXPECT_EQ(handler.eips[1], kCode + 4 + 1 + 2 + 1 + 2);
  EXPECT_EQ(cpu.reg(ESI), 1u);
}

INTEL(pop_sp, "pop sp\n hlt\n")
INTEL(movzx_esp_ah, "movzx esp, ah\n mov ebx, esp\n movsx sp, bh\n hlt\n")

TEST_F(Callouts, PopSpKeepsTheUpperHalfOfTheIncrementedEsp) {
  cpu.reg(ESP) = kStackTop - 4;
  uint16_t v = 0x1234;
  std::memcpy(m->memory->host(mmu::GuestPhys(kStackPa + kRegion - 4), 2), &v, 2);
  auto r = run(snippet_pop_sp());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  EXPECT_EQ(cpu.reg(ESP), ((kStackTop - 2) & 0xffff0000u) | 0x1234u);
}

TEST_F(Callouts, HighByteRegistersNextToEspBorrowATemp) {
  cpu.reg(EAX) = 0x1234;
  cpu.reg(ESP) = 0xabcd0000;
  auto r = run(snippet_movzx_esp_ah());
  EXPECT_EQ(r.stop, RunStop::kCallout);
  EXPECT_EQ(cpu.reg(EBX), 0x12u);
  EXPECT_EQ(cpu.reg(ESP), 0u);  // movsx sp, bh: BH = 0 (EBX = 0x12), upper half 0 from movzx
  EXPECT_EQ(cpu.reg(EAX), 0x1234u);
}

// 16-bit near branches truncate EIP to 16 bits and push/pop 16-bit return
// addresses; they run from a reader at 0x1000 (the stack is the test machine's).
TEST_F(Callouts, SixteenBitBranches) {
  static const uint8_t code[] = {
      0x66, 0xe8, 0x05, 0x00,        // 1000 call16 1009
      0x66, 0xeb, 0x0a,              // 1004 jmp16 1011
      0xcc, 0xcc,                    // 1007
      0xb8, 0x78, 0x56, 0x34, 0x12,  // 1009 mov eax, 0x12345678
      0x66, 0xc3,                    // 100e ret16 -> 1004
      0xcc,                          // 1010
      0x66, 0xb8, 0x20, 0x10,        // 1011 mov ax, 0x1020
      0x66, 0xff, 0xe0,              // 1015 jmp ax -> 1020
      0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc,  // 1018
      0x31, 0xdb,                    // 1020 xor ebx, ebx (ZF = 1)
      0x66, 0x0f, 0x84, 0x04, 0x00,  // 1022 jz16 102b
      0xcc, 0xcc, 0xcc, 0xcc,        // 1027
      0xf4,                          // 102b hlt
  };
  translator::SpanCodeReader low(mmu::GuestVirt(0x1000), code);
  auto t = translator::Translator::create({}, low);
  ASSERT_TRUE(t.ok());
  (*t)->set_callout_handler(&handler);
  cpu.eip = 0x1000;
  auto r = (*t)->run(cpu, 100);
  EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(cpu.eip, 0x102cu);
  EXPECT_EQ(cpu.reg(EAX), 0x12341020u);
  EXPECT_EQ(cpu.reg(ESP), kStackTop);
}

// What one callout round trip costs (translated code -> C++ handler -> the
// dispatcher -> translated code), printed for the README; asserts only that
// all of them happened.
INTEL(callout_loop, "1: cpuid\n dec esi\n jnz 1b\n hlt\n")

struct CountingHandler final : translator::CalloutHandler {
  CalloutAction callout(CpuState& cpu, const CalloutInsn& insn) override {
    ++calls;
    cpu.eip += insn.insn.insn.length;
    return insn.id() == ZYDIS_MNEMONIC_HLT ? CalloutAction::kStop : CalloutAction::kContinue;
  }
  uint64_t calls = 0;
};

TEST_F(Callouts, RoundTripCost) {
  CountingHandler counting;
  tr->set_callout_handler(&counting);
  constexpr uint32_t kN = 100000;
  cpu.reg(ESI) = kN;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run(snippet_callout_loop(), 10 * kN);
  const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(counting.calls, kN + 1);
  std::printf("callout round trip: %.0f ns (%u callouts, each followed by a 2-instruction block)\n", ns / kN, kN);
}

// CPL 3 (TranslatorConfig::user_mode): pushf, popf, cli and sti depend on
// CPL and IOPL, so they reach the handler instead of the inline virtual IF.
INTEL(flag_insns, "mov eax, 1\n cli\n sti\n pushfd\n popfd\n pushfw\n popfw\n hlt\n")

TEST_F(Callouts, UserModeCallsOutForFlagInstructions) {
  translator::TranslatorConfig config;
  config.user_mode = true;
  auto t = translator::Translator::create(config, *reader);
  ASSERT_TRUE(t.ok());
  tr = std::move(t.value());
  tr->set_callout_handler(&handler);
  auto r = run(snippet_flag_insns());
  EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
  const std::vector<ZydisMnemonic> expected = {ZYDIS_MNEMONIC_CLI,   ZYDIS_MNEMONIC_STI,  ZYDIS_MNEMONIC_PUSHFD,
                                               ZYDIS_MNEMONIC_POPFD, ZYDIS_MNEMONIC_PUSHF, ZYDIS_MNEMONIC_POPF,
                                               ZYDIS_MNEMONIC_HLT};
  EXPECT_EQ(handler.mnemonics, expected);
  EXPECT_EQ(cpu.reg(EAX), 1u);
}

TEST_F(Callouts, KernelModeRunsFlagInstructionsInline) {
  auto r = run(snippet_flag_insns());
  EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(handler.mnemonics, std::vector<ZydisMnemonic>{ZYDIS_MNEMONIC_HLT});
}

// Code whose page the test can make unreadable or move to another frame, as
// a guest's page tables would (CodeView in the machine).
class RemappableReader final : public translator::GuestCodeReader {
 public:
  explicit RemappableReader(const translator::GuestCodeReader& inner) : m_inner(&inner) {}
  size_t read(mmu::GuestVirt va, std::span<uint8_t> out) const override {
    return readable ? m_inner->read(va, out) : 0;
  }
  uint32_t phys_page(mmu::GuestVirt va) const override { return uint32_t(va.value >> 12) + frame_offset; }
  bool readable = true;
  uint32_t frame_offset = 0;

 private:
  const translator::GuestCodeReader* m_inner;
};

INTEL(remap_loop, "1: inc ebx\n dec esi\n jnz 1b\n hlt\n")

class RemapTest : public Callouts {
 protected:
  void SetUp() override {
    Callouts::SetUp();
    remap = std::make_unique<RemappableReader>(*reader);
    auto t = translator::Translator::create({}, *remap);
    ASSERT_TRUE(t.ok());
    tr = std::move(t.value());
    tr->set_callout_handler(&handler);
  }
  std::unique_ptr<RemappableReader> remap;
};

// Code that cannot be read (a page not present yet) is answered, not
// remembered: once the guest makes it present, it runs.
TEST_F(RemapTest, UnreadableCodeIsNotCached) {
  remap->readable = false;
  cpu.reg(ESI) = 3;
  auto r = run(snippet_remap_loop());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(r.detail, translator::kCodeNotReadable);
  remap->readable = true;
  cpu.reg(ESI) = 3;
  r = tr->run(cpu, 1000);
  EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(r.detail, "hlt");
  EXPECT_EQ(cpu.reg(EBX), 3u);
}

// A detached page's blocks come back when the same frame is mapped at the
// same address again, and are translated anew when another frame is.
TEST_F(RemapTest, DetachedBlocksComeBackForTheSameFrame) {
  cpu.reg(ESI) = 2;
  auto r = run(snippet_remap_loop());
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  const uint64_t translated = tr->stats().blocks_translated;
  const translator::Block* before = tr->block_at(kCode, cpu);
  ASSERT_NE(before, nullptr);

  tr->detach_code_page(kCode >> 12);
  EXPECT_GT(tr->stats().blocks_detached, 0u);
  cpu.eip = kCode;
  cpu.reg(ESI) = 2;
  r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(tr->stats().blocks_translated, translated);  // nothing translated again
  EXPECT_GT(tr->stats().blocks_reattached, 0u);
  EXPECT_EQ(tr->block_at(kCode, cpu), before);

  // Another frame at the same address: new translations.
  tr->detach_code_page(kCode >> 12);
  remap->frame_offset = 0x100;
  cpu.eip = kCode;
  cpu.reg(ESI) = 2;
  r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_GT(tr->stats().blocks_translated, translated);
  EXPECT_NE(tr->block_at(kCode, cpu), before);

  // A write to the old frame drops its detached blocks for good: mapping it
  // back translates again.
  tr->detach_code_page((kCode >> 12) + 0x100);
  tr->invalidate_code_page(kCode >> 12);
  remap->frame_offset = 0;
  const uint64_t translated2 = tr->stats().blocks_translated;
  cpu.eip = kCode;
  cpu.reg(ESI) = 2;
  r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_GT(tr->stats().blocks_translated, translated2);
  EXPECT_EQ(cpu.reg(EBX), 8u);  // the loop ran twice in each of the four runs
}

}  // namespace
}  // namespace bt86::test
