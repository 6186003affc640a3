// Multiboot v1 loader: plans where every byte of the kernel, its modules and
// the boot information goes, checks the whole plan against guest RAM, and
// only then writes guest memory. Section numbers refer to the Multiboot
// Specification version 0.6.96.
#include "monitor/multiboot.h"

#include "runtime/host_signals.h"

#include <elf.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

namespace bt86::monitor {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kOneMiB = 0x100000;
// A PC has 639 KiB of conventional memory below the EBDA and VGA memory
// (0xA0000) and ROMs up to 1 MiB; bt86 has neither, but kernels expect the
// hole and the memory map describes it.
constexpr uint64_t kLowMemEnd = 0x9fc00;
constexpr uint64_t kHoleStart = 0xa0000;
constexpr uint64_t kBiosRomStart = 0xf0000;

uint32_t le32(std::span<const uint8_t> b, size_t off) {
  return uint32_t(b[off]) | uint32_t(b[off + 1]) << 8 | uint32_t(b[off + 2]) << 16 | uint32_t(b[off + 3]) << 24;
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// One piece of guest RAM the loader fills: `bytes` copied to `start`, then
// zeros up to `end` (ELF .bss, a.out bss).
struct Piece {
  uint64_t start = 0, end = 0;
  std::span<const uint8_t> bytes;
  std::string what;
};

struct KernelPlan {
  std::vector<Piece> pieces;
  uint32_t entry = 0;
};

class Loader {
 public:
  Loader(mmu::GuestMemory& ram, std::string_view name) : m_ram(ram), m_name(name) {}

  Result<machine::VcpuState> load(std::span<const uint8_t> image, std::string_view cmdline,
                                  std::span<const MultibootModule> modules);

 private:
  Error fail(const std::string& why) const {
    return make_error(m_name + ": cannot boot as a Multiboot kernel: " + why);
  }
  Status check_header(const MultibootHeader& h, std::span<const uint8_t> image) const;
  Result<KernelPlan> plan_elf(std::span<const uint8_t> image) const;
  Result<KernelPlan> plan_aout(const MultibootHeader& h, std::span<const uint8_t> image) const;
  Status check_placement(const Piece& p) const;

  mmu::GuestMemory& m_ram;
  std::string m_name;
};

Status Loader::check_header(const MultibootHeader& h, std::span<const uint8_t> image) const {
  // Spec 3.1.2: bits 0-15 are requirements; a loader that does not
  // understand or cannot satisfy one must refuse the kernel.
  if (h.flags & mbflag::kVideoMode)
    return fail("the header requires video mode information (flag 2), and bt86 has no display");
  const uint32_t unknown = h.flags & 0xfff8u;
  if (unknown) return fail("the header requires unknown features (flags " + hex(unknown) + ")");
  const uint64_t needed = (h.flags & mbflag::kAoutKludge) ? 32 : 12;
  if (uint64_t(h.file_offset) + needed > image.size())
    return fail("the Multiboot header at offset " + hex(h.file_offset) + " is cut off by the end of the file");
  return Ok{};
}

Result<KernelPlan> Loader::plan_elf(std::span<const uint8_t> image) const {
  if (image.size() < sizeof(Elf32_Ehdr) || std::memcmp(image.data(), ELFMAG, SELFMAG) != 0)
    return fail("not an ELF file and the header has no a.out kludge addresses (flag 16)");
  Elf32_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS32) return fail("not a 32-bit ELF file");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return fail("big-endian ELF");
  if (eh.e_machine != EM_386) return fail("ELF for machine " + std::to_string(eh.e_machine) + ", not i386");
  if (eh.e_type != ET_EXEC) return fail("the ELF file is not an executable (ET_EXEC)");
  if (eh.e_phnum == 0) return fail("ELF executable without program headers");
  if (eh.e_phentsize != sizeof(Elf32_Phdr))
    return fail("ELF program header size " + std::to_string(eh.e_phentsize) + " (expected 32)");
  if (uint64_t(eh.e_phoff) + uint64_t(eh.e_phnum) * sizeof(Elf32_Phdr) > image.size())
    return fail("ELF program headers lie outside the file");

  KernelPlan plan;
  bool entry_found = false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf32_Phdr ph;
    std::memcpy(&ph, image.data() + eh.e_phoff + i * sizeof(Elf32_Phdr), sizeof ph);
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    const std::string what = "ELF segment " + std::to_string(i);
    if (ph.p_filesz > ph.p_memsz) return fail(what + " has p_filesz > p_memsz");
    if (uint64_t(ph.p_offset) + ph.p_filesz > image.size()) return fail(what + " lies outside the file");
    Piece p;
    p.start = ph.p_paddr;
    p.end = uint64_t(ph.p_paddr) + ph.p_memsz;
    p.bytes = image.subspan(ph.p_offset, ph.p_filesz);
    p.what = what;
    plan.pieces.push_back(p);
    // The entry point is a virtual address; the kernel starts with paging
    // off, so translate it through the segment that holds it (as GRUB 2 does
    // for kernels whose virtual and physical addresses differ).
    if (!entry_found && eh.e_entry >= ph.p_vaddr && uint64_t(eh.e_entry) < uint64_t(ph.p_vaddr) + ph.p_memsz) {
      const uint64_t phys = uint64_t(ph.p_paddr) + (eh.e_entry - ph.p_vaddr);
      if (phys >= (uint64_t(1) << 32)) return fail("the entry point translates past 4 GiB");
      plan.entry = uint32_t(phys);
      entry_found = true;
    }
  }
  if (plan.pieces.empty()) return fail("ELF executable without loadable segments");
  if (!entry_found) return fail("the ELF entry point " + hex(eh.e_entry) + " lies outside every loadable segment");
  return plan;
}

Result<KernelPlan> Loader::plan_aout(const MultibootHeader& h, std::span<const uint8_t> image) const {
  // Spec 3.1.3: header_addr is where the header's magic lands in memory, so
  // the text starts (header_addr - load_addr) bytes before the header.
  if (h.load_addr > h.header_addr) return fail("load_addr " + hex(h.load_addr) + " is above header_addr " + hex(h.header_addr));
  const uint64_t lead = h.header_addr - h.load_addr;
  if (lead > h.file_offset)
    return fail("header_addr - load_addr (" + hex(lead) + ") is larger than the header's file offset " + hex(h.file_offset));
  const uint64_t file_start = h.file_offset - lead;
  const uint64_t available = image.size() - file_start;
  uint64_t load_end = h.load_end_addr;
  if (load_end == 0) {
    load_end = h.load_addr + available;  // 0: the text and data run to the end of the file
  } else {
    if (load_end < h.load_addr) return fail("load_end_addr " + hex(load_end) + " is below load_addr " + hex(h.load_addr));
    if (load_end - h.load_addr > available)
      return fail("load_end_addr " + hex(load_end) + " asks for more bytes than the file holds");
  }
  uint64_t bss_end = h.bss_end_addr;
  if (bss_end == 0) {
    bss_end = load_end;
  } else if (bss_end < load_end) {
    return fail("bss_end_addr " + hex(bss_end) + " is below the end of the loaded image " + hex(load_end));
  }
  if (bss_end > (uint64_t(1) << 32)) return fail("the image runs past 4 GiB");
  if (bss_end == h.load_addr) return fail("the a.out kludge addresses describe an empty image");
  if (h.entry_addr < h.load_addr || h.entry_addr >= bss_end)
    return fail("entry_addr " + hex(h.entry_addr) + " lies outside the loaded image [" + hex(h.load_addr) + ", " +
                hex(bss_end) + ")");
  KernelPlan plan;
  Piece p;
  p.start = h.load_addr;
  p.end = bss_end;
  p.bytes = image.subspan(size_t(file_start), size_t(load_end - h.load_addr));
  p.what = "the a.out kludge image";
  plan.pieces.push_back(p);
  plan.entry = h.entry_addr;
  return plan;
}

bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1) { return a0 < b1 && b0 < a1; }

Status Loader::check_placement(const Piece& p) const {
  const std::string where = p.what + " [" + hex(p.start) + ", " + hex(p.end) + ")";
  if (p.end > m_ram.size())
    return fail(where + " lies outside the " + std::to_string(m_ram.size() >> 20) + " MiB of guest RAM");
  if (overlaps(p.start, p.end, kHoleStart, kOneMiB))
    return fail(where + " overlaps the legacy VGA/ROM hole [0xa0000, 0x100000)");
  if (overlaps(p.start, p.end, kMultibootInfoBase, kMultibootInfoLimit))
    return fail(where + " overlaps the boot information area [" + hex(kMultibootInfoBase) + ", " +
                hex(kMultibootInfoLimit) + ")");
  return Ok{};
}

// Builds the boot information area in a host buffer first, so nothing is
// written to guest RAM until everything is known to fit.
class InfoArea {
 public:
  uint32_t alloc(size_t bytes, size_t align) {
    m_buf.resize(align_up(m_buf.size(), align));
    const uint32_t addr = kMultibootInfoBase + uint32_t(m_buf.size());
    m_buf.resize(m_buf.size() + bytes);
    return addr;
  }
  uint32_t add_string(std::string_view s) {
    const uint32_t addr = alloc(s.size() + 1, 1);
    std::memcpy(at(addr), s.data(), s.size());
    return addr;
  }
  void put32(uint32_t addr, uint32_t v) { std::memcpy(at(addr), &v, 4); }
  void put64(uint32_t addr, uint64_t v) { std::memcpy(at(addr), &v, 8); }
  const std::vector<uint8_t>& bytes() const { return m_buf; }

 private:
  uint8_t* at(uint32_t addr) { return m_buf.data() + (addr - kMultibootInfoBase); }
  std::vector<uint8_t> m_buf;
};

Result<machine::VcpuState> Loader::load(std::span<const uint8_t> image, std::string_view cmdline,
                                        std::span<const MultibootModule> modules) {
  const auto header = find_multiboot_header(image);
  if (!header) return fail("no Multiboot header (magic 0x1badb002 with a valid checksum) in the first 8192 bytes");
  if (auto s = check_header(*header, image); !s) return s.error();
  auto plan = (header->flags & mbflag::kAoutKludge) ? plan_aout(*header, image) : plan_elf(image);
  if (!plan) return plan.error();
  if (m_ram.size() < 2 * kOneMiB) return fail("too little memory: guest RAM must be at least 2 MiB");

  uint64_t kernel_end = kOneMiB;
  for (size_t i = 0; i < plan->pieces.size(); ++i) {
    const Piece& p = plan->pieces[i];
    if (auto s = check_placement(p); !s) return s.error();
    for (size_t j = 0; j < i; ++j)
      if (overlaps(p.start, p.end, plan->pieces[j].start, plan->pieces[j].end))
        return fail(p.what + " overlaps " + plan->pieces[j].what);
    kernel_end = std::max(kernel_end, p.end);
  }

  // Modules: page-aligned (the loader always honours flag 0), above the
  // kernel and above 1 MiB.
  std::vector<Piece> mods;
  uint64_t next = align_up(kernel_end, kPage);
  for (size_t i = 0; i < modules.size(); ++i) {
    Piece p;
    p.start = next;
    p.end = next + modules[i].data.size();
    p.bytes = modules[i].data;
    p.what = "module " + std::to_string(i);
    if (p.end > m_ram.size())
      return fail("too little memory: " + p.what + " (" + std::to_string(modules[i].data.size()) +
                  " bytes) does not fit below the end of the " + std::to_string(m_ram.size() >> 20) +
                  " MiB of guest RAM");
    mods.push_back(p);
    next = align_up(p.end, kPage);
  }

  // The boot information area (spec 3.3). The GDT comes first so that its
  // address is fixed: selectors 0x08 (code) and 0x10 (data), flat 4 GiB,
  // accessed bits preset so a reload never needs to write the table.
  InfoArea area;
  const uint32_t gdt = area.alloc(24, 8);
  area.put64(gdt + 8, 0x00cf9b000000ffffull);
  area.put64(gdt + 16, 0x00cf93000000ffffull);
  const uint32_t info = area.alloc(116, 8);
  constexpr uint32_t kMmapEntry = 24;  // size field + 20-byte entry
  struct E820 { uint64_t base, len; uint32_t type; };
  const E820 map[] = {{0, kLowMemEnd, 1},
                      {kLowMemEnd, kHoleStart - kLowMemEnd, 2},
                      {kBiosRomStart, kOneMiB - kBiosRomStart, 2},
                      {kOneMiB, m_ram.size() - kOneMiB, 1}};
  const uint32_t mmap = area.alloc(sizeof map / sizeof map[0] * kMmapEntry, 4);
  for (size_t i = 0; i < std::size(map); ++i) {
    const uint32_t e = mmap + uint32_t(i) * kMmapEntry;
    area.put32(e, 20);
    area.put64(e + 4, map[i].base);
    area.put64(e + 12, map[i].len);
    area.put32(e + 20, map[i].type);
  }
  const uint32_t mods_addr = area.alloc(16 * modules.size(), 4);
  for (size_t i = 0; i < modules.size(); ++i) {
    const uint32_t m = mods_addr + uint32_t(i) * 16;
    area.put32(m, uint32_t(mods[i].start));
    area.put32(m + 4, uint32_t(mods[i].end));
    area.put32(m + 8, area.add_string(modules[i].cmdline));
    area.put32(m + 12, 0);
  }
  const uint32_t cmdline_addr = area.add_string(cmdline);
  const uint32_t name_addr = area.add_string(multiboot_loader_name());
  area.put32(info + 0, mbinfo::kMemory | mbinfo::kCmdline | mbinfo::kMods | mbinfo::kMmap | mbinfo::kBootLoaderName);
  area.put32(info + 4, uint32_t(kLowMemEnd / 1024));                   // mem_lower, KiB from 0
  area.put32(info + 8, uint32_t((m_ram.size() - kOneMiB) / 1024));     // mem_upper, KiB from 1 MiB
  area.put32(info + 16, cmdline_addr);
  area.put32(info + 20, uint32_t(modules.size()));
  area.put32(info + 24, mods_addr);
  area.put32(info + 44, uint32_t(std::size(map) * kMmapEntry));        // mmap_length
  area.put32(info + 48, mmap);
  area.put32(info + 64, name_addr);
  if (kMultibootInfoBase + area.bytes().size() > kMultibootInfoLimit)
    return fail("the command lines are too long for the boot information area (" +
                std::to_string(kMultibootInfoLimit - kMultibootInfoBase) + " bytes)");

  // Everything fits: write guest RAM.
  auto put = [&](const Piece& p) {
    uint8_t* dst = m_ram.host(mmu::GuestPhys(uint32_t(p.start)), p.end - p.start);
    if (!p.bytes.empty()) std::memcpy(dst, p.bytes.data(), p.bytes.size());
    std::memset(dst + p.bytes.size(), 0, size_t(p.end - p.start - p.bytes.size()));
  };
  for (const Piece& p : plan->pieces) put(p);
  for (const Piece& p : mods) put(p);
  uint8_t* info_dst = m_ram.host(mmu::GuestPhys(kMultibootInfoBase), area.bytes().size());
  std::memcpy(info_dst, area.bytes().data(), area.bytes().size());

  // Spec 3.2, "Machine state".
  machine::VcpuState vcpu;
  vcpu.regs.eip = plan->entry;
  vcpu.regs.eflags = runtime::flags::Fixed1;
  vcpu.regs.reg(runtime::EAX) = kMultibootBootloaderMagic;
  vcpu.regs.reg(runtime::EBX) = info;
  vcpu.regs.reg(runtime::ESP) = kMultibootInfoBase;  // undefined by the spec; free low memory
  using runtime::Seg;
  using runtime::SegmentCache;
  vcpu.regs.sreg(Seg::CS) = SegmentCache::flat_code(kMultibootCodeSelector, 0);
  for (Seg s : {Seg::DS, Seg::ES, Seg::FS, Seg::GS, Seg::SS})
    vcpu.regs.sreg(s) = SegmentCache::flat_data(kMultibootDataSelector, 0);
  vcpu.sys.cr0 = machine::cr0::ET | machine::cr0::PE;
  vcpu.sys.gdtr = {gdt, 23};
  vcpu.cpl = 0;
  return vcpu;
}

}  // namespace

std::optional<MultibootHeader> find_multiboot_header(std::span<const uint8_t> image) {
  const size_t end = std::min<size_t>(image.size(), kMultibootSearchBytes);
  for (size_t off = 0; off + 12 <= end; off += 4) {
    if (le32(image, off) != kMultibootHeaderMagic) continue;
    MultibootHeader h;
    h.file_offset = uint32_t(off);
    h.flags = le32(image, off + 4);
    if (uint32_t(kMultibootHeaderMagic + h.flags + le32(image, off + 8)) != 0) continue;
    // Optional fields: read what the file holds; load_multiboot refuses a
    // header whose required fields are cut off.
    uint32_t* fields[] = {&h.header_addr, &h.load_addr, &h.load_end_addr, &h.bss_end_addr, &h.entry_addr,
                          &h.mode_type,   &h.width,     &h.height,        &h.depth};
    for (size_t i = 0; i < std::size(fields) && off + 16 + 4 * i <= image.size(); ++i)
      *fields[i] = le32(image, off + 12 + 4 * i);
    return h;
  }
  return std::nullopt;
}

const char* multiboot_loader_name() {
  // Guest user code sees the virtual CPU's cpuid on every host (CPUID
  // faulting, or pages holding cpuid run translated: mmu/README.md).
  return kLoaderName;
}

Result<machine::VcpuState> load_multiboot(mmu::GuestMemory& ram, std::span<const uint8_t> image,
                                          std::string_view cmdline, std::span<const MultibootModule> modules,
                                          std::string_view name) {
  return Loader(ram, name).load(image, cmdline, modules);
}

}  // namespace bt86::monitor
