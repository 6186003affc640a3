// The dispatcher end to end: guest code in the test machine's code page run
// through the translation cache, with expected registers checked by hand.
#include <gtest/gtest.h>

#include "tests/runtime/direct_test_machine.h"
#include "tests/runtime/guest_snippet.h"
#include "translator/block_builder.h"
#include "translator/reencoder.h"
#include "translator/translator.h"

namespace bt86::test {
namespace {

using namespace runtime;
using translator::RunStop;

class TranslatorRun : public ::testing::Test {
 protected:
  static translator::Translator& tr() {
    static translator::SpanCodeReader* reader = new translator::SpanCodeReader(
        mmu::GuestVirt(kCode), std::span<const uint8_t>(TestMachine::get().code(), kRegion));
    static auto* t = [] {
      auto r = translator::Translator::create({}, *reader);
      if (!r) std::abort();
      return r.value().release();
    }();
    return *t;
  }
  void SetUp() override {
    m = &TestMachine::get();
    cpu = TestMachine::initial_state();
    std::memset(m->data(), 0, kRegion);
    tr().flush();
  }
  translator::RunResult run(std::span<const uint8_t> code, uint64_t max_blocks = 1000) {
    m->load(code);
    return tr().run(cpu, max_blocks);
  }
  TestMachine* m = nullptr;
  CpuState cpu;
};

INTEL(loop_sum,
      "xor eax, eax\n"
      "mov ecx, 10\n"
      "1: add eax, ecx\n"
      "dec ecx\n"
      "jnz 1b\n"
      "int3\n")

TEST_F(TranslatorRun, ConditionalLoopRunsToInt3) {
  auto r = run(snippet_loop_sum());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 55u);
  EXPECT_EQ(cpu.reg(ECX), 0u);
  EXPECT_EQ(cpu.eip, kCode + snippet_loop_sum().size() - 1);
  EXPECT_NE(r.detail.find("int3"), std::string::npos) << r.detail;
  // The loop's back edge is chained after its first trip: few dispatcher entries.
  EXPECT_GE(r.blocks_run, 1u);
  EXPECT_LT(r.blocks_run, 10u);
}

INTEL(call_ret,
      "mov eax, 1\n"
      "call 2f\n"
      "add eax, 100\n"
      "int3\n"
      "2: push ebx\n"
      "mov ebx, [esp+4]\n"   // the return address
      "add eax, eax\n"
      "pop ebx\n"
      "ret\n")

TEST_F(TranslatorRun, CallAndRetThroughTheGuestStack) {
  cpu.reg(EBX) = 0x1234;
  auto r = run(snippet_call_ret());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 102u);
  EXPECT_EQ(cpu.reg(EBX), 0x1234u);
  EXPECT_EQ(cpu.reg(ESP), kStackTop);
  EXPECT_EQ(cpu.eip, kCode + 13);  // the int3
}

INTEL(popf_sets_flags,
      "push 0x8d5\n"       // all arithmetic flags, IF clear
      "popfd\n"
      "pushfd\n"
      "pop eax\n"
      "push 0x3202\n"      // IF and IOPL 3, arithmetic flags clear
      "popfd\n"
      "pushfd\n"
      "pop ebx\n"
      "int3\n")

// At CPL 0 popfd changes the virtual IF and IOPL (the host's never change),
// and pushfd shows them.
TEST_F(TranslatorRun, PopfdChangesTheVirtualIfAndIopl) {
  cpu.eflags = flags::Fixed1 | flags::IF;
  auto r = run(snippet_popf_sets_flags());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(cpu.reg(EAX), flags::Arith | flags::Fixed1);
  EXPECT_EQ(cpu.reg(EBX), flags::Fixed1 | flags::IF | flags::IOPL);
  EXPECT_EQ(cpu.eflags, flags::Fixed1 | flags::IF | flags::IOPL);
}

INTEL(hlt_stop, "mov eax, 7\n hlt\n")

TEST_F(TranslatorRun, PrivilegedInstructionStopsBeforeItself) {
  auto r = run(snippet_hlt_stop());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(cpu.eip, kCode + 5);
  EXPECT_EQ(cpu.reg(EAX), 7u);
  // Again: the block starting at hlt translates to nothing and answers at once.
  r = tr().run(cpu, 10);
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(r.blocks_run, 0u);
  EXPECT_EQ(cpu.eip, kCode + 5);
}

INTEL(spin, "1: jmp 1b\n")

// max_blocks counts entries from the dispatcher: without chaining that is
// every block (with chaining an endless loop needs request_exit()).
TEST_F(TranslatorRun, MaxBlocksStopsAnEndlessLoopWithoutChaining) {
  m->load(snippet_spin());
  translator::SpanCodeReader reader(mmu::GuestVirt(kCode),
                                    std::span<const uint8_t>(m->code(), kRegion));
  translator::TranslatorConfig config;
  config.chain = false;
  auto t = translator::Translator::create(config, reader);
  ASSERT_TRUE(t.ok());
  auto r = (*t)->run(cpu, 500);
  EXPECT_EQ(r.stop, RunStop::kMaxBlocks);
  EXPECT_EQ(r.blocks_run, 500u);
  EXPECT_EQ(cpu.eip, kCode);
}

TEST_F(TranslatorRun, NonZeroCodeSegmentBaseIsRefused) {
  cpu.sreg(Seg::CS).base = 0x1000;
  auto r = run(snippet_hlt_stop());
  EXPECT_EQ(r.stop, RunStop::kUnsupportedState);
}

INTEL(fpu_sse,
      "fld1\n"
      "fadd st(0), st(0)\n"
      "fstp dword ptr [ebx]\n"
      "movss xmm0, [ebx]\n"
      "addss xmm0, xmm0\n"
      "movss [ebx+4], xmm0\n"
      "int3\n")

TEST_F(TranslatorRun, X87AndSseStateIsTheGuests) {
  cpu.reg(EBX) = kData;
  auto r = run(snippet_fpu_sse());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation);
  float f[2];
  std::memcpy(f, m->data(), sizeof f);
  EXPECT_EQ(f[0], 2.0f);
  EXPECT_EQ(f[1], 4.0f);
  EXPECT_EQ(cpu.fpu.fcw(), 0x037f);
}

// The guest changes its x87 control word and MXCSR and leaves values on its
// x87 stack; the host gets back what the SysV ABI makes callee-saved (its
// own control word and MXCSR) and an empty x87 stack, and the guest's state
// is kept in CpuState.
INTEL(fpu_guest_modes,
      "fld1\n"
      "fld1\n"
      "fldcw word ptr [ebx]\n"
      "ldmxcsr dword ptr [ebx+4]\n"
      "int3\n")

TEST_F(TranslatorRun, HostFpuControlStateSurvivesAndTheGuestsIsKept) {
  const uint16_t guest_cw = 0x0c7f;        // round toward zero, all masked
  const uint32_t guest_mxcsr = 0x7f80;     // round down (RC = 01), all masked
  std::memcpy(m->data(), &guest_cw, 2);
  std::memcpy(m->data() + 4, &guest_mxcsr, 4);
  cpu.reg(EBX) = kData;
  uint16_t host_cw = 0x027f, cw_before = 0, cw_after = 0, sw_after = 0;  // 53-bit precision
  uint32_t host_mxcsr = 0x9fc0, mxcsr_before = 0, mxcsr_after = 0;      // FTZ, DAZ
  asm volatile("fnstcw %0\n stmxcsr %1" : "=m"(cw_before), "=m"(mxcsr_before));
  asm volatile("fldcw %0\n ldmxcsr %1" ::"m"(host_cw), "m"(host_mxcsr));
  auto r = run(snippet_fpu_guest_modes());
  asm volatile("fnstcw %0\n stmxcsr %1\n fnstsw %2" : "=m"(cw_after), "=m"(mxcsr_after), "=m"(sw_after));
  asm volatile("fldcw %0\n ldmxcsr %1" ::"m"(cw_before), "m"(mxcsr_before));
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(cw_after, host_cw);
  EXPECT_EQ(mxcsr_after & 0xffc0, host_mxcsr & 0xffc0) << "MXCSR control bits";
  EXPECT_EQ((sw_after >> 11) & 7, 0) << "x87 stack top: the host's stack must be empty";
  EXPECT_EQ(cpu.fpu.fcw(), guest_cw);
  uint32_t kept_mxcsr;
  std::memcpy(&kept_mxcsr, &cpu.fpu.fxsave[24], 4);
  EXPECT_EQ(kept_mxcsr, guest_mxcsr);
  EXPECT_EQ((cpu.fpu.fxsave[3] >> 3) & 7, 6) << "guest x87 TOP after two loads";
}

// The guest's x87/SSE state is loaded lazily (README "Lazy FPU state"):
// code without such instructions neither loads nor saves it, so CpuState
// keeps it byte for byte even when the host's registers hold other values.
TEST_F(TranslatorRun, CodeWithoutFpuInstructionsLeavesTheFpuStateAlone) {
  cpu.fpu.fxsave.fill(0x5a);  // not a state fxrstor would accept as is
  const auto before = cpu.fpu;
  const uint64_t loads = tr().context().fpu_loads;
  auto r = run(snippet_loop_sum());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(cpu.reg(EAX), 55u);
  EXPECT_EQ(tr().context().fpu_loads, loads);
  EXPECT_EQ(std::memcmp(&cpu.fpu, &before, sizeof before), 0);
}

// Guest XMM and x87 values survive runs that do not touch them, with the
// host's registers changed in between: each run that reaches an SSE
// instruction loads the guest's state from CpuState, once per run.
INTEL(sse_put,
      "movd xmm5, eax\n"
      "fild dword ptr [ebx]\n"
      "int3\n")
INTEL(sse_get,
      "jmp 1f\n"
      "1: movd ecx, xmm5\n"
      "movd edx, xmm5\n"
      "fistp dword ptr [ebx+4]\n"
      "int3\n")

TEST_F(TranslatorRun, GuestFpuStateSurvivesRunsThatDoNotUseIt) {
  const uint32_t seven = 7;
  std::memcpy(m->data(), &seven, 4);
  cpu.reg(EBX) = kData;
  cpu.reg(EAX) = 0x12345678;
  const uint64_t loads = tr().context().fpu_loads;
  EXPECT_EQ(run(snippet_sse_put()).stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(tr().context().fpu_loads, loads + 1);
  EXPECT_EQ((cpu.fpu.fxsave[3] >> 3) & 7, 7) << "x87 TOP after one load";
  tr().flush();
  cpu.eip = kCode;
  EXPECT_EQ(run(snippet_loop_sum()).stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(tr().context().fpu_loads, loads + 1) << "no x87/SSE instruction: no load";
  asm volatile("pcmpeqd %%xmm5, %%xmm5\n fninit" ::: "xmm5");  // the host's own values
  tr().flush();
  cpu.eip = kCode;
  EXPECT_EQ(run(snippet_sse_get()).stop, RunStop::kNeedsInterpretation);
  EXPECT_EQ(tr().context().fpu_loads, loads + 2) << "one load for two blocks";
  EXPECT_EQ(cpu.reg(ECX), 0x12345678u);
  EXPECT_EQ(cpu.reg(EDX), 0x12345678u);
  uint32_t out;
  std::memcpy(&out, m->data() + 4, 4);
  EXPECT_EQ(out, 7u);
}

TEST(UsesFpuState, ClassifiesByRegisterFileAndExtension) {
  struct Case {
    std::vector<uint8_t> bytes;
    bool uses;
  };
  const Case cases[] = {
      {{0x01, 0xc8}, false},                    // add eax, ecx
      {{0x0f, 0xa2}, false},                    // cpuid
      {{0xf3, 0xab}, false},                    // rep stosd
      {{0xd9, 0xe8}, true},                     // fld1
      {{0x9b}, true},                           // fwait
      {{0x0f, 0x77}, true},                     // emms
      {{0x0f, 0xae, 0x03}, true},               // fxsave [ebx]
      {{0x0f, 0xae, 0x13}, true},               // ldmxcsr [ebx]
      {{0x0f, 0xae, 0x23}, true},               // xsave [ebx]
      {{0x66, 0x0f, 0xef, 0xc0}, true},         // pxor xmm0, xmm0
      {{0xc5, 0xf8, 0x77}, true},               // vzeroupper
      {{0x66, 0x0f, 0x3a, 0x44, 0xc1, 0x00}, true},  // pclmulqdq xmm0, xmm1, 0
  };
  for (const Case& c : cases) {
    translator::GuestInsn g;
    ASSERT_TRUE(translator::decode32(c.bytes, 0x1000, g)) << c.bytes.size();
    EXPECT_EQ(translator::uses_fpu_state(g), c.uses) << translator::format_insn(g);
  }
}

// A block is flushed with the whole TC when the TC is full, and counted.
INTEL(gs_after_plain,
      "add ebx, 1\n"                       // a block that uses no segment base
      "jmp 2f\n"
      "nop\n"
      "2: push dword ptr gs:[0x100]\n"     // folds the GS base into the translation
      "pop eax\n"
      "int3\n")

// A guest process's TLS segment has its own base, so user code sees GS
// change at every switch to another process. Only the blocks that folded
// the old base are translated again; the rest stay (they used to be
// flushed with them, every block of the translator).
TEST_F(TranslatorRun, ANewSegmentBaseDropsOnlyTheBlocksThatFoldedIt) {
  uint32_t* data = reinterpret_cast<uint32_t*>(m->data());
  data[0x100 / 4] = 0x11111111;
  data[0x300 / 4] = 0x22222222;
  cpu.sreg(Seg::GS).base = kData;
  auto r = run(snippet_gs_after_plain());
  ASSERT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 0x11111111u);
  EXPECT_EQ(cpu.reg(EBX), 1u);
  const translator::TranslatorStats before = tr().stats();

  cpu.sreg(Seg::GS).base = kData + 0x200;
  cpu.eip = kCode;
  r = tr().run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 0x22222222u);  // the new base, not the folded old one
  EXPECT_EQ(cpu.reg(EBX), 2u);
  const translator::TranslatorStats& after = tr().stats();
  EXPECT_EQ(after.blocks_translated - before.blocks_translated, 1u);  // the GS block only
  EXPECT_EQ(after.segment_changes - before.segment_changes, 1u);
  EXPECT_EQ(after.segment_blocks_dropped - before.segment_blocks_dropped, 1u);
  EXPECT_EQ(after.invalidations, before.invalidations);  // no flush

  // The same base again: nothing dropped, nothing translated.
  cpu.eip = kCode;
  r = tr().run(cpu, 1000);
  EXPECT_EQ(cpu.reg(EAX), 0x22222222u);
  EXPECT_EQ(tr().stats().blocks_translated, after.blocks_translated);
  EXPECT_EQ(tr().stats().segment_changes, after.segment_changes);
}

TEST(TranslationCache, FlushesWholeWhenFull) {
  static std::vector<uint8_t> code(4096 * 4, 0x90);  // nops: 64-insn blocks
  code.back() = 0xcc;
  translator::SpanCodeReader reader(mmu::GuestVirt(0x10000), code);
  translator::TranslatorConfig config;
  config.tc_size = 12288;  // stub page, poll page, 4 KiB of blocks
  auto t = translator::Translator::create(config, reader);
  ASSERT_TRUE(t.ok());
  CpuState c;
  for (uint32_t eip = 0x10000; eip < 0x10000 + code.size() - 64; eip += 64)
    ASSERT_NE((*t)->block_at(eip, c), nullptr);
  EXPECT_GT((*t)->stats().tc_flushes, 0u);
  EXPECT_LE((*t)->cache().used(), (*t)->cache().capacity());
}

}  // namespace
}  // namespace bt86::test
