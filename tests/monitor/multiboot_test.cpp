// Unit tests of the Multiboot v1 loader: small synthetic ELF and a.out-kludge
// kernels are loaded into guest RAM and the result (the machine state, the
// bytes in RAM, multiboot_info, the memory map, modules, the GDT) is read
// back; malformed headers are refused with one line; fuzzed images never
// crash the loader.
#include "monitor/multiboot.h"

#include <gtest/gtest.h>

#include <random>

#include "monitor/kernel_image.h"
#include "test_util.h"

namespace bt86::monitor {
namespace {

using machine::VcpuState;
using runtime::Seg;

constexpr uint32_t kKernelBase = 0x100000;

std::vector<uint8_t> mb_header(uint32_t flags, std::vector<uint32_t> rest = {}) {
  std::vector<uint32_t> words = {kMultibootHeaderMagic, flags, uint32_t(-(kMultibootHeaderMagic + flags))};
  words.insert(words.end(), rest.begin(), rest.end());
  std::vector<uint8_t> out(words.size() * 4);
  std::memcpy(out.data(), words.data(), out.size());
  return out;
}

// An ELF kernel at 1 MiB: headers + Multiboot header + code; memsz_delta
// bytes of .bss.
std::vector<uint8_t> elf_kernel(uint32_t flags = 0x3, int64_t bss = 0x100, uint32_t vaddr = kKernelBase) {
  test::ElfSpec spec;
  spec.vaddr = vaddr;
  spec.extra = mb_header(flags);
  spec.code = {0xf4, 0xeb, 0xfd};  // hlt; jmp .-1
  spec.memsz_delta = bss;
  spec.flags = PF_R | PF_W | PF_X;
  return test::build_elf(spec);
}

void set_paddr(std::vector<uint8_t>& elf, uint32_t paddr) {
  std::memcpy(elf.data() + sizeof(Elf32_Ehdr) + offsetof(Elf32_Phdr, p_paddr), &paddr, 4);
}

// A flat binary with the a.out kludge: header at file offset 0 describing
// itself at load_addr, then code; bss_extra bytes of bss.
std::vector<uint8_t> aout_kernel(uint32_t load_addr = kKernelBase, uint32_t bss_extra = 0x1000) {
  const uint32_t size = 32 + 16;
  auto img = mb_header(mbflag::kAoutKludge | 0x3,
                       {load_addr, load_addr, load_addr + size, load_addr + size + bss_extra, load_addr + 32});
  img.resize(size, 0x90);  // nops
  img.push_back(0xee);     // past load_end_addr: must not be loaded
  return img;
}

struct Fixture : ::testing::Test {
  void SetUp() override {
    auto m = mmu::GuestMemory::create(16);
    ASSERT_TRUE(m.ok()) << m.error().message;
    ram.emplace(std::move(*m));
  }
  uint32_t rd32(uint32_t pa) const {
    uint32_t v = 0;
    EXPECT_TRUE(ram->read(mmu::GuestPhys(pa), {reinterpret_cast<uint8_t*>(&v), 4}));
    return v;
  }
  uint64_t rd64(uint32_t pa) const { return rd32(pa) | uint64_t(rd32(pa + 4)) << 32; }
  std::string rdstr(uint32_t pa) const {
    std::string s;
    for (uint8_t c; ram->read(mmu::GuestPhys(pa), {&c, 1}) && c; ++pa) s.push_back(char(c));
    return s;
  }
  std::vector<uint8_t> rdbytes(uint32_t pa, size_t n) const {
    std::vector<uint8_t> v(n);
    EXPECT_TRUE(ram->read(mmu::GuestPhys(pa), v));
    return v;
  }
  void fill(uint8_t byte) { std::memset(ram->host(mmu::GuestPhys(0), ram->size()), byte, ram->size()); }
  Result<VcpuState> load(std::span<const uint8_t> img, std::string_view cmdline = "",
                         std::span<const MultibootModule> mods = {}) {
    return load_multiboot(*ram, img, cmdline, mods, "k.elf");
  }
  void expect_refused(std::span<const uint8_t> img, const std::string& why,
                      std::span<const MultibootModule> mods = {}) {
    fill(0xa5);
    auto r = load(img, "", mods);
    ASSERT_FALSE(r.ok()) << "expected refusal: " << why;
    const std::string& msg = r.error().message;
    EXPECT_EQ(msg.rfind("k.elf: cannot boot as a Multiboot kernel: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(why), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    // Nothing was written before the refusal.
    const uint8_t* p = ram->host(mmu::GuestPhys(0), ram->size());
    EXPECT_TRUE(std::all_of(p, p + ram->size(), [](uint8_t b) { return b == 0xa5; })) << why;
  }
  std::optional<mmu::GuestMemory> ram;
};

using Multiboot = Fixture;

TEST_F(Multiboot, FindsHeaderOnlyWithValidChecksumAligned) {
  std::vector<uint8_t> img(64, 0);
  auto h = mb_header(0x3);
  std::copy(h.begin(), h.end(), img.begin() + 8);
  auto found = find_multiboot_header(img);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->file_offset, 8u);
  EXPECT_EQ(found->flags, 0x3u);
  img[16] ^= 1;  // checksum
  EXPECT_FALSE(find_multiboot_header(img));
  img[16] ^= 1;
  img.insert(img.begin(), 2, 0);  // now at offset 10: not 32-bit aligned
  EXPECT_FALSE(find_multiboot_header(img));
  // Beyond the first 8192 bytes it does not count.
  std::vector<uint8_t> far(9000, 0);
  std::copy(h.begin(), h.end(), far.begin() + 8192);
  EXPECT_FALSE(find_multiboot_header(far));
  std::copy(h.begin(), h.end(), far.begin() + 8180);
  EXPECT_TRUE(find_multiboot_header(far));
}

TEST_F(Multiboot, ElfKernelMachineStateFollowsSpec) {
  fill(0xcc);
  const auto img = elf_kernel(0x3, 0x200);
  auto r = load(img, "k.elf console=ttyS0");
  ASSERT_TRUE(r.ok()) << r.error().message;
  const VcpuState& s = *r;
  // Spec 3.2.
  EXPECT_EQ(s.regs.reg(runtime::EAX), 0x2badb002u);
  EXPECT_EQ(s.regs.eip, kKernelBase + sizeof(Elf32_Ehdr) + sizeof(Elf32_Phdr) + 12);
  EXPECT_TRUE(s.protected_mode());
  EXPECT_FALSE(s.sys.cr0 & machine::cr0::PG);
  EXPECT_FALSE(s.regs.eflags & runtime::flags::IF);
  EXPECT_FALSE(s.regs.eflags & runtime::flags::VM);
  EXPECT_TRUE(s.regs.eflags & runtime::flags::Fixed1);
  EXPECT_EQ(s.cpl, 0);
  const auto& cs = s.regs.sreg(Seg::CS);
  EXPECT_TRUE(cs.code() && cs.readable() && cs.big() && cs.present());
  EXPECT_EQ(cs.base, 0u);
  EXPECT_EQ(cs.limit, 0xffffffffu);
  EXPECT_EQ(cs.dpl(), 0);
  EXPECT_EQ(cs.selector & 3, 0);
  for (Seg seg : {Seg::DS, Seg::ES, Seg::FS, Seg::GS, Seg::SS}) {
    const auto& d = s.regs.sreg(seg);
    EXPECT_TRUE(d.writable() && d.big() && d.present() && !d.expand_down()) << runtime::seg_name(seg);
    EXPECT_EQ(d.base, 0u);
    EXPECT_EQ(d.limit, 0xffffffffu);
  }
  // The GDT in guest memory describes exactly the cached segments, so a
  // reload of any selector gives the same segment.
  ASSERT_GE(s.sys.gdtr.limit, 23);
  EXPECT_EQ(rd64(s.sys.gdtr.base), 0u);
  EXPECT_EQ(rd64(s.sys.gdtr.base + cs.selector), 0x00cf9b000000ffffull);
  EXPECT_EQ(rd64(s.sys.gdtr.base + s.regs.sreg(Seg::DS).selector), 0x00cf93000000ffffull);
  // SegmentCache::attr holds descriptor bits 40-47 and 52-55.
  auto attr_of = [](uint64_t d) { return uint16_t(((d >> 40) & 0xff) | ((d >> 52) & 0xf) << 8); };
  EXPECT_EQ(attr_of(rd64(s.sys.gdtr.base + cs.selector)), cs.attr);
  EXPECT_EQ(attr_of(rd64(s.sys.gdtr.base + s.regs.sreg(Seg::SS).selector)), s.regs.sreg(Seg::SS).attr);

  // The kernel bytes, then zeroed .bss.
  EXPECT_EQ(rdbytes(kKernelBase, img.size()), img);
  const auto bss = rdbytes(kKernelBase + uint32_t(img.size()), 0x200);
  EXPECT_TRUE(std::all_of(bss.begin(), bss.end(), [](uint8_t b) { return b == 0; }));
  EXPECT_EQ(rdbytes(kKernelBase + uint32_t(img.size()) + 0x200, 1)[0], 0xcc);

  // multiboot_info (spec 3.3).
  const uint32_t mbi = s.regs.reg(runtime::EBX);
  EXPECT_GE(mbi, kMultibootInfoBase);
  EXPECT_LT(mbi, kMultibootInfoLimit);
  const uint32_t flags = rd32(mbi);
  EXPECT_EQ(flags, mbinfo::kMemory | mbinfo::kCmdline | mbinfo::kMods | mbinfo::kMmap | mbinfo::kBootLoaderName);
  EXPECT_EQ(rd32(mbi + 4), 639u);
  EXPECT_EQ(rd32(mbi + 8), 15u * 1024);
  EXPECT_EQ(rdstr(rd32(mbi + 16)), "k.elf console=ttyS0");
  EXPECT_EQ(rd32(mbi + 20), 0u);
  EXPECT_EQ(rdstr(rd32(mbi + 64)), multiboot_loader_name());
  EXPECT_EQ(rdstr(rd32(mbi + 64)).rfind("bt86", 0), 0u);
  // Memory map: size field first, 20-byte entries, covering RAM.
  const uint32_t len = rd32(mbi + 44), addr = rd32(mbi + 48);
  struct Entry { uint64_t base, len; uint32_t type; };
  std::vector<Entry> got;
  for (uint32_t p = addr; p < addr + len; p += rd32(p) + 4) {
    EXPECT_EQ(rd32(p), 20u);
    got.push_back({rd64(p + 4), rd64(p + 12), rd32(p + 20)});
  }
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].base, 0u);
  EXPECT_EQ(got[0].len, 0x9fc00u);
  EXPECT_EQ(got[0].type, 1u);
  EXPECT_EQ(got[1].type, 2u);
  EXPECT_EQ(got[3].base, 0x100000u);
  EXPECT_EQ(got[3].len, 15u << 20);
  EXPECT_EQ(got[3].type, 1u);
  // The initial stack is in free low memory below the info area.
  EXPECT_EQ(s.regs.reg(runtime::ESP), kMultibootInfoBase);
}

TEST_F(Multiboot, ModulesArePageAlignedAboveTheKernel) {
  const auto img = elf_kernel(0x3, 0x5000);
  const std::vector<uint8_t> a(5000, 0x11), b = {'h', 'i'}, empty;
  const MultibootModule mods[] = {{a, "initrd.img root=/dev/ram"}, {empty, ""}, {b, "second"}};
  auto r = load(img, "", mods);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const uint32_t mbi = r->regs.reg(runtime::EBX);
  ASSERT_EQ(rd32(mbi + 20), 3u);
  const uint32_t list = rd32(mbi + 24);
  const uint32_t kernel_end = kKernelBase + uint32_t(img.size()) + 0x5000;
  uint32_t prev_end = kernel_end;
  for (int i = 0; i < 3; ++i) {
    const uint32_t start = rd32(list + 16 * i), end = rd32(list + 16 * i + 4);
    EXPECT_EQ(start % 4096, 0u) << i;
    EXPECT_GE(start, prev_end) << i;
    EXPECT_EQ(end - start, mods[i].data.size()) << i;
    EXPECT_EQ(rdstr(rd32(list + 16 * i + 8)), mods[i].cmdline) << i;
    EXPECT_EQ(rdbytes(start, end - start), std::vector<uint8_t>(mods[i].data.begin(), mods[i].data.end())) << i;
    prev_end = end;
  }
  EXPECT_EQ(rd32(list), (kernel_end + 4095) & ~4095u);
}

TEST_F(Multiboot, ElfEntryIsTranslatedToPhysical) {
  // A higher-half kernel: linked at 0xC0100000, loaded at 1 MiB.
  auto img = elf_kernel(0x3, 0, 0xc0100000);
  set_paddr(img, kKernelBase);
  auto r = load(img);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->regs.eip, kKernelBase + sizeof(Elf32_Ehdr) + sizeof(Elf32_Phdr) + 12);
  EXPECT_EQ(rdbytes(kKernelBase, 4), std::vector<uint8_t>({0x7f, 'E', 'L', 'F'}));
}

TEST_F(Multiboot, AoutKludgeUsesHeaderAddresses) {
  fill(0xcc);
  const auto img = aout_kernel(0x200000, 0x1000);
  auto r = load(img);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->regs.eip, 0x200000u + 32);
  EXPECT_EQ(rdbytes(0x200000, 48), std::vector<uint8_t>(img.begin(), img.begin() + 48));
  EXPECT_EQ(rdbytes(0x200000 + 48, 1)[0], 0u) << "the byte past load_end_addr is bss";
  EXPECT_EQ(rdbytes(0x200000 + 48 + 0x1000, 1)[0], 0xcc);
  // The header need not be at the start of the text: here 16 bytes of code
  // precede it in the file and in memory.
  std::vector<uint8_t> lead(16, 0x90);
  auto h = mb_header(mbflag::kAoutKludge, {0x300010, 0x300000, 0, 0, 0x300000});
  lead.insert(lead.end(), h.begin(), h.end());
  r = load(lead);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->regs.eip, 0x300000u);
  EXPECT_EQ(rdbytes(0x300000, lead.size()), lead);
  // KernelImage classifies such a flat binary as Multiboot.
  auto k = KernelImage::parse("flat", img);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->kind(), ImageKind::Multiboot);
}

TEST_F(Multiboot, RefusesWhatItCannotBoot) {
  expect_refused(std::vector<uint8_t>(100, 0), "no Multiboot header");
  auto bad = elf_kernel();
  bad[sizeof(Elf32_Ehdr) + sizeof(Elf32_Phdr) + 8] ^= 1;
  expect_refused(bad, "no Multiboot header");
  expect_refused(elf_kernel(0x7), "video mode information (flag 2)");
  expect_refused(elf_kernel(0x23), "unknown features (flags 0x20)");
  expect_refused(mb_header(0x3), "not an ELF file");
  // Segments outside RAM, in the legacy hole, over the info area.
  expect_refused(elf_kernel(0x3, 0, 0x2000000), "outside the 16 MiB of guest RAM");
  expect_refused(elf_kernel(0x3, 0, 0xfffff000), "outside the 16 MiB of guest RAM");
  expect_refused(elf_kernel(0x3, 0, 0xb8000), "legacy VGA/ROM hole");
  expect_refused(elf_kernel(0x3, 0, 0x10000), "boot information area");
  expect_refused(elf_kernel(0x3, 0x100000, 0x9f000), "legacy VGA/ROM hole");
  // ELF problems.
  auto elf = elf_kernel();
  elf[EI_CLASS] = ELFCLASS64;
  expect_refused(elf, "not a 32-bit ELF");
  elf = elf_kernel();
  uint32_t entry = 0x500000;
  std::memcpy(elf.data() + offsetof(Elf32_Ehdr, e_entry), &entry, 4);
  expect_refused(elf, "entry point 0x500000 lies outside every loadable segment");
  elf = elf_kernel(0x3, -0x10);
  expect_refused(elf, "p_filesz > p_memsz");
  // Too little memory for a module.
  const std::vector<uint8_t> big(16u << 20, 1);
  const MultibootModule mods[] = {{big, "big"}};
  expect_refused(elf_kernel(), "too little memory: module 0", mods);
  // Module command lines that do not fit the info area.
  const MultibootModule long_name[] = {{{}, std::string(kMultibootInfoLimit, 'x')}};
  expect_refused(elf_kernel(), "too long for the boot information area", long_name);
}

TEST_F(Multiboot, RefusesBadAoutKludge) {
  auto aout = [](std::vector<uint32_t> f, size_t pad = 64) {
    auto img = mb_header(mbflag::kAoutKludge, std::move(f));
    img.resize(std::max(img.size(), pad), 0x90);
    return img;
  };
  expect_refused(aout({0x100000, 0x100010, 0, 0, 0x100010}), "above header_addr");
  expect_refused(aout({0x100010, 0x100000, 0, 0, 0x100000}), "larger than the header's file offset");
  expect_refused(aout({0x100000, 0x100000, 0x100000 + 65, 0, 0x100000}), "more bytes than the file holds");
  expect_refused(aout({0x100000, 0x100000, 0x0ff000, 0, 0x100000}), "below load_addr");
  expect_refused(aout({0x100000, 0x100000, 0x100040, 0x100020, 0x100000}), "bss_end_addr");
  expect_refused(aout({0x100000, 0x100000, 0, 0, 0x200000}), "entry_addr 0x200000 lies outside");
  expect_refused(aout({0x100000, 0x100000, 0, 0x1001000, 0x100000}), "outside the 16 MiB");
  expect_refused(aout({0xfffff000, 0xfffff000, 0, 0xffffffff, 0xfffff000}), "outside the 16 MiB");
  // The kludge fields cut off by the end of the file.
  expect_refused(mb_header(mbflag::kAoutKludge, {0x100000, 0x100000}), "cut off by the end of the file");
}

// Random corruption of valid images and random header fields: the loader
// either refuses with one line or produces a state whose entry point and info
// pointer lie in RAM. It never crashes or writes outside RAM (the memfd view
// is exactly RAM-sized, so an overrun would fault).
TEST_F(Multiboot, FuzzedImagesNeverCrash) {
  std::mt19937 rng(86);
  const std::vector<uint8_t> seeds[] = {elf_kernel(0x3, 0x100), aout_kernel(), aout_kernel(0x400000, 0)};
  int loaded = 0, refused = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> img = seeds[iter % 3];
    const int flips = 1 + int(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const size_t pos = rng() % img.size();
      switch (rng() % 4) {
        case 0: img[pos] = uint8_t(rng()); break;
        case 1: img[pos] ^= uint8_t(1u << (rng() % 8)); break;
        case 2: img.resize(rng() % (img.size() + 1)); if (img.empty()) img.push_back(0); break;
        case 3: {  // a word that often matters: small offsets, addresses near RAM edges
          const uint32_t words[] = {0, 1, 0x1000, 0x100000, 0xffffff, 0x1000000, 0xfffffff0, 0xffffffff};
          const uint32_t w = words[rng() % 8];
          if (pos + 4 <= img.size()) std::memcpy(&img[pos], &w, 4);
        }
      }
    }
    // Keep the header checksum valid half the time so the deeper paths run.
    if (iter % 2) {
      if (auto h = find_multiboot_header(img)) {
        const uint32_t sum = uint32_t(-(kMultibootHeaderMagic + h->flags));
        std::memcpy(&img[h->file_offset + 8], &sum, 4);
      }
    }
    std::vector<uint8_t> mod(rng() % 3 ? 0 : rng() % 10000, 0x42);
    const MultibootModule mods[] = {{mod, "m"}};
    auto r = load(img, "fuzz", mods);
    if (r.ok()) {
      ++loaded;
      EXPECT_LT(r->regs.eip, ram->size());
      EXPECT_EQ(rd32(r->regs.reg(runtime::EBX) + 20), 1u);
    } else {
      ++refused;
      EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    }
  }
  EXPECT_GT(loaded, 100);
  EXPECT_GT(refused, 100);
}

}  // namespace
}  // namespace bt86::monitor
