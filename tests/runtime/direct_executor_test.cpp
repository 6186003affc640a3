// Direct execution of guest user code: for every way guest code can leave
// compatibility mode, a snippet that does it and a check of the exit record
// and the guest registers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "runtime/world_switch.h"
#include "tests/runtime/direct_test_machine.h"
#include "tests/runtime/guest_snippet.h"

namespace bt86::test {
namespace {

using namespace runtime;

// Catches whatever is written to fd 1 between construction and finish().
class StdoutCapture {
 public:
  StdoutCapture() {
    EXPECT_EQ(pipe2(m_pipe, O_NONBLOCK), 0);
    fflush(stdout);
    m_saved = dup(1);
    EXPECT_EQ(dup2(m_pipe[1], 1), 1);
  }
  // Restores fd 1; returns the number of bytes that reached it (-1: none).
  ssize_t finish() {
    dup2(m_saved, 1);
    close(m_saved);
    char buf[64];
    const ssize_t n = read(m_pipe[0], buf, sizeof buf);
    close(m_pipe[0]);
    close(m_pipe[1]);
    return n;
  }

 private:
  int m_pipe[2] = {-1, -1};
  int m_saved = -1;
};

class DirectExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m = &TestMachine::get();
    cpu = TestMachine::initial_state();
    std::memset(m->data(), 0, kRegion);
  }
  ExitRecord run(std::span<const uint8_t> code) { return m->run(code, cpu); }
  // Address of the last `tail` bytes of a snippet once loaded.
  static uint32_t at_end(std::span<const uint8_t> code, uint32_t tail) {
    return kCode + uint32_t(code.size()) - tail;
  }
  TestMachine* m = nullptr;
  CpuState cpu;
};

// ---------------------------------------------------------------- registers

GUEST_SNIPPET(set_all_registers,
              "push $0x8d5\n"  // CF PF AF ZF SF OF set, DF clear
              "popf\n"
              "mov $0x11111111, %eax\n"
              "mov $0x22222222, %ecx\n"
              "mov $0x33333333, %edx\n"
              "mov $0x44444444, %ebx\n"
              "mov $0x66666666, %ebp\n"
              "mov $0x77777777, %esi\n"
              "mov $0x88888888, %edi\n"
              "mov $0x55555555, %esp\n"
              "int3\n")

TEST_F(DirectExecutorTest, EveryGeneralRegisterAndArithmeticFlagComesBack) {
  auto code = snippet_set_all_registers();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::Breakpoint) << describe(x, cpu);
  EXPECT_EQ(cpu.reg(EAX), 0x11111111u);
  EXPECT_EQ(cpu.reg(ECX), 0x22222222u);
  EXPECT_EQ(cpu.reg(EDX), 0x33333333u);
  EXPECT_EQ(cpu.reg(EBX), 0x44444444u);
  EXPECT_EQ(cpu.reg(ESP), 0x55555555u);
  EXPECT_EQ(cpu.reg(EBP), 0x66666666u);
  EXPECT_EQ(cpu.reg(ESI), 0x77777777u);
  EXPECT_EQ(cpu.reg(EDI), 0x88888888u);
  EXPECT_EQ(cpu.eflags & (flags::Arith | flags::DF), flags::Arith);
  EXPECT_TRUE(cpu.eflags & flags::IF);  // virtual IF untouched
  EXPECT_EQ(cpu.eip, kCode + code.size());
}

GUEST_SNIPPET(just_int3, "int3\n")

TEST_F(DirectExecutorTest, RegistersAndFlagsGoInExactly) {
  const uint32_t values[8] = {0xdeadbeef, 0x01234567, 0x89abcdef, 0xfedcba98,
                              0x0badf00d, 0x13579bdf, 0x2468ace0, 0xffffffff};
  for (int flagset = 0; flagset < 2; ++flagset) {
    cpu = TestMachine::initial_state();
    for (int i = 0; i < 8; ++i) cpu.gpr[i] = values[i] ^ (flagset ? 0xa5a5a5a5 : 0);
    cpu.eflags = flags::Fixed1 | flags::IF | (flagset ? (flags::CF | flags::ZF | flags::OF | flags::DF) : flags::SF | flags::PF | flags::AF);
    const CpuState before = cpu;
    ExitRecord x = run(snippet_just_int3());
    ASSERT_EQ(x.kind, ExitKind::Breakpoint) << describe(x, cpu);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(cpu.gpr[i], before.gpr[i]) << reg_name(Reg(i));
    EXPECT_EQ(cpu.eflags, before.eflags);
    EXPECT_EQ(cpu.eip, kCode + 1);
    EXPECT_EQ(cpu.seg, before.seg);
  }
}

// -------------------------------------------------------------- page faults

GUEST_SNIPPET(read_unmapped, "mov $0x12, %ecx\n mov 0x700010, %eax\n")
GUEST_SNIPPET(write_readonly, "movl $1, 0x400100\n")
GUEST_SNIPPET(fetch_unmapped, "mov $0x700000, %eax\n jmp *%eax\n")

TEST_F(DirectExecutorTest, PageFaultOnReadOfUnmappedPage) {
  auto code = snippet_read_unmapped();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::PageFault) << describe(x, cpu);
  EXPECT_EQ(x.vector, 14);
  EXPECT_EQ(x.fault_address, 0x700010u);
  EXPECT_EQ(x.error_code, 4u);  // user, read, not present
  EXPECT_EQ(cpu.eip, at_end(code, 5));  // at the faulting mov, not after it
  EXPECT_EQ(cpu.reg(ECX), 0x12u);
}

TEST_F(DirectExecutorTest, PageFaultOnWriteToReadOnlyPage) {
  ExitRecord x = run(snippet_write_readonly());
  ASSERT_EQ(x.kind, ExitKind::PageFault) << describe(x, cpu);
  EXPECT_EQ(x.fault_address, kCode + 0x100);
  EXPECT_EQ(x.error_code, 7u);  // user, write, protection
  EXPECT_EQ(cpu.eip, kCode);
}

TEST_F(DirectExecutorTest, PageFaultOnInstructionFetch) {
  ExitRecord x = run(snippet_fetch_unmapped());
  ASSERT_EQ(x.kind, ExitKind::PageFault) << describe(x, cpu);
  EXPECT_EQ(x.fault_address, kUnmapped);
  EXPECT_EQ(cpu.eip, kUnmapped);
  EXPECT_EQ(x.error_code & 0x10, 0x10u);  // instruction fetch
}

// ---------------------------------------------------- general protection

GUEST_SNIPPET(do_cli, "nop\n cli\n")
GUEST_SNIPPET(do_hlt, "hlt\n")
GUEST_SNIPPET(do_in, "mov $0x3f8, %dx\n in %dx, %al\n")
GUEST_SNIPPET(do_out, "mov $0xf4, %dx\n out %al, %dx\n")
GUEST_SNIPPET(load_kernel_selector, "mov $0x10, %eax\n mov %eax, %ds\n")

TEST_F(DirectExecutorTest, PrivilegedInstructionsRaiseGeneralProtection) {
  struct Case { std::span<const uint8_t> code; uint32_t eip; const char* name; };
  const Case cases[] = {
      {snippet_do_cli(), kCode + 1, "cli"},
      {snippet_do_hlt(), kCode, "hlt"},
      {snippet_do_in(), kCode + 4, "in"},
      {snippet_do_out(), kCode + 4, "out"},
  };
  for (const Case& c : cases) {
    cpu = TestMachine::initial_state();
    ExitRecord x = run(c.code);
    EXPECT_EQ(x.kind, ExitKind::GeneralProtection) << c.name << ": " << describe(x, cpu);
    EXPECT_EQ(x.vector, 13) << c.name;
    EXPECT_EQ(x.error_code, 0u) << c.name;
    EXPECT_EQ(cpu.eip, c.eip) << c.name;
  }
}

TEST_F(DirectExecutorTest, LoadingAPrivilegedSelectorRaisesGeneralProtectionWithSelector) {
  ExitRecord x = run(snippet_load_kernel_selector());
  ASSERT_EQ(x.kind, ExitKind::GeneralProtection) << describe(x, cpu);
  EXPECT_EQ(x.error_code, 0x10u);
  EXPECT_EQ(cpu.eip, kCode + 5);
  EXPECT_EQ(cpu.sreg(Seg::DS).selector, 0x7b);  // the load did not happen
}

// ------------------------------------------------------------ segments

GUEST_SNIPPET(read_ds_1000, "mov 0x1000, %eax\n")
GUEST_SNIPPET(read_above_boundary, "mov $0xc0000010, %ebx\n mov (%ebx), %eax\n")
GUEST_SNIPPET(read_ss_above_limit, "mov 0x2000(%esp), %eax\n")
GUEST_SNIPPET(read_fs_gs, "mov %fs:0, %eax\n mov %gs:4, %ecx\n mov 8, %edx\n int3\n")

TEST_F(DirectExecutorTest, SegmentLimitViolationBeyondTheGuestLimit) {
  cpu.sreg(Seg::DS) = {0x7b, kData, 0xfff, SegmentCache::flat_data(0x7b).attr};
  ExitRecord x = run(snippet_read_ds_1000());
  ASSERT_EQ(x.kind, ExitKind::SegmentLimit) << describe(x, cpu);
  EXPECT_EQ(x.segment, Seg::DS);
  EXPECT_EQ(x.fault_address, kData + 0x1000);
  EXPECT_TRUE(x.beyond_guest_limit);
  EXPECT_EQ(cpu.eip, kCode);
}

TEST_F(DirectExecutorTest, SegmentLimitViolationFromTheTruncationBoundary) {
  // A flat guest segment is cut at 0xC0000000: the guest itself allows the
  // access, so the monitor must decide (e.g. a #PF on a supervisor page).
  ExitRecord x = run(snippet_read_above_boundary());
  ASSERT_EQ(x.kind, ExitKind::SegmentLimit) << describe(x, cpu);
  EXPECT_EQ(x.segment, Seg::DS);
  EXPECT_EQ(x.fault_address, 0xc0000010u);
  EXPECT_FALSE(x.beyond_guest_limit);
  EXPECT_EQ(cpu.eip, kCode + 5);
}

TEST_F(DirectExecutorTest, StackSegmentLimitViolation) {
  cpu.sreg(Seg::SS) = {0x7b, kStack, 0xffff, SegmentCache::flat_data(0x7b).attr};
  cpu.reg(ESP) = 0xf000;
  ExitRecord x = run(snippet_read_ss_above_limit());
  ASSERT_EQ(x.kind, ExitKind::SegmentLimit) << describe(x, cpu);
  EXPECT_EQ(x.segment, Seg::SS);
  EXPECT_EQ(x.fault_address, kStack + 0x11000);
  EXPECT_TRUE(x.beyond_guest_limit);
}

TEST_F(DirectExecutorTest, SegmentBasesAreHonoured) {
  uint32_t words[3] = {0xaaaa0001, 0xbbbb0002, 0xcccc0003};
  std::memcpy(m->data() + 0x100, &words[0], 4);
  std::memcpy(m->data() + 0x204, &words[1], 4);
  std::memcpy(m->data() + 0x308, &words[2], 4);
  const uint16_t attr = SegmentCache::flat_data(0).attr;
  cpu.sreg(Seg::FS) = {0x8b, kData + 0x100, 0xffff, attr};
  cpu.sreg(Seg::GS) = {0x93, kData + 0x200, 0xffff, attr};
  cpu.sreg(Seg::DS) = {0x7b, kData + 0x300, 0xffff, attr};
  ExitRecord x = run(snippet_read_fs_gs());
  ASSERT_EQ(x.kind, ExitKind::Breakpoint) << describe(x, cpu);
  EXPECT_EQ(cpu.reg(EAX), words[0]);
  EXPECT_EQ(cpu.reg(ECX), words[1]);
  EXPECT_EQ(cpu.reg(EDX), words[2]);
  EXPECT_EQ(cpu.sreg(Seg::FS).base, kData + 0x100);  // descriptor caches come back unchanged
  EXPECT_EQ(cpu.sreg(Seg::GS).selector, 0x93);
}

GUEST_SNIPPET(load_ldt_selector, "mov $0x2f, %eax\n mov %eax, %es\n mov %es:0, %eax\n int3\n")
GUEST_SNIPPET(load_unmirrored_ldt_selector, "mov $0x37, %eax\n mov %eax, %es\n int3\n")

TEST_F(DirectExecutorTest, GuestLoadsItsOwnLdtSelectorNatively) {
  const uint32_t magic = 0x5eed1234;
  std::memcpy(m->data() + 0x40, &magic, 4);
  SegmentCache desc{0, kData + 0x40, 0xff, SegmentCache::flat_data(0).attr};
  ASSERT_TRUE(m->executor->mirror_ldt_entry(5, desc));
  ExitRecord x = run(snippet_load_ldt_selector());
  ASSERT_EQ(x.kind, ExitKind::Breakpoint) << describe(x, cpu);
  EXPECT_EQ(cpu.reg(EAX), magic);
  EXPECT_EQ(cpu.sreg(Seg::ES).selector, 0x2f);  // LDT selectors read back exactly
  EXPECT_EQ(cpu.sreg(Seg::ES).base, kData + 0x40);
  EXPECT_EQ(cpu.sreg(Seg::ES).limit, 0xffu);
}

TEST_F(DirectExecutorTest, LoadingAnAbsentLdtEntryFaults) {
  ExitRecord x = run(snippet_load_unmirrored_ldt_selector());
  ASSERT_TRUE(x.kind == ExitKind::GeneralProtection || x.kind == ExitKind::SegmentNotPresent)
      << describe(x, cpu);
  EXPECT_EQ(x.error_code & ~3u, 0x34u);
  EXPECT_EQ(cpu.eip, kCode + 5);
}

TEST_F(DirectExecutorTest, StateThatCannotRunIsRefusedNotEntered) {
  cpu.sreg(Seg::CS) = SegmentCache{};  // null CS
  ExitRecord x = m->executor->run(cpu);
  EXPECT_EQ(x.kind, ExitKind::InvalidState);
  cpu = TestMachine::initial_state();
  cpu.sreg(Seg::SS) = SegmentCache::flat_code(0x73);  // code in SS
  x = m->executor->run(cpu);
  EXPECT_EQ(x.kind, ExitKind::InvalidState);
  cpu = TestMachine::initial_state();
  cpu.sreg(Seg::CS).base = 0xd0000000;  // entirely above the boundary
  x = m->executor->run(cpu);
  EXPECT_EQ(x.kind, ExitKind::InvalidState);
}

// ----------------------------------------------------- other exceptions

GUEST_SNIPPET(do_ud2, "nop\n ud2\n")
GUEST_SNIPPET(do_div0, "mov $7, %eax\n xor %edx, %edx\n xor %ecx, %ecx\n div %ecx\n")
GUEST_SNIPPET(do_x87_error,
              "fninit\n"
              "push $0x037b\n"  // unmask zero-divide
              "fldcw (%esp)\n"
              "fld1\n fldz\n fdivrp\n"  // 1/0: sets ZE, raised at the next wait
              "fwait\n")
GUEST_SNIPPET(do_simd_error,
              "push $0x1d80\n"  // MXCSR with ZM clear
              "ldmxcsr (%esp)\n"
              "mov $1, %eax\n cvtsi2ss %eax, %xmm0\n xorps %xmm1, %xmm1\n"
              "divss %xmm1, %xmm0\n")
GUEST_SNIPPET(do_align,
              "pushf\n orl $0x40000, (%esp)\n popf\n"  // EFLAGS.AC
              "mov 0x500001, %eax\n")
GUEST_SNIPPET(do_into, "mov $0x7f, %al\n add $1, %al\n into\n")
GUEST_SNIPPET(do_bound, "movl $0, 0x500000\n movl $10, 0x500004\n mov $11, %eax\n bound %eax, 0x500000\n")

TEST_F(DirectExecutorTest, InvalidOpcode) {
  ExitRecord x = run(snippet_do_ud2());
  ASSERT_EQ(x.kind, ExitKind::InvalidOpcode) << describe(x, cpu);
  EXPECT_EQ(x.vector, 6);
  EXPECT_EQ(cpu.eip, kCode + 1);
}

// read_guest's fault-tolerant copy: stops at the first unreadable byte
// instead of crashing (the signal handler resumes it), and SIGBUS (a page
// past the end of a file) stops it too.
TEST_F(DirectExecutorTest, ProbeReadStopsAtTheFirstUnreadableByte) {
  auto* mem = static_cast<uint8_t*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(mem, MAP_FAILED);
  for (int i = 0; i < 4096; ++i) mem[i] = uint8_t(i * 7);
  ASSERT_EQ(mprotect(mem + 4096, 4096, PROT_NONE), 0);
  uint8_t buf[32] = {};
  EXPECT_EQ(bt86_probe_read(mem + 4096 - 10, buf, sizeof buf), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(buf[i], uint8_t((4086 + i) * 7));
  EXPECT_EQ(bt86_probe_read(mem + 4096, buf, sizeof buf), 0u);
  EXPECT_EQ(bt86_probe_read(mem, buf, sizeof buf), sizeof buf);
  munmap(mem, 8192);

  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  void* file_map = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fileno(f), 0);  // empty file: SIGBUS
  ASSERT_NE(file_map, MAP_FAILED);
  EXPECT_EQ(bt86_probe_read(file_map, buf, 4), 0u);
  munmap(file_map, 4096);
  fclose(f);
}

TEST_F(DirectExecutorTest, DivideError) {
  auto code = snippet_do_div0();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::DivideError) << describe(x, cpu);
  EXPECT_EQ(x.vector, 0);
  EXPECT_EQ(cpu.eip, at_end(code, 2));
  EXPECT_EQ(cpu.reg(EAX), 7u);
}

TEST_F(DirectExecutorTest, X87ErrorIsReportedAtTheWait) {
  auto code = snippet_do_x87_error();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::FpuError) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, at_end(code, 1));
  // The guest FPU state came back with the pending exception in it.
  uint16_t fsw;
  std::memcpy(&fsw, &cpu.fpu.fxsave[2], 2);
  EXPECT_TRUE(fsw & 0x4) << std::hex << fsw;  // ZE
}

TEST_F(DirectExecutorTest, SimdError) {
  auto code = snippet_do_simd_error();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::SimdError) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, at_end(code, 4));
  EXPECT_EQ(cpu.fpu.mxcsr() & 0xffc0, 0x1d80u);
}

TEST_F(DirectExecutorTest, AlignmentCheck) {
  auto code = snippet_do_align();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::AlignmentCheck) << describe(x, cpu);
  EXPECT_TRUE(cpu.eflags & flags::AC);
  EXPECT_EQ(cpu.eip, at_end(code, 5));
}

TEST_F(DirectExecutorTest, OverflowTrapFromInto) {
  auto code = snippet_do_into();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::Overflow) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, kCode + code.size());  // a trap: after the instruction
}

TEST_F(DirectExecutorTest, BoundRange) {
  auto code = snippet_do_bound();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::BoundRange) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, at_end(code, 6));
}

// ------------------------------------------------ breakpoints, stepping

GUEST_SNIPPET(do_int_3, ".byte 0xcd, 0x03\n")  // int 3, long form (gas writes int3)
GUEST_SNIPPET(do_single_step,
              "pushf\n orl $0x100, (%esp)\n popf\n"  // TF: trap after the next instruction
              "mov $42, %eax\n"
              "mov $43, %ecx\n")

TEST_F(DirectExecutorTest, Int3AndIntNumber3AreBreakpointsAfterTheInstruction) {
  ExitRecord x = run(snippet_just_int3());
  ASSERT_EQ(x.kind, ExitKind::Breakpoint);
  EXPECT_EQ(x.vector, 3);
  EXPECT_EQ(cpu.eip, kCode + 1);
  cpu = TestMachine::initial_state();
  x = run(snippet_do_int_3());
  ASSERT_EQ(x.kind, ExitKind::Breakpoint);
  EXPECT_EQ(cpu.eip, kCode + 2);
}

TEST_F(DirectExecutorTest, SingleStepStopsAfterEachInstruction) {
  auto code = snippet_do_single_step();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::SingleStep) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, at_end(code, 5));  // after mov $42 (popf's own trap is suppressed)
  EXPECT_EQ(cpu.reg(EAX), 42u);
  EXPECT_TRUE(cpu.eflags & flags::TF);
  x = m->executor->run(cpu);  // TF still set: one more instruction, then stop
  ASSERT_EQ(x.kind, ExitKind::SingleStep) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, kCode + code.size());
  EXPECT_EQ(cpu.reg(ECX), 43u);
}

// -------------------------------------------------- software interrupts

GUEST_SNIPPET(do_int_21, "mov $5, %eax\n int $0x21\n")
GUEST_SNIPPET(do_int_80, "mov $20, %eax\n int $0x80\n")

TEST_F(DirectExecutorTest, IntNReportsVectorAndNextEip) {
  auto code = snippet_do_int_21();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::SoftwareInterrupt) << describe(x, cpu);
  EXPECT_EQ(x.vector, 0x21);
  EXPECT_EQ(cpu.eip, kCode + code.size());
  EXPECT_EQ(cpu.reg(EAX), 5u);
  for (int vector : {0x00, 0x0d, 0x20, 0x81, 0xff}) {
    const uint8_t int_n[] = {0xcd, uint8_t(vector)};
    cpu = TestMachine::initial_state();
    x = run(int_n);
    // Vectors 3 and 4 would be #BP/#OF; these are all plain int n.
    ASSERT_EQ(x.kind, ExitKind::SoftwareInterrupt) << vector << ": " << describe(x, cpu);
    EXPECT_EQ(x.vector, vector);
    EXPECT_EQ(cpu.eip, kCode + 2);
  }
}

TEST_F(DirectExecutorTest, Int80IsASoftwareInterruptNotAHostSystemCall) {
  auto code = snippet_do_int_80();
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::SoftwareInterrupt) << describe(x, cpu);
  EXPECT_EQ(x.vector, 0x80);
  EXPECT_EQ(cpu.eip, kCode + code.size());
  EXPECT_EQ(cpu.reg(EAX), 20u);  // getpid, untouched: the host never ran it
}

// The handler leaves by bt86_signal_resume, not rt_sigreturn: nothing may
// stay blocked after an exit (a blocked tick would stop preemption; a blocked
// SIGSEGV would turn the next guest fault into a kill).
TEST_F(DirectExecutorTest, AnExitLeavesTheSignalMaskAsItWas) {
  sigset_t before, after;
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &before), 0);
  for (auto code : {snippet_do_ud2(), snippet_do_div0(), snippet_do_int_80()}) {
    ExitRecord x = run(code);
    ASSERT_NE(x.kind, ExitKind::InvalidState) << describe(x, cpu);
    cpu = TestMachine::initial_state();
  }
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &after), 0);
  for (int sig = 1; sig < SIGRTMAX; ++sig)
    EXPECT_EQ(sigismember(&before, sig), sigismember(&after, sig)) << "signal " << sig;
}

// int 0x80 with host system-call numbers whose effect would be visible.
GUEST_SNIPPET(host_write,
              "mov $4, %eax\n mov $1, %ebx\n mov $0x500000, %ecx\n mov $6, %edx\n int $0x80\n")
GUEST_SNIPPET(host_kill, "mov $20, %eax\n int $0x80\n"  // getpid (skipped)
                         "mov $37, %eax\n mov %esi, %ebx\n mov $9, %ecx\n int $0x80\n")
GUEST_SNIPPET(host_exit, "mov $1, %eax\n mov $42, %ebx\n int $0x80\n")
GUEST_SNIPPET(host_fork, "mov $2, %eax\n int $0x80\n")

TEST_F(DirectExecutorTest, HostSystemCallsFromTheGuestDoNothingOnTheHost) {
  std::memcpy(m->data(), "PWNED\n", 6);
  StdoutCapture capture;

  ExitRecord x = run(snippet_host_write());
  const ExitKind write_kind = x.kind;
  const uint32_t write_eax = cpu.reg(EAX);

  cpu = TestMachine::initial_state();
  cpu.reg(ESI) = uint32_t(getpid());
  x = run(snippet_host_kill());  // first int 0x80
  const ExitKind kill1 = x.kind;
  x = m->executor->run(cpu);  // resume: second int 0x80, kill(getpid(), SIGKILL)
  const ExitKind kill2 = x.kind;

  cpu = TestMachine::initial_state();
  x = run(snippet_host_exit());
  const ExitKind exit_kind = x.kind;

  cpu = TestMachine::initial_state();
  x = run(snippet_host_fork());
  const ExitKind fork_kind = x.kind;

  const ssize_t n = capture.finish();

  EXPECT_EQ(write_kind, ExitKind::SoftwareInterrupt);
  EXPECT_EQ(write_eax, 4u);  // not a byte count: the call never ran
  EXPECT_EQ(n, -1) << "guest output reached the host's stdout";
  EXPECT_EQ(kill1, ExitKind::SoftwareInterrupt);
  EXPECT_EQ(kill2, ExitKind::SoftwareInterrupt);  // and we are still alive
  EXPECT_EQ(exit_kind, ExitKind::SoftwareInterrupt);
  EXPECT_EQ(fork_kind, ExitKind::SoftwareInterrupt);
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);  // no child was forked
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(DirectExecutorTest, Bt86sOwnSystemCallsStillWorkUnderTheFilter) {
  ExitRecord x = run(snippet_host_exit());  // the filter is installed and used
  ASSERT_EQ(x.kind, ExitKind::SoftwareInterrupt);
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  ASSERT_EQ(write(pipefd[1], "ok", 2), 2);
  char buf[2];
  ASSERT_EQ(read(pipefd[0], buf, 2), 2);
  EXPECT_EQ(std::memcmp(buf, "ok", 2), 0);
  close(pipefd[0]);
  close(pipefd[1]);
  EXPECT_GT(getpid(), 0);
  const pid_t child = fork();  // a 64-bit fork/exit/wait round trip
  if (child == 0) _exit(7);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

// ------------------------------------------------- syscall, sysenter

GUEST_SNIPPET(do_syscall, "mov $20, %eax\n mov $0x1234, %ebx\n syscall\n")
GUEST_SNIPPET(do_sysenter, "mov $20, %eax\n mov $0x1234, %ebx\n mov %esp, %ebp\n sysenter\n")

TEST_F(DirectExecutorTest, StraySyscallIsSurvivedAndReported) {
  // Two host paths: ESP at the unmapped top of the stack makes the host fail
  // reading the sixth argument; ESP inside the stack lets seccomp trap it.
  for (uint32_t esp : {kStackTop, kStackTop - 0x100}) {
    cpu = TestMachine::initial_state();
    cpu.reg(ESP) = esp;
    auto code = snippet_do_syscall();
    ExitRecord x = run(code);
    // On Intel, syscall is #UD in compatibility mode and EIP is kept.
    ASSERT_TRUE(x.kind == ExitKind::Syscall || x.kind == ExitKind::InvalidOpcode) << describe(x, cpu);
    EXPECT_EQ(cpu.reg(EBX), 0x1234u);
    EXPECT_EQ(cpu.reg(ESP), esp);
    EXPECT_EQ(cpu.sreg(Seg::CS).selector, 0x73);  // the guest's CS, not the host's 0x23
    if (x.detail.empty()) {
      EXPECT_EQ(cpu.eip, kCode + code.size());
    }
    // The executor is still usable afterwards.
    cpu = TestMachine::initial_state();
    x = run(snippet_just_int3());
    EXPECT_EQ(x.kind, ExitKind::Breakpoint);
  }
}

TEST_F(DirectExecutorTest, StraySysenterIsSurvivedAndReported) {
  auto code = snippet_do_sysenter();
  cpu.reg(ESP) = kStackTop - 0x100;
  ExitRecord x = run(code);
  ASSERT_EQ(x.kind, ExitKind::Sysenter) << describe(x, cpu);
  EXPECT_EQ(cpu.reg(EBX), 0x1234u);
  // AMD raises #UD (EIP kept); Intel enters the host's compat entry, which
  // loses EIP: either way bt86 is still here and says so.
  if (x.detail.empty()) {
    EXPECT_EQ(cpu.eip, kCode + code.size());
  }
}

// ------------------------------------------------------ cpuid, rdtsc

GUEST_SNIPPET(do_cpuid, "xor %eax, %eax\n cpuid\n")
GUEST_SNIPPET(do_rdtsc, "nop\n rdtsc\n")
GUEST_SNIPPET(do_rdtscp, "rdtscp\n")

TEST_F(DirectExecutorTest, CpuidExits) {
  if (!m->executor->cpuid_faulting())
    GTEST_SKIP() << "this host has no CPUID faulting (arch_prctl(ARCH_SET_CPUID) fails): "
                    "cpuid in guest user code runs natively here";
  ExitRecord x = run(snippet_do_cpuid());
  ASSERT_EQ(x.kind, ExitKind::Cpuid) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, kCode + 2);
  EXPECT_EQ(x.instruction_length, 2);
}

TEST_F(DirectExecutorTest, RdtscAndRdtscpExitAndTheHostClockStillWorks) {
  ASSERT_TRUE(m->executor->tsc_faulting()) << "PR_SET_TSC is expected on x86-64 Linux";
  ExitRecord x = run(snippet_do_rdtsc());
  ASSERT_EQ(x.kind, ExitKind::Rdtsc) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, kCode + 1);
  EXPECT_EQ(x.instruction_length, 2);
  // The host's vDSO clock uses rdtsc too: faulting is disarmed for it.
  const auto t0 = std::chrono::steady_clock::now();
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_GE(t1, t0);
  cpu = TestMachine::initial_state();
  x = run(snippet_do_rdtscp());  // and re-armed for the guest
  ASSERT_EQ(x.kind, ExitKind::Rdtsc) << describe(x, cpu);
  EXPECT_EQ(x.instruction_length, 3);
  EXPECT_EQ(x.detail, "rdtscp");
}

// ------------------------------------------------------------ preemption

GUEST_SNIPPET(spin_forever, "mov $1, %eax\n 1: jmp 1b\n")

TEST_F(DirectExecutorTest, PreemptionTickStopsAnInfiniteLoop) {
  auto code = snippet_spin_forever();
  const auto start = std::chrono::steady_clock::now();
  ExitRecord x = m->run(code, cpu, /*stop_on_tick=*/true);
  ASSERT_EQ(x.kind, ExitKind::Preempted) << describe(x, cpu);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_LT(waited, std::chrono::seconds(1));
  // Stopped either before entry (tick already pending) or inside the loop.
  if (cpu.eip != kCode) {
    EXPECT_EQ(cpu.eip, kCode + 5);
  }
  // Resuming returns to the loop and is preempted again.
  for (int i = 0; i < 3; ++i) {
    x = m->executor->run(cpu);
    ASSERT_EQ(x.kind, ExitKind::Preempted);
  }
  EXPECT_EQ(cpu.eip, kCode + 5);
  EXPECT_EQ(cpu.reg(EAX), 1u);
}

TEST_F(DirectExecutorTest, RequestExitBeforeRunReturnsAtOnce) {
  m->executor->request_exit();
  ExitRecord x = m->executor->run(cpu);
  EXPECT_EQ(x.kind, ExitKind::Preempted);
  EXPECT_EQ(cpu.eip, kCode);
}

// -------------------------------------------------------- x87 / SSE state

GUEST_SNIPPET(load_fpu,
              "movdqu 0x500000, %xmm0\n movdqu 0x500010, %xmm1\n movdqu 0x500020, %xmm7\n"
              "fninit\n fldpi\n fld1\n"
              "push $0x5f80\n ldmxcsr (%esp)\n add $4, %esp\n"
              "int3\n")

TEST_F(DirectExecutorTest, X87AndSseStateSurvivesTheRoundTrip) {
  for (int i = 0; i < 48; ++i) m->data()[i] = uint8_t(i * 7 + 1);
  // Host state that must survive too (callee-saved parts of the ABI).
  uint32_t host_mxcsr = 0x3f80 | 0x6000;  // round toward zero
  uint32_t saved_mxcsr;
  asm volatile("stmxcsr %0" : "=m"(saved_mxcsr));
  asm volatile("ldmxcsr %0" : : "m"(host_mxcsr));
  uint16_t host_fcw = 0x0f7f, fcw_after;

  asm volatile("fldcw %0" : : "m"(host_fcw));
  ExitRecord x = run(snippet_load_fpu());
  uint32_t mxcsr_after;
  uint16_t fsw_after;
  asm volatile("stmxcsr %0" : "=m"(mxcsr_after));
  asm volatile("fnstcw %0" : "=m"(fcw_after));
  asm volatile("fnstsw %0" : "=m"(fsw_after));
  asm volatile("ldmxcsr %0" : : "m"(saved_mxcsr));
  uint16_t default_fcw = 0x037f;
  asm volatile("fldcw %0" : : "m"(default_fcw));

  ASSERT_EQ(x.kind, ExitKind::Breakpoint) << describe(x, cpu);
  EXPECT_EQ(mxcsr_after, host_mxcsr);
  EXPECT_EQ(fcw_after, host_fcw);
  EXPECT_EQ((fsw_after >> 11) & 7, 0) << "the guest's x87 stack (ST0 = 1.0) must not stay on the host's";
  // FXSAVE layout: XMM0 at 160, XMM1 at 176, XMM7 at 272; ST0 at 32.
  EXPECT_EQ(std::memcmp(&cpu.fpu.fxsave[160], m->data(), 16), 0);
  EXPECT_EQ(std::memcmp(&cpu.fpu.fxsave[176], m->data() + 16, 16), 0);
  EXPECT_EQ(std::memcmp(&cpu.fpu.fxsave[272], m->data() + 32, 16), 0);
  EXPECT_EQ(cpu.fpu.mxcsr() & 0xffff, 0x5f80u);
  EXPECT_EQ(cpu.fpu.fcw(), 0x037f);
  uint64_t st0_mantissa;
  std::memcpy(&st0_mantissa, &cpu.fpu.fxsave[32], 8);
  EXPECT_EQ(st0_mantissa, 0x8000000000000000ull);  // ST0 = 1.0

  // Run again from that state: what went in comes back unchanged.
  const FpuState before = cpu.fpu;
  cpu.eip = kCode;
  x = run(snippet_just_int3());
  ASSERT_EQ(x.kind, ExitKind::Breakpoint) << describe(x, cpu);
  EXPECT_EQ(std::memcmp(&cpu.fpu.fxsave[0], &before.fxsave[0], 8), 0);      // FCW FSW FTW FOP
  EXPECT_EQ(std::memcmp(&cpu.fpu.fxsave[24], &before.fxsave[24], 4), 0);    // MXCSR
  EXPECT_EQ(std::memcmp(&cpu.fpu.fxsave[32], &before.fxsave[32], 288), 0);  // ST0-7, XMM0-7
}

// ------------------------------------------------------------ escapes

GUEST_SNIPPET(far_jump_to_64bit,
              "ljmp $0x33, $0x400010\n"
              ".skip 9, 0x90\n"  /* ljmp is 7 bytes: int3 lands at +0x10 */
              "int3\n")  // the same byte is int3 in 64-bit mode

// 64-bit code at +0x10: write(1, 0x500000, 6) with the 64-bit ABI, then int3.
GUEST_SNIPPET(escaped_syscall,
              "ljmp $0x33, $0x400010\n"
              ".skip 9, 0x90\n"
              ".byte 0xb8, 1, 0, 0, 0\n"           /* mov eax, 1 (SYS_write) */
              ".byte 0xbf, 1, 0, 0, 0\n"           /* mov edi, 1 */
              ".byte 0xbe, 0, 0, 0x50, 0\n"        /* mov esi, 0x500000 */
              ".byte 0xba, 6, 0, 0, 0\n"           /* mov edx, 6 */
              ".byte 0x0f, 0x05\n"                 /* syscall */
              "int3\n")

TEST_F(DirectExecutorTest, EscapedCodeCannotMakeHostSystemCallsDirectly) {
  std::memcpy(m->data(), "PWNED\n", 6);
  StdoutCapture capture;
  ExitRecord x = run(snippet_escaped_syscall());
  const ssize_t n = capture.finish();
  EXPECT_EQ(x.kind, ExitKind::Escaped64) << describe(x, cpu);
  EXPECT_EQ(x.host_signal, SIGSYS);  // stopped at the syscall, not at the int3
  EXPECT_EQ(n, -1) << "escaped guest code wrote to the host's stdout";
}

TEST_F(DirectExecutorTest, FarJumpToTheHost64BitSelectorIsDetected) {
  ExitRecord x = run(snippet_far_jump_to_64bit());
  EXPECT_EQ(x.kind, ExitKind::Escaped64) << describe(x, cpu);
  EXPECT_EQ(cpu.eip, kCode + 0x11);
}

}  // namespace
}  // namespace bt86::test
