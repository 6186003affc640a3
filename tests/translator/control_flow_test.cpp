// The translator's control flow and its coupling to the host: block chaining,
// exit requests (another thread, the host tick), the in-TC indirect lookup,
// precise guest faults and self-modifying code. Guest code runs in the test
// machine (tests/runtime/direct_test_machine.h) through its own Translator.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "tests/runtime/direct_test_machine.h"
#include "tests/runtime/guest_snippet.h"
#include "translator/translator.h"

namespace bt86::test {
namespace {

#define INTEL(name, code) GUEST_SNIPPET(name, ".intel_syntax noprefix\n" code "\n.att_syntax prefix\n")

using namespace runtime;
using translator::RunResult;
using translator::RunStop;
using translator::Translator;
using translator::TranslatorConfig;

// A translator over the code region (code at kCode, read through the memfd).
std::unique_ptr<Translator> make_translator(TranslatorConfig config, uint32_t va = kCode, uint32_t pa = kCodePa) {
  TestMachine& m = TestMachine::get();
  static std::vector<std::unique_ptr<translator::SpanCodeReader>> readers;
  readers.push_back(std::make_unique<translator::SpanCodeReader>(
      mmu::GuestVirt(va), std::span<const uint8_t>(m.memory->host(mmu::GuestPhys(pa), kRegion), kRegion)));
  auto t = Translator::create(config, *readers.back());
  if (!t) ADD_FAILURE() << t.error().message;
  return std::move(t.value());
}

TranslatorConfig counting() {
  TranslatorConfig c;
  c.count_in_tc = true;
  return c;
}

class ControlFlow : public ::testing::Test {
 protected:
  void SetUp() override {
    m = &TestMachine::get();
    cpu = TestMachine::initial_state();
    std::memset(m->data(), 0, kRegion);
  }
  void load(std::span<const uint8_t> code) {
    std::memcpy(m->memory->host(mmu::GuestPhys(kCodePa), kRegion), code.data(), code.size());
  }
  TestMachine* m = nullptr;
  CpuState cpu;
};

INTEL(cf_spin, "1: jmp 1b\n")

// A one-block endless loop, chained to itself, stops when another thread
// requests an exit; eip is the loop (the block about to run again).
TEST_F(ControlFlow, ChainedEndlessLoopStopsOnRequestFromAnotherThread) {
  load(snippet_cf_spin());
  auto t = make_translator(counting());
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    t->request_exit();
  });
  RunResult r = t->run(cpu, ~uint64_t(0));
  stopper.join();
  EXPECT_EQ(r.stop, RunStop::kExitRequested) << r.detail;
  EXPECT_EQ(cpu.eip, kCode);
  EXPECT_EQ(t->stats().chain_links, 1u);
  EXPECT_LE(r.blocks_run, 2u);  // entered once, linked, never came back until the request
  EXPECT_GT(t->context().block_entries, 1000u);  // it did spin inside the TC
  // The request was consumed: the next run spins again until the next request.
  std::thread stopper2([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    t->request_exit();
  });
  r = t->run(cpu, ~uint64_t(0));
  stopper2.join();
  EXPECT_EQ(r.stop, RunStop::kExitRequested);
}

// The runtime's preemption tick (the test machine runs one every 2 ms)
// stops translated code when the translator asks for it.
TEST_F(ControlFlow, HostTickStopsAChainedLoop) {
  load(snippet_cf_spin());
  TranslatorConfig config;
  config.stop_on_host_tick = true;
  auto t = make_translator(config);
  const auto start = std::chrono::steady_clock::now();
  RunResult r = t->run(cpu, ~uint64_t(0));
  EXPECT_EQ(r.stop, RunStop::kExitRequested);
  EXPECT_EQ(cpu.eip, kCode);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

INTEL(nested_loops,
      "xor eax, eax\n"
      "mov edx, 100\n"
      "2: mov ecx, 100\n"
      "1: add eax, ecx\n"
      "dec ecx\n"
      "jnz 1b\n"        // both arms get linked
      "dec edx\n"
      "jnz 2b\n"
      "int3\n")

TEST_F(ControlFlow, JccArmsAreLinkedAndTheResultIsRight) {
  load(snippet_nested_loops());
  auto t = make_translator(counting());
  RunResult r = t->run(cpu, 1000);
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 100u * 5050u);
  EXPECT_GE(t->stats().chain_links, 3u);
  EXPECT_LT(r.blocks_run, 10u);
  EXPECT_GT(t->context().block_entries, 10000u);
}

INTEL(fib,
      "mov eax, 15\n"
      "call 2f\n"
      "int3\n"
      // fib(eax) -> eax, recursive; ebx, ecx scratch
      "2: cmp eax, 2\n"
      "jb 3f\n"
      "push eax\n"
      "dec eax\n"
      "call 2b\n"
      "mov ecx, eax\n"
      "pop eax\n"
      "push ecx\n"
      "sub eax, 2\n"
      "call 2b\n"
      "pop ecx\n"
      "add eax, ecx\n"
      "3: ret\n")

// Recursion: every ret is an indirect branch resolved by the in-TC lookup.
TEST_F(ControlFlow, ReturnsHitTheInTcLookup) {
  load(snippet_fib());
  auto t = make_translator(counting());
  RunResult r = t->run(cpu, 1000);
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 610u);  // fib(15)
  EXPECT_EQ(cpu.reg(ESP), kStackTop);
  EXPECT_GT(t->context().lookup_hits, 1000u);
  EXPECT_LT(t->stats().lookup_misses, 10u);
  EXPECT_NE(t->format_stats().find("lookup hits"), std::string::npos);
}

INTEL(flags_across,
      "call 0f\n"
      "0: pop ebx\n"
      "add ebx, 3f - 0b\n"  // ebx = address of 3: (position independent)
      "xor edx, edx\n"
      "stc\n"
      "jmp 1f\n"            // chained direct jump
      "1: adc edx, 0\n"     // CF survived the link
      "mov eax, 5\n"
      "cmp eax, 5\n"        // ZF = 1
      "call 2f\n"
      "jnz 4f\n"            // the ret went through the lookup: ZF must survive
      "add edx, 10\n"
      "cmp eax, 6\n"        // ZF = 0, CF = 1
      "jmp ebx\n"           // indirect jmp through the lookup
      "3: jz 4f\n"
      "adc edx, 100\n"      // CF survived: + 101, and CF = 0 afterwards
      "4: dec esi\n"        // dec leaves CF alone
      "jnz 1b\n"
      "int3\n"
      "2: ret\n")

TEST_F(ControlFlow, GuestFlagsSurviveLinksAndLookups) {
  load(snippet_flags_across());
  auto t = make_translator(counting());
  cpu.reg(ESI) = 5;
  RunResult r = t->run(cpu, 1000);
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  // Pass 1 (after stc): 1 + 10 + 101. Passes 2..5 reach 1: with CF = 0: 10 + 101.
  EXPECT_EQ(cpu.reg(EDX), 112u + 4u * 111u);
  EXPECT_GT(t->context().lookup_hits, 0u);
  EXPECT_GT(t->stats().chain_links, 0u);
}

INTEL(indirect_call,
      "call 0f\n"
      "0: pop ebx\n"
      "add ebx, 2f - 0b\n"
      "mov [ebp], ebx\n"
      "mov ecx, 50\n"
      "xor eax, eax\n"
      "1: call ebx\n"
      "call dword ptr [ebp]\n"
      "dec ecx\n"
      "jnz 1b\n"
      "int3\n"
      "2: inc eax\n"
      "ret\n")

TEST_F(ControlFlow, IndirectCallsThroughRegisterAndMemory) {
  load(snippet_indirect_call());
  auto t = make_translator(counting());
  cpu.reg(EBP) = kData;
  RunResult r = t->run(cpu, 1000);
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 100u);
  EXPECT_EQ(cpu.reg(ESP), kStackTop);
  EXPECT_GT(t->context().lookup_hits, 150u);  // 100 calls + 100 rets, minus the first misses
}

// Without chaining every block goes back to the dispatcher and the answers
// are the same.
TEST_F(ControlFlow, SameResultsWithoutChaining) {
  load(snippet_fib());
  TranslatorConfig config;
  config.chain = false;
  auto t = make_translator(config);
  RunResult r = t->run(cpu, 100000);
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 610u);
  EXPECT_EQ(t->stats().chain_links, 0u);
  EXPECT_GT(r.blocks_run, 1000u);
}

}  // namespace
}  // namespace bt86::test
