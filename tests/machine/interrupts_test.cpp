// Event delivery through the IDT (every exception vector, privilege change
// to the TSS stack and IRET back, nested events, #DF through a task gate,
// triple fault), IRET's checks and the exit-to-event mapping (SDM vol. 3,
// ch. 6 and 7).
#include "machine/interrupts.h"

#include <gtest/gtest.h>

#include "tests/machine/test_machine.h"

namespace bt86::machine {
namespace {

using runtime::Seg;
using test::TestMachine;
namespace fl = runtime::flags;

bool has_error_code(uint8_t v) {
  return v == vec::DF || v == vec::TS || v == vec::NP || v == vec::SS || v == vec::GP || v == vec::PF ||
         v == vec::AC;
}

TEST(Interrupts, EveryExceptionVectorAtCpl0) {
  for (uint8_t v = 0; v < 20; ++v) {
    if (v == 9 || v == 15) continue;  // reserved vectors
    TestMachine m;
    m.s.regs.eip = 0x1234;
    m.s.regs.eflags = fl::Fixed1 | fl::IF | fl::TF | fl::CF;
    GuestFault f{v, has_error_code(v), has_error_code(v) ? 0x5550u + v : 0, v == vec::PF ? 0xdead000u : 0};
    const DeliveryResult r = deliver(m.s, Event::exception(f), m.mem, m.hooks);
    ASSERT_FALSE(r.shutdown) << int(v);
    EXPECT_EQ(r.nested_faults, 0);
    EXPECT_EQ(m.s.regs.eip, TestMachine::kHandlers + 16u * v);
    EXPECT_EQ(m.s.regs.sreg(Seg::CS).selector, TestMachine::kKCode);
    EXPECT_FALSE(m.s.regs.eflags & fl::IF) << "interrupt gate clears IF";
    EXPECT_FALSE(m.s.regs.eflags & fl::TF);
    const uint32_t esp = m.s.regs.reg(runtime::ESP);
    const uint32_t frame = has_error_code(v) ? 16 : 12;
    ASSERT_EQ(esp, TestMachine::kKernelStack - frame) << "same privilege: no stack switch";
    uint32_t p = esp;
    if (has_error_code(v)) {
      EXPECT_EQ(m.mem.get32(p), 0x5550u + v);
      p += 4;
    }
    EXPECT_EQ(m.mem.get32(p), 0x1234u);
    EXPECT_EQ(m.mem.get32(p + 4), TestMachine::kKCode);
    EXPECT_EQ(m.mem.get32(p + 8), fl::Fixed1 | fl::IF | fl::TF | fl::CF);
    if (v == vec::PF) {
      EXPECT_EQ(m.s.sys.cr2, 0xdead000u);
    }
  }
}

TEST(Interrupts, SystemCallFromCpl3UsesTheTssStackAndIretReturns) {
  TestMachine m;
  m.set_idt(0x80, test::gate_desc(TestMachine::kKCode, 0x7000, desc_type::kTrapGate32, 3));
  m.enter_user(0x401000, TestMachine::kUserStack);
  m.s.regs.eflags = fl::Fixed1 | fl::IF;
  const DeliveryResult r = deliver(m.s, Event::software(0x80), m.mem, m.hooks);
  ASSERT_FALSE(r.shutdown);
  EXPECT_EQ(m.s.cpl, 0);
  EXPECT_EQ(m.s.regs.eip, 0x7000u);
  EXPECT_TRUE(m.s.regs.eflags & fl::IF) << "trap gate keeps IF";
  EXPECT_EQ(m.s.regs.sreg(Seg::SS).selector, TestMachine::kKData);
  const uint32_t esp = m.s.regs.reg(runtime::ESP);
  ASSERT_EQ(esp, TestMachine::kKernelStack - 20);
  EXPECT_EQ(m.mem.get32(esp), 0x401000u);
  EXPECT_EQ(m.mem.get32(esp + 4), TestMachine::kUCode);
  EXPECT_EQ(m.mem.get32(esp + 8), fl::Fixed1 | fl::IF);
  EXPECT_EQ(m.mem.get32(esp + 12), TestMachine::kUserStack);
  EXPECT_EQ(m.mem.get32(esp + 16), TestMachine::kUData);
  EXPECT_GT(m.hooks.segment_changes, 0);

  // The kernel loads its own data segment into FS; IRET back to CPL 3 nulls it.
  m.s.regs.sreg(Seg::FS) = m.gdt(TestMachine::kKData).cache(TestMachine::kKData);
  ASSERT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), std::nullopt);
  EXPECT_EQ(m.s.cpl, 3);
  EXPECT_EQ(m.s.regs.eip, 0x401000u);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kUserStack);
  EXPECT_EQ(m.s.regs.sreg(Seg::SS).selector, TestMachine::kUData);
  EXPECT_EQ(m.s.regs.sreg(Seg::DS).selector, TestMachine::kUData) << "DPL 3 data stays";
  EXPECT_EQ(m.s.regs.sreg(Seg::FS).selector, 0) << "DPL 0 data is nulled";
  EXPECT_FALSE(m.s.regs.sreg(Seg::FS).present());
}

TEST(Interrupts, IntNThroughAKernelOnlyGateIsGeneralProtection) {
  TestMachine m;
  m.enter_user(0x401002, TestMachine::kUserStack);
  const DeliveryResult r = deliver(m.s, Event::software(0x30), m.mem, m.hooks);
  EXPECT_EQ(r.delivered.vector, vec::GP);
  EXPECT_EQ(r.delivered.error, 0x30u * 8 + 2) << "IDT bit, no EXT";
  EXPECT_EQ(m.s.regs.eip, TestMachine::kHandlers + 16u * vec::GP);
  EXPECT_EQ(m.mem.get32(m.s.regs.reg(runtime::ESP)), 0x30u * 8 + 2);
  // INT3 is checked too, an exception is not.
  m.enter_user(0x401002, TestMachine::kUserStack);
  EXPECT_EQ(deliver(m.s, Event::software_exception(vec::BP), m.mem, m.hooks).delivered.vector, vec::GP);
  m.enter_user(0x401002, TestMachine::kUserStack);
  EXPECT_EQ(deliver(m.s, Event::exception(make_fault(vec::BP)), m.mem, m.hooks).delivered.vector, vec::BP);
}

TEST(Interrupts, ExternalInterruptThroughAnAbsentGateHasTheExtBit) {
  TestMachine m;
  m.set_idt(0x21, test::gate_desc(TestMachine::kKCode, 0x7000, desc_type::kIntGate32, 0, false));
  const DeliveryResult r = deliver(m.s, Event::external(0x21), m.mem, m.hooks);
  EXPECT_EQ(r.delivered.vector, vec::NP);
  EXPECT_EQ(r.delivered.error, 0x21u * 8 + 3);
  // A gate beyond the IDT limit: #GP with the same encoding.
  m = TestMachine();
  m.s.sys.idtr.limit = 0x21 * 8 + 6;
  EXPECT_EQ(deliver(m.s, Event::external(0x21), m.mem, m.hooks).delivered,
            Event::exception(make_fault(vec::GP, 0x21u * 8 + 3)));
  // Not a gate type.
  m = TestMachine();
  m.set_idt(0x22, test::seg_desc(0, 0xfffff, 0x2, 0));
  EXPECT_EQ(deliver(m.s, Event::software(0x22), m.mem, m.hooks).delivered,
            Event::exception(make_fault(vec::GP, 0x22u * 8 + 2)));
}

TEST(Interrupts, NestedInterruptsStackUp) {
  TestMachine m;
  m.enter_user(0x401000, TestMachine::kUserStack);
  ASSERT_FALSE(deliver(m.s, Event::external(0x20), m.mem, m.hooks).shutdown);
  const uint32_t first = m.s.regs.reg(runtime::ESP);
  EXPECT_EQ(first, TestMachine::kKernelStack - 20);
  // A page fault in the handler: same privilege, pushed below the first frame.
  m.s.regs.eip = 0x7777;
  ASSERT_FALSE(deliver(m.s, Event::exception({vec::PF, true, pf::W, 0x1000}), m.mem, m.hooks).shutdown);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), first - 16);
  EXPECT_EQ(m.mem.get32(first - 16), pf::W);
  EXPECT_EQ(m.mem.get32(first - 12), 0x7777u);
  EXPECT_EQ(m.s.sys.cr2, 0x1000u);
  // Return from the page fault (after popping the error code), then from the interrupt.
  m.s.regs.reg(runtime::ESP) += 4;
  ASSERT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), std::nullopt);
  EXPECT_EQ(m.s.regs.eip, 0x7777u);
  EXPECT_EQ(m.s.cpl, 0);
  ASSERT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), std::nullopt);
  EXPECT_EQ(m.s.regs.eip, 0x401000u);
  EXPECT_EQ(m.s.cpl, 3);
}

TEST(Interrupts, StackFaultDuringDeliveryBecomesDoubleFaultThroughTaskGate) {
  TestMachine m;
  m.set_idt(vec::DF, test::gate_desc(TestMachine::kDfTssSel, 0, desc_type::kTaskGate, 0));
  m.enter_user(0x401000, TestMachine::kUserStack);
  m.s.regs.reg(runtime::EAX) = 0xaaaa;
  // The kernel stack is not mapped: #GP's frame push faults; a #PF after a
  // contributory fault is delivered serially, and its own push faults
  // again: #PF then #PF is a double fault (SDM vol. 3, table 6-5).
  m.mem.make_absent(TestMachine::kKernelStack - 4);
  const DeliveryResult r = deliver(m.s, Event::exception(make_fault(vec::GP, 0x18)), m.mem, m.hooks);
  ASSERT_FALSE(r.shutdown) << r.shutdown_reason;
  EXPECT_EQ(r.delivered.vector, vec::DF);
  EXPECT_EQ(r.nested_faults, 2);
  // Now in the #DF task.
  EXPECT_EQ(m.s.sys.tr.selector, TestMachine::kDfTssSel);
  EXPECT_EQ(m.s.regs.eip, TestMachine::kHandlers + 16u * vec::DF);
  EXPECT_EQ(m.s.cpl, 0);
  EXPECT_TRUE(m.s.regs.eflags & fl::NT);
  EXPECT_TRUE(m.s.sys.cr0 & cr0::TS);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kDfStack - 4) << "error code 0 pushed on the new stack";
  EXPECT_EQ(m.mem.get32(TestMachine::kDfStack - 4), 0u);
  EXPECT_EQ(m.mem.get16(TestMachine::kDfTss), TestMachine::kTssSel) << "back link";
  EXPECT_EQ(m.gdt(TestMachine::kDfTssSel).type(), desc_type::kTss32Busy);
  EXPECT_EQ(m.gdt(TestMachine::kTssSel).type(), desc_type::kTss32Busy) << "nesting keeps the old task busy";
  // The interrupted state is in the old TSS.
  EXPECT_EQ(m.mem.get32(TestMachine::kTss + 0x20), 0x401000u);
  EXPECT_EQ(m.mem.get32(TestMachine::kTss + 0x28), 0xaaaau);
  EXPECT_EQ(m.mem.get16(TestMachine::kTss + 0x4c), TestMachine::kUCode);

  // IRET with NT returns to the old task and clears the #DF TSS's busy bit.
  m.s.regs.reg(runtime::ESP) += 4;
  ASSERT_EQ(iret(m.s, m.mem, m.hooks, 4, 0x9999), std::nullopt);
  EXPECT_EQ(m.s.sys.tr.selector, TestMachine::kTssSel);
  EXPECT_EQ(m.s.regs.eip, 0x401000u);
  EXPECT_EQ(m.s.cpl, 3);
  EXPECT_EQ(m.s.regs.reg(runtime::EAX), 0xaaaau);
  EXPECT_EQ(m.gdt(TestMachine::kDfTssSel).type(), desc_type::kTss32Avail);
  EXPECT_EQ(m.mem.get32(TestMachine::kDfTss + 0x20), 0x9999u) << "the #DF task resumes after its IRET";
  EXPECT_FALSE(m.mem.get32(TestMachine::kDfTss + 0x24) & fl::NT);
}

TEST(Interrupts, PageFaultThenPageFaultIsDoubleFaultButBenignThenFaultIsNot) {
  TestMachine m;
  m.mem.make_absent(TestMachine::kKernelStack - 4);
  m.mem.make_absent(TestMachine::kDfStack - 4);
  m.s.regs.reg(runtime::ESP) = TestMachine::kKernelStack;
  // #UD (benign) whose push faults: the #PF is delivered, whose push
  // faults again: #DF, whose push faults: triple fault.
  const DeliveryResult r = deliver(m.s, Event::exception(make_fault(vec::UD)), m.mem, m.hooks);
  EXPECT_TRUE(r.shutdown);
  EXPECT_EQ(r.nested_faults, 3);
  EXPECT_NE(r.shutdown_reason.find("triple fault"), std::string::npos);
}

TEST(Interrupts, TripleFaultWithAnEmptyIdt) {
  TestMachine m;
  m.s.sys.idtr.limit = 0;
  const DeliveryResult r = deliver(m.s, Event::exception(make_fault(vec::DE)), m.mem, m.hooks);
  EXPECT_TRUE(r.shutdown);
}

TEST(Interrupts, BadHandlerCodeSegmentFaults) {
  TestMachine m;
  m.set_idt(0x40, test::gate_desc(TestMachine::kKData, 0x7000, desc_type::kIntGate32, 3));
  EXPECT_EQ(deliver(m.s, Event::software(0x40), m.mem, m.hooks).delivered,
            Event::exception(make_fault(vec::GP, TestMachine::kKData)));
  m = TestMachine();
  m.set_idt(0x41, test::gate_desc(TestMachine::kUCode, 0x7000, desc_type::kIntGate32, 3));
  EXPECT_EQ(deliver(m.s, Event::external(0x41), m.mem, m.hooks).delivered,
            Event::exception(make_fault(vec::GP, (TestMachine::kUCode & ~3) | 1))) << "DPL > CPL, EXT set";
  // Privilege change with a bad SS0 in the TSS: #TS (its handler is a task
  // gate, which needs no SS0).
  m = TestMachine();
  m.mem.put16(TestMachine::kTss + 8, TestMachine::kUData);
  m.set_idt(vec::TS, test::gate_desc(TestMachine::kDfTssSel, 0, desc_type::kTaskGate, 0));
  m.enter_user(0x401000, TestMachine::kUserStack);
  EXPECT_EQ(deliver(m.s, Event::external(0x20), m.mem, m.hooks).delivered,
            Event::exception(make_fault(vec::TS, (TestMachine::kUData & ~3) | 1)));
}

TEST(Interrupts, IretChecks) {
  TestMachine m;
  const uint32_t sp = TestMachine::kKernelStack - 12;
  m.s.regs.reg(runtime::ESP) = sp;
  m.mem.put32(sp, 0x5000);
  m.mem.put32(sp + 4, TestMachine::kKData);
  m.mem.put32(sp + 8, fl::Fixed1);
  const VcpuState before = m.s;
  EXPECT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), make_fault(vec::GP, TestMachine::kKData)) << "not code";
  m.mem.put32(sp + 4, 0);
  EXPECT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), make_fault(vec::GP, 0)) << "null CS";
  m.mem.put32(sp + 4, TestMachine::kUCode & ~3);
  EXPECT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), make_fault(vec::GP, TestMachine::kUCode & ~3)) << "DPL != RPL";
  EXPECT_EQ(m.s, before);
  // Same privilege at CPL 0 can change IOPL and IF; at CPL 3 neither.
  m.mem.put32(sp + 4, TestMachine::kKCode);
  m.mem.put32(sp + 8, fl::Fixed1 | fl::IOPL | fl::IF | fl::ZF);
  m.s.regs.eflags = fl::Fixed1;
  ASSERT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), std::nullopt);
  EXPECT_EQ(m.s.regs.eflags, fl::Fixed1 | fl::IOPL | fl::IF | fl::ZF);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kKernelStack);
  EXPECT_EQ(merge_eflags(fl::Fixed1, fl::IOPL | fl::IF | fl::CF, 3, 4, true), fl::Fixed1 | fl::CF);
  EXPECT_EQ(merge_eflags(fl::Fixed1 | (3u << 12), fl::IF, 3, 4, false), fl::Fixed1 | fl::IF | (3u << 12))
      << "IF when CPL <= IOPL; IOPL itself only at CPL 0";
  EXPECT_EQ(merge_eflags(fl::Fixed1, 0xffffffffu, 0, 2, false), 0x7fd7u) << "16-bit form: bits 0..15 only";
}

// IRET reads its whole frame at once when that is safe; wherever it is not,
// the pops and their faults keep the architectural order.
TEST(Interrupts, IretFramePopsKeepTheirFaultOrder) {
  TestMachine m;
  const uint32_t page = 0x80000;  // the outer SS:ESP lies on the next page
  const uint32_t sp = page - 12;
  m.s.regs.reg(runtime::ESP) = sp;
  m.mem.put32(sp, 0x401000);
  m.mem.put32(sp + 4, TestMachine::kUCode);
  m.mem.put32(sp + 8, fl::Fixed1);
  m.mem.put32(page, TestMachine::kUserStack);
  m.mem.put32(page + 4, TestMachine::kUData);
  m.mem.make_absent(page);
  const VcpuState before = m.s;
  EXPECT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), (GuestFault{vec::PF, true, 0, page})) << "SS:ESP not present";
  m.mem.put32(sp + 4, TestMachine::kKData | 3);
  EXPECT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), make_fault(vec::GP, TestMachine::kKData)) << "CS is checked first";
  EXPECT_EQ(m.s, before);
  m.mem.put32(sp + 4, TestMachine::kUCode);
  m.mem.make_present(page);
  ASSERT_EQ(iret(m.s, m.mem, m.hooks, 4, 0), std::nullopt);
  EXPECT_EQ(m.s.cpl, 3);
  EXPECT_EQ(m.s.regs.eip, 0x401000u);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kUserStack);
  EXPECT_EQ(m.s.regs.sreg(Seg::SS).selector, TestMachine::kUData);

  // Outer return within one page: one read gives all five values.
  TestMachine o;
  const uint32_t osp = 0x80100;
  o.s.regs.reg(runtime::ESP) = osp;
  const uint32_t frame[5] = {0x402000, TestMachine::kUCode, fl::Fixed1 | fl::ZF, 0x1234, TestMachine::kUData};
  for (int i = 0; i < 5; ++i) o.mem.put32(osp + 4 * i, frame[i]);
  const int reads = o.mem.reads;
  ASSERT_EQ(iret(o.s, o.mem, o.hooks, 4, 0), std::nullopt);
  EXPECT_EQ(o.s.regs.eip, 0x402000u);
  EXPECT_EQ(o.s.regs.reg(runtime::ESP), 0x1234u);
  EXPECT_EQ(o.s.regs.eflags, fl::Fixed1 | fl::ZF);
  EXPECT_EQ(o.s.regs.sreg(Seg::SS).selector, TestMachine::kUData);
  EXPECT_EQ(o.mem.reads - reads, 3) << "the frame, the CS and the SS descriptor";

  // A same-level return whose three values end at the SS limit: the two
  // values above them are never read (they would be beyond the limit).
  TestMachine l;
  l.s.regs.sreg(Seg::SS) = test::seg_desc(0x40000, 0xfff, 0x3, 0).cache(TestMachine::kKData);
  l.s.regs.reg(runtime::ESP) = 0xff4;
  l.mem.put32(0x40ff4, 0x5000);
  l.mem.put32(0x40ff8, TestMachine::kKCode);
  l.mem.put32(0x40ffc, fl::Fixed1);
  ASSERT_EQ(iret(l.s, l.mem, l.hooks, 4, 0), std::nullopt);
  EXPECT_EQ(l.s.regs.eip, 0x5000u);
  EXPECT_EQ(l.s.regs.reg(runtime::ESP), 0x1000u);
}

TEST(Interrupts, RealModeUsesTheIvt) {
  TestMachine m;
  m.s.sys.cr0 = cr0::ET;
  m.s.sys.idtr = {0, 0x3ff};
  m.mem.put32(0x21 * 4, 0xf000e987);
  m.s.regs.sreg(Seg::CS) = {0x1000, 0x10000, 0xffff, 0x9b};
  m.s.regs.sreg(Seg::SS) = {0x2000, 0x20000, 0xffff, 0x93};
  m.s.regs.eip = 0x123;
  m.s.regs.reg(runtime::ESP) = 0x100;
  m.s.regs.eflags = fl::Fixed1 | fl::IF;
  ASSERT_FALSE(deliver(m.s, Event::software(0x21), m.mem, m.hooks).shutdown);
  EXPECT_EQ(m.s.regs.sreg(Seg::CS).base, 0xf0000u);
  EXPECT_EQ(m.s.regs.eip, 0xe987u);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), 0xfau);
  EXPECT_EQ(m.mem.get16(0x200fa), 0x123);
  EXPECT_EQ(m.mem.get16(0x200fc), 0x1000);
  ASSERT_EQ(iret(m.s, m.mem, m.hooks, 2, 0), std::nullopt);
  EXPECT_EQ(m.s.regs.eip, 0x123u);
  EXPECT_EQ(m.s.regs.sreg(Seg::CS).base, 0x10000u);
  EXPECT_TRUE(m.s.regs.eflags & fl::IF);
}

TEST(Interrupts, ExitRecordsMapToEvents) {
  VcpuState s;
  runtime::ExitRecord e;
  e.kind = runtime::ExitKind::PageFault;
  e.error_code = pf::U | pf::W;
  e.fault_address = 0x1234;
  ExitAction a = action_for_exit(e, s);
  EXPECT_EQ(a.kind, ExitActionKind::kPageFault);
  EXPECT_EQ(a.page_fault, (GuestFault{vec::PF, true, pf::U | pf::W, 0x1234}));

  e = {};
  e.kind = runtime::ExitKind::SoftwareInterrupt;
  e.vector = 0x80;
  a = action_for_exit(e, s);
  EXPECT_EQ(a.kind, ExitActionKind::kDeliver);
  EXPECT_EQ(a.event, Event::software(0x80));

  e.kind = runtime::ExitKind::GeneralProtection;
  e.error_code = 0x18;
  a = action_for_exit(e, s);
  EXPECT_EQ(a.kind, ExitActionKind::kInterpret);
  EXPECT_EQ(a.page_fault, make_fault(vec::GP, 0x18));

  struct Case { runtime::ExitKind kind; Event event; };
  for (const Case& c : {Case{runtime::ExitKind::DivideError, Event::exception(make_fault(vec::DE))},
                        Case{runtime::ExitKind::InvalidOpcode, Event::exception(make_fault(vec::UD))},
                        Case{runtime::ExitKind::Breakpoint, Event::software_exception(vec::BP)},
                        Case{runtime::ExitKind::Overflow, Event::software_exception(vec::OF)},
                        Case{runtime::ExitKind::BoundRange, Event::exception(make_fault(vec::BR))},
                        Case{runtime::ExitKind::AlignmentCheck, Event::exception(make_fault(vec::AC, 0))},
                        Case{runtime::ExitKind::FpuError, Event::exception(make_fault(vec::MF))},
                        Case{runtime::ExitKind::SimdError, Event::exception(make_fault(vec::XM))},
                        Case{runtime::ExitKind::SingleStep, Event::exception(make_fault(vec::DB))}}) {
    e = {};
    e.kind = c.kind;
    a = action_for_exit(e, s);
    EXPECT_EQ(a.kind, ExitActionKind::kDeliver) << runtime::exit_kind_name(c.kind);
    EXPECT_EQ(a.event, c.event) << runtime::exit_kind_name(c.kind);
  }
  EXPECT_TRUE(s.sys.dr[6] & (1u << 14)) << "single step sets DR6.BS";

  e = {};
  e.kind = runtime::ExitKind::SegmentNotPresent;
  e.error_code = 0x28;
  EXPECT_EQ(action_for_exit(e, s).event, Event::exception(make_fault(vec::NP, 0x28)));
  e.kind = runtime::ExitKind::StackFault;
  EXPECT_EQ(action_for_exit(e, s).event, Event::exception(make_fault(vec::SS, 0x28)));

  e = {};
  e.kind = runtime::ExitKind::Syscall;
  s.regs.eip = 0x1002;
  a = action_for_exit(e, s);
  EXPECT_EQ(a.event, Event::exception(make_fault(vec::UD)));
  EXPECT_EQ(s.regs.eip, 0x1000u) << "#UD is a fault: EIP back at the syscall";

  e = {};
  e.kind = runtime::ExitKind::SegmentLimit;
  e.segment = Seg::SS;
  e.beyond_guest_limit = true;
  EXPECT_EQ(action_for_exit(e, s).event, Event::exception(make_fault(vec::SS, 0)));
  e.beyond_guest_limit = false;
  EXPECT_EQ(action_for_exit(e, s).kind, ExitActionKind::kSegmentLimit);
  e = {};
  e.kind = runtime::ExitKind::Preempted;
  EXPECT_EQ(action_for_exit(e, s).kind, ExitActionKind::kNone);
  e.kind = runtime::ExitKind::Escaped64;
  EXPECT_EQ(action_for_exit(e, s).kind, ExitActionKind::kGuestError);
  e.kind = runtime::ExitKind::Cpuid;
  EXPECT_EQ(action_for_exit(e, s).kind, ExitActionKind::kInterpret);
}

}  // namespace
}  // namespace bt86::machine
