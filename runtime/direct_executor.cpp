#include "runtime/direct_executor.h"

#include <Zydis/Zydis.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "runtime/world_switch.h"

namespace bt86::runtime {
namespace {

using detail::RawExit;

// EFLAGS bits the hardware keeps for the guest. IF and IOPL are virtual: the
// host needs IF set and IOPL 0 (so cli/sti/in/out trap).
constexpr uint32_t kDirectFlags = flags::Arith | flags::TF | flags::DF | flags::AC | flags::ID;

std::atomic<bool> g_exists{false};

constexpr uint16_t kHostCompatCs = 0x23;  // __USER32_CS of x86-64 Linux

// On AMD, sysenter is #UD in long mode and a stray compat-mode syscall
// reaches the host; on Intel it is the other way round.
bool host_is_amd() {
  static const bool amd = [] {
    uint32_t a, b, c, d;
    asm volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    return b == 0x68747541;  // "Auth"enticAMD
  }();
  return amd;
}

// Reads guest linear memory without risking a host fault: the page may be
// gone. bt86_probe_read returns a short count instead (a fault in it is
// resumed by the signal handler), without a system call.
size_t read_guest(uint32_t linear, uint8_t* buf, size_t len) {
  const uint64_t end = std::min<uint64_t>(uint64_t(linear) + len, uint64_t(1) << 32);
  return bt86_probe_read(reinterpret_cast<const void*>(uintptr_t(linear)), buf, size_t(end - linear));
}

struct Decoded {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  bool ok = false;
};

Decoded decode_at(const CpuState& cpu, uint32_t eip) {
  Decoded d;
  uint8_t bytes[15];
  const size_t n = read_guest(cpu.sreg(Seg::CS).base + eip, bytes, sizeof bytes);
  if (n == 0) return d;
  ZydisDecoder decoder;
  const bool big = cpu.sreg(Seg::CS).big();
  ZydisDecoderInit(&decoder, big ? ZYDIS_MACHINE_MODE_LEGACY_32 : ZYDIS_MACHINE_MODE_LEGACY_16,
                   big ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16);
  d.ok = ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, bytes, n, &d.insn, d.ops));
  return d;
}

Seg seg_of(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_ES: return Seg::ES;
    case ZYDIS_REGISTER_CS: return Seg::CS;
    case ZYDIS_REGISTER_SS: return Seg::SS;
    case ZYDIS_REGISTER_FS: return Seg::FS;
    case ZYDIS_REGISTER_GS: return Seg::GS;
    default: return Seg::DS;
  }
}

ZydisRegisterContext register_context(const CpuState& cpu) {
  ZydisRegisterContext ctx{};
  const ZydisRegister r32[] = {ZYDIS_REGISTER_EAX, ZYDIS_REGISTER_ECX, ZYDIS_REGISTER_EDX,
                               ZYDIS_REGISTER_EBX, ZYDIS_REGISTER_ESP, ZYDIS_REGISTER_EBP,
                               ZYDIS_REGISTER_ESI, ZYDIS_REGISTER_EDI};
  const ZydisRegister r16[] = {ZYDIS_REGISTER_AX, ZYDIS_REGISTER_CX, ZYDIS_REGISTER_DX,
                               ZYDIS_REGISTER_BX, ZYDIS_REGISTER_SP, ZYDIS_REGISTER_BP,
                               ZYDIS_REGISTER_SI, ZYDIS_REGISTER_DI};
  for (int i = 0; i < 8; ++i) {
    ctx.values[r32[i]] = cpu.gpr[i];
    ctx.values[r16[i]] = cpu.gpr[i] & 0xffff;
  }
  return ctx;
}

}  // namespace

const char* reg_name(Reg r) {
  static const char* names[] = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"};
  return names[r];
}

const char* seg_name(Seg s) {
  static const char* names[] = {"es", "cs", "ss", "ds", "fs", "gs"};
  return names[static_cast<int>(s)];
}

DirectExecutor::DirectExecutor(const DirectConfig& config)
    : m_config(config), m_ctx(std::make_unique<detail::WorldContext>()), m_ldt(config.segment_boundary) {}

Result<std::unique_ptr<DirectExecutor>> DirectExecutor::create(const DirectConfig& config) {
  if (config.segment_boundary == 0 || config.segment_boundary > (uint64_t(1) << 32))
    return make_error("segment boundary must be in 1..4 GiB");
  if (g_exists.exchange(true)) return make_error("only one DirectExecutor may exist per process");
  std::unique_ptr<DirectExecutor> ex(new DirectExecutor(config));
  if (auto s = detail::install_signal_handlers(); !s) return Error{s.error()};
  if (auto s = detail::install_seccomp_filter(); !s) return Error{s.error()};
  const auto& f = detail::host_features();
  ex->m_ctx->use_fsgsbase = f.fsgsbase ? 1 : 0;
  auto log = log::get("runtime");
  if (!f.cpuid_faulting)
    log->info("host has no CPUID faulting: cpuid in guest user code runs natively (no Cpuid exits)");
  if (!f.tsc_faulting) log->info("host has no TSC faulting: rdtsc in guest user code runs natively");
  if (config.tick_period.count() > 0) {
    if (auto s = ex->m_timer.start(config.tick_period); !s) return Error{s.error()};
  }
  return ex;
}

DirectExecutor::~DirectExecutor() {
  m_timer.stop();
  detail::g_world = nullptr;
  g_exists = false;
}

void DirectExecutor::request_exit() { m_ctx->exit_requested = 1; }

Status DirectExecutor::mirror_ldt_entry(uint16_t index, const SegmentCache& desc) {
  return m_ldt.mirror_ldt_entry(index, desc);
}

DirectStats DirectExecutor::stats() const {
  DirectStats s = m_stats;
  s.ldt_writes = m_ldt.ldt_writes();
  return s;
}

ExitRecord DirectExecutor::run(CpuState& cpu) {
  detail::WorldContext& ctx = *m_ctx;
  ExitRecord exit;
  if (ctx.exit_requested) {
    ctx.exit_requested = 0;
    exit.kind = ExitKind::Preempted;
    ++m_stats.exits_by_kind[static_cast<int>(exit.kind)];
    return exit;
  }
  for (int i = 0; i < kNumSegs; ++i) {
    auto sel = m_ldt.load_slot(Seg(i), cpu.seg[i]);
    if (!sel) {
      exit.kind = ExitKind::InvalidState;
      exit.detail = sel.error().message;
      return exit;
    }
    ctx.sel[i] = *sel;
  }
  for (int i = 0; i < 8; ++i) ctx.gpr[i] = cpu.gpr[i];
  ctx.eip = cpu.eip;
  ctx.eflags = (cpu.eflags & kDirectFlags) | flags::IF | flags::Fixed1;
  std::memcpy(ctx.guest_fx, cpu.fpu.fxsave.data(), sizeof ctx.guest_fx);
  // FXRSTOR faults on reserved MXCSR bits; a restored snapshot must not crash us.
  uint32_t mxcsr_mask;
  std::memcpy(&mxcsr_mask, &ctx.guest_fx[28], 4);
  if (mxcsr_mask == 0) mxcsr_mask = 0xffbf;
  uint32_t mxcsr;
  std::memcpy(&mxcsr, &ctx.guest_fx[24], 4);
  mxcsr &= mxcsr_mask;
  std::memcpy(&ctx.guest_fx[24], &mxcsr, 4);

  asm volatile("rdfsbase %0" : "=r"(ctx.host_fs_base));
  asm volatile("rdgsbase %0" : "=r"(ctx.host_gs_base));
  detail::arm_instruction_faulting(m_config.trap_rdtsc);
  detail::g_world = &ctx;
  ctx.in_guest = 1;
  ++m_stats.entries;
  bt86_world_enter(&ctx);
  ctx.in_guest = 0;

  exit = classify(cpu);
  ++m_stats.exits_by_kind[static_cast<int>(exit.kind)];
  return exit;
}

ExitRecord DirectExecutor::classify(CpuState& cpu) {
  detail::WorldContext& ctx = *m_ctx;
  const RawExit& e = ctx.exit;
  ExitRecord x;
  x.host_signal = e.signo;

  // A stray syscall/sysenter from compatibility mode enters the host's
  // 32-bit fast-syscall path, which replaces EIP with the landing pad of a
  // 32-bit vDSO this 64-bit process does not have, returns in the host's
  // CS 0x23 (or fails reading the guest stack first) and only then lets
  // seccomp or a fault stop it. EIP, ECX and EBP are lost on the way.
  if (e.rip_high && e.sel[1] == kHostCompatCs) {
    for (int i = 0; i < 8; ++i) cpu.gpr[i] = e.gpr[i];
    cpu.eflags = (cpu.eflags & ~kDirectFlags) | (e.eflags & kDirectFlags);
    std::memcpy(cpu.fpu.fxsave.data(), ctx.guest_fx, sizeof ctx.guest_fx);
    x.kind = host_is_amd() ? ExitKind::Syscall : ExitKind::Sysenter;
    x.detail = "guest eip lost by the host's 32-bit fast system-call path";
    return x;
  }
  for (int i = 0; i < 8; ++i) cpu.gpr[i] = e.gpr[i];
  cpu.eip = e.eip;
  cpu.eflags = (cpu.eflags & ~kDirectFlags) | (e.eflags & kDirectFlags);
  std::memcpy(cpu.fpu.fxsave.data(), ctx.guest_fx, sizeof ctx.guest_fx);
  for (int i = 0; i < kNumSegs; ++i) {
    if (e.sel[i] == ctx.sel[i]) continue;  // unchanged since entry
    if (auto view = m_ldt.guest_view(Seg(i), e.sel[i])) {
      cpu.seg[i] = *view;
    } else {
      // The guest loaded a host GDT selector (0x23, 0x2b...): the guest has
      // no such descriptor. Keep the value; the next entry refuses or nulls it.
      cpu.seg[i] = SegmentCache{e.sel[i], 0, 0, 0};
      if (x.detail.empty()) x.detail = std::string("guest loaded host selector into ") + seg_name(Seg(i));
    }
  }
  if (e.sel[1] == 0x33) {
    x.kind = ExitKind::Escaped64;
    x.detail = "guest code left its code segment for a host one (DESIGN.md §6)";
    return x;
  }

  x.vector = uint8_t(e.trapno);
  x.error_code = uint32_t(e.err);

  if (e.signo == detail::tick_signal()) {
    x.kind = ExitKind::Preempted;
    ctx.exit_requested = 0;
    return x;
  }

  auto decode_here = [&]() {
    Decoded d = decode_at(cpu, cpu.eip);
    if (d.ok) x.instruction_length = d.insn.length;
    return d;
  };

  switch (e.signo) {
    case SIGSYS: {
      // int 0x80, syscall or sysenter: which one is in the bytes before the
      // return address the kernel reports.
      const uint32_t next = uint32_t(e.addr);
      uint8_t b[2] = {0, 0};
      const bool have = read_guest(cpu.sreg(Seg::CS).base + next - 2, b, 2) == 2;
      cpu.eip = next;
      x.instruction_length = 2;
      if (have && b[0] == 0xcd && b[1] == 0x80) {
        x.kind = ExitKind::SoftwareInterrupt;
        x.vector = 0x80;
      } else if (have && b[0] == 0x0f && b[1] == 0x05) {
        x.kind = ExitKind::Syscall;
      } else if (have && b[0] == 0x0f && b[1] == 0x34) {
        x.kind = ExitKind::Sysenter;
      } else {
        // Intel's compat sysenter entry does not keep EIP: the host reports
        // the vDSO landing pad of a 32-bit process we do not have.
        x.kind = ExitKind::Sysenter;
        x.detail = "sysenter: guest eip lost by the host";
        x.instruction_length = 0;
      }
      return x;
    }
    case SIGTRAP:
      if (e.trapno == 3) {
        x.kind = ExitKind::Breakpoint;
      } else {
        x.kind = (e.si_code == TRAP_TRACE) ? ExitKind::SingleStep : ExitKind::Debug;
        x.vector = 1;
      }
      return x;
    case SIGFPE:
      x.kind = e.trapno == 16 ? ExitKind::FpuError : e.trapno == 19 ? ExitKind::SimdError : ExitKind::DivideError;
      if (x.kind == ExitKind::DivideError) x.vector = 0;
      return x;
    case SIGILL: {
      Decoded d = decode_here();
      x.kind = ExitKind::InvalidOpcode;
      x.vector = 6;
      if (d.ok && d.insn.mnemonic == ZYDIS_MNEMONIC_SYSENTER) {
        x.kind = ExitKind::Sysenter;
        cpu.eip += d.insn.length;
      } else if (d.ok && d.insn.mnemonic == ZYDIS_MNEMONIC_SYSCALL) {
        x.kind = ExitKind::Syscall;
        cpu.eip += d.insn.length;
      }
      return x;
    }
    case SIGBUS:
      if (e.trapno == 17) { x.kind = ExitKind::AlignmentCheck; return x; }
      if (e.trapno == 11) { x.kind = ExitKind::SegmentNotPresent; return x; }
      if (e.trapno == 12) break;  // #SS: a limit check below
      x.kind = ExitKind::PageFault;  // SIGBUS from a page fault (memfd hole)
      x.vector = 14;
      x.fault_address = uint32_t(e.addr);
      return x;
    case SIGSEGV:
      if (e.trapno == 14) {
        x.kind = ExitKind::PageFault;
        x.fault_address = uint32_t(e.addr);
        return x;
      }
      if (e.trapno == 4) { x.kind = ExitKind::Overflow; return x; }
      if (e.trapno == 5) { x.kind = ExitKind::BoundRange; return x; }
      if (e.trapno == 13) break;
      x.kind = ExitKind::GeneralProtection;
      return x;
    default:
      x.kind = ExitKind::HostSignal;
      return x;
  }

  // #GP(0) or #SS: find out which instruction and why.
  Decoded d = decode_here();
  const bool stack_fault = e.signo == SIGBUS;
  x.kind = stack_fault ? ExitKind::StackFault : ExitKind::GeneralProtection;
  x.vector = stack_fault ? 12 : 13;
  if (!d.ok) return x;
  switch (d.insn.mnemonic) {
    case ZYDIS_MNEMONIC_CPUID: x.kind = ExitKind::Cpuid; return x;
    case ZYDIS_MNEMONIC_RDTSC: x.kind = ExitKind::Rdtsc; x.detail = "rdtsc"; return x;
    case ZYDIS_MNEMONIC_RDTSCP: x.kind = ExitKind::Rdtsc; x.detail = "rdtscp"; return x;
    case ZYDIS_MNEMONIC_INT:
      // The host IDT gate has DPL 0: #GP with error code vector*8+2.
      if ((e.err & 7) == 2) {
        x.kind = ExitKind::SoftwareInterrupt;
        x.vector = uint8_t(e.err >> 3);
        x.error_code = 0;
        cpu.eip += d.insn.length;
      }
      return x;
    default: break;
  }
  if (e.err != 0) return x;
  // A memory operand beyond the limit bt86 installed?
  const ZydisRegisterContext regs = register_context(cpu);
  for (int i = 0; i < d.insn.operand_count_visible; ++i) {
    const ZydisDecodedOperand& op = d.ops[i];
    if (op.type != ZYDIS_OPERAND_TYPE_MEMORY || op.mem.type == ZYDIS_MEMOP_TYPE_AGEN) continue;
    ZyanU64 ea = 0;
    if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddressEx(&d.insn, &op, 0, &regs, &ea))) continue;
    const Seg s = seg_of(op.mem.segment);
    const SegmentCache& sc = cpu.sreg(s);
    const uint64_t last = (ea & 0xffffffff) + (op.size / 8 ? op.size / 8 : 1) - 1;
    if (sc.expand_down() || (sc.selector & ~3) == 0) continue;
    // A segment bt86 had to load as null (not representable below the
    // boundary) faults on every access.
    const bool nulled = ctx.sel[static_cast<int>(s)] == 0;
    if (nulled || last > m_ldt.installed_limit(s)) {
      x.kind = ExitKind::SegmentLimit;
      x.segment = s;
      x.fault_address = uint32_t(sc.base + uint32_t(ea));
      x.beyond_guest_limit = last > sc.limit;
      return x;
    }
  }
  return x;
}

const char* exit_kind_name(ExitKind kind) {
  switch (kind) {
    case ExitKind::PageFault: return "page-fault";
    case ExitKind::GeneralProtection: return "general-protection";
    case ExitKind::SegmentLimit: return "segment-limit";
    case ExitKind::StackFault: return "stack-fault";
    case ExitKind::SegmentNotPresent: return "segment-not-present";
    case ExitKind::InvalidOpcode: return "invalid-opcode";
    case ExitKind::DivideError: return "divide-error";
    case ExitKind::FpuError: return "x87-error";
    case ExitKind::SimdError: return "simd-error";
    case ExitKind::AlignmentCheck: return "alignment-check";
    case ExitKind::Overflow: return "overflow";
    case ExitKind::BoundRange: return "bound-range";
    case ExitKind::Breakpoint: return "breakpoint";
    case ExitKind::SingleStep: return "single-step";
    case ExitKind::Debug: return "debug";
    case ExitKind::SoftwareInterrupt: return "software-interrupt";
    case ExitKind::Cpuid: return "cpuid";
    case ExitKind::Rdtsc: return "rdtsc";
    case ExitKind::Syscall: return "syscall";
    case ExitKind::Sysenter: return "sysenter";
    case ExitKind::Preempted: return "preempted";
    case ExitKind::HostSignal: return "host-signal";
    case ExitKind::Escaped64: return "escaped-to-64-bit";
    case ExitKind::InvalidState: return "invalid-state";
  }
  return "?";
}

std::string describe(const ExitRecord& x, const CpuState& cpu) {
  char buf[256];
  int n = std::snprintf(buf, sizeof buf, "%s at %04x:%08x", exit_kind_name(x.kind),
                        cpu.sreg(Seg::CS).selector, cpu.eip);
  std::string s(buf, size_t(n));
  switch (x.kind) {
    case ExitKind::PageFault:
      std::snprintf(buf, sizeof buf, " address %08x error %x", x.fault_address, x.error_code);
      s += buf;
      break;
    case ExitKind::SegmentLimit:
      std::snprintf(buf, sizeof buf, " %s:%08x%s", seg_name(x.segment), x.fault_address,
                    x.beyond_guest_limit ? " (beyond the guest limit)" : "");
      s += buf;
      break;
    case ExitKind::GeneralProtection:
    case ExitKind::SegmentNotPresent:
    case ExitKind::StackFault:
      std::snprintf(buf, sizeof buf, " error %x", x.error_code);
      s += buf;
      break;
    case ExitKind::SoftwareInterrupt:
      std::snprintf(buf, sizeof buf, " vector %#x", x.vector);
      s += buf;
      break;
    default: break;
  }
  if (!x.detail.empty()) s += " (" + x.detail + ")";
  return s;
}

}  // namespace bt86::runtime
