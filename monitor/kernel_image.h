// KernelImage: a guest image read from disk and classified: Linux bzImage,
// Multiboot v1 kernel (ELF or a.out kludge), or a plain ELF32 i386 executable (a user program
// for the direct-execution demo). Everything read from the file is checked
// before use: bad input yields an error, never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace bt86::monitor {

enum class ImageKind { LinuxBzImage, Multiboot, UserProgram };

// One PT_LOAD segment; file_offset + file_size lies inside the file and
// file_size <= mem_size, vaddr + mem_size <= 4 GiB.
struct LoadSegment {
  uint32_t vaddr = 0;
  uint32_t mem_size = 0;
  uint32_t file_offset = 0;
  uint32_t file_size = 0;
  bool read = false, write = false, exec = false;
};

class KernelImage {
 public:
  // Reads and classifies a file. Errors are one line naming the file.
  static Result<KernelImage> load(const std::string& path);
  // Classifies bytes already in memory; name is used in messages.
  static Result<KernelImage> parse(const std::string& name, std::vector<uint8_t> bytes);

  ImageKind kind() const { return m_kind; }
  const std::string& name() const { return m_name; }
  // e.g. "Linux bzImage (boot protocol 2.15)".
  const std::string& description() const { return m_description; }
  std::span<const uint8_t> bytes() const { return m_bytes; }
  // ELF images only.
  uint32_t entry() const { return m_entry; }
  const std::vector<LoadSegment>& segments() const { return m_segments; }

 private:
  KernelImage() = default;
  Status parse_elf();

  ImageKind m_kind = ImageKind::UserProgram;
  std::string m_name;
  std::string m_description;
  std::vector<uint8_t> m_bytes;
  uint32_t m_entry = 0;
  std::vector<LoadSegment> m_segments;
};

// Opens path and checks it is a readable regular file (for --initrd).
Status check_readable_file(const std::string& path);

}  // namespace bt86::monitor
