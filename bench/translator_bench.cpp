// Translator costs, measured side by side in one run:
//   translate        guest instructions translated per second (decode,
//                    classify, re-encode, AsmJit, TC copy), on a mix of
//                    ordinary kernel-style instructions in 64-insn blocks
//   dispatch_lookup  the dispatcher's block lookup for a cached EIP (C++ hash map)
//   <loop>/direct    a CPU-bound guest loop run natively (runtime::DirectExecutor,
//                    compatibility mode, CPL 3)
//   <loop>/bt        the same bytes from the same state through the translator
//                    (chained blocks, in-TC lookup), steady state (TC warm)
//   <loop>/bt_nochain  the same without chaining and lookup (every block
//                    returns to the dispatcher), for comparison
// Loops: checksum (byte loads + adds), copy (dword loads/stores), sort
// (bubble sort, data-dependent branches), fib (recursive calls: call/ret
// heavy), indirect (a jmp reg every iteration). The summary prints the
// ratio bt / direct for each loop, from the fastest repetition of each
// (run with --benchmark_repetitions=N on a shared machine).
// BT86_BENCH_TRACE=1 prints the translated blocks of each loop (stderr).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/runtime/direct_machine.h"
#include "tests/runtime/guest_loops.h"
#include "tests/runtime/guest_snippet.h"
#include "translator/translator.h"

namespace {

using namespace bt86;
using runtime::CpuState;

constexpr uint32_t kCode = 0x00400000, kCodePa = 0x100000, kCodeSize = 0x40000;
constexpr uint32_t kData = 0x00800000, kDataPa = 0x200000, kDataSize = 0x100000;
constexpr uint32_t kStack = 0x00600000, kStackPa = 0x180000, kStackSize = 0x10000;
constexpr uint32_t kStackTop = kStack + kStackSize;

// Each loop runs to int3; EBX = kData on entry.
INTEL(checksum,
      "xor eax, eax\n"
      "mov esi, ebx\n"
      "mov ecx, 0x40000\n"  // 256 KiB
      "1: movzx edx, byte ptr [esi]\n"
      "add eax, edx\n"
      "inc esi\n"
      "dec ecx\n"
      "jnz 1b\n"
      "int3\n")

INTEL(copy,
      "mov esi, ebx\n"
      "lea edi, [ebx + 0x80000]\n"
      "mov ecx, 0x10000\n"  // 256 KiB as dwords
      "1: mov eax, [esi]\n"
      "mov [edi], eax\n"
      "add esi, 4\n"
      "add edi, 4\n"
      "dec ecx\n"
      "jnz 1b\n"
      "int3\n")

INTEL(sort,
      // fill 600 dwords with an LCG, then bubble sort them ascending
      "mov ecx, 600\n"
      "mov edi, ebx\n"
      "mov eax, 12345\n"
      "1: imul eax, eax, 1103515245\n"
      "add eax, 12345\n"
      "mov [edi], eax\n"
      "add edi, 4\n"
      "dec ecx\n"
      "jnz 1b\n"
      "mov edx, 599\n"              // passes
      "2: mov esi, ebx\n"
      "mov ecx, edx\n"
      "3: mov eax, [esi]\n"
      "mov ebp, [esi + 4]\n"
      "cmp eax, ebp\n"
      "jbe 4f\n"
      "mov [esi], ebp\n"
      "mov [esi + 4], eax\n"
      "4: add esi, 4\n"
      "dec ecx\n"
      "jnz 3b\n"
      "dec edx\n"
      "jnz 2b\n"
      "int3\n")

INTEL(fib, "mov eax, 22\n" GUEST_FIB_OF_EAX)

INTEL(indirect,
      "call 0f\n"
      "0: pop edi\n"
      "add edi, 2f - 0b\n"
      "mov ecx, 200000\n"
      "1: jmp edi\n"
      "2: add eax, ecx\n"
      "dec ecx\n"
      "jnz 1b\n"
      "int3\n")

// Translation speed: 44 ordinary instructions, repeated 400 times; blocks end at the
// 64-instruction cap or a page boundary.
INTEL(mix,
      ".rept 400\n"
      "mov eax, [ebx + 8]\n add eax, ecx\n mov [ebx + 12], eax\n lea edx, [eax + ecx*4 + 16]\n"
      "sub edx, esi\n and edx, 0xff0\n or ecx, edx\n xor esi, edi\n"
      "shl eax, 3\n sar edx, 1\n imul ecx, edx\n movzx eax, byte ptr [esi + ebx]\n"
      "movsx edx, word ptr [ebx + 2]\n test eax, eax\n setnz cl\n cmovz eax, edx\n"
      "mov [esp + 4], eax\n mov eax, [esp + 8]\n push eax\n pop edx\n"
      "inc edi\n dec esi\n neg eax\n not edx\n"
      "adc eax, 1\n sbb edx, 2\n bt eax, 5\n bswap ecx\n"
      "mov ecx, [ebp - 8]\n mov [ebp - 12], ecx\n cmp ecx, 100\n mov al, [ebx]\n"
      "mov [ebx + 1], dl\n add dword ptr [ebx + 16], 1\n xchg eax, edx\n cdq\n"
      "shld eax, edx, 4\n rol ecx, 7\n mov eax, 0x12345678\n nop\n"
      "lea esi, [esi + 4]\n lea edi, [edi - 4]\n movzx ecx, cx\n and eax, ecx\n"
      ".endr\n"
      "int3\n")

struct Machine : test::DirectMachine {
  std::unique_ptr<translator::SpanCodeReader> reader;

  static Machine& get() {
    static Machine* m = [] {
      auto* t = new Machine;
      using mmu::Prot;
      runtime::DirectConfig config;
      config.tick_period = std::chrono::microseconds(0);  // no preemption noise
      t->build({{kCode, kCodePa, kCodeSize, Prot::All},
                {kData, kDataPa, kDataSize, Prot::ReadWrite},
                {kStack, kStackPa, kStackSize, Prot::ReadWrite}},
               config);
      t->reader = std::make_unique<translator::SpanCodeReader>(
          mmu::GuestVirt(kCode), std::span<const uint8_t>(t->host(kCodePa, kCodeSize), kCodeSize));
      return t;
    }();
    return *m;
  }
  void load(std::span<const uint8_t> code) {
    std::memcpy(host(kCodePa, kCodeSize), code.data(), code.size());
  }
  static CpuState state() {
    CpuState c = CpuState::flat_user(kCode, kStackTop);
    c.reg(runtime::EBX) = kData;
    c.reg(runtime::EBP) = kData + 0x1000;
    return c;
  }
};

std::map<std::string, double> g_ns;

void record(benchmark::State& state, const std::string& name, std::chrono::steady_clock::duration d) {
  // The fastest of the repetitions: the machine is shared, noise only adds.
  const double ns = std::chrono::duration<double, std::nano>(d).count() / double(state.iterations());
  auto it = g_ns.find(name);
  if (it == g_ns.end() || ns < it->second) g_ns[name] = ns;
}

using Snippet = std::span<const uint8_t> (*)();

void run_direct(benchmark::State& state, const char* name, Snippet code) {
  Machine& m = Machine::get();
  m.load(code());
  auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    CpuState cpu = Machine::state();
    runtime::ExitRecord x = m.executor->run(cpu);
    if (x.kind != runtime::ExitKind::Breakpoint) {
      state.SkipWithError("native run did not reach int3");
      return;
    }
    benchmark::DoNotOptimize(cpu.gpr);
  }
  record(state, std::string(name) + "/direct", std::chrono::steady_clock::now() - start);
}

void run_bt(benchmark::State& state, const char* name, Snippet code, bool chain) {
  Machine& m = Machine::get();
  m.load(code());
  translator::TranslatorConfig config;
  config.chain = chain;
  auto t = translator::Translator::create(config, *m.reader);
  if (!t) {
    state.SkipWithError(t.error().message.c_str());
    return;
  }
  // BT86_BENCH_TRACE=1: print each block of the loop beside its host code.
  if (std::getenv("BT86_BENCH_TRACE"))
    (*t)->set_trace_sink([](const std::string& text) { std::fputs(text.c_str(), stderr); });
  {  // warm the TC: the steady state is what the loop measures
    CpuState cpu = Machine::state();
    (*t)->run(cpu, ~uint64_t(0));
  }
  auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    CpuState cpu = Machine::state();
    translator::RunResult r = (*t)->run(cpu, ~uint64_t(0));
    if (r.stop != translator::RunStop::kNeedsInterpretation) {
      state.SkipWithError("translated run did not reach int3");
      return;
    }
    benchmark::DoNotOptimize(cpu.gpr);
  }
  record(state, std::string(name) + (chain ? "/bt" : "/bt_nochain"), std::chrono::steady_clock::now() - start);
  state.counters["lookup_misses"] = double((*t)->stats().lookup_misses);
}

#define LOOP(name)                                                                                      \
  void BM_##name##_direct(benchmark::State& s) { run_direct(s, #name, snippet_##name); }                \
  void BM_##name##_bt(benchmark::State& s) { run_bt(s, #name, snippet_##name, true); }                  \
  void BM_##name##_bt_nochain(benchmark::State& s) { run_bt(s, #name, snippet_##name, false); }         \
  BENCHMARK(BM_##name##_direct)->Unit(benchmark::kMicrosecond);                                         \
  BENCHMARK(BM_##name##_bt)->Unit(benchmark::kMicrosecond);                                             \
  BENCHMARK(BM_##name##_bt_nochain)->Unit(benchmark::kMicrosecond);

LOOP(checksum)
LOOP(copy)
LOOP(sort)
LOOP(fib)
LOOP(indirect)

// Translation speed: translate the whole mix (every block), then flush.
// Needs no guest memory (only the code bytes), so it also runs under
// valgrind --tool=callgrind, which cannot reserve the guest window.
void BM_translate(benchmark::State& state) {
  std::vector<uint8_t> code(kCodeSize);
  std::memcpy(code.data(), snippet_mix().data(), snippet_mix().size());
  translator::SpanCodeReader reader(mmu::GuestVirt(kCode), code);
  translator::TranslatorConfig config;
  config.tc_size = size_t(64) << 20;
  auto created = translator::Translator::create(config, reader);
  if (!created) {
    state.SkipWithError(created.error().message.c_str());
    return;
  }
  auto t = std::move(created.value());
  const uint32_t end = kCode + uint32_t(snippet_mix().size()) - 1;  // the int3
  CpuState cpu = Machine::state();
  uint64_t insns = 0;
  for (auto _ : state) {
    t->flush();
    const uint64_t before = t->stats().guest_insns;
    for (uint32_t eip = kCode; eip < end;) {
      const translator::Block* b = t->block_at(eip, cpu);
      if (!b || b->guest_end <= eip) {
        state.SkipWithError("translation stopped early");
        return;
      }
      eip = b->guest_end;
    }
    insns += t->stats().guest_insns - before;
  }
  state.counters["insns_per_s"] = benchmark::Counter(double(insns), benchmark::Counter::kIsRate);
  state.counters["tc_bytes_per_insn"] = double(t->stats().tc_bytes) / double(t->stats().guest_insns);
}
BENCHMARK(BM_translate)->Unit(benchmark::kMillisecond);

// The dispatcher's lookup of an already translated block.
void BM_dispatch_lookup(benchmark::State& state) {
  Machine& m = Machine::get();
  m.load(snippet_mix());
  auto t = std::move(translator::Translator::create({}, *m.reader).value());
  CpuState cpu = Machine::state();
  std::vector<uint32_t> eips;
  const uint32_t end = kCode + uint32_t(snippet_mix().size()) - 1;
  for (uint32_t eip = kCode; eip < end; eip = t->block_at(eip, cpu)->guest_end) eips.push_back(eip);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(t->block_at(eips[i], cpu));
    if (++i == eips.size()) i = 0;
  }
}
BENCHMARK(BM_dispatch_lookup);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::printf("\n%-10s %12s %12s %12s %8s %10s\n", "loop", "direct us", "bt us", "nochain us", "bt/dir", "nochain/dir");
  for (const char* name : {"checksum", "copy", "sort", "fib", "indirect"}) {
    auto get = [&](const char* kind) {
      auto it = g_ns.find(std::string(name) + "/" + kind);
      return it == g_ns.end() ? 0.0 : it->second / 1000.0;
    };
    const double d = get("direct"), b = get("bt"), n = get("bt_nochain");
    if (d > 0) std::printf("%-10s %12.1f %12.1f %12.1f %8.2f %10.2f\n", name, d, b, n, b / d, n / d);
  }
  return 0;
}
