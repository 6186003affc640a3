// LinuxBoot: the Linux x86 32-bit boot protocol for a bzImage, as a boot
// loader does it (Documentation/arch/x86/boot.rst, cited as [boot] with the
// section name; the zero page layout is Documentation/arch/x86/zero-page.rst
// and arch/x86/include/uapi/asm/bootparam.h, cited as [zero-page]).
//
// bt86 has no BIOS and does not run the kernel's 16-bit setup code: it does
// what [boot] "32-bit BOOT PROTOCOL" asks of a loader. It reads and checks the
// setup header, copies the protected-mode kernel to 1 MiB, the initrd as high
// as the kernel allows, the command line low, builds boot_params (the "zero
// page") with an e820 map of a conventional PC, a GDT with flat __BOOT_CS
// (0x10) and __BOOT_DS (0x18), and returns the vCPU state at the 32-bit
// entry point: CR0.PE=1, paging off, IF=0, ESI = &boot_params.
//
// Usage (the machine loop):
//   auto plan = plan_linux_boot(image.bytes(), initrd.size(), cmdline, ram_bytes);
//   if (!plan) fail(plan.error().message);          // before creating RAM
//   auto layout = load_linux(image.bytes(), initrd, cmdline, ram_span, vcpu);
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "machine/vcpu_state.h"

namespace bt86::monitor {

// The setup header fields bt86 uses, checked ([boot] "THE REAL-MODE KERNEL
// HEADER"). Offsets are into the bzImage file (and into boot_params, whose
// header sits at the same offsets).
struct LinuxSetupHeader {
  uint16_t version = 0;         // 0x206: boot protocol, e.g. 0x020f for 2.15
  uint8_t setup_sects = 0;      // 0x1f1: as in the file (0 means 4)
  uint32_t syssize = 0;         // 0x1f4: protected-mode code size in 16-byte units
  uint8_t loadflags = 0;        // 0x211
  uint32_t code32_start = 0;    // 0x214: 32-bit entry point
  uint32_t initrd_addr_max = 0; // 0x22c: highest address the initrd may use
  uint32_t kernel_alignment = 0;// 0x230
  bool relocatable = false;     // 0x234
  uint32_t cmdline_size = 0;    // 0x238: longest command line, without the NUL
  uint64_t pref_address = 0;    // 0x258: LOAD_PHYSICAL_ADDR
  uint32_t init_size = 0;       // 0x260: memory the kernel needs from its runtime start
  uint32_t header_end = 0;      // 0x202 + byte at 0x201: end of the header in the file
  uint32_t kernel_offset = 0;   // (setup_sects + 1) * 512: start of the protected-mode code
  uint32_t kernel_size = 0;     // bytes of protected-mode code in the file
};

// Where load_linux put everything (guest-physical addresses).
struct LinuxBootLayout {
  LinuxSetupHeader header;
  uint64_t ram_bytes = 0;
  uint32_t gdt = 0;
  uint32_t boot_params = 0;
  uint32_t cmdline = 0;
  uint32_t cmdline_length = 0;   // without the NUL
  uint32_t kernel_load = 0;      // protected-mode code copied here (1 MiB)
  uint32_t entry = 0;            // EIP at the 32-bit entry (code32_start)
  uint64_t runtime_start = 0;    // where the decompressor will put the kernel
  uint64_t runtime_end = 0;      // runtime_start + init_size
  uint32_t initrd = 0;           // 0 if no initrd
  uint32_t initrd_size = 0;
  uint64_t min_ram_bytes = 0;    // the least RAM this kernel + initrd could boot in

  // One line for the log: "Linux 2.15: kernel 5.4 MiB at 0x100000, ...".
  std::string describe() const;
};

// Fixed places in low memory. Below 0x9fc00 (usable in the e820 map) and
// above the real-mode interrupt vector table and BIOS data area.
inline constexpr uint32_t kLinuxGdtAddr = 0x5000;
inline constexpr uint32_t kLinuxStackTop = 0x7000;      // ESP; the decompressor sets its own
inline constexpr uint32_t kLinuxBootParamsAddr = 0x7000;
inline constexpr uint32_t kLinuxCmdlineAddr = 0x8000;
inline constexpr uint32_t kLinuxCmdlineRoom = 0x18000;  // up to 0x20000
inline constexpr uint32_t kLinuxKernelLoadAddr = 0x100000;
// The boot protocol version that introduced init_size and pref_address
// (Linux 2.6.31), without which bt86 cannot tell how much memory the kernel
// needs. Debian 12's 6.1 kernel speaks 2.15.
inline constexpr uint16_t kLinuxMinProtocol = 0x020a;
// Selectors of the 32-bit boot protocol ([boot] "32-bit BOOT PROTOCOL").
inline constexpr uint16_t kLinuxBootCs = 0x10;
inline constexpr uint16_t kLinuxBootDs = 0x18;

// e820 entry types ([zero-page], struct boot_e820_entry).
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

// Reads and checks the setup header of a bzImage. Errors are one line:
// not a bzImage, protocol too old, an inconsistent header.
Result<LinuxSetupHeader> parse_linux_header(std::span<const uint8_t> image);

// Checks that the kernel, an initrd of `initrd_size` bytes and the command
// line fit a guest with `ram_bytes` of RAM, and works out where each goes,
// without touching memory. The error says how much memory would be needed.
Result<LinuxBootLayout> plan_linux_boot(std::span<const uint8_t> image, uint64_t initrd_size,
                                        std::string_view cmdline, uint64_t ram_bytes);

// plan_linux_boot, then writes kernel, initrd, command line, boot_params and
// GDT into `ram` (guest-physical address 0 is ram[0]) and sets `vcpu` to the
// 32-bit entry state. On error neither `ram` nor `vcpu` is changed.
Result<LinuxBootLayout> load_linux(std::span<const uint8_t> image, std::span<const uint8_t> initrd,
                                   std::string_view cmdline, std::span<uint8_t> ram,
                                   machine::VcpuState& vcpu);

}  // namespace bt86::monitor
