// Segment-register loads with each of their faults, LLDT/LTR, LAR/LSL/VERR/
// VERW and the limit checks of segmented accesses (SDM vol. 3, ch. 3 and 5).
#include "machine/descriptors.h"

#include <gtest/gtest.h>

#include "tests/machine/test_machine.h"

namespace bt86::machine {
namespace {

using runtime::Seg;
using test::TestMachine;

GuestFault F(uint8_t v, uint32_t e) { return make_fault(v, e); }

TEST(Descriptors, FaultKeepsEveryFieldOfTheGuestFault) {
  EXPECT_FALSE(Fault());
  EXPECT_FALSE(Fault(std::nullopt));
  EXPECT_FALSE(Fault(std::optional<GuestFault>()));
  EXPECT_EQ(Fault(), std::nullopt);
  const GuestFault pf{vec::PF, true, 0xfffffff7u, 0xdeadbeefu};
  const Fault f = pf;
  ASSERT_TRUE(f);
  EXPECT_EQ(*f, pf);
  EXPECT_EQ(f->cr2, 0xdeadbeefu);
  EXPECT_EQ(f, pf);
  EXPECT_NE(f, Fault(GuestFault{vec::PF, true, 0xfffffff7u, 0}));
  const std::optional<GuestFault> back = f;
  EXPECT_EQ(back, pf);
  // Vector 0 without an error code is still a fault (#DE).
  const Fault de = make_fault(vec::DE);
  ASSERT_TRUE(de);
  EXPECT_FALSE(de->has_error);
  EXPECT_EQ(de->vector, vec::DE);
  EXPECT_EQ(Fault(std::optional<GuestFault>(pf)), pf);
}

TEST(Descriptors, DecodesBaseLimitAndAttributes) {
  const Descriptor d = test::seg_desc(0x12345678, 0xabcde, 0x3, 2, true, true, true, true);
  EXPECT_EQ(d.base(), 0x12345678u);
  EXPECT_EQ(d.limit(), 0xabcdefffu);
  EXPECT_EQ(d.dpl(), 2);
  EXPECT_TRUE(d.writable());
  const runtime::SegmentCache c = d.cache(0x2b);
  EXPECT_TRUE(c.present());
  EXPECT_TRUE(c.big());
  EXPECT_EQ(c.dpl(), 2);
  EXPECT_TRUE(c.attr & runtime::SegmentCache::kG);
}

TEST(Descriptors, DataLoadSetsCacheAndAccessedBit) {
  TestMachine m;
  EXPECT_FALSE(m.gdt(TestMachine::kUData).type() & 1);
  m.enter_user(0, 0x1000);
  ASSERT_EQ(load_segment(m.s, m.mem, Seg::ES, TestMachine::kUData), std::nullopt);
  EXPECT_TRUE(m.gdt(TestMachine::kUData).type() & 1) << "accessed bit written back";
  EXPECT_EQ(m.s.regs.sreg(Seg::ES).limit, 0xffffffffu);
  EXPECT_EQ(m.s.regs.sreg(Seg::ES).selector, TestMachine::kUData);
  // Byte-granular small segment with a base.
  ASSERT_EQ(load_segment(m.s, m.mem, Seg::FS, TestMachine::kSmall), std::nullopt);
  EXPECT_EQ(m.s.regs.sreg(Seg::FS).base, 0x40000u);
  EXPECT_EQ(m.s.regs.sreg(Seg::FS).limit, 0xfffu);
}

TEST(Descriptors, NullSelectors) {
  TestMachine m;
  m.enter_user(0, 0x1000);
  ASSERT_EQ(load_segment(m.s, m.mem, Seg::DS, 3), std::nullopt);
  EXPECT_FALSE(m.s.regs.sreg(Seg::DS).present());
  uint32_t lin;
  EXPECT_EQ(segment_linear(m.s, Seg::DS, 0, 1, Access::kRead, lin), F(vec::GP, 0)) << "use of a null segment";
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::SS, 3), F(vec::GP, 0)) << "SS can never be null";
}

TEST(Descriptors, EachFaultOfADataLoad) {
  TestMachine m;
  m.enter_user(0, 0x1000);
  const auto before = m.s;
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::DS, 0x7b), F(vec::GP, 0x78)) << "beyond the GDT limit";
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::DS, TestMachine::kAbsent), F(vec::NP, TestMachine::kAbsent));
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::DS, TestMachine::kKData), F(vec::GP, TestMachine::kKData)) << "DPL < CPL";
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::DS, TestMachine::kExecOnly), F(vec::GP, TestMachine::kExecOnly));
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::DS, TestMachine::kTssSel | 3), F(vec::GP, TestMachine::kTssSel))
      << "system descriptor";
  EXPECT_EQ(m.s, before) << "a failed load changes nothing";
  // Conforming readable code is loadable from CPL 3 despite DPL 0.
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::DS, TestMachine::kConforming | 3), std::nullopt);
  // RPL > DPL at CPL 0.
  m.enter_kernel(0, 0x1000);
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::DS, TestMachine::kKData | 3), F(vec::GP, TestMachine::kKData));
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::DS, TestMachine::kUData), std::nullopt) << "DPL 3 data from CPL 0";
}

TEST(Descriptors, EachFaultOfAStackLoad) {
  TestMachine m;
  m.enter_kernel(0, 0x1000);
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::SS, TestMachine::kKData | 1), F(vec::GP, TestMachine::kKData))
      << "RPL != CPL";
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::SS, TestMachine::kUData & ~3), F(vec::GP, TestMachine::kUData & ~3))
      << "DPL != CPL";
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::SS, TestMachine::kKCode), F(vec::GP, TestMachine::kKCode)) << "code";
  m.enter_user(0, 0x1000);
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::SS, TestMachine::kReadOnly | 3), F(vec::GP, TestMachine::kReadOnly))
      << "read-only data";
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::SS, TestMachine::kAbsent | 3), F(vec::SS, TestMachine::kAbsent))
      << "not present is #SS";
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::SS, TestMachine::kUData), std::nullopt);
}

TEST(Descriptors, LdtSelectors) {
  TestMachine m;
  m.enter_user(0, 0x1000);
  ASSERT_EQ(load_segment(m.s, m.mem, Seg::GS, 0x07), std::nullopt);
  EXPECT_EQ(m.s.regs.sreg(Seg::GS).base, 0x50000u);
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::GS, 0x27), F(vec::GP, 0x24)) << "beyond the LDT limit";
  m.s.sys.ldtr = null_segment(0);
  EXPECT_EQ(load_segment(m.s, m.mem, Seg::GS, 0x07), F(vec::GP, 0x04)) << "no LDT";
}

TEST(Descriptors, DescriptorReadPageFaultComesBack) {
  TestMachine m;
  m.mem.make_absent(TestMachine::kGdt);
  m.enter_user(0, 0x1000);
  auto f = load_segment(m.s, m.mem, Seg::DS, TestMachine::kUData);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->vector, vec::PF);
  EXPECT_EQ(f->cr2, TestMachine::kGdt + (TestMachine::kUData & ~7u));
}

TEST(Descriptors, LldtAndLtr) {
  TestMachine m;
  EXPECT_EQ(m.s.sys.ldtr.base, TestMachine::kLdt);
  EXPECT_EQ(load_ldtr(m.s, m.mem, TestMachine::kKData), F(vec::GP, TestMachine::kKData)) << "not an LDT";
  EXPECT_EQ(load_ldtr(m.s, m.mem, 0x07), F(vec::GP, 0x04)) << "TI set";
  EXPECT_EQ(load_ldtr(m.s, m.mem, 0), std::nullopt);
  // LTR set the busy bit; a busy TSS cannot be loaded again.
  EXPECT_EQ(m.gdt(TestMachine::kTssSel).type(), desc_type::kTss32Busy);
  EXPECT_EQ(m.s.sys.tr.type(), desc_type::kTss32Busy);
  EXPECT_EQ(load_tr(m.s, m.mem, TestMachine::kTssSel), F(vec::GP, TestMachine::kTssSel));
  EXPECT_EQ(load_tr(m.s, m.mem, 0), F(vec::GP, 0));
  m.set_gdt(TestMachine::kDfTssSel, test::seg_desc(TestMachine::kDfTss, 0x67, 0x9, 0, false, false));
  EXPECT_EQ(load_tr(m.s, m.mem, TestMachine::kDfTssSel), F(vec::NP, TestMachine::kDfTssSel));
}

TEST(Descriptors, LarLslVerrVerw) {
  TestMachine m;
  m.enter_user(0, 0x1000);
  Fault f;
  EXPECT_EQ(lar(m.s, m.mem, TestMachine::kUData, f), m.gdt(TestMachine::kUData).hi & 0x00f0ff00u);
  EXPECT_EQ(lar(m.s, m.mem, TestMachine::kKData, f), std::nullopt) << "DPL 0 from CPL 3";
  EXPECT_EQ(lar(m.s, m.mem, 0, f), std::nullopt);
  EXPECT_EQ(lar(m.s, m.mem, 0x7b, f), std::nullopt) << "beyond the limit only clears ZF";
  EXPECT_EQ(lar(m.s, m.mem, TestMachine::kUserTaskGate | 3, f).has_value(), true) << "task gates are valid for LAR";
  EXPECT_EQ(lsl(m.s, m.mem, TestMachine::kUserTaskGate | 3, f), std::nullopt) << "but not for LSL";
  EXPECT_EQ(lsl(m.s, m.mem, TestMachine::kSmall, f), 0xfffu);
  EXPECT_EQ(lsl(m.s, m.mem, TestMachine::kUData, f), 0xffffffffu);
  EXPECT_TRUE(verr(m.s, m.mem, TestMachine::kUData, f));
  EXPECT_FALSE(verr(m.s, m.mem, TestMachine::kExecOnly, f));
  EXPECT_TRUE(verr(m.s, m.mem, TestMachine::kConforming, f)) << "conforming skips the privilege test";
  EXPECT_TRUE(verw(m.s, m.mem, TestMachine::kUData, f));
  EXPECT_FALSE(verw(m.s, m.mem, TestMachine::kReadOnly, f));
  EXPECT_FALSE(verw(m.s, m.mem, TestMachine::kKData, f));
  EXPECT_EQ(f, std::nullopt);
  m.mem.make_absent(TestMachine::kGdt);
  EXPECT_FALSE(verw(m.s, m.mem, TestMachine::kUData, f));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->vector, vec::PF);
}

TEST(Descriptors, LimitAndTypeChecksOfAccesses) {
  TestMachine m;
  m.enter_user(0, 0x1000);
  ASSERT_EQ(load_segment(m.s, m.mem, Seg::FS, TestMachine::kSmall), std::nullopt);
  ASSERT_EQ(load_segment(m.s, m.mem, Seg::GS, TestMachine::kExpandDown), std::nullopt);
  uint32_t lin = 0;
  EXPECT_EQ(segment_linear(m.s, Seg::FS, 0xffc, 4, Access::kRead, lin), std::nullopt);
  EXPECT_EQ(lin, 0x40ffcu);
  EXPECT_EQ(segment_linear(m.s, Seg::FS, 0xffd, 4, Access::kRead, lin), F(vec::GP, 0));
  // Expand-down: valid offsets are above the limit.
  EXPECT_EQ(segment_linear(m.s, Seg::GS, 0xfff, 1, Access::kRead, lin), F(vec::GP, 0));
  EXPECT_EQ(segment_linear(m.s, Seg::GS, 0x1000, 4, Access::kWrite, lin), std::nullopt);
  EXPECT_EQ(segment_linear(m.s, Seg::GS, 0xfffffffe, 4, Access::kWrite, lin), F(vec::GP, 0));
  // SS faults are #SS; code is not writable.
  m.s.regs.sreg(Seg::SS) = m.gdt(TestMachine::kSmall).cache(TestMachine::kSmall);
  EXPECT_EQ(segment_linear(m.s, Seg::SS, 0x1000, 1, Access::kWrite, lin), F(vec::SS, 0));
  EXPECT_EQ(segment_linear(m.s, Seg::CS, 0, 1, Access::kWrite, lin), F(vec::GP, 0));
  m.s.regs.sreg(Seg::DS) = m.gdt(TestMachine::kExecOnly).cache(TestMachine::kExecOnly);
  EXPECT_EQ(segment_linear(m.s, Seg::DS, 0, 1, Access::kRead, lin), F(vec::GP, 0));
}

}  // namespace
}  // namespace bt86::machine
