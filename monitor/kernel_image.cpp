// Reads a guest image and works out what it is (bzImage, Multiboot ELF, user
// ELF), validating every header field before it is trusted.
#include "monitor/kernel_image.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "monitor/multiboot.h"

namespace bt86::monitor {
namespace {

// Larger than any kernel or demo program bt86 could fit in 3 GiB of RAM
// alongside the rest; refusing early keeps a stray huge file from eating host memory.
constexpr uint64_t kMaxImageBytes = uint64_t(1) << 30;

// Linux boot protocol (Documentation/arch/x86/boot.rst): boot sector
// signature at 0x1FE, "HdrS" at 0x202, protocol version at 0x206.
constexpr size_t kBootFlagOffset = 0x1fe;
constexpr size_t kHeaderMagicOffset = 0x202;
constexpr size_t kVersionOffset = 0x206;

uint16_t le16(std::span<const uint8_t> b, size_t off) { return uint16_t(b[off] | b[off + 1] << 8); }

Error not_loadable(const std::string& name, const std::string& why) {
  return make_error(name + ": not a kernel bt86 can load: " + why);
}

// Owns a file descriptor; moves hand it over (Result<> moves its value).
struct OpenFile {
  int fd = -1;
  OpenFile() = default;
  OpenFile(OpenFile&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  OpenFile& operator=(OpenFile&&) = delete;
  ~OpenFile() { if (fd >= 0) ::close(fd); }
};

Result<OpenFile> open_regular(const std::string& path) {
  OpenFile f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f.fd < 0) return make_error(path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(f.fd, &st) != 0) return make_error(path + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return make_error(path + ": " + std::strerror(EISDIR));
  if (!S_ISREG(st.st_mode)) return make_error(path + ": not a regular file");
  return f;
}

bool has_multiboot_header(std::span<const uint8_t> b) { return find_multiboot_header(b).has_value(); }

// Multiboot spec 3.1.3: with flag 16 the header itself says where to load the
// image, so the file need not be ELF (a flat binary with the "a.out kludge").
bool has_aout_kludge_header(std::span<const uint8_t> b) {
  const auto h = find_multiboot_header(b);
  return h && (h->flags & mbflag::kAoutKludge);
}

}  // namespace

Status check_readable_file(const std::string& path) {
  auto f = open_regular(path);
  if (!f) return f.error();
  char byte;
  if (::read(f->fd, &byte, 1) < 0) return make_error(path + ": " + std::strerror(errno));
  return Ok{};
}

Result<KernelImage> KernelImage::load(const std::string& path) {
  auto f = open_regular(path);
  if (!f) return f.error();
  struct stat st;
  if (::fstat(f->fd, &st) != 0) return make_error(path + ": " + std::strerror(errno));
  if (uint64_t(st.st_size) > kMaxImageBytes) return not_loadable(path, "file larger than 1 GiB");
  std::vector<uint8_t> bytes(size_t(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(f->fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(path + ": " + std::strerror(errno));
    if (n == 0) break;  // the file shrank under us: classify what we have
    done += size_t(n);
  }
  bytes.resize(done);
  return parse(path, std::move(bytes));
}

Result<KernelImage> KernelImage::parse(const std::string& name, std::vector<uint8_t> bytes) {
  KernelImage img;
  img.m_name = name;
  img.m_bytes = std::move(bytes);
  std::span<const uint8_t> b = img.m_bytes;

  if (b.size() >= kVersionOffset + 2 && le16(b, kBootFlagOffset) == 0xaa55 &&
      std::memcmp(&b[kHeaderMagicOffset], "HdrS", 4) == 0) {
    const uint16_t version = le16(b, kVersionOffset);
    img.m_kind = ImageKind::LinuxBzImage;
    img.m_description = "Linux bzImage (boot protocol " + std::to_string(version >> 8) + "." +
                        std::to_string(version & 0xff) + ")";
    return img;
  }
  if (b.size() < 4 || std::memcmp(b.data(), ELFMAG, SELFMAG) != 0) {
    if (b.empty()) return not_loadable(name, "the file is empty");
    if (has_aout_kludge_header(b)) {
      img.m_kind = ImageKind::Multiboot;
      img.m_description = "Multiboot v1 kernel (a.out kludge)";
      return img;
    }
    if (has_multiboot_header(b))
      return not_loadable(name, "Multiboot header found but the file is not ELF and the header has no a.out kludge addresses (flag 16)");
    return not_loadable(name, "neither ELF nor a Linux bzImage");
  }
  if (auto s = img.parse_elf(); !s) return s.error();
  if (has_multiboot_header(b)) {
    img.m_kind = ImageKind::Multiboot;
    img.m_description = "Multiboot v1 ELF kernel";
  } else {
    img.m_kind = ImageKind::UserProgram;
    img.m_description = "ELF32 i386 user program";
  }
  return img;
}

Status KernelImage::parse_elf() {
  std::span<const uint8_t> b = m_bytes;
  if (b.size() < EI_NIDENT) return not_loadable(m_name, "truncated ELF identification");
  if (b[EI_CLASS] == ELFCLASS64) return not_loadable(m_name, "64-bit ELF (bt86 runs 32-bit x86 guests)");
  if (b[EI_CLASS] != ELFCLASS32) return not_loadable(m_name, "ELF with an unknown class");
  if (b[EI_DATA] != ELFDATA2LSB) return not_loadable(m_name, "big-endian ELF");
  if (b.size() < sizeof(Elf32_Ehdr)) return not_loadable(m_name, "ELF header truncated");
  Elf32_Ehdr eh;
  std::memcpy(&eh, b.data(), sizeof eh);
  if (eh.e_machine != EM_386)
    return not_loadable(m_name, "ELF32 for machine " + std::to_string(eh.e_machine) + ", not i386");
  if (eh.e_type == ET_DYN)
    return not_loadable(m_name, "position-independent ELF (ET_DYN); link with -no-pie");
  if (eh.e_type != ET_EXEC) return not_loadable(m_name, "ELF32 i386 file that is not an executable");
  if (eh.e_phnum == 0) return not_loadable(m_name, "ELF executable without program headers");
  if (eh.e_phentsize != sizeof(Elf32_Phdr))
    return not_loadable(m_name, "ELF program header size " + std::to_string(eh.e_phentsize) + " (expected 32)");
  if (uint64_t(eh.e_phoff) + uint64_t(eh.e_phnum) * sizeof(Elf32_Phdr) > b.size())
    return not_loadable(m_name, "ELF program headers lie outside the file");
  m_entry = eh.e_entry;

  bool entry_loaded = false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf32_Phdr ph;
    std::memcpy(&ph, b.data() + eh.e_phoff + i * sizeof(Elf32_Phdr), sizeof ph);
    if (ph.p_type != PT_LOAD) continue;
    const std::string which = "ELF segment " + std::to_string(i);
    if (ph.p_filesz > ph.p_memsz) return not_loadable(m_name, which + " has p_filesz > p_memsz");
    if (uint64_t(ph.p_offset) + ph.p_filesz > b.size())
      return not_loadable(m_name, which + " lies outside the file");
    if (uint64_t(ph.p_vaddr) + ph.p_memsz > (uint64_t(1) << 32))
      return not_loadable(m_name, which + " runs past the 4 GiB address space");
    if (ph.p_memsz == 0) continue;
    LoadSegment seg;
    seg.vaddr = ph.p_vaddr;
    seg.mem_size = ph.p_memsz;
    seg.file_offset = ph.p_offset;
    seg.file_size = ph.p_filesz;
    seg.read = ph.p_flags & PF_R;
    seg.write = ph.p_flags & PF_W;
    seg.exec = ph.p_flags & PF_X;
    if (m_entry >= seg.vaddr && uint64_t(m_entry) < uint64_t(seg.vaddr) + seg.mem_size) entry_loaded = true;
    m_segments.push_back(seg);
  }
  if (m_segments.empty()) return not_loadable(m_name, "ELF executable without loadable segments");
  if (!entry_loaded) return not_loadable(m_name, "ELF entry point lies outside every loadable segment");
  return Ok{};
}

}  // namespace bt86::monitor
