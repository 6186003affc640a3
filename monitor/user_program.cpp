// The direct-execution demo: loads an ELF32 user program into guest memory
// and runs the monitor loop over runtime::ExitRecord until the guest exits.
#include "monitor/user_program.h"

#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "base/log.h"
#include "monitor/cli.h"
#include "runtime/exit_record.h"

namespace bt86::monitor {
namespace {

using mmu::GuestPhys;
using mmu::GuestVirt;
using mmu::kPageSize;
using mmu::Prot;
using runtime::ExitKind;
using runtime::ExitRecord;
using runtime::Reg;
using runtime::Seg;
using runtime::SegmentCache;

// Linux i386 system call numbers (arch/x86/entry/syscalls/syscall_32.tbl)
// and errno values the personality answers with.
constexpr uint32_t kSysExit = 1, kSysWrite = 4, kSysExitGroup = 252;
constexpr uint32_t kEFAULT = 14, kEBADF = 9, kENOSYS = 38;

// Selectors a Linux i386 kernel gives user mode (__USER_CS, __USER_DS).
constexpr uint16_t kUserCs = 0x73, kUserDs = 0x7b;

constexpr uint32_t page_of(uint64_t va) { return uint32_t(va / kPageSize); }
constexpr uint32_t pages_spanned(uint32_t va, uint32_t len) {
  return len == 0 ? 0 : page_of(uint64_t(va) + len - 1) - page_of(va) + 1;
}

Prot segment_prot(const LoadSegment& s) {
  Prot p = Prot::None;
  if (s.read) p = p | Prot::Read;
  if (s.write) p = p | Prot::Write;
  if (s.exec) p = p | Prot::Exec;
  return p;
}

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%#010x", v);
  return buf;
}

std::string register_dump(const runtime::CpuState& cpu) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "eax=%08x ebx=%08x ecx=%08x edx=%08x esi=%08x edi=%08x ebp=%08x esp=%08x "
                "eip=%08x eflags=%08x cs=%04x ss=%04x ds=%04x es=%04x fs=%04x gs=%04x",
                cpu.reg(runtime::EAX), cpu.reg(runtime::EBX), cpu.reg(runtime::ECX), cpu.reg(runtime::EDX),
                cpu.reg(runtime::ESI), cpu.reg(runtime::EDI), cpu.reg(runtime::EBP), cpu.reg(runtime::ESP),
                cpu.eip, cpu.eflags, cpu.sreg(Seg::CS).selector, cpu.sreg(Seg::SS).selector,
                cpu.sreg(Seg::DS).selector, cpu.sreg(Seg::ES).selector, cpu.sreg(Seg::FS).selector,
                cpu.sreg(Seg::GS).selector);
  return buf;
}

}  // namespace

Status UserProgram::check_layout(const KernelImage& image, uint32_t memory_mib) {
  uint64_t pages = kStackInitial / kPageSize;
  for (const LoadSegment& s : image.segments()) {
    const uint64_t end = uint64_t(s.vaddr) + s.mem_size;
    const std::string range = "segment " + hex(s.vaddr) + ".." + hex(uint32_t(end - 1));
    if (s.vaddr < kPageSize)
      return make_error(image.name() + ": " + range + " covers page 0, which bt86 cannot map");
    if (end > kStackLimit)
      return make_error(image.name() + ": " + range + " reaches the stack area or the kernel half (user programs live below " +
                        hex(kStackLimit) + ")");
    pages += pages_spanned(s.vaddr, s.mem_size);
  }
  const uint64_t ram_pages = uint64_t(memory_mib) * 1024 * 1024 / kPageSize;
  if (pages > ram_pages)
    return make_error(image.name() + ": needs " + std::to_string(pages * kPageSize / 1024) + " KiB of guest RAM, --memory " +
                      std::to_string(memory_mib) + " MiB is too small");
  return Ok{};
}

Result<std::unique_ptr<UserProgram>> UserProgram::create(const KernelImage& image, const UserProgramConfig& config) {
  std::unique_ptr<UserProgram> p(new UserProgram(config));
  auto memory = mmu::GuestMemory::create(config.memory_mib);
  if (!memory) return memory.error();
  p->m_memory = std::make_unique<mmu::GuestMemory>(std::move(*memory));
  auto window = mmu::GuestWindow::reserve(*p->m_memory, 0);
  if (!window) return window.error();
  p->m_window.emplace(std::move(*window));
  if (auto s = p->load(image); !s) return s.error();

  runtime::DirectConfig dc;
  dc.segment_boundary = kSegmentBoundary;
  auto executor = runtime::DirectExecutor::create(dc);
  if (!executor) return executor.error();
  p->m_executor = std::move(*executor);
  p->set_up_cpu(image.entry());
  return p;
}

UserProgram::~UserProgram() {
  // The executor's signal handlers refer to the window; stop it first.
  m_executor.reset();
  m_window.reset();
}

std::optional<GuestPhys> UserProgram::alloc_pages(uint32_t count) {
  const uint64_t ram_pages = m_memory->size() / kPageSize;
  if (uint64_t(m_next_phys_page) + count > ram_pages) return std::nullopt;
  GuestPhys pa(m_next_phys_page * kPageSize);
  m_next_phys_page += count;
  return pa;
}

// Allocates fresh (zeroed: the memfd starts empty) RAM for count pages from
// first_vpage on, maps it and records it in m_pages.
Status UserProgram::map_pages(uint32_t first_vpage, uint32_t count, Prot prot) {
  auto pa = alloc_pages(count);
  if (!pa) return make_error("out of guest RAM");
  mmu::PageMapper& mapper = *m_window;
  if (auto s = mapper.map(GuestVirt(first_vpage * kPageSize), *pa, uint64_t(count) * kPageSize, prot); !s) return s;
  for (uint32_t i = 0; i < count; ++i) m_pages[first_vpage + i] = Page{GuestPhys(pa->value + i * kPageSize), prot};
  return Ok{};
}

Status UserProgram::load(const KernelImage& image) {
  // Pages shared by two segments get the union of their permissions.
  std::map<uint32_t, Prot> wanted;
  for (const LoadSegment& s : image.segments()) {
    const Prot prot = segment_prot(s);
    if (prot == Prot::None) continue;  // stays reserved: any access faults
    const uint32_t first = page_of(s.vaddr);
    for (uint32_t i = 0; i < pages_spanned(s.vaddr, s.mem_size); ++i) wanted[first + i] = wanted[first + i] | prot;
  }
  // One mapping per run of consecutive pages with the same permissions.
  for (auto it = wanted.begin(); it != wanted.end();) {
    const uint32_t first = it->first;
    const Prot prot = it->second;
    uint32_t count = 0;
    while (it != wanted.end() && it->first == first + count && it->second == prot) ++it, ++count;
    if (auto s = map_pages(first, count, prot); !s) return s;
  }
  // Copy file contents through the monitor's view of RAM; the rest of each
  // segment (.bss) is already zero.
  const auto bytes = image.bytes();
  for (const LoadSegment& s : image.segments()) {
    uint32_t done = 0;
    while (done < s.file_size) {
      const uint32_t va = s.vaddr + done;
      const uint32_t chunk = std::min(s.file_size - done, kPageSize - (va & mmu::kPageMask));
      auto page = m_pages.find(page_of(va));
      if (page != m_pages.end()) {
        const GuestPhys pa(page->second.pa.value + (va & mmu::kPageMask));
        if (!m_memory->write(pa, bytes.subspan(s.file_offset + done, chunk))) return make_error("guest RAM write failed");
      }
      done += chunk;
    }
  }
  // The stack: kStackInitial mapped now, the rest on demand down to kStackLimit.
  m_stack_bottom = kStackTop - kStackInitial;
  if (auto s = map_pages(page_of(m_stack_bottom), kStackInitial / kPageSize, Prot::ReadWrite); !s) return s;
  log::get("monitor")->debug("loaded {} pages of program, {} KiB of stack at {}", wanted.size(),
                             kStackInitial / 1024, hex(m_stack_bottom));
  return Ok{};
}

void UserProgram::set_up_cpu(uint32_t entry) {
  m_cpu = runtime::CpuState::flat_user(entry, kStackTop, kUserCs, kUserDs);
}

int UserProgram::run() {
  // Whether cpuid/rdtsc exit at all depends on the host (CPUID faulting is
  // missing on many, e.g. AMD): the runtime logs that once at info level.
  auto log = log::get("monitor");
  std::optional<int> status;
  while (!status) {
    const auto start = std::chrono::steady_clock::now();
    const ExitRecord exit = m_executor->run(m_cpu);
    m_guest_time += std::chrono::steady_clock::now() - start;
    log->trace("exit: {}", runtime::describe(exit, m_cpu));
    status = handle(exit);
  }
  if (m_config.stats) print_stats();
  return *status;
}

std::optional<int> UserProgram::handle(const ExitRecord& exit) {
  auto log = log::get("monitor");
  switch (exit.kind) {
    case ExitKind::SoftwareInterrupt:
      if (exit.vector == 0x80) return handle_syscall();
      break;
    case ExitKind::Cpuid: {
      if (!m_logged_cpuid) {
        log->info("guest cpuid exits: answering from the virtual CPU");
        m_logged_cpuid = true;
      }
      const CpuidResult r = m_vcpu.cpuid(m_cpu.reg(runtime::EAX), m_cpu.reg(runtime::ECX));
      m_cpu.reg(runtime::EAX) = r.eax;
      m_cpu.reg(runtime::EBX) = r.ebx;
      m_cpu.reg(runtime::ECX) = r.ecx;
      m_cpu.reg(runtime::EDX) = r.edx;
      m_cpu.eip += exit.instruction_length ? exit.instruction_length : 2;
      return std::nullopt;
    }
    case ExitKind::Rdtsc: {
      const bool rdtscp = exit.detail == "rdtscp";
      const uint64_t tsc = m_vcpu.tsc();
      m_cpu.reg(runtime::EAX) = uint32_t(tsc);
      m_cpu.reg(runtime::EDX) = uint32_t(tsc >> 32);
      if (rdtscp) m_cpu.reg(runtime::ECX) = 0;  // IA32_TSC_AUX: processor 0
      m_cpu.eip += exit.instruction_length ? exit.instruction_length : (rdtscp ? 3 : 2);
      return std::nullopt;
    }
    case ExitKind::PageFault:
      return handle_page_fault(exit);
    case ExitKind::Breakpoint:
      log->info("guest breakpoint at {}", hex(m_cpu.eip));
      return std::nullopt;
    case ExitKind::Preempted:
      // Nothing to deliver yet: a machine would inject its timer interrupt here.
      ++m_counters.preemptions;
      return std::nullopt;
    case ExitKind::SingleStep:
      return std::nullopt;
    default:
      break;  // every other kind is something a Linux process would die of
  }
  return guest_error(runtime::describe(exit, m_cpu));
}

std::optional<int> UserProgram::handle_page_fault(const ExitRecord& exit) {
  const uint32_t addr = exit.fault_address;
  const bool present = exit.error_code & 1;
  if (!present && addr >= kStackLimit && addr < m_stack_bottom && !m_pages.contains(page_of(addr))) {
    const uint32_t page = page_of(addr);
    if (auto s = map_pages(page, 1, Prot::ReadWrite); !s)
      return guest_error("stack growth to " + hex(addr) + " failed: " + s.error().message);
    ++m_counters.stack_pages;
    m_stack_bottom = std::min(m_stack_bottom, page * kPageSize);
    log::get("monitor")->debug("stack grown to {}", hex(m_stack_bottom));
    return std::nullopt;
  }
  return guest_error(runtime::describe(exit, m_cpu));
}

int UserProgram::guest_error(const std::string& what) {
  std::fprintf(stderr, "bt86: guest error: %s\nbt86: registers: %s\n", what.c_str(), register_dump(m_cpu).c_str());
  return kExitGuestError;
}

std::optional<int> UserProgram::handle_syscall() {
  const uint32_t nr = m_cpu.reg(runtime::EAX);
  const uint32_t a1 = m_cpu.reg(runtime::EBX), a2 = m_cpu.reg(runtime::ECX), a3 = m_cpu.reg(runtime::EDX);
  switch (nr) {
    case kSysExit:
    case kSysExitGroup:
      ++m_counters.syscalls;
      log::get("monitor")->info("guest exited with status {}", a1 & 0xff);
      return int(a1 & 0xff);
    case kSysWrite:
      ++m_counters.syscalls;
      m_cpu.reg(runtime::EAX) = sys_write(a1, a2, a3);
      return std::nullopt;
    default:
      ++m_counters.unknown_syscalls;
      log::get("monitor")->info("guest system call {} is not implemented: -ENOSYS", nr);
      m_cpu.reg(runtime::EAX) = uint32_t(-int32_t(kENOSYS));
      return std::nullopt;
  }
}

bool UserProgram::mapped(uint32_t va, uint32_t len) const {
  if (uint64_t(va) + len > (uint64_t(1) << 32)) return false;
  for (uint32_t i = 0, first = page_of(va); i < pages_spanned(va, len); ++i) {
    auto it = m_pages.find(first + i);
    if (it == m_pages.end() || it->second.prot == Prot::None) return false;
  }
  return true;
}

// write(2) for fds 1 and 2. The guest buffer is read through bt86's own page
// table and the monitor's view of RAM, never through the window, so an
// unmapped buffer is -EFAULT and not a host fault.
uint32_t UserProgram::sys_write(uint32_t fd, uint32_t buf, uint32_t len) {
  if (fd != 1 && fd != 2) return uint32_t(-int32_t(kEBADF));
  if (len > 0x7fffffff) len = 0x7fffffff;  // Linux caps a write at MAX_RW_COUNT too
  if (!mapped(buf, len)) return uint32_t(-int32_t(kEFAULT));
  uint32_t done = 0;
  while (done < len) {
    const uint32_t va = buf + done;
    const uint32_t chunk = std::min(len - done, kPageSize - (va & mmu::kPageMask));
    const uint8_t* host = m_memory->host(GuestPhys(m_pages.at(page_of(va)).pa.value + (va & mmu::kPageMask)), chunk);
    uint32_t written = 0;
    while (written < chunk) {
      const ssize_t n = ::write(int(fd), host + written, chunk - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        return done + written > 0 ? done + written : uint32_t(-err);
      }
      written += uint32_t(n);
    }
    done += chunk;
  }
  return done;
}

void UserProgram::print_stats() const {
  const runtime::DirectStats ds = m_executor->stats();
  const mmu::WindowStats& ws = m_window->stats();
  std::fprintf(stderr, "bt86 stats:\n");
  std::fprintf(stderr, "  guest run time        %.3f ms\n", double(m_guest_time.count()) / 1e6);
  std::fprintf(stderr, "  world-switch entries  %" PRIu64 "\n", ds.entries);
  std::fprintf(stderr, "  exits by kind:\n");
  for (int k = 0; k <= int(ExitKind::InvalidState); ++k) {
    if (ds.exits_by_kind[k] == 0) continue;
    std::fprintf(stderr, "    %-20s %" PRIu64 "\n", runtime::exit_kind_name(ExitKind(k)), ds.exits_by_kind[k]);
  }
  std::fprintf(stderr, "  window maps/unmaps    %" PRIu64 " / %" PRIu64 "\n", ws.maps, ws.unmaps);
  std::fprintf(stderr, "  stack pages on demand %" PRIu64 "\n", m_counters.stack_pages);
  std::fprintf(stderr, "  ldt writes            %" PRIu64 "\n", ds.ldt_writes);
  std::fprintf(stderr, "  syscalls handled      %" PRIu64 " (-ENOSYS: %" PRIu64 ")\n", m_counters.syscalls,
               m_counters.unknown_syscalls);
}

}  // namespace bt86::monitor
