// The Linux 32-bit boot protocol: see linux_boot.h. Every header field is
// checked before it decides an address or a length; all arithmetic on them
// is done in 64 bits so that a hostile header cannot wrap a bound.
#include "monitor/linux_boot.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace bt86::monitor {
namespace {

// Setup header offsets ([boot] "THE REAL-MODE KERNEL HEADER").
constexpr size_t kSetupSects = 0x1f1;
constexpr size_t kSyssize = 0x1f4;
constexpr size_t kBootFlag = 0x1fe;
constexpr size_t kJump = 0x200;  // the byte at 0x201 is the header length past 0x202
constexpr size_t kHeaderMagic = 0x202;
constexpr size_t kVersion = 0x206;
constexpr size_t kTypeOfLoader = 0x210;
constexpr size_t kLoadflags = 0x211;
constexpr size_t kCode32Start = 0x214;
constexpr size_t kRamdiskImage = 0x218;
constexpr size_t kRamdiskSize = 0x21c;
constexpr size_t kCmdLinePtr = 0x228;
constexpr size_t kInitrdAddrMax = 0x22c;
constexpr size_t kKernelAlignment = 0x230;
constexpr size_t kRelocatableKernel = 0x234;
constexpr size_t kCmdlineSize = 0x238;
constexpr size_t kPrefAddress = 0x258;
constexpr size_t kInitSize = 0x260;
// The zero page's header area ends where edd_mbr_sig_buffer starts
// ([zero-page] 0x290); a header claiming to run past it is bogus.
constexpr size_t kHeaderAreaEnd = 0x290;

// Zero page fields ([zero-page]).
constexpr size_t kBootParamsSize = 4096;
constexpr size_t kAltMemK = 0x1e0;
constexpr size_t kE820Entries = 0x1e8;
constexpr size_t kE820Table = 0x2d0;
constexpr size_t kE820EntrySize = 20;  // u64 addr, u64 size, u32 type (packed)

constexpr uint8_t kLoadedHigh = 0x01;  // loadflags bit 0: protected-mode code at 0x100000
constexpr uint8_t kLoaderUndefined = 0xff;  // type_of_loader: "no registered ID"

// A conventional PC's low memory ([zero-page] e820; what SeaBIOS reports):
// 639 KiB of base memory, the extended BIOS data area up to 640 KiB, the
// VGA hole, option ROMs and the BIOS ROM up to 1 MiB.
constexpr uint64_t kBaseMemoryEnd = 0x9fc00;
constexpr uint64_t kVgaHoleStart = 0xa0000;
constexpr uint64_t kBiosRomStart = 0xf0000;
constexpr uint64_t kOneMiB = 0x100000;
// BIOS data area words Linux reads (reserve_bios_regions, find_smp_config):
// the EBDA segment at 0x40e and the base memory size in KiB at 0x413.
constexpr size_t kBdaEbdaSegment = 0x40e;
constexpr size_t kBdaBaseMemoryKiB = 0x413;

constexpr uint64_t kPage = 4096;

uint8_t u8(std::span<const uint8_t> b, size_t off) { return b[off]; }
uint16_t u16(std::span<const uint8_t> b, size_t off) { return uint16_t(b[off] | b[off + 1] << 8); }
uint32_t u32(std::span<const uint8_t> b, size_t off) {
  return uint32_t(b[off]) | uint32_t(b[off + 1]) << 8 | uint32_t(b[off + 2]) << 16 | uint32_t(b[off + 3]) << 24;
}
uint64_t u64(std::span<const uint8_t> b, size_t off) { return u32(b, off) | uint64_t(u32(b, off + 4)) << 32; }

void put16(std::span<uint8_t> b, size_t off, uint16_t v) {
  for (int i = 0; i < 2; ++i) b[off + i] = uint8_t(v >> (8 * i));
}
void put32(std::span<uint8_t> b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = uint8_t(v >> (8 * i));
}
void put64(std::span<uint8_t> b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = uint8_t(v >> (8 * i));
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
uint64_t mib_up(uint64_t bytes) { return (bytes + kOneMiB - 1) / kOneMiB; }

std::string version_text(uint16_t v) { return fmt::format("{}.{:02}", v >> 8, v & 0xff); }

Error bad(const std::string& why) { return make_error("Linux bzImage: " + why); }

// A GDT descriptor for a flat 4 GiB segment: base 0, limit 0xfffff pages,
// G=1, D/B=1, P=1, DPL 0, S=1 and the given type (SDM vol. 3, 3.4.5).
uint64_t flat_descriptor(uint8_t type) {
  return 0x0000ffffull | uint64_t(0x90 | type) << 40 | 0xcfull << 48;
}

}  // namespace

std::string LinuxBootLayout::describe() const {
  std::string s = fmt::format(
      "Linux boot protocol {}: kernel {:.1f} MiB at {:#x} (entry {:#x}, runs at {:#x}..{:#x}), boot_params at "
      "{:#x}, command line {} bytes at {:#x}",
      version_text(header.version), header.kernel_size / double(kOneMiB), kernel_load, entry, runtime_start,
      runtime_end, boot_params, cmdline_length, cmdline);
  if (initrd_size != 0) s += fmt::format(", initrd {:.1f} MiB at {:#x}", initrd_size / double(kOneMiB), initrd);
  return s;
}

Result<LinuxSetupHeader> parse_linux_header(std::span<const uint8_t> b) {
  if (b.size() < kVersion + 2 || u16(b, kBootFlag) != 0xaa55 ||
      std::memcmp(&b[kHeaderMagic], "HdrS", 4) != 0) {
    return bad("not a bzImage (no boot sector signature 0xAA55 and \"HdrS\" setup header)");
  }
  LinuxSetupHeader h;
  h.version = u16(b, kVersion);
  if (h.version < kLinuxMinProtocol) {
    return bad(fmt::format("boot protocol {} is too old; bt86 needs {} or later (Linux 2.6.31+)",
                           version_text(h.version), version_text(kLinuxMinProtocol)));
  }
  h.header_end = uint32_t(kHeaderMagic + u8(b, kJump + 1));
  if (h.header_end > kHeaderAreaEnd || h.header_end > b.size() || h.header_end < kInitSize + 4) {
    return bad(fmt::format("setup header ends at {:#x}, outside [{:#x}, {:#x}] or past the file", h.header_end,
                           kInitSize + 4, kHeaderAreaEnd));
  }
  h.setup_sects = u8(b, kSetupSects);
  h.syssize = u32(b, kSyssize);
  h.loadflags = u8(b, kLoadflags);
  h.code32_start = u32(b, kCode32Start);
  h.initrd_addr_max = u32(b, kInitrdAddrMax);
  h.kernel_alignment = u32(b, kKernelAlignment);
  h.relocatable = u8(b, kRelocatableKernel) != 0;
  h.cmdline_size = u32(b, kCmdlineSize);
  h.pref_address = u64(b, kPrefAddress);
  h.init_size = u32(b, kInitSize);

  if (!(h.loadflags & kLoadedHigh)) {
    return bad("zImage (LOADED_HIGH clear): only bzImages, loaded at 1 MiB, are supported");
  }
  // [boot]: "If this field is 0, the real value is 4."
  const uint64_t sects = h.setup_sects == 0 ? 4 : h.setup_sects;
  const uint64_t kernel_offset = (sects + 1) * 512;
  if (kernel_offset >= b.size()) {
    return bad(fmt::format("setup is {} bytes but the file has only {}", kernel_offset, b.size()));
  }
  h.kernel_offset = uint32_t(kernel_offset);
  h.kernel_size = uint32_t(b.size() - kernel_offset);
  // syssize counts 16-byte paragraphs of protected-mode code; a file shorter
  // than that was cut off.
  if (h.syssize == 0 || uint64_t(h.syssize) * 16 > uint64_t(h.kernel_size) + 15) {
    return bad(fmt::format("syssize says {} bytes of kernel but the file holds {}: truncated or corrupt",
                           uint64_t(h.syssize) * 16, h.kernel_size));
  }
  if (h.relocatable && (h.kernel_alignment == 0 || (h.kernel_alignment & (h.kernel_alignment - 1)) != 0)) {
    return bad(fmt::format("kernel_alignment {:#x} is not a power of two", h.kernel_alignment));
  }
  if (h.init_size == 0) return bad("init_size is 0");
  if (h.pref_address < kOneMiB || h.pref_address + h.init_size > (uint64_t(1) << 32)) {
    return bad(fmt::format("pref_address {:#x} + init_size {:#x} is not inside [1 MiB, 4 GiB)", h.pref_address,
                           h.init_size));
  }
  if (h.code32_start < kLinuxKernelLoadAddr || h.code32_start - kLinuxKernelLoadAddr >= h.kernel_size) {
    return bad(fmt::format("code32_start {:#x} is outside the kernel loaded at {:#x}", h.code32_start,
                           kLinuxKernelLoadAddr));
  }
  return h;
}

Result<LinuxBootLayout> plan_linux_boot(std::span<const uint8_t> image, uint64_t initrd_size,
                                        std::string_view cmdline, uint64_t ram_bytes) {
  auto header = parse_linux_header(image);
  if (!header) return header.error();
  const LinuxSetupHeader& h = *header;

  LinuxBootLayout l;
  l.header = h;
  l.ram_bytes = ram_bytes;
  l.gdt = kLinuxGdtAddr;
  l.boot_params = kLinuxBootParamsAddr;
  l.cmdline = kLinuxCmdlineAddr;
  l.kernel_load = kLinuxKernelLoadAddr;
  l.entry = h.code32_start;

  const uint64_t limit = std::min<uint64_t>(h.cmdline_size, kLinuxCmdlineRoom - 1);
  if (cmdline.size() > limit) {
    return bad(fmt::format("the command line is {} bytes; this kernel accepts at most {}", cmdline.size(), limit));
  }
  if (cmdline.find('\0') != std::string_view::npos) return bad("the command line contains a NUL byte");
  l.cmdline_length = uint32_t(cmdline.size());

  // Where the decompressor will run the kernel (arch/x86/boot/compressed/
  // head_32.S): a relocatable kernel moves to the load address rounded up to
  // kernel_alignment, but never below LOAD_PHYSICAL_ADDR (= pref_address);
  // any other kernel runs at pref_address. It needs init_size bytes there.
  uint64_t runtime = h.pref_address;
  if (h.relocatable) runtime = std::max(align_up(kLinuxKernelLoadAddr, h.kernel_alignment), h.pref_address);
  l.runtime_start = runtime;
  l.runtime_end = runtime + h.init_size;
  if (l.runtime_end > (uint64_t(1) << 32)) return bad("the kernel would run above 4 GiB");

  const uint64_t load_end = uint64_t(kLinuxKernelLoadAddr) + h.kernel_size;
  const uint64_t kernel_end = align_up(std::max(load_end, l.runtime_end), kPage);
  const uint64_t initrd_pages = align_up(initrd_size, kPage);
  l.min_ram_bytes = kernel_end + initrd_pages;
  if (ram_bytes < l.min_ram_bytes) {
    return bad(fmt::format("the kernel{} at least {} MiB of RAM, the guest has {} MiB (use --memory {})",
                           initrd_size ? " and initrd need" : " needs", mib_up(l.min_ram_bytes), ram_bytes / kOneMiB,
                           mib_up(l.min_ram_bytes)));
  }
  if (initrd_size != 0) {
    // [boot] initrd_addr_max: "the maximum address that may be occupied by
    // the initial ramdisk/ramfs contents". As high as allowed, page aligned,
    // as QEMU and GRUB place it, so it stays clear of the kernel's buffer.
    const uint64_t top = std::min<uint64_t>(ram_bytes, uint64_t(h.initrd_addr_max) + 1);
    if (initrd_size > top || ((top - initrd_size) & ~(kPage - 1)) < kernel_end) {
      return bad(fmt::format("the initrd ({} KiB) does not fit between the kernel's end at {:#x} and the initrd "
                             "limit {:#x} (initrd_addr_max {:#x}, RAM {} MiB)",
                             (initrd_size + 1023) / 1024, kernel_end, top, h.initrd_addr_max,
                             ram_bytes / kOneMiB));
    }
    l.initrd = uint32_t((top - initrd_size) & ~(kPage - 1));
    l.initrd_size = uint32_t(initrd_size);
  }
  return l;
}

Result<LinuxBootLayout> load_linux(std::span<const uint8_t> image, std::span<const uint8_t> initrd,
                                   std::string_view cmdline, std::span<uint8_t> ram,
                                   machine::VcpuState& vcpu) {
  auto planned = plan_linux_boot(image, initrd.size(), cmdline, ram.size());
  if (!planned) return planned.error();
  const LinuxBootLayout& l = *planned;
  const LinuxSetupHeader& h = l.header;

  // The protected-mode kernel at 1 MiB, the initrd at its place.
  std::memcpy(&ram[l.kernel_load], &image[h.kernel_offset], h.kernel_size);
  if (!initrd.empty()) std::memcpy(&ram[l.initrd], initrd.data(), initrd.size());

  // The command line, NUL-terminated.
  std::memcpy(&ram[l.cmdline], cmdline.data(), cmdline.size());
  ram[l.cmdline + cmdline.size()] = 0;

  // BIOS data area: base memory 639 KiB, EBDA at 0x9fc00.
  put16(ram, kBdaEbdaSegment, uint16_t(kBaseMemoryEnd >> 4));
  put16(ram, kBdaBaseMemoryKiB, uint16_t(kBaseMemoryEnd / 1024));

  // boot_params: zeroed ([boot] "the boot loader should ... zero the
  // struct"), then the setup header copied from the image ([boot] "32-bit
  // BOOT PROTOCOL": from 0x1f1 to 0x202 + the byte at 0x201), then the
  // fields a loader fills in.
  std::span<uint8_t> bp = ram.subspan(l.boot_params, kBootParamsSize);
  std::fill(bp.begin(), bp.end(), 0);
  std::memcpy(&bp[kSetupSects], &image[kSetupSects], h.header_end - kSetupSects);
  bp[kTypeOfLoader] = kLoaderUndefined;
  // loadflags stay as the kernel has them (LOADED_HIGH). CAN_USE_HEAP and
  // heap_end_ptr only matter to the 16-bit setup code, which bt86 skips.
  put32(bp, kCmdLinePtr, l.cmdline);
  put32(bp, kRamdiskImage, l.initrd);
  put32(bp, kRamdiskSize, l.initrd_size);
  put32(bp, kAltMemK, uint32_t((l.ram_bytes - kOneMiB) / 1024));

  // The e820 map of a conventional PC.
  struct Range {
    uint64_t start, end;
    uint32_t type;
  };
  const std::array<Range, 4> map = {{
      {0, kBaseMemoryEnd, kE820Ram},
      {kBaseMemoryEnd, kVgaHoleStart, kE820Reserved},  // extended BIOS data area
      {kBiosRomStart, kOneMiB, kE820Reserved},         // BIOS ROM
      {kOneMiB, l.ram_bytes, kE820Ram},
  }};
  for (size_t i = 0; i < map.size(); ++i) {
    const size_t off = kE820Table + i * kE820EntrySize;
    put64(bp, off, map[i].start);
    put64(bp, off + 8, map[i].end - map[i].start);
    put32(bp, off + 16, map[i].type);
  }
  bp[kE820Entries] = uint8_t(map.size());

  // GDT: null, unused, __BOOT_CS (execute/read), __BOOT_DS (read/write).
  const std::array<uint64_t, 4> gdt = {0, 0, flat_descriptor(0xb), flat_descriptor(0x3)};
  for (size_t i = 0; i < gdt.size(); ++i) put64(ram, l.gdt + 8 * i, gdt[i]);

  // [boot] "32-bit BOOT PROTOCOL": protected mode, paging off, interrupts
  // off, CS = __BOOT_CS, DS = ES = SS = __BOOT_DS, ESI = &boot_params,
  // EBP = EDI = EBX = 0.
  machine::VcpuState s;
  s.sys.cr0 = machine::cr0::PE | machine::cr0::ET;
  s.sys.gdtr = {l.gdt, uint16_t(gdt.size() * 8 - 1)};
  // No IDT until the kernel loads one: an early exception is a triple fault,
  // which the machine reports, rather than a jump through zeroed memory.
  s.sys.idtr = {0, 0};
  using runtime::Seg;
  using runtime::SegmentCache;
  s.regs.sreg(Seg::CS) = SegmentCache::flat_code(kLinuxBootCs, 0);
  for (Seg seg : {Seg::DS, Seg::ES, Seg::SS, Seg::FS, Seg::GS}) {
    s.regs.sreg(seg) = SegmentCache::flat_data(kLinuxBootDs, 0);
  }
  s.regs.eflags = runtime::flags::Fixed1;
  s.regs.eip = l.entry;
  s.regs.reg(runtime::ESI) = l.boot_params;
  s.regs.reg(runtime::ESP) = kLinuxStackTop;
  s.cpl = 0;
  vcpu = s;
  return l;
}

}  // namespace bt86::monitor
