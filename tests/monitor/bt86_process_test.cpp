// Runs the bt86 binary end to end: usage errors, image recognition, the
// sample guests, and corrupted ELF files that must never crash it.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <random>
#include <sstream>

#include "test_util.h"

namespace bt86::monitor {
namespace {

using test::run_bt86;
using test::RunResult;

std::string guest(const std::string& name) { return std::string(BT86_TEST_GUESTS) + "/" + name; }

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

// bt86 refused its input: status 2 and exactly one line naming `what`.
void expect_usage_error(const RunResult& r, const std::string& what) {
  ASSERT_TRUE(r.exited) << "signal " << r.signal;
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_EQ(r.err.rfind("bt86: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Bt86, HelpExitsZero) {
  auto r = run_bt86({"--help"});
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("usage: bt86 [options] KERNEL"), std::string::npos);
  EXPECT_EQ(r.err, "");
}

TEST(Bt86, MissingKernelFile) {
  expect_usage_error(run_bt86({"/nonexistent/bt86/kernel"}), "/nonexistent/bt86/kernel: No such file or directory");
}

TEST(Bt86, UnreadableKernelFile) {
  // Tests run as root, so permissions cannot make a file unreadable; a
  // directory cannot be read as a file whoever you are.
  const std::string dir = test::temp_path("dir");
  mkdir(dir.c_str(), 0700);
  expect_usage_error(run_bt86({dir}), dir + ": Is a directory");
  rmdir(dir.c_str());
}

TEST(Bt86, MissingAndUnreadableInitrd) {
  expect_usage_error(run_bt86({"--initrd", "/nonexistent/initrd", BT86_HELLO_USER}), "/nonexistent/initrd");
  expect_usage_error(run_bt86({"--initrd=/", BT86_HELLO_USER}), "/: Is a directory");
}

TEST(Bt86, BadMemorySizes) {
  for (const char* bad : {"8", "4000", "abc"}) {
    SCOPED_TRACE(bad);
    expect_usage_error(run_bt86({"--memory", bad, BT86_HELLO_USER}), std::string("--memory ") + bad);
  }
  expect_usage_error(run_bt86({"--memory=8", BT86_HELLO_USER}), "out of range (16..3072 MiB)");
}

TEST(Bt86, NotAKernel) {
  const std::string text = test::temp_path("text");
  test::write_file(text, {'n', 'o', 't', ' ', 'a', ' ', 'k', 'e', 'r', 'n', 'e', 'l', '\n'});
  expect_usage_error(run_bt86({text}), text + ": not a kernel bt86 can load");
  unlink(text.c_str());
  expect_usage_error(run_bt86({"/bin/true"}), "/bin/true: not a kernel bt86 can load: 64-bit ELF");
}

TEST(Bt86, UnknownOptionAndNoKernel) {
  expect_usage_error(run_bt86({"--frobnicate", BT86_HELLO_USER}), "--frobnicate");
  expect_usage_error(run_bt86({}), "no KERNEL");
  expect_usage_error(run_bt86({"--stats"}), "no KERNEL");
}

// A bzImage whose setup header is cut short is refused before anything runs.
TEST(Bt86, TruncatedBzImageRefused) {
  const std::string path = test::temp_path("bzImage");
  test::write_file(path, test::fake_bzimage());
  auto r = run_bt86({path});
  expect_usage_error(r, "Linux bzImage");
  unlink(path.c_str());
}

// A Multiboot kernel whose code is garbage (no IDT, int 0x80 into nothing)
// ends as a guest error with one clear line, never as a crash of bt86.
TEST(Bt86, MultibootGarbageEndsAsGuestError) {
  const std::string path = test::temp_path("multiboot");
  test::ElfSpec spec;
  spec.extra = test::multiboot_header(0x3);
  test::write_file(path, test::build_elf(spec));
  auto r = run_bt86({path});
  ASSERT_TRUE(r.exited) << "signal " << r.signal;
  EXPECT_EQ(r.status, 4) << r.err;
  EXPECT_NE(r.err.find("bt86: triple fault"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  unlink(path.c_str());
}

// The machine stops its guest with a one-shot host timer; without one a
// guest that computes without exits could never be stopped, so a host that
// refuses the timer is a host error at start-up (status 3), not a hang
// later. RLIMIT_SIGPENDING 0 makes timer_create fail (EAGAIN).
TEST(Bt86, NoHostTickTimerIsAHostErrorAtStart) {
  const std::string path = test::temp_path("multiboot");
  test::ElfSpec spec;
  spec.extra = test::multiboot_header(0x3);
  test::write_file(path, test::build_elf(spec));
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_SIGPENDING, &old), 0);
  const rlimit none{0, old.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_SIGPENDING, &none), 0);
  auto r = run_bt86({path});  // the child inherits the limit
  setrlimit(RLIMIT_SIGPENDING, &old);
  unlink(path.c_str());
  ASSERT_TRUE(r.exited) << "signal " << r.signal;
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_NE(r.err.find("bt86: cannot create the host tick timer"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

// Golden stdout; a golden line ending in '*' matches any line with that prefix
// (the cpuid vendor is the host's on hosts without CPUID faulting).
void expect_golden(const std::string& actual, const std::string& golden_path) {
  const auto golden_bytes = test::read_file(golden_path);
  ASSERT_FALSE(golden_bytes.empty()) << golden_path;
  std::istringstream want(std::string(golden_bytes.begin(), golden_bytes.end())), got(actual);
  std::string w, g;
  int line = 0;
  while (std::getline(want, w)) {
    ++line;
    ASSERT_TRUE(std::getline(got, g)) << "output ends before golden line " << line << ": " << w;
    if (!w.empty() && w.back() == '*')
      EXPECT_EQ(g.substr(0, w.size() - 1), w.substr(0, w.size() - 1)) << "line " << line;
    else
      EXPECT_EQ(g, w) << "line " << line;
  }
  EXPECT_FALSE(std::getline(got, g)) << "extra output: " << g;
}

TEST(Bt86, HelloUserGoldenOutput) {
  auto r = run_bt86({BT86_HELLO_USER});
  ASSERT_TRUE(r.exited) << "signal " << r.signal;
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  expect_golden(r.out, std::string(BT86_TEST_SOURCES) + "/hello_user.golden");
}

TEST(Bt86, HelloUserStatsShowTheExits) {
  auto r = run_bt86({"--stats", BT86_HELLO_USER});
  ASSERT_TRUE(r.exited) << "signal " << r.signal;
  EXPECT_EQ(r.status, 0) << r.err;
  for (const char* line : {"bt86 stats:", "guest run time", "world-switch entries", "software-interrupt",
                           "breakpoint", "page-fault", "preempted", "window maps/unmaps", "ldt writes",
                           "syscalls handled", "(-ENOSYS: 1)", "stack pages on demand"})
    EXPECT_NE(r.err.find(line), std::string::npos) << line << "\n" << r.err;
}

// A true #PF in guest kernel code whose handler makes the page present and
// IRETs back (nanobench's pgfault row): the page is mapped at the IRET
// (machine.cpp, prefault_after_iret), so the retried access does not take a
// second host fault. Fails if the retry still faults (hidden faults ~ true
// faults) or if the prefault stops happening.
TEST(Bt86, TruePageFaultIsPrefaultedAtTheHandlersIret) {
  auto r = run_bt86({"--stats", "--append", "pgfault", BT86_NANOBENCH});
  ASSERT_TRUE(r.exited) << "signal " << r.signal;
  EXPECT_EQ(r.status, 1) << r.err;  // debug exit 0
  EXPECT_NE(r.out.find("nanobench: pgfault "), std::string::npos) << r.out;
  unsigned long hidden_user = 0, hidden_kernel = 0, true_faults = 0, prefaulted = 0;
  const auto at = r.err.find("machine: hidden faults user");
  ASSERT_NE(at, std::string::npos) << r.err;
  ASSERT_EQ(std::sscanf(r.err.c_str() + at,
                        "machine: hidden faults user %lu kernel %lu, true faults %lu (prefaulted at the handler's iret %lu)",
                        &hidden_user, &hidden_kernel, &true_faults, &prefaulted),
            4)
      << r.err;
  EXPECT_GT(true_faults, 1000u);
  EXPECT_EQ(prefaulted, true_faults);
  EXPECT_LT(hidden_kernel, true_faults / 100) << r.err;
}

TEST(Bt86, DivideByZeroIsAGuestError) {
  auto r = run_bt86({guest("divide_by_zero.elf")});
  ASSERT_TRUE(r.exited) << "signal " << r.signal;
  EXPECT_EQ(r.status, 4);
  EXPECT_EQ(r.out, "dividing by zero\n");
  EXPECT_NE(r.err.find("bt86: guest error: divide-error at 0073:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bt86: registers: eax="), std::string::npos) << r.err;
}

TEST(Bt86, GuestExitStatusBecomesOurs) {
  auto r = run_bt86({guest("exit_seven.elf")});
  ASSERT_TRUE(r.exited) << "signal " << r.signal;
  EXPECT_EQ(r.status, 7) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Bt86, HandMadeElfRuns) {
  const std::string path = test::temp_path("tiny");
  test::write_file(path, test::build_elf({}));  // exit(7)
  auto r = run_bt86({"--memory", "16", path});
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.status, 7) << r.err;
  unlink(path.c_str());
}

// Corrupted and truncated copies of a real guest: bt86 must refuse them (2),
// report a guest error (4) or run them (7, the seed's own status), and never
// die of a signal or hang.
TEST(Bt86, CorruptedElfNeverCrashes) {
  const auto seed = test::read_file(guest("exit_seven.elf"));
  ASSERT_GT(seed.size(), sizeof(Elf32_Ehdr));
  Elf32_Ehdr eh;
  std::memcpy(&eh, seed.data(), sizeof eh);
  const size_t headers = std::min(seed.size(), size_t(eh.e_phoff) + eh.e_phnum * sizeof(Elf32_Phdr));
  std::mt19937 rng(0xb786);
  const std::string path = test::temp_path("corrupt");
  int counts[256] = {};
  constexpr int kVariants = 300;
  for (int v = 0; v < kVariants; ++v) {
    std::vector<uint8_t> bytes = seed;
    switch (v % 4) {
      case 0:  // truncate anywhere
        bytes.resize(rng() % seed.size());
        break;
      case 1:  // a few random bytes in the ELF and program headers
      case 2:
        for (int i = 0, n = 1 + int(rng() % 8); i < n; ++i) bytes[rng() % headers] = uint8_t(rng());
        break;
      case 3: {  // a whole random 32-bit field in the headers
        const size_t off = (rng() % (headers / 4)) * 4;
        const uint32_t value = rng();
        std::memcpy(&bytes[off], &value, 4);
        break;
      }
    }
    test::write_file(path, bytes);
    auto r = run_bt86({"--memory", "16", path}, std::chrono::seconds(10));
    ASSERT_FALSE(r.timed_out) << "variant " << v << " hung";
    ASSERT_TRUE(r.exited) << "variant " << v << " killed bt86 with signal " << r.signal << "\n" << r.err;
    EXPECT_TRUE(r.status == 2 || r.status == 4 || r.status == 7) << "variant " << v << " status " << r.status << "\n"
                                                                 << r.err;
    ++counts[r.status];
  }
  unlink(path.c_str());
  // The mix should include refusals as well as runs, or the test tests nothing.
  EXPECT_GT(counts[2], kVariants / 4);
  RecordProperty("refused", counts[2]);
  RecordProperty("guest_errors", counts[4]);
  RecordProperty("ran", counts[7]);
}

}  // namespace
}  // namespace bt86::monitor
