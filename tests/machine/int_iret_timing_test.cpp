// The guest system-call round trip through the CPU model as PcMachine runs
// it: INT 0x80 from CPL 3 and IRETD back, both through execute() with the
// instruction already decoded (as the translator's callouts pass it), over
// PagedMemory with paging on. Checks the state and the number of guest
// memory accesses per round trip; a disabled test times it:
//   machine_tests --gtest_also_run_disabled_tests --gtest_filter='*IntIret*'
#include <Zydis/Zydis.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "machine/interpreter.h"
#include "machine/interrupts.h"
#include "mmu/paged_memory.h"
#include "tests/machine/test_machine.h"

namespace bt86::machine {
namespace {

using runtime::Seg;
using test::TestMachine;

struct Decoded {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  ExecuteOptions options() const {
    ExecuteOptions o;
    o.decoded = &insn;
    o.decoded_ops = ops;
    return o;
  }
};

Decoded decode(std::initializer_list<uint8_t> bytes) {
  Decoded d{};
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32);
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, std::data(bytes), bytes.size(), &d.insn, d.ops))) std::abort();
  return d;
}

// TestMachine's tables copied into guest RAM, identity-mapped (user, RW)
// by one page table, paging on; INT 0x80 goes to an IRETD.
class IntIret : public ::testing::Test {
 protected:
  static constexpr uint32_t kDir = 0x800000, kTable = 0x801000;
  static constexpr uint32_t kHandler = TestMachine::kHandlers + 16 * 0x80;

  void SetUp() override {
    auto g = mmu::GuestMemory::create(16);
    ASSERT_TRUE(g);
    ram.emplace(std::move(*g));
    t.set_idt(0x80, test::gate_desc(TestMachine::kKCode, kHandler, desc_type::kTrapGate32, 3));
    for (uint32_t a = 0; a < 0x100000; a += 4) put32(a, t.mem.get32(a));
    put32(kDir, kTable | 7);
    for (uint32_t i = 0; i < 1024; ++i) put32(kTable + 4 * i, (i << 12) | 0x67);  // P RW US A D
    *ram->host(mmu::GuestPhys(kHandler)) = 0xcf;  // iretd
    pm.emplace(*ram);
    t.s.sys.cr0 |= cr0::PG | cr0::WP;
    t.s.sys.cr3 = kDir;
    pm->set_control({t.s.sys.cr0, t.s.sys.cr3, t.s.sys.cr4});
    t.enter_user(TestMachine::kCode, TestMachine::kUserStack);
  }
  void put32(uint32_t a, uint32_t v) { std::memcpy(ram->host(mmu::GuestPhys(a), 4), &v, 4); }

  // One round trip; false (with a failure) if anything went wrong.
  bool round_trip() {
    t.s.regs.eip = TestMachine::kCode;
    const StepResult in = execute(t.s, *pm, t.hooks, int80_options);
    EXPECT_TRUE(in.delivered);
    if (!in.delivered || t.s.cpl != 0 || t.s.regs.eip != kHandler) return false;
    const StepResult out = execute(t.s, *pm, t.hooks, iret_options);
    EXPECT_FALSE(out.delivered);
    return !out.delivered && t.s.cpl == 3 && t.s.regs.eip == TestMachine::kCode + 2 &&
           t.s.regs.reg(runtime::ESP) == TestMachine::kUserStack &&
           t.s.regs.sreg(Seg::SS).selector == TestMachine::kUData;
  }

  TestMachine t;
  std::optional<mmu::GuestMemory> ram;
  std::optional<mmu::PagedMemory> pm;
  const Decoded int80 = decode({0xcd, 0x80});
  const Decoded iretd = decode({0xcf});
  const ExecuteOptions int80_options = int80.options();
  const ExecuteOptions iret_options = iretd.options();
};

TEST_F(IntIret, EightGuestMemoryAccessesPerRoundTrip) {
  ASSERT_TRUE(round_trip());  // sets the accessed bits of CS and SS once
  const mmu::PagedMemoryStats before = pm->stats();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(round_trip());
  // INT: the gate, the CS descriptor, SS0:ESP0 from the TSS, the SS
  // descriptor, the frame (one write); IRET: the frame (one read of all
  // five values), the CS and the SS descriptors.
  EXPECT_EQ(pm->stats().reads - before.reads, 100u * 7);
  EXPECT_EQ(pm->stats().writes - before.writes, 100u * 1);
  EXPECT_EQ(pm->stats().tlb_misses, before.tlb_misses);
}

TEST_F(IntIret, DISABLED_Timing) {
  constexpr int kRounds = 1000000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kRounds; ++i)
    if (!round_trip()) return;
  const auto t1 = std::chrono::steady_clock::now();
  std::printf("int 0x80 + iretd through execute(): %.1f ns per round trip\n",
              std::chrono::duration<double, std::nano>(t1 - t0).count() / kRounds);
}

}  // namespace
}  // namespace bt86::machine
