// Random-bytes fuzz of the translator (fuzz.h). A fault outside the guest
// window is not turned into a guest fault by the TC fault handler: it ends the
// process as a fatal host fault, so "no host-memory access" is checked by
// the process surviving (the window covers [0, 4 GiB) here; everything a
// 32-bit, GS-relative access can reach).
#include "tests/translator/fuzz.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include <spdlog/fmt/fmt.h>

#include "tests/runtime/direct_test_machine.h"
#include "tests/translator/difftest.h"
#include "translator/translator.h"

namespace bt86::test {
namespace {

using runtime::CpuState;
namespace rf = runtime::flags;
using Rng = std::mt19937_64;

constexpr uint32_t kFuzzBytes = 4096;  // one random guest page per run

// Every callout ends the run: the CPU model would perform the instruction or
// raise an exception; here the point is only that we got there cleanly.
struct StopHandler final : translator::CalloutHandler {
  translator::CalloutAction callout(CpuState&, const translator::CalloutInsn&) override {
    return translator::CalloutAction::kStop;
  }
};

// Stops a run that takes longer than kLimit (chained loops never return to
// the dispatcher by themselves) through the async-safe request_exit().
class Watchdog {
 public:
  static constexpr auto kLimit = std::chrono::milliseconds(3);
  explicit Watchdog(translator::Translator& t) : m_t(t), m_thread([this] { loop(); }) {}
  ~Watchdog() {
    m_quit = true;
    m_thread.join();
  }
  void begin() { m_started.store(now(), std::memory_order_release); }
  void end() { m_started.store(0, std::memory_order_release); }
  uint64_t fired() const { return m_fired; }

 private:
  static int64_t now() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void loop() {
    while (!m_quit) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
      const int64_t s = m_started.load(std::memory_order_acquire);
      if (s && now() - s > std::chrono::duration_cast<std::chrono::microseconds>(kLimit).count()) {
        m_t.request_exit();
        ++m_fired;
      }
    }
  }
  translator::Translator& m_t;
  std::atomic<int64_t> m_started{0};
  std::atomic<bool> m_quit{false};
  std::atomic<uint64_t> m_fired{0};
  std::thread m_thread;
};

struct FuzzHarness {
  TestMachine* m;
  std::unique_ptr<translator::SpanCodeReader> reader;
  std::unique_ptr<translator::Translator> translator;
  StopHandler handler;
  std::unique_ptr<Watchdog> watchdog;

  static FuzzHarness& get() {
    static FuzzHarness* h = [] {
      auto* h = new FuzzHarness;
      h->m = &TestMachine::get();
      h->reader = std::make_unique<translator::SpanCodeReader>(
          mmu::GuestVirt(kCode), std::span<const uint8_t>(h->m->code(), kRegion));
      auto t = translator::Translator::create({}, *h->reader);
      if (!t) {
        std::fprintf(stderr, "%s\n", t.error().message.c_str());
        std::abort();
      }
      h->translator = std::move(t.value());
      h->translator->set_callout_handler(&h->handler);
      h->watchdog = std::make_unique<Watchdog>(*h->translator);
      return h;
    }();
    return *h;
  }
};

// A register value: often an address in the data or stack region (so that
// memory operands sometimes work), otherwise anything.
uint32_t reg_value(Rng& rng) {
  switch (rng() % 4) {
    case 0: return kData + uint32_t(rng() % kRegion);
    case 1: return kStack + uint32_t(rng() % kRegion);
    case 2: return uint32_t(rng() % 0x100);
    default: return uint32_t(rng());
  }
}

std::string hex(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += fmt::format("{:02x}", p[i]);
  return s;
}

}  // namespace

FuzzSummary run_fuzz(uint64_t seed, uint64_t count) {
  FuzzHarness& h = FuzzHarness::get();
  FuzzSummary summary;
  uint8_t* code = h.m->code();
  const translator::TranslatorStats before = h.translator->stats();
  for (uint64_t index = 0; index < count; ++index) {
    Rng rng(seed * 0x9E3779B97F4A7C15ull + index);
    for (uint32_t i = 0; i < kFuzzBytes; i += 8) {
      const uint64_t v = rng();
      std::memcpy(code + i, &v, 8);
    }
    // Half of the runs: a difftest sequence (every expansion) with a few
    // bytes flipped, so expansions meet garbage registers and bad memory.
    const bool mutated = rng() % 2;
    if (mutated) {
      std::vector<uint8_t> seq = difftest_sequence(seed, index);
      const uint32_t flips = uint32_t(rng() % 4);
      for (uint32_t f = 0; f < flips; ++f) seq[rng() % seq.size()] = uint8_t(rng());
      std::memcpy(code, seq.data(), std::min<size_t>(seq.size(), kFuzzBytes));
    }
    h.translator->flush();  // new bytes at the same guest addresses
    CpuState cpu = TestMachine::initial_state();
    for (int r = 0; r < 8; ++r) cpu.gpr[r] = reg_value(rng);
    cpu.reg(runtime::ESP) = kStack + uint32_t(rng() % kRegion);
    cpu.eflags = rf::Fixed1 | rf::IF | (uint32_t(rng()) & (rf::Arith | rf::DF));
    cpu.eip = mutated ? kCode : kCode + uint32_t(rng() % 64);
    // Any segment bases (wrap-around included): folded in, never outside the window.
    if (rng() % 2)
      for (runtime::Seg sg : {runtime::Seg::DS, runtime::Seg::ES, runtime::Seg::SS, runtime::Seg::FS, runtime::Seg::GS})
        cpu.sreg(sg).base = rng() % 2 ? 0 : uint32_t(rng());
    h.translator->set_irq_pending(rng() % 8 == 0);

    h.watchdog->begin();
    translator::RunResult r = h.translator->run(cpu, 64);
    h.watchdog->end();

    ++summary.runs;
    ++summary.stops[translator::run_stop_name(r.stop)];
    std::string why;
    if (r.stop == translator::RunStop::kInternalError || r.stop == translator::RunStop::kUnsupportedState)
      why = fmt::format("{}: {}", translator::run_stop_name(r.stop), r.detail);
    if (why.empty()) continue;
    ++summary.failures;
    if (summary.first_failure.empty())
      summary.first_failure = fmt::format("seed {} run {}: {} at eip {:#x}\ncode at {:#x}: {}\n", seed, index, why,
                                          r.eip, kCode, hex(code, 256));
  }
  h.translator->set_irq_pending(false);
  summary.blocks = h.translator->stats().blocks_translated - before.blocks_translated;
  summary.guest_insns = h.translator->stats().guest_insns - before.guest_insns;
  return summary;
}

}  // namespace bt86::test
