// The translator's control flow and its coupling to the host: block chaining,
// exit requests (another thread, the host tick), the in-TC indirect lookup,
// precise guest faults and self-modifying code. Guest code runs in the test
// machine (tests/runtime/direct_test_machine.h) through its own Translator.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "tests/runtime/direct_test_machine.h"
#include "tests/runtime/guest_loops.h"
#include "tests/runtime/guest_snippet.h"
#include "translator/translator.h"

namespace bt86::test {
namespace {

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
    m->load(code);
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

// Chained jumps enter past the exit-request poll (Block::link_offset), so a
// tick must cut the links of the block it interrupts; the dispatcher puts
// them back afterwards instead of linking them again one exit at a time.
TEST_F(ControlFlow, TicksCutTheLinksOfTheRunningBlockAndTheyComeBack) {
  load(snippet_cf_spin());
  TranslatorConfig config = counting();
  config.stop_on_host_tick = true;
  auto t = make_translator(config);
  const translator::Block* b = t->block_at(kCode, cpu);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(b->host, nullptr);
  EXPECT_GT(b->link_offset, b->entry_offset) << "links skip the poll";
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    const uint64_t entries = t->context().block_entries;
    RunResult r = t->run(cpu, ~uint64_t(0));
    EXPECT_EQ(r.stop, RunStop::kExitRequested) << r.detail;
    EXPECT_EQ(cpu.eip, kCode);
    EXPECT_LE(r.blocks_run, 2u);  // entered from the dispatcher, then only through its link
    EXPECT_GT(t->context().block_entries, entries + 1000);
    EXPECT_GE(t->stats().links_cut, uint64_t(round + 1));
    // The link was put back, not undone: it was made once.
    EXPECT_EQ(t->stats().chain_links, 1u);
    EXPECT_EQ(t->stats().chain_unlinks, 0u);
    ASSERT_EQ(b->exits.size(), 1u);
    const translator::ExitSite& site = b->exits[0];
    EXPECT_TRUE(site.linked);
    EXPECT_FALSE(site.cut);
  }
  // The linked jump lands past the poll.
  const translator::ExitSite& site = b->exits[0];
  const uint8_t* at = b->host + site.host_offset;
  if (site.branch_rel_offset == 0) {
    ASSERT_EQ(at[0], 0xe9);
    int32_t rel;
    std::memcpy(&rel, at + 1, 4);
    EXPECT_EQ(at + 5 + rel, b->link_entry());
  } else {
    int32_t rel;
    std::memcpy(&rel, b->host + site.branch_rel_offset, 4);
    EXPECT_EQ(b->host + site.branch_rel_offset + 4 + rel, b->link_entry());
  }
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
  // Every inner back edge enters a block (past its exit-request poll); the
  // first inner iteration runs inside the outer block (superblocks).
  EXPECT_GE(t->context().block_entries, 10000u);
}

// Superblocks: a loop whose body holds a forward jcc that is rarely taken
// (the sieve's scan) is one block whose back edge links to itself, and the
// side exit still goes where the guest says when it is taken.
INTEL(scan_loop,
      "xor eax, eax\n"
      "xor edx, edx\n"
      "mov ecx, 1000\n"
      "1: add eax, 1\n"
      "test ecx, 127\n"
      "jz 2f\n"          // taken every 128th iteration: a side exit
      "3: dec ecx\n"
      "jnz 1b\n"
      "int3\n"
      "2: add edx, 1\n"
      "jmp 3b\n")

TEST_F(ControlFlow, SuperblockKeepsALoopWithASideExitInOneBlock) {
  for (bool superblocks : {true, false}) {
    SCOPED_TRACE(superblocks ? "superblocks" : "one jcc per block");
    cpu = TestMachine::initial_state();
    load(snippet_scan_loop());
    TranslatorConfig config = counting();
    config.superblocks = superblocks;
    auto t = make_translator(config);
    RunResult r = t->run(cpu, 1000);
    EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
    EXPECT_EQ(cpu.reg(EAX), 1000u);
    EXPECT_EQ(cpu.reg(EDX), 7u);  // ecx = 896, 768, ..., 128
    const uint64_t entries = t->context().block_entries;
    if (superblocks)
      EXPECT_LT(entries, 1000u + 3 * 7 + 5) << "one entry per iteration, plus the side trips";
    else
      EXPECT_GT(entries, 2 * 1000u) << "two blocks per iteration";
  }
}

INTEL(fib, "mov eax, 15\n" GUEST_FIB_OF_EAX)

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

// ---- Precise faults -------------------------------------------------------

constexpr uint32_t kSparePa = 0x400000;  // guest RAM no other test maps

INTEL(pf_mid_block,
      "mov eax, 1\n"
      "mov ebx, 2\n"
      "add ecx, 3\n"      // CF = 1, ZF = 0 from 0xfffffffe + 3
      "mov edx, [esi]\n"  // esi is in an unmapped page: #PF here
      "mov edi, 5\n"
      "int3\n")

// A host SIGSEGV in the middle of a block becomes a #PF at the exact guest
// EIP with the registers and flags from before the instruction; once the
// page is mapped the same run continues from there (hidden-fault retry).
TEST_F(ControlFlow, PageFaultInTheMiddleOfABlockIsPreciseAndRetries) {
  load(snippet_pf_mid_block());
  auto t = make_translator({});
  cpu.reg(ECX) = 0xfffffffe;
  cpu.reg(EDX) = 0xdddd;
  cpu.reg(ESI) = kUnmapped + 8;
  cpu.reg(EDI) = 0xeeee;
  RunResult r = t->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kGuestFault) << r.detail;
  EXPECT_EQ(r.eip, kCode + 13);
  EXPECT_EQ(cpu.eip, kCode + 13);
  EXPECT_EQ(r.fault.vector, 14);
  EXPECT_TRUE(r.fault.has_error_code);
  EXPECT_EQ(r.fault.error_code, 0u);  // not present, read, supervisor
  EXPECT_EQ(r.fault.linear_address, kUnmapped + 8);
  EXPECT_EQ(r.fault.access, translator::FaultAccess::kRead);
  EXPECT_EQ(cpu.reg(EAX), 1u);
  EXPECT_EQ(cpu.reg(EBX), 2u);
  EXPECT_EQ(cpu.reg(ECX), 1u);
  EXPECT_EQ(cpu.reg(EDX), 0xddddu);
  EXPECT_EQ(cpu.reg(EDI), 0xeeeeu);
  EXPECT_EQ(cpu.reg(ESP), kStackTop);
  EXPECT_TRUE(cpu.eflags & flags::CF);
  EXPECT_FALSE(cpu.eflags & flags::ZF);
  EXPECT_EQ(t->stats().guest_faults, 1u);

  ASSERT_TRUE(m->window->map(mmu::GuestVirt(kUnmapped), mmu::GuestPhys(kSparePa), 4096, mmu::Prot::ReadWrite).ok());
  const uint32_t value = 0x12345678;
  std::memcpy(m->memory->host(mmu::GuestPhys(kSparePa + 8), 4), &value, 4);
  r = t->run(cpu, 1000);
  ASSERT_TRUE(m->window->unmap(mmu::GuestVirt(kUnmapped), 4096).ok());
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EDX), value);
  EXPECT_EQ(cpu.reg(EDI), 5u);
  EXPECT_EQ(cpu.eip, kCode + 13 + 2 + 5);
}

INTEL(fault_push, "mov eax, 9\n push eax\n int3\n")
INTEL(fault_pushfd, "stc\n pushfd\n int3\n")
INTEL(fault_call, "stc\n call 1f\n 1: int3\n")
INTEL(fault_pop_mem, "mov eax, 9\n pop dword ptr [esi]\n int3\n")
INTEL(fault_ret, "stc\n ret\n")
INTEL(fault_div, "mov eax, 7\n xor edx, edx\n xor ecx, ecx\n stc\n div ecx\n int3\n")
INTEL(fault_high_byte, "mov ah, [esp + 0x100000]\n int3\n")
INTEL(fault_call_mem, "call dword ptr [esi]\n int3\n")

struct FaultCase {
  std::span<const uint8_t> code;
  uint32_t esp, esi;
  uint32_t fault_offset;  // guest EIP of the faulting instruction - kCode
  uint8_t vector;
  translator::FaultAccess access;
};

// Instructions whose expansions write several things: the fault leaves every
// register (ESP first) and the flags as they were before the instruction.
TEST_F(ControlFlow, FaultingExpansionsChangeNothing) {
  using translator::FaultAccess;
  const uint32_t bad_stack = kUnmapped + 0x100;
  const FaultCase cases[] = {
      {snippet_fault_push(), bad_stack, 0, 5, 14, FaultAccess::kWrite},
      {snippet_fault_pushfd(), bad_stack, 0, 1, 14, FaultAccess::kWrite},
      {snippet_fault_call(), bad_stack, 0, 1, 14, FaultAccess::kWrite},
      {snippet_fault_pop_mem(), kStackTop - 16, kUnmapped + 4, 5, 14, FaultAccess::kWrite},
      {snippet_fault_ret(), bad_stack, 0, 1, 14, FaultAccess::kRead},
      {snippet_fault_div(), kStackTop, 0, 10, 0, FaultAccess::kRead},
      {snippet_fault_high_byte(), kStackTop - 16, 0, 0, 14, FaultAccess::kRead},
      {snippet_fault_call_mem(), kStackTop, kUnmapped, 0, 14, FaultAccess::kRead},
  };
  auto t = make_translator({});
  int index = 0;
  for (const FaultCase& c : cases) {
    SCOPED_TRACE(index++);
    load(c.code);
    t->flush();
    cpu = TestMachine::initial_state();
    for (int r = 0; r < 8; ++r) cpu.gpr[r] = 0x1000 * (r + 1) + r;
    cpu.reg(ESP) = c.esp;
    cpu.reg(ESI) = c.esi;
    CpuState before_regs = cpu;
    RunResult r = t->run(cpu, 100);
    ASSERT_EQ(r.stop, RunStop::kGuestFault) << r.detail;
    EXPECT_EQ(cpu.eip, kCode + c.fault_offset);
    EXPECT_EQ(r.fault.vector, c.vector);
    if (c.vector == 14) {
      EXPECT_EQ(r.fault.access, c.access);
      EXPECT_EQ(bool(r.fault.error_code & 2), c.access == FaultAccess::kWrite);
    }
    EXPECT_EQ(cpu.reg(ESP), c.esp);
    EXPECT_EQ(cpu.reg(ESI), c.esi);
    const bool div = c.code.data() == snippet_fault_div().data();  // sets EAX, ECX, EDX itself
    for (int reg : {ECX, EDX, EBX, EBP, EDI}) {
      if (!div || reg == EBX || reg == EBP || reg == EDI) {
        EXPECT_EQ(cpu.gpr[reg], before_regs.gpr[reg]) << "register " << reg;
      }
    }
    if (div) {
      EXPECT_EQ(cpu.reg(EAX), 7u);
      EXPECT_EQ(cpu.reg(ECX), 0u);
    }
    if (c.code.data() != snippet_fault_push().data() && c.code.data() != snippet_fault_pop_mem().data() && !div) {
      EXPECT_EQ(cpu.reg(EAX), before_regs.reg(EAX));
    }
    if (c.code[0] == 0xf9) {  // stc first: CF must still be set at the fault
      EXPECT_TRUE(cpu.eflags & flags::CF);
    }
  }
}

INTEL(pop_to_esp_slot,
      "push 0x11\n"
      "push 0x22\n"
      "pop dword ptr [esp]\n"       // stores 0x22 at the *incremented* ESP: over 0x11
      "pop eax\n"
      "push 0x33\n"
      "pop dword ptr [esp - 4]\n"   // -4 from the incremented ESP: the slot it came from
      "mov ebx, [esp - 4]\n"
      "int3\n")

// pop m with an ESP-based address: the address uses the incremented ESP
// (SDM vol. 2, POP) although the expansion stores before it increments.
TEST_F(ControlFlow, PopToEspRelativeMemoryUsesTheIncrementedEsp) {
  load(snippet_pop_to_esp_slot());
  auto t = make_translator({});
  RunResult r = t->run(cpu, 100);
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 0x22u);
  EXPECT_EQ(cpu.reg(EBX), 0x33u);
  EXPECT_EQ(cpu.reg(ESP), kStackTop);
}

// ---- Self-modifying code ---------------------------------------------------
// Code runs from the data region (mapped read-write). The translator reports
// each page that gets its first block; the test write-protects it, as the
// machine's MMU will, and on a write fault to such a page invalidates it,
// lifts the protection and runs again.

class SelfModifying : public ControlFlow {
 protected:
  void SetUp() override {
    ControlFlow::SetUp();
    t = make_translator(counting(), kData, kDataPa);
    t->set_code_page_callback([this](uint32_t page) {
      protected_pages.insert(page);
      ASSERT_TRUE(m->window->protect(mmu::GuestVirt(page << 12), 4096, mmu::Prot::Read).ok());
    });
    cpu.reg(EBX) = kData;
    cpu.eip = kData;
  }
  void TearDown() override {
    ASSERT_TRUE(m->window->protect(mmu::GuestVirt(kData), kRegion, mmu::Prot::ReadWrite).ok());
  }
  void load_data(std::span<const uint8_t> code, uint32_t offset = 0) {
    std::memcpy(m->data() + offset, code.data(), code.size());
  }
  RunResult run_handling_smc() {
    for (;;) {
      RunResult r = t->run(cpu, 100000);
      const uint32_t page = r.fault.linear_address >> 12;
      if (r.stop == RunStop::kGuestFault && r.fault.vector == 14 && (r.fault.error_code & 2) &&
          protected_pages.count(page)) {
        ++write_faults;
        t->invalidate_code_page(page);
        protected_pages.erase(page);
        EXPECT_TRUE(m->window->protect(mmu::GuestVirt(page << 12), 4096, mmu::Prot::ReadWrite).ok());
        continue;
      }
      return r;
    }
  }
  std::unique_ptr<Translator> t;
  std::set<uint32_t> protected_pages;
  int write_faults = 0;
};

INTEL(smc_next_insn,
      "mov byte ptr [ebx + 5], 42\n"  // c6 43 05 2a: the imm8 of the next instruction
      "mov eax, 1\n"                  // b8 01 00 00 00 at offset 4 -> mov eax, 42
      "int3\n")

// The store hits its own block's page: the block is dropped, the store runs
// once from an uncached one-instruction block (or the page would be protected
// again before it completes), and the next instruction is translated anew.
TEST_F(SelfModifying, CodePatchesTheInstructionRightAfterItself) {
  load_data(snippet_smc_next_insn());
  RunResult r = run_handling_smc();
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << run_stop_name(r.stop) << " " << r.detail;
  EXPECT_EQ(cpu.reg(EAX), 42u);
  EXPECT_EQ(write_faults, 1);
  EXPECT_EQ(t->stats().uncached_steps, 1u);
  EXPECT_GE(t->stats().code_page_invalidations, 1u);
}

INTEL(smc_chained_target,
      "0: mov ecx, 3\n"
      "xor edx, edx\n"
      "1: call 5f\n"                           // chained to F after the first call
      "mov byte ptr [ebx + (5f - 0b) + 1], 7\n"  // F: mov eax, 1 -> mov eax, 7
      "dec ecx\n"
      "jnz 1b\n"
      "int3\n"
      ".skip 4096\n"                           // F on another page
      "5: mov eax, 1\n"
      "add edx, eax\n"
      "ret\n")

// Patching a block that a chained call jumps to: the link is undone, the
// call comes back to the dispatcher and reaches the new code.
TEST_F(SelfModifying, CodePatchesAChainedTarget) {
  load_data(snippet_smc_chained_target());
  RunResult r = run_handling_smc();
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << run_stop_name(r.stop) << " " << r.detail;
  EXPECT_EQ(cpu.reg(EDX), 1u + 7u + 7u);
  EXPECT_GE(write_faults, 1);
  EXPECT_GE(t->stats().chain_unlinks, 1u);
  EXPECT_EQ(t->stats().uncached_steps, 0u);  // the store is on another page than F
}

INTEL(smc_jcc_target,
      "0: mov ecx, 3\n"
      "xor edx, edx\n"
      "jmp 1f\n"                                // block 1 is the same on every iteration
      "1: test ecx, ecx\n"
      "jnz 5f\n"                                // taken arm: the jcc itself is linked to F
      "int3\n"
      "2: mov byte ptr [ebx + (5f - 0b) + 1], 7\n"  // F: mov eax, 1 -> mov eax, 7
      "dec ecx\n"
      "jnz 1b\n"
      "int3\n"
      ".skip 4096\n"                            // F on another page
      "5: mov eax, 1\n"
      "add edx, eax\n"
      "jmp 2b\n")

// The same through a linked jcc: unlinking points the jcc's rel32 back at its
// exit site (the old code of F stays in the TC until a flush; running it
// would add 1 instead of 7).
TEST_F(SelfModifying, CodePatchesTheTargetOfALinkedJcc) {
  load_data(snippet_smc_jcc_target());
  RunResult r = run_handling_smc();
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << run_stop_name(r.stop) << " " << r.detail;
  EXPECT_EQ(cpu.reg(EDX), 1u + 7u + 7u);
  EXPECT_GE(write_faults, 1);
  EXPECT_GE(t->stats().chain_unlinks, 1u);
}

INTEL(smc_reload,
      "0: lea edi, [ebx + 0x3000]\n"
      "call edi\n"                            // the old routine: eax = 1 (via the lookup next time)
      "mov edx, eax\n"
      "lea esi, [ebx + (9f - 0b)]\n"
      "lea edi, [ebx + 0x3000]\n"
      "mov ecx, 6\n"
      "cld\n"
      "rep movsb\n"                           // load the new routine over the old one
      "lea edi, [ebx + 0x3000]\n"
      "call edi\n"
      "int3\n"
      "9: mov eax, 2\n"
      "ret\n")

// A routine loaded into a page that held an older one: the old block and its
// lookup slot go, the indirect call reaches the new routine.
TEST_F(SelfModifying, RoutineLoadedOverAnOlderOne) {
  load_data(snippet_smc_reload());
  const uint8_t old_routine[] = {0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3};  // mov eax, 1; ret
  load_data(old_routine, 0x3000);
  RunResult r = run_handling_smc();
  EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << run_stop_name(r.stop) << " " << r.detail;
  EXPECT_EQ(cpu.reg(EDX), 1u);
  EXPECT_EQ(cpu.reg(EAX), 2u);
  EXPECT_EQ(write_faults, 1);
  EXPECT_EQ(t->stats().blocks_dropped, 1u);
  // A page without blocks: nothing happens.
  t->invalidate_code_page(0x12345);
  EXPECT_EQ(t->stats().blocks_dropped, 1u);
}

// ---- Study output ------------------------------------------------------------

TEST_F(ControlFlow, TraceShowsGuestBesideHostAndStatsNameEveryCounter) {
  load(snippet_fib());
  auto t = make_translator(counting());
  std::vector<std::string> traces;
  t->set_trace_sink([&](const std::string& text) { traces.push_back(text); });
  RunResult r = t->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kNeedsInterpretation);
  ASSERT_GE(traces.size(), 3u);
  std::string all;
  for (const std::string& s : traces) all += s;
  // Guest instructions in Intel syntax with their EIPs, the host code each
  // became (guest memory through gs:, ESP as r12d), the exits.
  EXPECT_NE(all.find(fmt::format("block {:08x}..", kCode)), std::string::npos) << all;
  EXPECT_NE(all.find("cmp eax, 0x02"), std::string::npos) << all;
  EXPECT_NE(all.find("exit-request check"), std::string::npos);
  EXPECT_NE(all.find("jrcxz"), std::string::npos);
  EXPECT_NE(all.find("gs:[r12d"), std::string::npos);
  EXPECT_NE(all.find("indirect (in-TC lookup)"), std::string::npos);
  // Traced again after running, the first block's call site is linked.
  const translator::Block* first = t->block_at(kCode, cpu);
  ASSERT_NE(first, nullptr);
  EXPECT_NE(t->trace_block(*first).find("[linked]"), std::string::npos) << t->trace_block(*first);

  const std::string stats = t->format_stats();
  for (const char* piece : {"blocks translated", "guest insns in", "guest bytes in", "TC bytes out", "chain links made",
                            "block entries", "lookup hits", "lookup misses", "TC flushes", "code page invalidations",
                            "insns by kind:", "call="}) {
    EXPECT_NE(stats.find(piece), std::string::npos) << piece << "\n" << stats;
  }
  EXPECT_NE(stats.find(fmt::format("blocks translated   {}", t->stats().blocks_translated)), std::string::npos);
}

}  // namespace
}  // namespace bt86::test
