// Fast segment loads (TranslatorConfig::fast_segment_loads, translator/README
// "Fast segment loads"): a load of DS/ES/FS/GS that the CPU model completed
// through a callout is replayed inline the next time while its GDT
// descriptor is unchanged; anything else goes to the callout. The handler
// here performs the loads the way the CPU model does (descriptor from the
// GDT in guest memory, accessed bit set, null selectors allowed).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/runtime/direct_test_machine.h"
#include "tests/runtime/guest_snippet.h"
#include "translator/translator.h"

namespace bt86::test {
namespace {

using namespace runtime;
using translator::CalloutAction;
using translator::CalloutInsn;
using translator::RunStop;

constexpr uint32_t kGdt = kData + 0x1000;   // its own page (unmapped by one test)
constexpr uint32_t kGdt2 = kData + 0x2000;  // a copy, for a GDTR change
constexpr uint16_t kGdtLimit = 0x3f;

// Guest code and data, read through guest memory (the machine reads through
// its page tables; here the two regions are identity-placed).
struct RegionReader final : translator::GuestCodeReader {
  explicit RegionReader(TestMachine& m) : m(m) {}
  size_t read(mmu::GuestVirt va, std::span<uint8_t> out) const override {
    const uint32_t v = uint32_t(va.value);
    for (auto [lin, pa] : {std::pair{kCode, kCodePa}, std::pair{kData, kDataPa}}) {
      if (v < lin || v >= lin + kRegion) continue;
      const size_t n = std::min<size_t>(out.size(), lin + kRegion - v);
      std::memcpy(out.data(), m.memory->host(mmu::GuestPhys(pa + (v - lin)), n), n);
      return n;
    }
    return 0;
  }
  TestMachine& m;
};

uint64_t descriptor(uint32_t base, uint32_t raw_limit, uint8_t type, bool g) {
  const uint64_t lo = (raw_limit & 0xffff) | (uint64_t(base & 0xffff) << 16);
  const uint64_t hi = ((base >> 16) & 0xff) | (uint64_t(type | 0x10 | 0x80) << 8) | (raw_limit & 0xf0000) |
                      (uint64_t(g ? 0xc : 0x4) << 20) | (base & 0xff000000u);
  return lo | (hi << 32);
}

// Loads mov sreg, r16 / pop sreg as the CPU model does at CPL 0 (all checks
// passing), steps over everything else; hlt stops.
struct LoadingHandler final : translator::CalloutHandler {
  CalloutAction callout(CpuState& cpu, const CalloutInsn& insn) override {
    const auto& g = insn.insn;
    cpu.eip += g.insn.length;
    if (insn.id() == ZYDIS_MNEMONIC_HLT) return CalloutAction::kStop;
    if (insn.id() == ZYDIS_MNEMONIC_VERW) {
      verws.push_back(g.eip);
      if (flush_in_verw) {
        flush_in_verw->flush();  // frees the translations while insn is in use
        set_aside = flush_in_verw->callouts().has_retired();
      }
      return verw(cpu, g);
    }
    loads.push_back(g.eip);
    const Seg s = translator::seg_of(g.ops[0].reg.value);
    uint16_t sel;
    if (insn.id() == ZYDIS_MNEMONIC_POP) {
      std::memcpy(&sel, m->memory->host(mmu::GuestPhys(kStackPa + (cpu.reg(ESP) - kStack)), 2), 2);
      cpu.reg(ESP) += g.insn.operand_width / 8;
    } else {
      sel = uint16_t(cpu.gpr[ZydisRegisterGetId(g.ops[1].reg.value) & 7]);
    }
    if ((sel & 0xfffc) == 0) {
      cpu.sreg(s) = {sel, 0, 0, 0};  // machine/descriptors.h null_segment()
      return CalloutAction::kContinue;
    }
    // TI = 1 is taken from the same table here: the translator must not remember it.
    uint8_t* d = m->data() + (gdt - kData) + (sel & 0xfff8);
    d[5] |= 1;  // accessed
    uint32_t lo, hi;
    std::memcpy(&lo, d, 4);
    std::memcpy(&hi, d + 4, 4);
    const uint32_t raw = (lo & 0xffff) | (hi & 0xf0000);
    cpu.sreg(s) = {sel, (lo >> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000u),
                   (hi & (1u << 23)) ? (raw << 12) | 0xfff : raw, uint16_t(((hi >> 8) & 0xff) | ((hi >> 12) & 0xf00))};
    return CalloutAction::kContinue;
  }
  // verw as the CPU model does it at CPL 0 (SDM vol. 2, VERR/VERW; machine/
  // descriptors.cpp): ZF = non-null, inside the limit, writable data, DPL >=
  // RPL. Memory operands here are [disp32] in kData (DS base 0).
  CalloutAction verw(CpuState& cpu, const translator::GuestInsn& g) {
    uint16_t sel;
    if (g.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER)
      sel = uint16_t(cpu.gpr[ZydisRegisterGetId(g.ops[0].reg.value) & 7]);
    else
      std::memcpy(&sel, m->data() + (uint32_t(g.ops[0].mem.disp.value) - kData), 2);
    bool zf = false;
    if ((sel & 0xfffc) != 0 && (sel | 7) <= limit) {
      const uint8_t* d = m->data() + (gdt - kData) + (sel & 0xfff8);
      const uint8_t access = d[5], dpl = (access >> 5) & 3;
      zf = (access & 0x10) && !(access & 0x08) && (access & 0x02) && dpl >= (sel & 3);
    }
    cpu.eflags = zf ? cpu.eflags | 0x40 : cpu.eflags & ~0x40u;
    return CalloutAction::kContinue;
  }
  TestMachine* m = nullptr;
  uint32_t gdt = kGdt;
  uint16_t limit = kGdtLimit;
  translator::Translator* flush_in_verw = nullptr;
  bool set_aside = false;  // the flush kept the callout sites for the rest of the callout
  std::vector<uint32_t> loads;  // EIPs of the segment loads that reached the handler
  std::vector<uint32_t> verws;  // EIPs of the verws that reached the handler
};

class SegmentLoads : public ::testing::Test {
 protected:
  void SetUp() override {
    m = &TestMachine::get();
    reader = std::make_unique<RegionReader>(*m);
    handler.m = m;
    std::memset(m->data(), 0, kRegion);
    for (uint32_t base : {kGdt, kGdt2}) {
      uint64_t* gdt = reinterpret_cast<uint64_t*>(m->data() + (base - kData));
      gdt[1] = descriptor(0, 0xfffff, 0xb, true);           // 0x08 flat code
      gdt[2] = descriptor(0, 0xfffff, 0x2, true);           // 0x10 flat data (accessed clear)
      gdt[3] = descriptor(kData, 0xfffff, 0x3, true);       // 0x18 data based at kData
      gdt[4] = descriptor(0x1234000, 0xfffff, 0x3, true);   // 0x20
      gdt[5] = descriptor(0x4000, 0xffff, 0x3, false);      // 0x28 64 KiB limit
    }
    translator::TranslatorConfig config;
    config.fast_segment_loads = true;
    ASSERT_TRUE(use_translator(config));
    reset();
  }
  // Replaces tr by a translator with `config`, the handler and the GDT at kGdt.
  bool use_translator(const translator::TranslatorConfig& config) {
    auto t = translator::Translator::create(config, *reader);
    if (!t.ok()) {
      ADD_FAILURE() << t.error().message;
      return false;
    }
    tr = std::move(t.value());
    tr->set_callout_handler(&handler);
    tr->set_gdt(kGdt, kGdtLimit);
    return true;
  }
  void reset() {
    cpu = TestMachine::initial_state();
    cpu.sreg(Seg::CS).selector = 0x08;  // CPL 0
    cpu.reg(ESP) = kStackTop - 16;
    handler.loads.clear();
    handler.verws.clear();
  }
  void load(std::span<const uint8_t> code) {
    m->load(code);
  }
  void put_stack(uint32_t value) {
    std::memcpy(m->memory->host(mmu::GuestPhys(kStackPa + (cpu.reg(ESP) - kStack)), 4), &value, 4);
  }
  uint64_t fast() const { return tr->context().seg_fast_loads; }

  TestMachine* m = nullptr;
  std::unique_ptr<RegionReader> reader;
  std::unique_ptr<translator::Translator> tr;
  LoadingHandler handler;
  CpuState cpu;
};

INTEL(ds_fs_pop_es, "mov ds, ax\n mov fs, bx\n pop es\n mov gs, cx\n hlt\n")

// First run: every load calls out (and is remembered); second run: none
// does, with the same segment registers and ESP as the CPU model produced.
TEST_F(SegmentLoads, SecondRunReplaysTheLoadsWithoutCallouts) {
  load(snippet_ds_fs_pop_es());
  auto prime = [&] {
    cpu.reg(EAX) = 0x10;
    cpu.reg(EBX) = 0x18;
    cpu.reg(ECX) = 0;  // null GS
    put_stack(0x20);
  };
  prime();
  auto r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(handler.loads.size(), 4u);
  EXPECT_EQ(fast(), 0u);
  const CpuState first = cpu;
  EXPECT_EQ(first.sreg(Seg::FS).base, kData);
  EXPECT_EQ(first.sreg(Seg::ES).base, 0x1234000u);
  EXPECT_EQ(first.sreg(Seg::GS), (SegmentCache{0, 0, 0, 0}));
  EXPECT_EQ(first.reg(ESP), kStackTop - 12);

  reset();
  prime();
  r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_TRUE(handler.loads.empty());
  EXPECT_EQ(fast(), 4u);
  for (Seg s : {Seg::DS, Seg::ES, Seg::FS, Seg::GS}) EXPECT_EQ(cpu.sreg(s), first.sreg(s)) << int(s);
  EXPECT_EQ(cpu.reg(ESP), first.reg(ESP));
  EXPECT_EQ(cpu.eip, first.eip);
  EXPECT_NE(tr->format_stats().find("segment loads       4 inline, 4 missed"), std::string::npos)
      << tr->format_stats();
}

INTEL(mov_fs, "mov fs, bx\n hlt\n")

TEST_F(SegmentLoads, ChangedDescriptorBytesMissAndCallOut) {
  load(snippet_mov_fs());
  cpu.reg(EBX) = 0x18;
  tr->run(cpu, 1000);
  reset();
  cpu.reg(EBX) = 0x18;
  tr->run(cpu, 1000);
  EXPECT_TRUE(handler.loads.empty());
  EXPECT_EQ(fast(), 1u);
  // The guest moves the segment: byte 4 is base bits 16..23.
  m->data()[(kGdt - kData) + 0x18 + 4] = 0x60;
  reset();
  cpu.reg(EBX) = 0x18;
  tr->run(cpu, 1000);
  EXPECT_EQ(handler.loads.size(), 1u);
  EXPECT_EQ(cpu.sreg(Seg::FS).base, 0x600000u);
  EXPECT_EQ(tr->context().seg_slow_loads, 2u);  // the first run and this one
  // Remembered again with the new bytes.
  reset();
  cpu.reg(EBX) = 0x18;
  tr->run(cpu, 1000);
  EXPECT_TRUE(handler.loads.empty());
  EXPECT_EQ(cpu.sreg(Seg::FS).base, 0x600000u);
}

TEST_F(SegmentLoads, SelectorsOutsideTheGdtLimitOrInTheLdtAlwaysCallOut) {
  load(snippet_mov_fs());
  tr->set_gdt(kGdt, 0x17);  // 0x18 is beyond the limit (the handler loads it anyway)
  for (int i = 0; i < 2; ++i) {
    reset();
    cpu.reg(EBX) = 0x18;
    tr->run(cpu, 1000);
    EXPECT_EQ(handler.loads.size(), 1u);
  }
  tr->set_gdt(kGdt, kGdtLimit);
  for (int i = 0; i < 2; ++i) {
    reset();
    cpu.reg(EBX) = 0x1c;  // TI = 1
    tr->run(cpu, 1000);
    EXPECT_EQ(handler.loads.size(), 1u);
  }
  EXPECT_EQ(fast(), 0u);
}

TEST_F(SegmentLoads, AnotherGdtForgetsEveryLoad) {
  load(snippet_mov_fs());
  for (int i = 0; i < 2; ++i) {
    reset();
    cpu.reg(EBX) = 0x18;
    tr->run(cpu, 1000);
  }
  EXPECT_EQ(fast(), 1u);
  tr->set_gdt(kGdt, kGdtLimit);  // unchanged: nothing forgotten
  reset();
  cpu.reg(EBX) = 0x18;
  tr->run(cpu, 1000);
  EXPECT_EQ(fast(), 2u);
  tr->set_gdt(kGdt2, kGdtLimit);  // same bytes elsewhere
  handler.gdt = kGdt2;
  reset();
  cpu.reg(EBX) = 0x18;
  tr->run(cpu, 1000);
  EXPECT_EQ(handler.loads.size(), 1u);
  EXPECT_EQ(fast(), 2u);
}

INTEL(ds_then_read, "mov ds, ax\n mov edx, [0x100]\n hlt\n")

// DS's base is folded into the translation's memory operands: a remembered
// load that would change it calls out, so the dispatcher retranslates.
TEST_F(SegmentLoads, ALoadThatChangesAFoldedBaseCallsOut) {
  load(snippet_ds_then_read());
  reinterpret_cast<uint32_t*>(m->data())[0x40] = 0xd5d5d5d5;  // kData + 0x100
  cpu.reg(EAX) = 0x18;
  tr->run(cpu, 1000);
  EXPECT_EQ(cpu.reg(EDX), 0xd5d5d5d5u);
  EXPECT_EQ(handler.loads.size(), 1u);
  // Again from DS base 0: the translation at kCode folds base 0 for [0x100].
  reset();
  cpu.reg(EAX) = 0x18;
  tr->run(cpu, 1000);
  EXPECT_EQ(handler.loads.size(), 1u);
  EXPECT_EQ(fast(), 0u);
  EXPECT_EQ(cpu.reg(EDX), 0xd5d5d5d5u);
  EXPECT_EQ(cpu.sreg(Seg::DS).base, kData);
  // A load that keeps the base (flat 0x10, base 0) is replayed (second time).
  for (int i = 0; i < 2; ++i) {
    reset();
    cpu.reg(EAX) = 0x10;
    tr->run(cpu, 1000);
  }
  EXPECT_EQ(handler.loads.size(), 0u);
  EXPECT_EQ(fast(), 1u);
  EXPECT_EQ(cpu.sreg(Seg::DS).selector, 0x10);
}

INTEL(fs_then_checked_read, "mov fs, bx\n mov edx, fs:[0x100]\n hlt\n")

// FS reads its base at run time and tests seg_checked: a replayed load of a
// non-flat FS makes the next FS access leave for the owner's checks, as the
// callout path (run() recomputing seg_checked) does.
TEST_F(SegmentLoads, ReplayedLoadOfANonFlatSegmentKeepsTheChecks) {
  translator::TranslatorConfig config;
  config.fast_segment_loads = true;
  config.check_segments = true;
  ASSERT_TRUE(use_translator(config));
  load(snippet_fs_then_checked_read());
  for (int i = 0; i < 2; ++i) {
    reset();
    cpu.reg(EBX) = 0x28;  // 64 KiB limit: not flat
    auto r = tr->run(cpu, 1000);
    EXPECT_EQ(r.stop, RunStop::kNeedsInterpretation) << r.detail;
    EXPECT_EQ(r.detail, translator::kNeedsChecksDetail);
    EXPECT_EQ(cpu.eip, kCode + 2);  // mov fs, bx is 2 bytes
    EXPECT_EQ(cpu.sreg(Seg::FS).limit, 0xffffu);
  }
  EXPECT_EQ(fast(), 1u);
  // And a flat one runs the read.
  reinterpret_cast<uint32_t*>(m->data())[0x40] = 0x77;
  for (int i = 0; i < 2; ++i) {
    reset();
    cpu.reg(EBX) = 0x18;
    auto r = tr->run(cpu, 1000);
    EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
    EXPECT_EQ(cpu.reg(EDX), 0x77u);
  }
  EXPECT_EQ(fast(), 2u);
}

INTEL(pop_ds, "pop ds\n hlt\n")

// The [esp] read and the descriptor read fault precisely: #PF at the pop,
// nothing changed.
TEST_F(SegmentLoads, FaultsInTheInlinePathArePreciseGuestFaults) {
  load(snippet_pop_ds());
  put_stack(0x18);
  tr->run(cpu, 1000);  // remembered
  EXPECT_EQ(handler.loads.size(), 1u);

  reset();
  cpu.reg(ESP) = kUnmapped;
  auto r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kGuestFault) << r.detail;
  EXPECT_EQ(r.fault.vector, 14);
  EXPECT_EQ(r.fault.linear_address, kUnmapped);
  EXPECT_EQ(cpu.eip, kCode);
  EXPECT_EQ(cpu.reg(ESP), kUnmapped);
  EXPECT_EQ(cpu.sreg(Seg::DS), TestMachine::initial_state().sreg(Seg::DS));

  // The GDT page unmapped in the window: the descriptor read faults.
  reset();
  put_stack(0x18);
  ASSERT_TRUE(m->window->unmap(mmu::GuestVirt(kGdt), 4096).ok());
  r = tr->run(cpu, 1000);
  ASSERT_TRUE(m->window->map(mmu::GuestVirt(kGdt), mmu::GuestPhys(kDataPa + (kGdt - kData)), 4096,
                             mmu::Prot::ReadWrite).ok());
  ASSERT_EQ(r.stop, RunStop::kGuestFault) << r.detail;
  EXPECT_EQ(r.fault.vector, 14);
  EXPECT_EQ(r.fault.linear_address, kGdt + 0x18);
  EXPECT_EQ(cpu.eip, kCode);
  EXPECT_EQ(cpu.reg(ESP), kStackTop - 16);
  EXPECT_EQ(cpu.sreg(Seg::DS), TestMachine::initial_state().sreg(Seg::DS));
  // Retried with the page back: inline.
  r = tr->run(cpu, 1000);
  EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(cpu.sreg(Seg::DS).base, kData);
  EXPECT_EQ(cpu.reg(ESP), kStackTop - 12);
  EXPECT_EQ(handler.loads.size(), 0u);
  EXPECT_EQ(fast(), 1u);
}

// Off by default: every load calls out.
TEST_F(SegmentLoads, OffByDefault) {
  ASSERT_TRUE(use_translator({}));
  load(snippet_mov_fs());
  for (int i = 0; i < 2; ++i) {
    reset();
    cpu.reg(EBX) = 0x18;
    tr->run(cpu, 1000);
    EXPECT_EQ(handler.loads.size(), 1u);
  }
  EXPECT_EQ(fast(), 0u);
}

// verw (README "Inline verw"): Linux's MDS clearing runs `verw` on a
// memory operand holding __KERNEL_DS on every return to user mode.
INTEL(verw_three, "verw ax\n setz dl\n setc dh\n verw bx\n setz cl\n setc ch\n verw word ptr [0x500200]\n hlt\n")

class Verw : public SegmentLoads {
 protected:
  // EAX = a writable data selector (ZF = 1), EBX = a code selector (ZF = 0),
  // [kData + 0x200] = a null selector (ZF = 0); CF set, ZF clear before.
  void prime(uint16_t ax = 0x18, uint16_t bx = 0x08, uint16_t mem = 0) {
    cpu.reg(EAX) = ax;
    cpu.reg(EBX) = bx;
    std::memcpy(m->data() + 0x200, &mem, 2);
    cpu.eflags = (cpu.eflags & ~0x8d5u) | 0x1 | 0x80 | 0x800;  // CF SF OF set, ZF clear
  }
  uint64_t fast() const { return tr->context().verw_fast; }
};

TEST_F(Verw, SecondRunSetsOnlyZfInlineFromTheRememberedResults) {
  load(snippet_verw_three());
  prime();
  auto r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(handler.verws.size(), 3u);
  const CpuState first = cpu;
  EXPECT_EQ(first.reg(EDX) & 0xffff, 0x0101u);  // ZF = 1, CF still 1
  EXPECT_EQ(first.reg(ECX) & 0xffff, 0x0100u);  // ZF = 0, CF still 1
  EXPECT_EQ(first.eflags & 0x8d5u, 0x881u);     // after the null: ZF = 0, CF SF OF kept

  reset();
  prime();
  r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_TRUE(handler.verws.empty());
  EXPECT_EQ(fast(), 3u);
  EXPECT_EQ(cpu.reg(EDX), first.reg(EDX));
  EXPECT_EQ(cpu.reg(ECX), first.reg(ECX));
  EXPECT_EQ(cpu.eflags, first.eflags);
  EXPECT_EQ(cpu.eip, first.eip);
  // ZF set before a verw that clears it, and the other flags clear.
  reset();
  prime();
  cpu.eflags = (cpu.eflags & ~0x8d5u) | 0x40;
  r = tr->run(cpu, 1000);
  EXPECT_EQ(cpu.reg(EDX) & 0xffff, 0x0001u);
  EXPECT_EQ(cpu.reg(ECX) & 0xffff, 0x0000u);
  EXPECT_EQ(cpu.eflags & 0x8d5u, 0u);
  EXPECT_TRUE(handler.verws.empty());
  EXPECT_NE(tr->format_stats().find("verw                6 inline, 3 missed"), std::string::npos)
      << tr->format_stats();
}

TEST_F(Verw, ChangedDescriptorOrSelectorCallsOut) {
  load(snippet_verw_three());
  prime();
  tr->run(cpu, 1000);
  // 0x18 becomes read-only data (type 1): ZF = 0 through the callout.
  m->data()[(kGdt - kData) + 0x18 + 5] = 0x91;
  reset();
  prime();
  tr->run(cpu, 1000);
  EXPECT_EQ(handler.verws, std::vector<uint32_t>{kCode});
  EXPECT_EQ(cpu.reg(EDX) & 0xff, 0u);
  // Remembered again with the new bytes.
  reset();
  prime();
  tr->run(cpu, 1000);
  EXPECT_TRUE(handler.verws.empty());
  EXPECT_EQ(cpu.reg(EDX) & 0xff, 0u);
  // Another selector (RPL 3 of a DPL 0 segment: ZF = 0) is not the remembered one.
  reset();
  prime(0x20, 0x0b);
  tr->run(cpu, 1000);
  EXPECT_EQ(handler.verws.size(), 2u);
  EXPECT_EQ(cpu.reg(EDX) & 0xff, 1u);
  EXPECT_EQ(cpu.reg(ECX) & 0xff, 0u);
}

TEST_F(Verw, LdtSelectorsAndOtherGdtsCallOut) {
  load(snippet_verw_three());
  for (int i = 0; i < 2; ++i) {
    reset();
    prime(0x1c, 0x0c);  // TI = 1 (the handler reads the GDT: the translator must not remember it)
    tr->run(cpu, 1000);
    EXPECT_EQ(handler.verws.size(), 3u - i);  // the null one is remembered
  }
  prime();
  tr->run(cpu, 1000);
  tr->set_gdt(kGdt2, kGdtLimit);
  handler.gdt = kGdt2;
  reset();
  prime();
  tr->run(cpu, 1000);
  EXPECT_EQ(handler.verws.size(), 3u);
  EXPECT_EQ(cpu.reg(EDX) & 0xff, 1u);
}

TEST_F(Verw, FaultsInTheInlinePathArePrecise) {
  load(snippet_verw_three());
  prime();
  tr->run(cpu, 1000);
  reset();
  prime();
  ASSERT_TRUE(m->window->unmap(mmu::GuestVirt(kGdt), 4096).ok());
  auto r = tr->run(cpu, 1000);
  ASSERT_TRUE(m->window->map(mmu::GuestVirt(kGdt), mmu::GuestPhys(kDataPa + (kGdt - kData)), 4096,
                             mmu::Prot::ReadWrite).ok());
  ASSERT_EQ(r.stop, RunStop::kGuestFault) << r.detail;
  EXPECT_EQ(r.fault.vector, 14);
  EXPECT_EQ(r.fault.linear_address, kGdt + 0x18);
  EXPECT_EQ(cpu.eip, kCode);
  EXPECT_EQ(cpu.eflags & 0x8d5u, 0x881u);
  r = tr->run(cpu, 1000);
  EXPECT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(cpu.reg(EDX) & 0xffff, 0x0101u);
  EXPECT_TRUE(handler.verws.empty());
}

// A handler may flush the translator (the machine does on a CR0.TS change):
// the callout's CalloutInsn must stay valid for the rest of the callout
// (CalloutRuntime::clear sets the sites aside), here for record_verw.
TEST_F(Verw, AFlushInsideTheCalloutKeepsTheInstructionUntilItReturns) {
  load(snippet_verw_three());
  handler.flush_in_verw = tr.get();
  prime();
  auto r = tr->run(cpu, 1000);
  ASSERT_EQ(r.stop, RunStop::kCallout) << r.detail;
  EXPECT_EQ(handler.verws.size(), 3u);
  EXPECT_EQ(cpu.reg(EDX) & 0xffff, 0x0101u);
  EXPECT_TRUE(handler.set_aside);
  EXPECT_FALSE(tr->callouts().has_retired());  // freed when the callout returned
  handler.flush_in_verw = nullptr;
  reset();
  prime();
  tr->run(cpu, 1000);
  EXPECT_TRUE(handler.verws.empty());  // all three remembered from the flushed sites
  EXPECT_EQ(fast(), 3u);
}

TEST_F(Verw, OffWithoutFastSegmentLoads) {
  ASSERT_TRUE(use_translator({}));
  load(snippet_verw_three());
  for (int i = 0; i < 2; ++i) {
    reset();
    prime();
    tr->run(cpu, 1000);
    EXPECT_EQ(handler.verws.size(), 3u);
  }
  EXPECT_EQ(fast(), 0u);
}

}  // namespace
}  // namespace bt86::test
