// The Linux 32-bit boot protocol loader: synthetic setup headers for each
// refusal and for the layout, fuzzed headers that must never crash, and the
// real Debian kernel built by samples/linux/make-image.sh when it is there.
#include "monitor/linux_boot.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>

namespace bt86::monitor {
namespace {

constexpr uint64_t kMiB = 1 << 20;

void put(std::vector<uint8_t>& b, size_t off, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b[off + i] = uint8_t(v >> (8 * i));
}
uint64_t get(std::span<const uint8_t> b, size_t off, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t(b[off + i]) << (8 * i);
  return v;
}

// A small relocatable bzImage: 4 setup sectors, 60 KiB of "kernel", asking
// for 2 MiB at 2 MiB (so 4 MiB of RAM is the least it needs).
std::vector<uint8_t> synthetic_kernel() {
  std::vector<uint8_t> b(5 * 512 + 60 * 1024);
  for (size_t i = 5 * 512; i < b.size(); ++i) b[i] = uint8_t(i * 7);
  put(b, 0x1f1, 4, 1);                       // setup_sects
  put(b, 0x1f4, (b.size() - 5 * 512) / 16, 4);  // syssize
  put(b, 0x1fe, 0xaa55, 2);
  put(b, 0x200, 0xeb | 0x6a << 8, 2);        // jmp; header ends at 0x26c
  std::memcpy(&b[0x202], "HdrS", 4);
  put(b, 0x206, 0x020f, 2);
  put(b, 0x211, 0x01, 1);                    // LOADED_HIGH
  put(b, 0x214, 0x100000, 4);                // code32_start
  put(b, 0x22c, 0x7fffffff, 4);              // initrd_addr_max
  put(b, 0x230, 0x200000, 4);                // kernel_alignment
  put(b, 0x234, 1, 1);                       // relocatable
  put(b, 0x238, 2047, 4);                    // cmdline_size
  put(b, 0x258, 0x200000, 8);                // pref_address
  put(b, 0x260, 0x200000, 4);                // init_size
  return b;
}

std::string error_of(const Result<LinuxBootLayout>& r) { return r ? std::string("(no error)") : r.error().message; }

TEST(LinuxBoot, RefusesWhatIsNotABzImage) {
  std::vector<uint8_t> elf = {0x7f, 'E', 'L', 'F'};
  elf.resize(4096);
  EXPECT_NE(error_of(plan_linux_boot(elf, 0, "", 64 * kMiB)).find("not a bzImage"), std::string::npos);
  EXPECT_NE(error_of(plan_linux_boot({}, 0, "", 64 * kMiB)).find("not a bzImage"), std::string::npos);
}

TEST(LinuxBoot, RefusesOldProtocolsAndZImages) {
  auto k = synthetic_kernel();
  put(k, 0x206, 0x0209, 2);
  EXPECT_NE(error_of(plan_linux_boot(k, 0, "", 64 * kMiB)).find("boot protocol 2.09 is too old"), std::string::npos);
  k = synthetic_kernel();
  put(k, 0x211, 0, 1);
  EXPECT_NE(error_of(plan_linux_boot(k, 0, "", 64 * kMiB)).find("LOADED_HIGH"), std::string::npos);
}

TEST(LinuxBoot, RefusesTruncatedKernels) {
  auto k = synthetic_kernel();
  k.resize(k.size() - 4096);
  EXPECT_NE(error_of(plan_linux_boot(k, 0, "", 64 * kMiB)).find("truncated"), std::string::npos);
}

TEST(LinuxBoot, RefusesTooLongCommandLines) {
  auto k = synthetic_kernel();
  EXPECT_TRUE(plan_linux_boot(k, 0, std::string(2047, 'a'), 64 * kMiB));
  EXPECT_EQ(error_of(plan_linux_boot(k, 0, std::string(2048, 'a'), 64 * kMiB)),
            "Linux bzImage: the command line is 2048 bytes; this kernel accepts at most 2047");
}

TEST(LinuxBoot, SaysHowMuchMemoryIsNeeded) {
  auto k = synthetic_kernel();
  EXPECT_TRUE(plan_linux_boot(k, 0, "", 4 * kMiB));
  EXPECT_EQ(error_of(plan_linux_boot(k, 0, "", 3 * kMiB)),
            "Linux bzImage: the kernel needs at least 4 MiB of RAM, the guest has 3 MiB (use --memory 4)");
  EXPECT_EQ(error_of(plan_linux_boot(k, 3 * kMiB + 1, "", 6 * kMiB)),
            "Linux bzImage: the kernel and initrd need at least 8 MiB of RAM, the guest has 6 MiB (use --memory 8)");
}

TEST(LinuxBoot, InitrdGoesAsHighAsAllowed) {
  auto k = synthetic_kernel();
  auto plan = plan_linux_boot(k, 100000, "", 64 * kMiB);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->initrd, (64 * kMiB - 100000) & ~0xfffull);
  EXPECT_EQ(plan->initrd_size, 100000u);
  // initrd_addr_max is the last byte the initrd may use.
  put(k, 0x22c, 16 * kMiB - 1, 4);
  plan = plan_linux_boot(k, 100000, "", 64 * kMiB);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->initrd, (16 * kMiB - 100000) & ~0xfffull);
  EXPECT_LE(plan->initrd + plan->initrd_size, 16 * kMiB);
  // A limit below the kernel's buffer: refused, not overlapped.
  put(k, 0x22c, 4 * kMiB, 4);
  EXPECT_NE(error_of(plan_linux_boot(k, 100000, "", 64 * kMiB)).find("does not fit"), std::string::npos);
}

TEST(LinuxBoot, BuildsBootParamsGdtAndEntryState) {
  auto k = synthetic_kernel();
  std::vector<uint8_t> ram(8 * kMiB);
  std::vector<uint8_t> initrd(5000, 0xAB);
  machine::VcpuState vcpu;
  vcpu.regs.reg(runtime::EBX) = 0x1234;
  auto layout = load_linux(k, initrd, "console=ttyS0 quiet", ram, vcpu);
  ASSERT_TRUE(layout) << layout.error().message;

  // Kernel at 1 MiB, initrd at the top, command line NUL-terminated.
  EXPECT_EQ(std::memcmp(&ram[0x100000], &k[5 * 512], k.size() - 5 * 512), 0);
  EXPECT_EQ(layout->initrd, 8 * kMiB - 8192);
  EXPECT_EQ(ram[layout->initrd], 0xAB);
  EXPECT_EQ(ram[layout->initrd + 4999], 0xAB);
  EXPECT_STREQ(reinterpret_cast<const char*>(&ram[kLinuxCmdlineAddr]), "console=ttyS0 quiet");

  // boot_params: the header copied, the loader's fields filled in.
  std::span<const uint8_t> bp(&ram[kLinuxBootParamsAddr], 4096);
  EXPECT_EQ(std::memcmp(&bp[0x1f1], &k[0x1f1], 0x210 - 0x1f1), 0);  // up to type_of_loader
  EXPECT_EQ(std::memcmp(&bp[0x22c], &k[0x22c], 0x26c - 0x22c), 0);  // initrd_addr_max to the end
  EXPECT_EQ(get(bp, 0x202, 4), 0x53726448u);  // "HdrS"
  EXPECT_EQ(bp[0x210], 0xff);                 // type_of_loader
  EXPECT_EQ(bp[0x211], 0x01);                 // loadflags: LOADED_HIGH as the kernel has it
  EXPECT_EQ(get(bp, 0x228, 4), kLinuxCmdlineAddr);
  EXPECT_EQ(get(bp, 0x218, 4), layout->initrd);
  EXPECT_EQ(get(bp, 0x21c, 4), 5000u);
  EXPECT_EQ(get(bp, 0x260, 4), 0x200000u);    // init_size: the decompressor reads it from here
  EXPECT_EQ(get(bp, 0x000, 8), 0u);           // screen_info zero: no VGA console
  // e820: usable low memory, EBDA and BIOS reserved, usable from 1 MiB.
  ASSERT_EQ(bp[0x1e8], 4);
  struct E820 { uint64_t addr, size; uint32_t type; };
  const E820 want[] = {{0, 0x9fc00, 1}, {0x9fc00, 0x400, 2}, {0xf0000, 0x10000, 2}, {0x100000, 7 * kMiB, 1}};
  for (int i = 0; i < 4; ++i) {
    const size_t off = 0x2d0 + 20 * i;
    EXPECT_EQ(get(bp, off, 8), want[i].addr) << i;
    EXPECT_EQ(get(bp, off + 8, 8), want[i].size) << i;
    EXPECT_EQ(get(bp, off + 16, 4), want[i].type) << i;
  }
  EXPECT_EQ(get(ram, 0x413, 2), 639u);  // BIOS data area: base memory in KiB

  // GDT: flat __BOOT_CS and __BOOT_DS.
  EXPECT_EQ(get(ram, kLinuxGdtAddr + 0x10, 8), 0x00cf9b000000ffffull);
  EXPECT_EQ(get(ram, kLinuxGdtAddr + 0x18, 8), 0x00cf93000000ffffull);

  // The 32-bit entry state.
  using runtime::Seg;
  EXPECT_EQ(vcpu.regs.eip, 0x100000u);
  EXPECT_EQ(vcpu.regs.reg(runtime::ESI), kLinuxBootParamsAddr);
  EXPECT_EQ(vcpu.regs.reg(runtime::EBX), 0u);
  EXPECT_EQ(vcpu.regs.reg(runtime::EBP), 0u);
  EXPECT_EQ(vcpu.regs.reg(runtime::EDI), 0u);
  EXPECT_FALSE(vcpu.interrupts_enabled());
  EXPECT_TRUE(vcpu.protected_mode());
  EXPECT_FALSE(vcpu.paging());
  EXPECT_EQ(vcpu.cpl, 0);
  EXPECT_EQ(vcpu.sys.gdtr.base, kLinuxGdtAddr);
  EXPECT_EQ(vcpu.sys.gdtr.limit, 31);
  EXPECT_EQ(vcpu.regs.sreg(Seg::CS).selector, kLinuxBootCs);
  EXPECT_TRUE(vcpu.regs.sreg(Seg::CS).code());
  EXPECT_TRUE(vcpu.regs.sreg(Seg::CS).big());
  EXPECT_EQ(vcpu.regs.sreg(Seg::CS).dpl(), 0);
  EXPECT_EQ(vcpu.regs.sreg(Seg::CS).limit, 0xffffffffu);
  for (Seg s : {Seg::DS, Seg::ES, Seg::SS}) {
    EXPECT_EQ(vcpu.regs.sreg(s).selector, kLinuxBootDs);
    EXPECT_TRUE(vcpu.regs.sreg(s).writable());
    EXPECT_EQ(vcpu.regs.sreg(s).base, 0u);
    EXPECT_EQ(vcpu.regs.sreg(s).limit, 0xffffffffu);
  }
}

TEST(LinuxBoot, ErrorsLeaveRamAndVcpuUntouched) {
  auto k = synthetic_kernel();
  std::vector<uint8_t> ram(3 * kMiB);
  machine::VcpuState vcpu, before;
  EXPECT_FALSE(load_linux(k, {}, "", ram, vcpu));
  EXPECT_EQ(vcpu, before);
  for (uint8_t byte : ram) ASSERT_EQ(byte, 0);
}

TEST(LinuxBoot, FuzzedHeadersNeverCrash) {
  const auto good = synthetic_kernel();
  std::vector<uint8_t> ram(8 * kMiB);
  std::mt19937 rng(0x20f);
  int loaded = 0;
  for (int i = 0; i < 20000; ++i) {
    auto k = good;
    // Mutate a few header bytes (sometimes many), sometimes cut the file.
    const int flips = 1 + int(rng() % (i % 10 == 0 ? 64 : 4));
    for (int f = 0; f < flips; ++f) k[0x1f0 + rng() % 0x80] = uint8_t(rng());
    if (rng() % 8 == 0) k.resize(rng() % k.size());
    const uint64_t initrd_size = rng() % 4 == 0 ? rng() % (8 * kMiB) : 0;
    std::vector<uint8_t> initrd(initrd_size < 65536 ? initrd_size : 0);
    std::string cmdline(rng() % 3000, 'x');
    auto plan = plan_linux_boot(k, initrd.size(), cmdline, ram.size());
    if (!plan) {
      ASSERT_FALSE(plan.error().message.empty());
      ASSERT_EQ(plan.error().message.find('\n'), std::string::npos);
      continue;
    }
    ASSERT_LE(plan->min_ram_bytes, ram.size());
    ASSERT_LE(uint64_t(plan->initrd) + plan->initrd_size, ram.size());
    ASSERT_LE(uint64_t(plan->kernel_load) + plan->header.kernel_size, ram.size());
    ASSERT_GE(plan->entry, plan->kernel_load);
    ASSERT_LT(plan->entry, plan->kernel_load + plan->header.kernel_size);
    machine::VcpuState vcpu;
    ASSERT_TRUE(load_linux(k, initrd, cmdline, ram, vcpu));
    ++loaded;
  }
  EXPECT_GT(loaded, 100);
}

// The kernel samples/linux/make-image.sh builds, if it has been built:
// $BT86_GUEST_DIR, the build tree's guest/, or /tmp/guest.
std::optional<std::string> guest_dir() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("BT86_GUEST_DIR")) dirs.push_back(env);
  dirs.push_back(BT86_BUILD_DIR "/guest");
  dirs.push_back("/tmp/guest");
  for (const auto& d : dirs) {
    if (std::ifstream(d + "/vmlinuz").good() && std::ifstream(d + "/initrd.cpio.gz").good()) return d;
  }
  return std::nullopt;
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

TEST(LinuxBootRealKernel, DebianKernelLoads) {
  auto dir = guest_dir();
  if (!dir) GTEST_SKIP() << "no guest image: run samples/linux/make-image.sh build/guest (or set BT86_GUEST_DIR)";
  const auto kernel = slurp(*dir + "/vmlinuz");
  const auto initrd = slurp(*dir + "/initrd.cpio.gz");
  auto header = parse_linux_header(kernel);
  ASSERT_TRUE(header) << header.error().message;
  EXPECT_GE(header->version, 0x020f);  // Linux 6.1 speaks 2.15
  EXPECT_TRUE(header->relocatable);
  EXPECT_EQ(header->code32_start, 0x100000u);
  EXPECT_GT(header->init_size, header->kernel_size);

  // 16 MiB is not enough: the message says what is.
  auto small = plan_linux_boot(kernel, initrd.size(), "console=ttyS0", 16 * kMiB);
  ASSERT_FALSE(small);
  const uint64_t need = (header->pref_address + header->init_size + ((initrd.size() + 4095) & ~4095ull) + kMiB - 1) / kMiB;
  EXPECT_NE(small.error().message.find("need at least " + std::to_string(need) + " MiB"), std::string::npos)
      << small.error().message;

  std::vector<uint8_t> ram(64 * kMiB);
  machine::VcpuState vcpu;
  auto layout = load_linux(kernel, initrd, "console=ttyS0 earlyprintk=serial", ram, vcpu);
  ASSERT_TRUE(layout) << layout.error().message;
  EXPECT_EQ(layout->runtime_start, header->pref_address);  // 1 MiB rounded up to 16 MiB alignment
  EXPECT_GE(layout->initrd, layout->runtime_end);
  EXPECT_EQ(layout->initrd % 4096, 0u);
  EXPECT_EQ(std::memcmp(&ram[layout->initrd], initrd.data(), initrd.size()), 0);
  EXPECT_EQ(vcpu.regs.eip, 0x100000u);
  // The first bytes at the entry point are the kernel's startup_32 (cld; cli).
  EXPECT_EQ(ram[0x100000], 0xfc);
  std::cout << "[ info     ] " << layout->describe() << "\n";
}

}  // namespace
}  // namespace bt86::monitor
