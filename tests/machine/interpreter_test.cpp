// The interpreter of sensitive instructions: each instruction from guest
// bytes at CS:EIP, its privilege rules, what it asks of the hooks, and the
// exception it delivers when it faults.
#include "machine/interpreter.h"

#include <gtest/gtest.h>

#include "machine/cpu_model.h"
#include "tests/machine/test_machine.h"

namespace bt86::machine {
namespace {

using runtime::Seg;
using test::TestMachine;
namespace fl = runtime::flags;
constexpr uint32_t kCode = TestMachine::kCode;

struct Guest : TestMachine {
  StepResult step(std::initializer_list<uint8_t> bytes, const ExecuteOptions& o = {}) {
    mem.put(s.regs.eip, bytes);
    return execute(s, mem, hooks, o);
  }
  // The exception the step delivered (vector, error code on the handler's stack).
  void expect_fault(const StepResult& r, uint8_t vector, std::optional<uint32_t> error = std::nullopt) {
    ASSERT_TRUE(r.delivered);
    EXPECT_EQ(r.event.vector, vector);
    EXPECT_EQ(s.regs.eip, kHandlers + 16u * vector);
    if (error) {
      EXPECT_EQ(r.event.error, *error);
      EXPECT_EQ(mem.get32(s.regs.reg(runtime::ESP)), *error);
    }
  }
  Guest() { s.regs.eip = kCode; }
  void user() { enter_user(kCode, kUserStack); }
};

TEST(Interpreter, CliStiAndIopl) {
  Guest m;
  StepResult r = m.step({0xfa});  // cli
  EXPECT_FALSE(r.delivered);
  EXPECT_FALSE(m.s.regs.eflags & fl::IF);
  EXPECT_EQ(m.s.regs.eip, kCode + 1);
  r = m.step({0xfb});  // sti
  EXPECT_TRUE(m.s.regs.eflags & fl::IF);
  EXPECT_TRUE(m.s.interrupt_shadow) << "sti with IF=0 blocks interrupts for one instruction";
  r = m.step({0xfb});
  EXPECT_FALSE(m.s.interrupt_shadow) << "no shadow when IF was already 1";
  m.user();
  r = m.step({0xfa});
  m.expect_fault(r, vec::GP, 0);
  EXPECT_EQ(m.mem.get32(m.s.regs.reg(runtime::ESP) + 4), kCode) << "fault: EIP at the cli";
  m.user();
  m.s.regs.eflags |= fl::IOPL;
  r = m.step({0xfa});
  EXPECT_FALSE(r.delivered) << "IOPL 3 allows cli at CPL 3";
  EXPECT_FALSE(m.s.regs.eflags & fl::IF);
}

TEST(Interpreter, PushfPopfAtEachPrivilege) {
  Guest m;
  m.s.regs.eflags = fl::Fixed1 | fl::IF | fl::RF;
  m.step({0x9c});  // pushfd
  EXPECT_EQ(m.mem.get32(m.s.regs.reg(runtime::ESP)), fl::Fixed1 | fl::IF) << "RF is cleared in the image";
  m.mem.put32(m.s.regs.reg(runtime::ESP), fl::IOPL | fl::CF | fl::VM);
  m.step({0x9d});  // popfd at CPL 0: IF and IOPL change, VM never
  EXPECT_EQ(m.s.regs.eflags, fl::Fixed1 | fl::IOPL | fl::CF);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kKernelStack);
  m.user();
  m.s.regs.eflags = fl::Fixed1 | fl::IF;
  m.s.regs.reg(runtime::ESP) -= 4;
  m.mem.put32(m.s.regs.reg(runtime::ESP), fl::IOPL | fl::ZF);
  m.step({0x9d});  // popfd at CPL 3, IOPL 0: IF and IOPL silently kept
  EXPECT_EQ(m.s.regs.eflags, fl::Fixed1 | fl::IF | fl::ZF);
  m.s.regs.reg(runtime::ESP) -= 2;
  m.mem.put16(m.s.regs.reg(runtime::ESP), fl::CF);
  m.step({0x66, 0x9d});  // popf (16-bit)
  EXPECT_EQ(m.s.regs.eflags, fl::Fixed1 | fl::IF | fl::CF);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kUserStack);
}

TEST(Interpreter, InOutReachTheHooks) {
  Guest m;
  m.s.regs.reg(runtime::EAX) = 0x12345678;
  m.s.regs.reg(runtime::EDX) = 0x3f8;
  m.step({0xee});        // out dx, al
  m.step({0x66, 0xef});  // out dx, ax
  m.step({0xe7, 0x70});  // out 0x70, eax
  ASSERT_EQ(m.hooks.outs.size(), 3u);
  EXPECT_EQ(m.hooks.outs[0], (test::FakeHooks::Io{0x3f8, 1, 0x78}));
  EXPECT_EQ(m.hooks.outs[1], (test::FakeHooks::Io{0x3f8, 2, 0x5678}));
  EXPECT_EQ(m.hooks.outs[2], (test::FakeHooks::Io{0x70, 4, 0x12345678}));
  m.hooks.in_value = 0xabcdef01;
  m.step({0xe4, 0x60});  // in al, 0x60
  EXPECT_EQ(m.s.regs.reg(runtime::EAX), 0x12345601u);
  m.step({0xed});  // in eax, dx
  EXPECT_EQ(m.s.regs.reg(runtime::EAX), 0xabcdef01u);
  EXPECT_EQ(m.hooks.ins.back().port, 0x3f8);
}

TEST(Interpreter, RepStringIo) {
  Guest m;
  m.mem.put(0x8000, {1, 2, 3, 4, 5});
  m.s.regs.reg(runtime::ESI) = 0x8000;
  m.s.regs.reg(runtime::ECX) = 5;
  m.s.regs.reg(runtime::EDX) = 0xe9;
  m.step({0xf3, 0x6e});  // rep outsb
  ASSERT_EQ(m.hooks.outs.size(), 5u);
  EXPECT_EQ(m.hooks.outs[4].value, 5u);
  EXPECT_EQ(m.s.regs.reg(runtime::ECX), 0u);
  EXPECT_EQ(m.s.regs.reg(runtime::ESI), 0x8005u);
  m.hooks.in_value = 0xbeef;
  m.s.regs.reg(runtime::EDI) = 0x8100;
  m.s.regs.reg(runtime::ECX) = 3;
  m.step({0xf3, 0x66, 0x6d});  // rep insw
  EXPECT_EQ(m.mem.get16(0x8104), 0xbeef);
  EXPECT_EQ(m.s.regs.reg(runtime::EDI), 0x8106u);
  // A fault in the middle keeps the progress and EIP at the instruction.
  m.s.regs.eip = kCode;
  m.mem.make_absent(0xb000);
  m.s.regs.reg(runtime::EDI) = 0xaffe;
  m.s.regs.reg(runtime::ECX) = 4;
  StepResult r = m.step({0xf3, 0x66, 0x6d});
  m.expect_fault(r, vec::PF);
  EXPECT_EQ(m.s.regs.reg(runtime::ECX), 3u);
  EXPECT_EQ(m.s.regs.reg(runtime::EDI), 0xb000u);
  EXPECT_EQ(m.s.sys.cr2, 0xb000u);
}

TEST(Interpreter, IoPermissionBitmap) {
  Guest m;
  m.user();
  m.s.regs.reg(runtime::EDX) = 0x80;
  StepResult r = m.step({0xee});  // out dx, al: port 0x80 is open in the bitmap
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.hooks.outs.size(), 1u);
  m.s.regs.reg(runtime::EDX) = 0x81;
  r = m.step({0xee});
  m.expect_fault(r, vec::GP, 0);
  m.user();
  m.s.regs.reg(runtime::EDX) = 0x80;
  r = m.step({0x66, 0xef});  // a word at 0x80 also needs 0x81
  m.expect_fault(r, vec::GP, 0);
  EXPECT_EQ(m.hooks.outs.size(), 1u);
}

TEST(Interpreter, HltAndPrivilegedInstructionsAtCpl3) {
  Guest m;
  StepResult r = m.step({0xf4});
  EXPECT_EQ(r.kind, StepKind::kHalted);
  EXPECT_TRUE(m.s.halted);
  EXPECT_EQ(m.s.regs.eip, kCode + 1);
  const std::vector<std::vector<uint8_t>> privileged = {
      {0xf4}, {0x0f, 0x22, 0xd8}, {0x0f, 0x20, 0xc0}, {0x0f, 0x23, 0xf8}, {0x0f, 0x01, 0x10},
      {0x0f, 0x00, 0xd8}, {0x0f, 0x06}, {0x0f, 0x01, 0x38}, {0x0f, 0x09}, {0x0f, 0x32}, {0x0f, 0x30}};
  for (const auto& bytes : privileged) {
    m.user();
    for (size_t i = 0; i < bytes.size(); ++i) m.mem.put8(kCode + uint32_t(i), bytes[i]);
    r = execute(m.s, m.mem, m.hooks);
    m.expect_fault(r, vec::GP, 0);
    EXPECT_EQ(r.event.vector, vec::GP) << std::hex << int(bytes[0]) << " " << int(bytes[1]);
  }
}

TEST(Interpreter, ControlRegisters) {
  Guest m;
  m.s.regs.reg(runtime::EAX) = cr0::PE | cr0::PG | cr0::WP | (1u << 7);
  StepResult r = m.step({0x0f, 0x22, 0xc0});  // mov cr0, eax
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.s.sys.cr0, cr0::PE | cr0::PG | cr0::WP | cr0::ET) << "reserved bit dropped, ET kept";
  EXPECT_TRUE(r.mode_changed);
  EXPECT_TRUE(r.paging_changed);
  ASSERT_EQ(m.hooks.cr_writes.size(), 1u);
  EXPECT_EQ(m.hooks.cr_writes[0], (test::FakeHooks::CrWrite{0, cr0::PE | cr0::ET, m.s.sys.cr0}));
  m.s.regs.reg(runtime::EAX) = cr0::PG;
  r = m.step({0x0f, 0x22, 0xc0});
  m.expect_fault(r, vec::GP, 0);  // PG without PE
  m.s.regs.eip = kCode;
  m.s.regs.reg(runtime::EAX) = cr0::PE | cr0::NW;
  m.expect_fault(m.step({0x0f, 0x22, 0xc0}), vec::GP, 0);  // NW without CD
  for (uint32_t bad : {cr4::PAE, cr4::VME, cr4::PVI, cr4::DE, cr4::MCE, 1u << 11}) {
    m.s.regs.eip = kCode;
    m.s.regs.reg(runtime::EAX) = cr4::PSE | bad;
    m.expect_fault(m.step({0x0f, 0x22, 0xe0}), vec::GP, 0);  // mov cr4, eax
  }
  m.s.regs.eip = kCode;
  m.s.regs.reg(runtime::EAX) = cr4::PSE | cr4::PGE | cr4::OSFXSR;
  r = m.step({0x0f, 0x22, 0xe0});
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.s.sys.cr4, cr4::PSE | cr4::PGE | cr4::OSFXSR);
  m.s.regs.reg(runtime::EBX) = 0x12345fff;
  m.step({0x0f, 0x22, 0xdb});  // mov cr3, ebx
  EXPECT_EQ(m.s.sys.cr3, 0x12345018u);
  EXPECT_EQ(m.hooks.cr_writes.back().cr, 3);
  m.step({0x0f, 0x20, 0xd9});  // mov ecx, cr3
  EXPECT_EQ(m.s.regs.reg(runtime::ECX), 0x12345018u);
  m.s.sys.cr0 |= cr0::TS;
  m.step({0x0f, 0x06});  // clts
  EXPECT_FALSE(m.s.sys.cr0 & cr0::TS);
  m.s.regs.reg(runtime::EAX) = 0xfffe;  // lmsw cannot clear PE
  m.step({0x0f, 0x01, 0xf0});
  EXPECT_EQ(m.s.sys.cr0 & 0xf, uint32_t(cr0::PE | cr0::MP | cr0::EM | cr0::TS));
  m.step({0x0f, 0x01, 0xe2});  // smsw edx
  EXPECT_EQ(m.s.regs.reg(runtime::EDX), m.s.sys.cr0);
  m.s.regs.reg(runtime::EAX) = 0xffffffff;
  m.step({0x0f, 0x23, 0xf8});  // mov dr7, eax
  EXPECT_EQ(m.s.sys.dr[7], 0xffff27ffu);
  m.step({0x0f, 0x21, 0xe9});  // mov ecx, dr5 (= dr7)
  EXPECT_EQ(m.s.regs.reg(runtime::ECX), 0xffff27ffu);
}

TEST(Interpreter, DescriptorTableInstructions) {
  Guest m;
  m.mem.put16(0x8000, 0x7ff);
  m.mem.put32(0x8002, 0xc0100000);
  m.s.regs.reg(runtime::EBX) = 0x8000;
  m.step({0x0f, 0x01, 0x1b});  // lidt [ebx]
  EXPECT_EQ(m.s.sys.idtr, (TableReg{0xc0100000, 0x7ff}));
  m.s.sys.idtr = {TestMachine::kIdt, 0x7ff};  // back to the IDT the faults below need
  m.s.regs.reg(runtime::EBX) = 0x8100;
  m.step({0x0f, 0x01, 0x03});  // sgdt [ebx]
  EXPECT_EQ(m.mem.get16(0x8100), TestMachine::kGdtEntries * 8 - 1);
  EXPECT_EQ(m.mem.get32(0x8102), TestMachine::kGdt);
  m.step({0x0f, 0x00, 0xc8});  // str eax
  EXPECT_EQ(m.s.regs.reg(runtime::EAX), TestMachine::kTssSel);
  m.step({0x0f, 0x00, 0xc1});  // sldt ecx
  EXPECT_EQ(m.s.regs.reg(runtime::ECX), TestMachine::kLdtSel);
  m.s.regs.reg(runtime::EAX) = 0;
  m.step({0x0f, 0x00, 0xd0});  // lldt ax
  EXPECT_EQ(m.s.sys.ldtr.selector, 0);
  m.s.regs.reg(runtime::EAX) = TestMachine::kKData;
  m.expect_fault(m.step({0x0f, 0x00, 0xd0}), vec::GP, TestMachine::kKData);
  m.s.regs.eip = kCode;
  m.s.regs.reg(runtime::EAX) = TestMachine::kTssSel;
  m.expect_fault(m.step({0x0f, 0x00, 0xd8}), vec::GP, TestMachine::kTssSel);  // ltr of a busy TSS
  m.s.regs.eip = kCode;
  m.s.regs.reg(runtime::EAX) = 0x1234;
  m.step({0x0f, 0x01, 0x38});  // invlpg [eax]
  ASSERT_EQ(m.hooks.invlpgs.size(), 1u);
  EXPECT_EQ(m.hooks.invlpgs[0], 0x1234u);
  m.step({0x0f, 0x09});  // wbinvd
  EXPECT_EQ(m.hooks.flushes, 1);
}

TEST(Interpreter, LarLslVerrVerwSetZf) {
  Guest m;
  m.user();
  m.s.regs.reg(runtime::ECX) = TestMachine::kSmall;
  m.step({0x0f, 0x03, 0xc1});  // lsl eax, ecx
  EXPECT_TRUE(m.s.regs.eflags & fl::ZF);
  EXPECT_EQ(m.s.regs.reg(runtime::EAX), 0xfffu);
  m.s.regs.reg(runtime::ECX) = TestMachine::kKData;
  m.s.regs.reg(runtime::EAX) = 77;
  m.step({0x0f, 0x02, 0xc1});  // lar eax, ecx: DPL 0 from CPL 3
  EXPECT_FALSE(m.s.regs.eflags & fl::ZF);
  EXPECT_EQ(m.s.regs.reg(runtime::EAX), 77u) << "destination unchanged";
  m.s.regs.reg(runtime::EAX) = TestMachine::kReadOnly;
  m.step({0x0f, 0x00, 0xe0});  // verr ax
  EXPECT_TRUE(m.s.regs.eflags & fl::ZF);
  m.step({0x0f, 0x00, 0xe8});  // verw ax
  EXPECT_FALSE(m.s.regs.eflags & fl::ZF);
}

TEST(Interpreter, CpuidRdtscMsrs) {
  Guest m;
  m.user();
  m.s.regs.reg(runtime::EAX) = 0;
  m.step({0x0f, 0xa2});
  EXPECT_EQ(m.s.regs.reg(runtime::EBX), 0x756e6547u) << "Genu, the same at CPL 3";
  m.hooks.tsc = 0x100000005ull;
  m.s.sys.tsc_offset = 5;
  m.step({0x0f, 0x31});
  EXPECT_EQ(m.s.regs.reg(runtime::EAX), 10u);
  EXPECT_EQ(m.s.regs.reg(runtime::EDX), 1u);
  m.s.sys.cr4 = cr4::TSD;
  m.expect_fault(m.step({0x0f, 0x31}), vec::GP, 0);
  Guest k;
  k.s.regs.reg(runtime::ECX) = msr::kTsc;
  k.s.regs.reg(runtime::EAX) = 50;
  k.s.regs.reg(runtime::EDX) = 0;
  k.step({0x0f, 0x30});  // wrmsr
  EXPECT_EQ(guest_tsc(k.s, k.hooks.tsc), 50u);
  k.s.regs.reg(runtime::ECX) = msr::kApicBase;
  k.step({0x0f, 0x32});  // rdmsr
  EXPECT_EQ(k.s.regs.reg(runtime::EAX), 0xfee00900u);
  k.s.regs.reg(runtime::ECX) = 0x277;
  k.expect_fault(k.step({0x0f, 0x32}), vec::GP, 0);
}

TEST(Interpreter, SegmentRegisterLoadsAndStores) {
  Guest m;
  m.user();
  m.s.regs.reg(runtime::EAX) = TestMachine::kSmall;
  StepResult r = m.step({0x8e, 0xe0});  // mov fs, ax
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.s.regs.sreg(Seg::FS).base, 0x40000u);
  m.s.regs.reg(runtime::EAX) = TestMachine::kKData;
  r = m.step({0x8e, 0xd8});  // mov ds, ax: DPL 0 from CPL 3
  m.expect_fault(r, vec::GP, TestMachine::kKData);
  m.user();
  m.s.regs.reg(runtime::ESP) -= 4;
  m.mem.put32(m.s.regs.reg(runtime::ESP), TestMachine::kUData);
  r = m.step({0x17});  // pop ss
  EXPECT_FALSE(r.delivered);
  EXPECT_TRUE(m.s.interrupt_shadow);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kUserStack);
  m.mem.put32(m.s.regs.reg(runtime::ESP) - 4, 0xaaaaaaaa);
  m.step({0x0e});  // push cs: a 16-bit store into a 4-byte slot
  EXPECT_EQ(m.mem.get32(m.s.regs.reg(runtime::ESP)), 0xaaaa0000u | TestMachine::kUCode);
  m.step({0x8c, 0xc9});  // mov ecx, cs: zero-extended
  EXPECT_EQ(m.s.regs.reg(runtime::ECX), TestMachine::kUCode);
  m.mem.put32(0x8000, 0x1234);
  m.mem.put16(0x8004, TestMachine::kSmall);
  m.s.regs.reg(runtime::EBX) = 0x8000;
  m.step({0x0f, 0xb5, 0x33});  // lgs esi, [ebx]
  EXPECT_EQ(m.s.regs.reg(runtime::ESI), 0x1234u);
  EXPECT_EQ(m.s.regs.sreg(Seg::GS).selector, TestMachine::kSmall);
  m.mem.put16(0x8004, TestMachine::kAbsent);
  r = m.step({0xc4, 0x3b});  // les edi, [ebx]: not present
  m.expect_fault(r, vec::NP, TestMachine::kAbsent);
  m.user();
  r = m.step({0x8e, 0xc8});  // mov cs, ax
  m.expect_fault(r, vec::UD);
}

TEST(Interpreter, FarJumpCallAndReturn) {
  Guest m;
  // call far 0x08:0x31000, then retf.
  StepResult r = m.step({0x9a, 0x00, 0x10, 0x03, 0x00, 0x08, 0x00});
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.s.regs.eip, 0x31000u);
  const uint32_t sp = m.s.regs.reg(runtime::ESP);
  EXPECT_EQ(m.mem.get32(sp), kCode + 7);
  EXPECT_EQ(m.mem.get32(sp + 4), TestMachine::kKCode);
  r = m.step({0xcb});
  EXPECT_EQ(m.s.regs.eip, kCode + 7);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kKernelStack);
  // jmp far to a data segment and to more privileged code from CPL 3.
  r = m.step({0xea, 0, 0, 0, 0, 0x10, 0x00});
  m.expect_fault(r, vec::GP, TestMachine::kKData);
  m.user();
  r = m.step({0xea, 0, 0, 0, 0, 0x08, 0x00});
  m.expect_fault(r, vec::GP, TestMachine::kKCode);
  // retf to an outer privilege: pops SS:ESP and nulls DPL-0 data segments.
  m.enter_kernel(kCode, TestMachine::kKernelStack - 16);
  const uint32_t k = m.s.regs.reg(runtime::ESP);
  m.mem.put32(k, 0x402000);
  m.mem.put32(k + 4, TestMachine::kUCode);
  m.mem.put32(k + 8, TestMachine::kUserStack);
  m.mem.put32(k + 12, TestMachine::kUData);
  r = m.step({0xcb});
  EXPECT_FALSE(r.delivered);
  EXPECT_TRUE(r.mode_changed);
  EXPECT_EQ(m.s.cpl, 3);
  EXPECT_EQ(m.s.regs.eip, 0x402000u);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kUserStack);
  EXPECT_FALSE(m.s.regs.sreg(Seg::DS).present()) << "kernel DS nulled";
  // jmp far through a task gate switches tasks without nesting.
  m.user();
  r = m.step({0xea, 0, 0, 0, 0, TestMachine::kUserTaskGate | 3, 0x00});
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.s.sys.tr.selector, TestMachine::kDfTssSel);
  EXPECT_EQ(m.gdt(TestMachine::kTssSel).type(), desc_type::kTss32Avail) << "jmp frees the old task";
  EXPECT_FALSE(m.s.regs.eflags & fl::NT);
  EXPECT_EQ(m.mem.get32(TestMachine::kTss + 0x20), kCode + 7) << "old task resumes after the jmp";
}

TEST(Interpreter, IntNAndIret) {
  Guest m;
  m.set_idt(0x80, test::gate_desc(TestMachine::kKCode, 0x7000, desc_type::kTrapGate32, 3));
  m.user();
  StepResult r = m.step({0xcd, 0x80});
  EXPECT_TRUE(r.delivered);
  EXPECT_TRUE(r.mode_changed);
  EXPECT_EQ(m.s.regs.eip, 0x7000u);
  EXPECT_EQ(m.mem.get32(m.s.regs.reg(runtime::ESP)), kCode + 2) << "trap: returns after the int";
  r = m.step({0xcf});  // iretd
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.s.cpl, 3);
  EXPECT_EQ(m.s.regs.eip, kCode + 2);
  r = m.step({0xcc});  // int3 through a DPL 0 gate
  m.expect_fault(r, vec::GP, 3 * 8 + 2);
  m.user();
  m.s.regs.eflags &= ~fl::OF;
  r = m.step({0xce});  // into with OF clear: nothing
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.s.regs.eip, kCode + 1);
}

TEST(Interpreter, StackInstructions) {
  Guest m;
  for (int i = 0; i < 8; ++i) m.s.regs.gpr[i] = 0x100 * (i + 1);
  m.s.regs.reg(runtime::ESP) = TestMachine::kKernelStack;
  m.step({0x60});  // pushad
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kKernelStack - 32);
  EXPECT_EQ(m.mem.get32(TestMachine::kKernelStack - 4), 0x100u) << "EAX first";
  EXPECT_EQ(m.mem.get32(TestMachine::kKernelStack - 20), TestMachine::kKernelStack) << "original ESP";
  for (int i = 0; i < 8; ++i) {
    if (i != runtime::ESP) m.s.regs.gpr[i] = 0;
  }
  m.step({0x61});  // popad
  for (int i = 0; i < 8; ++i) {
    if (i != runtime::ESP) {
      EXPECT_EQ(m.s.regs.gpr[i], 0x100u * (i + 1));
    }
  }
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kKernelStack);
  m.s.regs.reg(runtime::EBP) = 0x1111;
  m.step({0xc8, 0x10, 0x00, 0x00});  // enter 16, 0
  EXPECT_EQ(m.s.regs.reg(runtime::EBP), TestMachine::kKernelStack - 4);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kKernelStack - 4 - 16);
  EXPECT_EQ(m.mem.get32(TestMachine::kKernelStack - 4), 0x1111u);
  m.step({0xc9});  // leave
  EXPECT_EQ(m.s.regs.reg(runtime::EBP), 0x1111u);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kKernelStack);
  // enter with nesting level 2 copies one outer frame pointer.
  m.s.regs.reg(runtime::EBP) = 0x8800;
  m.mem.put32(0x8800 - 4, 0xfeed);
  m.step({0xc8, 0x08, 0x00, 0x02});
  EXPECT_EQ(m.mem.get32(TestMachine::kKernelStack - 8), 0xfeedu);
  EXPECT_EQ(m.mem.get32(TestMachine::kKernelStack - 12), TestMachine::kKernelStack - 4);
  EXPECT_EQ(m.s.regs.reg(runtime::ESP), TestMachine::kKernelStack - 12 - 8);
}

TEST(Interpreter, UnimplementedAndUndefined) {
  Guest m;
  const uint64_t before = unimplemented_count();
  StepResult r = m.step({0x01, 0xd8});  // add eax, ebx: not a sensitive instruction
  EXPECT_TRUE(r.unimplemented);
  m.expect_fault(r, vec::UD);
  EXPECT_EQ(unimplemented_count(), before + 1);
  m.s.regs.eip = kCode;
  r = m.step({0x01, 0xd8}, ExecuteOptions{make_fault(vec::GP, 0x1b)});
  m.expect_fault(r, vec::GP, 0x1b);
  m.s.regs.eip = kCode;
  r = m.step({0x0f, 0x34});  // sysenter: this CPU has no SEP
  m.expect_fault(r, vec::UD);
  EXPECT_FALSE(r.unimplemented);
  m.s.regs.eip = kCode;
  r = m.step({0x0f, 0xff, 0xff, 0xff});  // undecodable
  m.expect_fault(r, vec::UD);
}

TEST(Interpreter, FetchFaults) {
  Guest m;
  // An instruction that straddles into an absent page: #PF for the second page.
  m.s.regs.eip = 0xbffe;
  m.mem.put(0xbffe, {0x0f, 0x01});
  m.mem.make_absent(0xc000);
  StepResult r = execute(m.s, m.mem, m.hooks);
  m.expect_fault(r, vec::PF);
  EXPECT_EQ(m.s.sys.cr2, 0xc000u);
  // A short instruction just before the absent page runs.
  m.s.regs.eip = 0xbfff;
  m.mem.put8(0xbfff, 0xfa);
  r = execute(m.s, m.mem, m.hooks);
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(m.s.regs.eip, 0xc000u);
  // Past the CS limit.
  m.s.regs.sreg(Seg::CS).limit = 0xbfff;
  r = execute(m.s, m.mem, m.hooks);
  m.expect_fault(r, vec::GP, 0);
}

// ExecuteOptions::decoded (the translator's callouts): the caller's decoding
// is used as is when it fits the current code and stack size and the CS
// limit, and ignored (the bytes are fetched) when it does not.
TEST(Interpreter, PredecodedInstructionIsUsedOnlyWhenItFits) {
  auto decode = [](std::initializer_list<uint8_t> bytes, ZydisMachineMode mode, ZydisStackWidth width,
                   ZydisDecodedInstruction& insn, ZydisDecodedOperand* ops) {
    ZydisDecoder d;
    ZydisDecoderInit(&d, mode, width);
    ASSERT_TRUE(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&d, std::data(bytes), bytes.size(), &insn, ops)));
  };
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  decode({0xe4, 0x71}, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32, insn, ops);  // in al, 0x71
  ExecuteOptions o;
  o.decoded = &insn;
  o.decoded_ops = ops;

  Guest m;
  m.hooks.in_value = 0x5a;
  StepResult r = m.step({0xe4, 0x60}, o);  // the bytes say in al, 0x60: the decoding wins
  EXPECT_FALSE(r.delivered);
  EXPECT_EQ(r.length, 2);
  ASSERT_FALSE(m.hooks.ins.empty());
  EXPECT_EQ(m.hooks.ins.back().port, 0x71);
  EXPECT_EQ(m.s.regs.eip, kCode + 2);

  // Decoded for a 16-bit stack while SS is 32-bit: fetched instead.
  decode({0xe4, 0x71}, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_16, insn, ops);
  m.s.regs.eip = kCode;
  m.step({0xe4, 0x60}, o);
  EXPECT_EQ(m.hooks.ins.back().port, 0x60);

  // Runs past the CS limit: the fetch path raises the #GP.
  decode({0xe4, 0x71}, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32, insn, ops);
  m.s.regs.eip = kCode;
  m.s.regs.sreg(Seg::CS).limit = kCode;
  const size_t ins_before = m.hooks.ins.size();
  r = m.step({0xe4, 0x60}, o);
  m.expect_fault(r, vec::GP, 0);
  EXPECT_EQ(m.hooks.ins.size(), ins_before);
}

TEST(Interpreter, SingleStepTrapsAfterTheInstruction) {
  Guest m;
  m.s.regs.eflags |= fl::TF;
  StepResult r = m.step({0xfa});
  ASSERT_TRUE(r.delivered);
  EXPECT_EQ(r.event.vector, vec::DB);
  EXPECT_EQ(m.mem.get32(m.s.regs.reg(runtime::ESP)), kCode + 1);
  EXPECT_TRUE(m.s.sys.dr[6] & (1u << 14));
}

TEST(Interpreter, TripleFaultIsAShutdown) {
  Guest m;
  m.s.sys.idtr.limit = 0;
  m.user();
  StepResult r = m.step({0xfa});
  EXPECT_EQ(r.kind, StepKind::kShutdown);
  EXPECT_FALSE(r.shutdown_reason.empty());
}

}  // namespace
}  // namespace bt86::machine
