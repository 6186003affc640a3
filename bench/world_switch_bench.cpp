// World-switch costs of direct execution, measured side by side in one run:
//   no_trap      enter guest user code and come back without a trap (the
//                guest far-jumps to a 64-bit gate that lands on the
//                runtime's own landing): the floor of a 64->32->64 switch
//   trap_gp      enter, the guest executes cli, #GP, SIGSEGV, back
//   trap_int80   enter, int 0x80, seccomp SIGSYS, back
//   host_signal  the host's own signal round trip (ud2 in 64-bit host code,
//                SIGILL, handler skips it, sigreturn): what a trap costs a
//                normal process, the floor for every trapping exit
// The summary prints each trap's cost as a ratio to host_signal.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <ucontext.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "runtime/world_switch.h"
#include "tests/runtime/direct_machine.h"

namespace {

using namespace bt86;
using runtime::CpuState;
using runtime::Seg;
using runtime::SegmentCache;

constexpr uint32_t kCode = 0x00400000, kCodePa = 0x100000, kCodeSize = 0x2000, kGate = 0x00401000;
constexpr uint32_t kStack = 0x00600000, kStackPa = 0x300000, kStackSize = 0x10000, kStackTop = kStack + kStackSize;

std::map<std::string, double> g_ns_per_op;

struct Machine : test::DirectMachine {
  static Machine& get() {
    static Machine* m = [] {
      auto* t = new Machine;
      using mmu::Prot;
      runtime::DirectConfig config;
      config.tick_period = std::chrono::microseconds(0);  // no preemption noise
      t->build({{kCode, kCodePa, kCodeSize, Prot::All}, {kStack, kStackPa, kStackSize, Prot::ReadWrite}}, config);
      return t;
    }();
    return *m;
  }
  uint8_t* code() { return host(kCodePa, kCodeSize); }
  static CpuState state() { return CpuState::flat_user(kCode, kStackTop); }
};

void record(benchmark::State& state, const char* name, std::chrono::steady_clock::duration d) {
  const double ns = std::chrono::duration<double, std::nano>(d).count() / double(state.iterations());
  g_ns_per_op[name] = ns;
  auto host = g_ns_per_op.find("host_signal");
  if (host != g_ns_per_op.end() && std::string(name) != "host_signal")
    state.counters["x_host_signal"] = ns / host->second;
}

// --- host_signal -----------------------------------------------------------

void skip_ud2(int, siginfo_t*, void* ucv) {
  static_cast<ucontext_t*>(ucv)->uc_mcontext.gregs[REG_RIP] += 2;
}

void BM_host_signal(benchmark::State& state) {
  Machine::get();  // the runtime's handlers are installed; borrow SIGILL
  struct sigaction sa {}, old {};
  sa.sa_sigaction = skip_ud2;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGILL, &sa, &old);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) asm volatile("ud2" ::: "memory");
  const auto t1 = std::chrono::steady_clock::now();
  sigaction(SIGILL, &old, nullptr);
  record(state, "host_signal", t1 - t0);
}

// --- trap_gp, trap_int80 ------------------------------------------------------

void run_trap(benchmark::State& state, const char* name, std::initializer_list<uint8_t> insn,
              runtime::ExitKind expected) {
  Machine& m = Machine::get();
  std::memcpy(m.code(), insn.begin(), insn.size());
  CpuState cpu = Machine::state();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    cpu.eip = kCode;
    runtime::ExitRecord x = m.executor->run(cpu);
    if (x.kind != expected) {
      state.SkipWithError(("unexpected exit " + describe(x, cpu)).c_str());
      return;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  record(state, name, t1 - t0);
}

void BM_trap_gp(benchmark::State& state) { run_trap(state, "trap_gp", {0xfa}, runtime::ExitKind::GeneralProtection); }
void BM_trap_int80(benchmark::State& state) {
  run_trap(state, "trap_int80", {0xcd, 0x80}, runtime::ExitKind::SoftwareInterrupt);
}

// --- no_trap ---------------------------------------------------------------

void BM_no_trap(benchmark::State& state) {
  Machine& m = Machine::get();
  // Run once through the executor so its LDT slots hold CS/SS/DS/ES.
  std::memcpy(m.code(), "\xcc", 1);
  CpuState cpu = Machine::state();
  (void)m.executor->run(cpu);

  runtime::detail::WorldContext ctx{};
  ctx.use_fsgsbase = 1;
  ctx.sel[int(Seg::CS)] = runtime::detail::LdtMirror::slot_selector(Seg::CS);
  ctx.sel[int(Seg::SS)] = runtime::detail::LdtMirror::slot_selector(Seg::SS);
  ctx.sel[int(Seg::DS)] = runtime::detail::LdtMirror::slot_selector(Seg::DS);
  ctx.sel[int(Seg::ES)] = runtime::detail::LdtMirror::slot_selector(Seg::ES);
  ctx.gpr[runtime::ESP] = kStackTop;
  ctx.eip = kCode;
  ctx.eflags = 0x202;
  std::memcpy(ctx.guest_fx, runtime::FpuState::reset().fxsave.data(), 512);

  // Guest (32-bit): ljmp 0x33:kGate.  Gate (64-bit): rsp = ctx.host_rsp,
  // jump to the runtime's landing, exactly where a signal would resume.
  uint8_t* c = m.code();
  const uint8_t ljmp[] = {0xea, uint8_t(kGate), uint8_t(kGate >> 8), uint8_t(kGate >> 16),
                          uint8_t(kGate >> 24), 0x33, 0x00};
  std::memcpy(c, ljmp, sizeof ljmp);
  uint8_t* g = c + (kGate - kCode);
  const uint64_t rsp_slot = reinterpret_cast<uint64_t>(&ctx.host_rsp);
  const uint64_t landing = reinterpret_cast<uint64_t>(&bt86_world_landing);
  g[0] = 0x48; g[1] = 0xb8; std::memcpy(g + 2, &rsp_slot, 8);   // movabs rax, &host_rsp
  g[10] = 0x48; g[11] = 0x8b; g[12] = 0x20;                      // mov rsp, [rax]
  g[13] = 0x48; g[14] = 0xb8; std::memcpy(g + 15, &landing, 8);  // movabs rax, landing
  g[23] = 0xff; g[24] = 0xe0;                                    // jmp rax

  asm volatile("rdfsbase %0" : "=r"(ctx.host_fs_base));
  asm volatile("rdgsbase %0" : "=r"(ctx.host_gs_base));
  runtime::detail::g_world = &ctx;
  ctx.in_guest = 1;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) bt86_world_enter(&ctx);
  const auto t1 = std::chrono::steady_clock::now();
  ctx.in_guest = 0;
  runtime::detail::g_world = nullptr;
  record(state, "no_trap", t1 - t0);
}

BENCHMARK(BM_host_signal);
BENCHMARK(BM_no_trap);
BENCHMARK(BM_trap_gp);
BENCHMARK(BM_trap_int80);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::printf("\nworld switch summary (ns per round trip, ratio to the host's own signal round trip)\n");
  const double host = g_ns_per_op.count("host_signal") ? g_ns_per_op["host_signal"] : 0;
  for (const char* name : {"host_signal", "no_trap", "trap_gp", "trap_int80"}) {
    if (!g_ns_per_op.count(name)) continue;
    const double ns = g_ns_per_op[name];
    std::printf("  %-12s %9.1f ns   %5.2fx host signal\n", name, ns, host > 0 ? ns / host : 0.0);
  }
  return 0;
}
