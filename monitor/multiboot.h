// Multiboot v1 loader (Multiboot Specification 0.6.96): finds and checks the
// Multiboot header, copies an ELF32 kernel (by its program headers' physical
// addresses) or an a.out-kludge kernel (by the header's addresses) into guest
// RAM, places modules page-aligned above the kernel, builds the
// multiboot_info structure with an e820-style memory map, and returns the
// machine state the specification prescribes for the kernel's first
// instruction (section 3.2).
//
// Guest RAM layout chosen here (all physical, paging is off at entry):
//   [0x0500, kInfoBase)      free; the initial ESP points at kInfoBase
//   [kInfoBase, kInfoLimit)  boot information area: GDT, multiboot_info,
//                            memory map, module list, strings
//   [kInfoLimit, 0x9FC00)    free conventional memory
//   [0xA0000, 0x100000)      the legacy hole (VGA, ROMs): reported reserved,
//                            no kernel segment may land there
//   kernel segments          wherever their physical addresses say
//   modules                  page-aligned, one after the other, above the kernel
//
// Everything read from the image is validated before use: any problem is a
// one-line Error, never a crash, and guest RAM is left untouched on error
// (all checks run before the first byte is copied).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "machine/vcpu_state.h"
#include "mmu/guest_memory.h"

namespace bt86::monitor {

// Spec 3.1.1 / 3.2.
inline constexpr uint32_t kMultibootHeaderMagic = 0x1badb002;
inline constexpr uint32_t kMultibootBootloaderMagic = 0x2badb002;
inline constexpr uint32_t kMultibootSearchBytes = 8192;

// Header flags (spec 3.1.2).
namespace mbflag {
inline constexpr uint32_t kPageAlign = 1u << 0, kMemoryInfo = 1u << 1, kVideoMode = 1u << 2,
                          kAoutKludge = 1u << 16;
}

// multiboot_info.flags bits (spec 3.3).
namespace mbinfo {
inline constexpr uint32_t kMemory = 1u << 0, kBootDevice = 1u << 1, kCmdline = 1u << 2,
                          kMods = 1u << 3, kAoutSyms = 1u << 4, kElfShdr = 1u << 5,
                          kMmap = 1u << 6, kDrives = 1u << 7, kConfigTable = 1u << 8,
                          kBootLoaderName = 1u << 9, kApmTable = 1u << 10, kVbe = 1u << 11,
                          kFramebuffer = 1u << 12;
}

// Where the boot information area lives and how big it may grow.
inline constexpr uint32_t kMultibootInfoBase = 0x9000;
inline constexpr uint32_t kMultibootInfoLimit = 0x90000;
// GDT selectors of the loader's GDT (at the start of the info area).
inline constexpr uint16_t kMultibootCodeSelector = 0x08;
inline constexpr uint16_t kMultibootDataSelector = 0x10;

// The header as found in the image. The a.out fields are meaningful only with
// mbflag::kAoutKludge, the video fields only with mbflag::kVideoMode.
struct MultibootHeader {
  uint32_t file_offset = 0;  // where the magic was found
  uint32_t flags = 0;
  uint32_t header_addr = 0, load_addr = 0, load_end_addr = 0, bss_end_addr = 0, entry_addr = 0;
  uint32_t mode_type = 0, width = 0, height = 0, depth = 0;
};

// A boot module: its bytes and its command line (the "string" field).
struct MultibootModule {
  std::span<const uint8_t> data;
  std::string cmdline;
};

// Finds the first header with a valid checksum in the first 8192 bytes
// (32-bit aligned, spec 3.1.1). nullopt if there is none; a header whose
// fields run past the end of the file is not a header.
std::optional<MultibootHeader> find_multiboot_header(std::span<const uint8_t> image);

// Loads the kernel and modules into `ram` and returns the state of the vCPU at
// the kernel's entry point (spec 3.2): EAX = 0x2BADB002, EBX = the physical
// address of multiboot_info, flat 32-bit CS (selector 0x08, CPL 0) and data
// segments (0x10) described by a valid GDT in the info area that GDTR points
// to, CR0.PE = 1, CR0.PG = 0, EFLAGS = 0x2 (IF = 0, VM = 0), ESP =
// kMultibootInfoBase. `name` only prefixes error messages.
// The Multiboot boot_loader_name bt86 gives.
inline constexpr const char* kLoaderName = "bt86";
const char* multiboot_loader_name();

Result<machine::VcpuState> load_multiboot(mmu::GuestMemory& ram, std::span<const uint8_t> image,
                                          std::string_view cmdline,
                                          std::span<const MultibootModule> modules,
                                          std::string_view name = "kernel");

}  // namespace bt86::monitor
