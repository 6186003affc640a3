#include "translator/translator.h"

#include <asm/prctl.h>
#include <asmjit/x86.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"

#include <fmt/format.h>

namespace bt86::translator {
namespace {

using namespace asmjit;
namespace rf = runtime::flags;
constexpr uint32_t kLiveFlags = rf::Arith | rf::DF;
constexpr int32_t kGpr = offsetof(runtime::CpuState, gpr);
constexpr int32_t kEflags = offsetof(runtime::CpuState, eflags);
constexpr int32_t kFpu = offsetof(runtime::CpuState, fpu);

// Host register for each guest register, in runtime::Reg order.
const x86::Gp kGuestRegs[8] = {x86::eax, x86::ecx, x86::edx, x86::ebx, x86::r12d, x86::ebp, x86::esi, x86::edi};

// The GS base is switched on every run(): with FSGSBASE (Linux 5.9+ lets
// user space use it, HWCAP2 bit 1) that is one instruction instead of an
// arch_prctl system call each way (about 0.2 us apiece here).
bool have_fsgsbase() {
  static const bool have = (getauxval(AT_HWCAP2) & (1u << 1)) != 0;
  return have;
}
uint64_t get_gs_base() {
  if (have_fsgsbase()) {
    uint64_t v;
    asm volatile("rdgsbase %0" : "=r"(v));
    return v;
  }
  unsigned long v = 0;
  syscall(SYS_arch_prctl, ARCH_GET_GS, &v);
  return v;
}
void set_gs_base(uint64_t v) {
  if (have_fsgsbase()) {
    asm volatile("wrgsbase %0" ::"r"(v) : "memory");
    return;
  }
  syscall(SYS_arch_prctl, ARCH_SET_GS, v);
}

// The segments translated code cannot use as they are (bit per runtime::Seg):
// anything but a present, writable, expand-up data segment with a 4 GiB
// limit, or for CS a readable code segment with a 4 GiB limit (writes
// through CS always fault: the block builder stops before them). SDM vol. 3,
// 5.3 and 5.4.
bool not_flat(const runtime::SegmentCache& c, bool cs) {
  const bool usable = cs ? c.readable() : c.writable() && !c.expand_down();
  return !(c.present() && usable && c.limit == 0xffffffffu);
}

uint8_t checked_segments(const runtime::CpuState& cpu) {
  uint8_t mask = 0;
  for (int s = 0; s < runtime::kNumSegs; ++s)
    if (not_flat(cpu.seg[s], s == int(runtime::Seg::CS))) mask |= uint8_t(1u << s);
  return mask;
}

// An exit site's bytes (and its jcc's rel32, if any) pointing at its own
// exit code (unlinked) or at a block's link entry. Bytes only: async-signal-safe.
void point_site_at_exit(const Block& from, const ExitSite& site) {
  uint8_t* at = const_cast<uint8_t*>(from.host) + site.host_offset;
  unlinked_site_bytes(site.target_eip, at);
  patch_branch_rel(from, site, reinterpret_cast<uint64_t>(at));
}
void point_site_at(const Block& from, const ExitSite& site, const Block& target) {
  uint8_t* at = const_cast<uint8_t*>(from.host) + site.host_offset;
  const uint64_t entry = reinterpret_cast<uint64_t>(target.link_entry());
  linked_site_bytes(reinterpret_cast<uint64_t>(at), entry, at);
  patch_branch_rel(from, site, entry);
}

}  // namespace

const char* exit_reason_name(ExitReason reason) {
  switch (reason) {
    case ExitReason::kNone: return "none";
    case ExitReason::kBlockEnd: return "block-end";
    case ExitReason::kIndirect: return "indirect";
    case ExitReason::kNeedsInterpretation: return "needs-interpretation";
    case ExitReason::kCallout: return "callout";
    case ExitReason::kCalloutStop: return "callout-stop";
    case ExitReason::kIrqWindow: return "irq-window";
    case ExitReason::kExitRequested: return "exit-requested";
    case ExitReason::kGuestFault: return "guest-fault";
    case ExitReason::kNeedsChecks: return "needs-checks";
  }
  return "?";
}

const char* run_stop_name(RunStop stop) {
  switch (stop) {
    case RunStop::kNeedsInterpretation: return "needs-interpretation";
    case RunStop::kMaxBlocks: return "max-blocks";
    case RunStop::kUnsupportedState: return "unsupported-state";
    case RunStop::kInternalError: return "internal-error";
    case RunStop::kCallout: return "callout";
    case RunStop::kIrqWindow: return "irq-window";
    case RunStop::kExitRequested: return "exit-requested";
    case RunStop::kGuestFault: return "guest-fault";
  }
  return "?";
}

Result<std::unique_ptr<Translator>> Translator::create(const TranslatorConfig& config, const GuestCodeReader& code) {
  if (config.window_base % (uint64_t(1) << 32) != 0) return make_error("translator: window base not 4 GiB aligned");
  auto tc = TranslationCache::create(config.tc_size);
  if (!tc) return tc.error();
  std::unique_ptr<Translator> t(new Translator(config, code));
  t->m_tc = std::move(tc.value());
  t->m_ctx = std::make_unique<TranslatorContext>();
  t->m_ctx->window_base = config.window_base;
  if (auto s = t->emit_stubs(); !s) return s.error();
  for (LookupEntry& e : t->m_ctx->lookup) e.host = t->m_miss_stub;
  // Faults in translated code arrive through the runtime's signal handler.
  if (auto s = runtime::install_host_signal_handlers(); !s) return s.error();
  t->m_hook.tc_begin = reinterpret_cast<uintptr_t>(t->m_tc->stub_area());
  t->m_hook.tc_end = t->m_hook.tc_begin + config.tc_size;
  t->m_hook.on_fault = &Translator::on_tc_fault;
  t->m_hook.opaque = t.get();
  t->m_hook.on_tick = &Translator::on_tick;  // kicks always; the timer only with stop_on_host_tick
  t->m_pid = getpid();
  t->m_kick_signal = runtime::detail::tick_signal();
  if (config.fast_segment_loads) {
    t->m_callouts.after_segment_callout = &Translator::after_segment_callout;
    t->m_callouts.after_opaque = t.get();
  }
  return t;
}

Translator::~Translator() = default;

// Entry: void enter(TranslatorContext* ctx /*rdi*/, const uint8_t* block /*rsi*/).
// Saves the host callee-saved registers and FPU state, loads the guest's
// registers, live flags and FPU state, and jumps to the block. Exit (reached
// by jmp from every block exit): the reverse, then returns to C++.
Status Translator::emit_stubs() {
  const uint64_t base = reinterpret_cast<uint64_t>(m_tc->stub_area());
  CodeHolder code;
  code.init(Environment(Arch::kX64), base);
  x86::Assembler a(&code);
  Label exit = a.newLabel();
  Label fpu_load = a.newLabel();
  // With R13 = the CpuState: the guest registers, live flags and FPU state
  // go back into it, DF is cleared for the C++ ABI and the host FPU state
  // comes back (shared by the exit stub and the callout stub).
  // Back to run(): the host stack as the entry stub left it (its return
  // address slot skipped), the callee-saved registers it pushed.
  auto return_to_run = [&] {
    a.mov(x86::rsp, x86::qword_ptr(x86::r15, ctx_off::kHostRsp));
    a.add(x86::rsp, 8);
    a.pop(x86::r15);
    a.pop(x86::r14);
    a.pop(x86::r13);
    a.pop(x86::r12);
    a.pop(x86::rbx);
    a.pop(x86::rbp);
    a.ret();
  };
  auto store_guest_state = [&] {
    for (int r = 0; r < 8; ++r) a.mov(x86::dword_ptr(x86::r13, kGpr + 4 * r), kGuestRegs[r]);
    a.pushfq();
    a.pop(x86::rax);
    a.and_(x86::eax, kLiveFlags);
    a.mov(x86::ecx, x86::dword_ptr(x86::r13, kEflags));
    a.and_(x86::ecx, ~kLiveFlags);
    a.or_(x86::ecx, x86::eax);
    a.mov(x86::dword_ptr(x86::r13, kEflags), x86::ecx);
    a.cld();
    // The guest's x87/SSE state is in the registers only if a block loaded
    // it (fpu_hook no longer points at the loader): then it goes back to
    // CpuState and the host gets back only what the SysV ABI makes
    // callee-saved: the x87 control word and MXCSR's control bits (kept in
    // host_fx at their FXSAVE offsets by the loader), on an empty x87 stack.
    // XMM registers are caller-saved. A full fxsave/fxrstor of the host
    // state cost about 130 ns per round trip here; the guest's fxrstor +
    // fxsave + fninit about 100 ns, which is why it is now lazy.
    Label fpu_not_loaded = a.newLabel();
    a.lea(x86::rax, x86::ptr(fpu_load));
    a.cmp(x86::qword_ptr(x86::r15, ctx_off::kFpuHook), x86::rax);
    a.je(fpu_not_loaded);
    a.fxsave64(x86::ptr(x86::r13, kFpu));
    a.fninit();
    a.fldcw(x86::word_ptr(x86::r15, ctx_off::kHostFx + 0));
    a.ldmxcsr(x86::dword_ptr(x86::r15, ctx_off::kHostFx + 24));
    a.mov(x86::qword_ptr(x86::r15, ctx_off::kFpuHook), x86::rax);
    a.bind(fpu_not_loaded);
  };

  a.push(x86::rbp);
  a.push(x86::rbx);
  a.push(x86::r12);
  a.push(x86::r13);
  a.push(x86::r14);
  a.push(x86::r15);
  a.sub(x86::rsp, 8);  // keeps RSP 16-byte aligned for callouts later
  a.mov(x86::r15, x86::rdi);
  a.mov(x86::qword_ptr(x86::r15, ctx_off::kHostRsp), x86::rsp);
  a.mov(x86::r14, x86::rsi);
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.lea(x86::rax, x86::ptr(fpu_load));  // the host's x87/SSE state stays until a block needs the guest's
  a.mov(x86::qword_ptr(x86::r15, ctx_off::kFpuHook), x86::rax);
  a.pushfq();
  a.pop(x86::rax);
  a.and_(x86::rax, int32_t(~kLiveFlags));
  a.mov(x86::ecx, x86::dword_ptr(x86::r13, kEflags));
  a.and_(x86::ecx, kLiveFlags);
  a.or_(x86::rax, x86::rcx);
  a.push(x86::rax);
  a.popfq();
  for (int r = 0; r < 8; ++r) a.mov(kGuestRegs[r], x86::dword_ptr(x86::r13, kGpr + 4 * r));
  a.jmp(x86::r14);

  // Lookup miss: an empty or foreign slot; R13D holds the wanted EIP.
  a.align(AlignMode::kCode, 16);
  Label miss = a.newLabel();
  a.bind(miss);
  a.mov(x86::dword_ptr(x86::r15, ctx_off::kNextEip), x86::r13d);
  a.mov(x86::dword_ptr(x86::r15, ctx_off::kExitReason), uint32_t(ExitReason::kIndirect));
  a.jmp(exit);

  // Chainable exit sites `call` here: the return address names the site.
  a.align(AlignMode::kCode, 16);
  Label site = a.newLabel();
  a.bind(site);
  a.pop(x86::qword_ptr(x86::r15, ctx_off::kLastExit));
  a.bind(exit);
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  store_guest_state();
  return_to_run();

  // Callout (callout.h), reached by jmp with R13 = the CalloutInsn and
  // next_eip = its EIP: store the guest state like the exit stub, switch to
  // the host FPU state, call bt86_callout_entry on the host stack, then
  // return to run() (which continues at cpu.eip or stops).
  a.align(AlignMode::kCode, 16);
  Label callout = a.newLabel();
  a.bind(callout);
  a.mov(x86::r14, x86::r13);
  a.mov(x86::r13, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  store_guest_state();
  a.mov(x86::rsp, x86::qword_ptr(x86::r15, ctx_off::kHostRsp));  // 16-byte aligned
  a.mov(x86::rdi, x86::r15);
  a.mov(x86::rsi, x86::r14);
  a.mov(x86::rdx, Imm(reinterpret_cast<uint64_t>(&m_callouts)));
  a.mov(x86::rax, Imm(reinterpret_cast<uint64_t>(&bt86_callout_entry)));
  a.call(x86::rax);
  return_to_run();

  // The FPU hook (TranslatorContext::fpu_hook), reached by `call` from a
  // block, with the guest's registers and flags live: keep the host's x87
  // control word and MXCSR, load the guest's x87/SSE state, and point the
  // hook at a bare ret. Nothing here writes RFLAGS or a guest register.
  a.align(AlignMode::kCode, 16);
  Label fpu_loaded = a.newLabel();
  a.bind(fpu_load);
  a.fnstcw(x86::word_ptr(x86::r15, ctx_off::kHostFx + 0));
  a.stmxcsr(x86::dword_ptr(x86::r15, ctx_off::kHostFx + 24));
  a.push(x86::rax);
  a.mov(x86::rax, x86::qword_ptr(x86::r15, ctx_off::kCpu));
  a.fxrstor64(x86::ptr(x86::rax, kFpu));
  a.mov(x86::rax, x86::qword_ptr(x86::r15, int32_t(offsetof(TranslatorContext, fpu_loads))));
  a.lea(x86::rax, x86::ptr(x86::rax, 1));
  a.mov(x86::qword_ptr(x86::r15, int32_t(offsetof(TranslatorContext, fpu_loads))), x86::rax);
  a.lea(x86::rax, x86::ptr(fpu_loaded));
  a.mov(x86::qword_ptr(x86::r15, ctx_off::kFpuHook), x86::rax);
  a.pop(x86::rax);
  a.bind(fpu_loaded);
  a.ret();

  code.flatten();
  code.resolveUnresolvedLinks();
  if (code.relocateToBase(base) != kErrorOk) return make_error("translator: stub relocation failed");
  const CodeBuffer& buf = code.sectionById(0)->buffer();
  if (buf.size() > TranslationCache::kStubArea) return make_error("translator: stubs too large");
  std::memcpy(m_tc->stub_area(), buf.data(), buf.size());
  m_enter = reinterpret_cast<EntryFn>(m_tc->stub_area());
  m_exit_stub = base + code.labelOffset(exit);
  m_site_stub = base + code.labelOffset(site);
  m_miss_stub = base + code.labelOffset(miss);
  m_callouts.stub = base + code.labelOffset(callout);
  return Ok{};
}

// mprotect as a raw system call: request_exit() may run in a signal handler
// that interrupted guest code with the guest's FS base (no errno, no TLS).
void Translator::set_poll_page(bool readable) {
  long ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(SYS_mprotect), "D"(m_tc->poll_page()), "S"(4096), "d"(readable ? PROT_READ : PROT_NONE)
               : "rcx", "r11", "memory");
  (void)ret;
}

// Page first, flag second: when run() sees the flag, the page is already
// protected, and its restoring mprotect cannot be overtaken by this one.
void Translator::request_exit_here() {
  set_poll_page(false);
  m_ctx->exit_requested = 1;
}

// Block entries from the dispatcher and the in-TC lookup load from the poll
// page, so the request stops them. Chained jumps skip that load: the thread
// in run() must cut the links of the block it is in, which only its own
// signal handler can do (it has the interrupted RIP): hence the kick.
void Translator::request_exit() {
  request_exit_here();
  const int tid = m_run_tid.load(std::memory_order_acquire);
  if (tid == 0) return;
  long self;
  asm volatile("syscall" : "=a"(self) : "a"(SYS_gettid) : "rcx", "r11", "memory");
  if (self == tid) return;
  long ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(SYS_tgkill), "D"(long(m_pid)), "S"(long(tid)), "d"(long(m_kick_signal))
               : "rcx", "r11", "memory");
  (void)ret;
}

// In the tick signal's handler, on the thread in run(): a tick (timer) asks
// for an exit if this translator stops on ticks; a kick comes from
// request_exit() on another thread. Either way, with a request pending, the
// block that was interrupted (or that called the stub it was in) gets its
// links cut, so that it leaves at its next exit whichever way it loops.
void Translator::on_tick(void* opaque, ucontext_t* uc, bool timer) {
  auto* t = static_cast<Translator*>(opaque);
  if (timer && t->m_config.stop_on_host_tick) t->request_exit_here();
  // Not only for kicks: a kick can arrive as the tick's handler starts
  // (both pending at once), and then only the outer handler sees the TC.
  const greg_t* g = uc->uc_mcontext.gregs;
  const uint64_t rip = uint64_t(g[REG_RIP]);
  if (!t->m_ctx->exit_requested) return;
  if (rip < t->m_hook.tc_begin || rip >= t->m_hook.tc_end) return;  // C++: run() checks the flag itself
  Block* b = t->block_by_host(rip);
  if (!b) {
    // A stub that blocks `call` (the FPU hook, an exit site's call): the
    // return address names the block. Any other stub leaves the TC or enters
    // a block by its poll. A stray value only cuts some block's links.
    const uint64_t ret = *reinterpret_cast<const uint64_t*>(g[REG_RSP]);
    b = t->block_by_host(ret);
  }
  if (b) t->cut_links(b);
}

// Async-signal-safe (no allocation): only bytes and flags of b's own sites.
void Translator::cut_links(Block* b) {
  if (b->dead) return;
  bool any = false;
  for (ExitSite& site : b->exits) {
    if (!site.linked || site.cut) continue;
    point_site_at_exit(*b, site);
    site.cut = true;
    any = true;
    ++m_stats.links_cut;
  }
  if (!any) return;
  for (uint32_t i = 0; i < m_cut_count; ++i)
    if (m_cut[i] == b) return;
  if (m_cut_count < kMaxCut) {
    m_cut[m_cut_count] = b;
    m_cut_count = m_cut_count + 1;
    return;
  }
  // No room to remember b (not expected: see m_cut): make its cut links
  // plain unlinked ones, to be linked again as they are taken. Their
  // targets keep a stale incoming entry, which only unlinks again.
  for (ExitSite& site : b->exits)
    if (site.cut) site.cut = site.linked = false;
}

// The request that cut links has been seen: put them back. A site whose
// target went meanwhile was unlinked by drop_block/unreach (linked false).
void Translator::heal_cut() {
  for (uint32_t i = 0; i < m_cut_count; ++i) {
    Block* b = m_cut[i];
    for (ExitSite& site : b->exits) {
      if (!site.cut) continue;
      site.cut = false;
      if (!site.linked || b->dead) continue;
      auto it = m_blocks.find(site.target_eip);
      if (it == m_blocks.end() || !it->second->host) {
        site.linked = false;  // cannot happen while linked; stay safe
        continue;
      }
      point_site_at(*b, site, *it->second);
    }
  }
  m_cut_count = 0;
}

void Translator::clear_lookup() {
  for (uint16_t slot : m_lookup_used) m_ctx->lookup[slot] = LookupEntry{0, 0, m_miss_stub};
  m_lookup_used.clear();
}

void Translator::fill_lookup(uint32_t eip, const Block& b) {
  LookupEntry& e = m_ctx->lookup[eip & 0xffff];
  e.neg_eip = uint32_t(0) - eip;
  e.host = reinterpret_cast<uint64_t>(b.entry());
  m_lookup_used.push_back(uint16_t(eip & 0xffff));
  if (m_lookup_used.size() > 4 * kLookupEntries) {  // keep the list bounded: rebuild it
    std::vector<uint16_t> used;
    for (uint32_t i = 0; i < kLookupEntries; ++i)
      if (m_ctx->lookup[i].host != m_miss_stub) used.push_back(uint16_t(i));
    m_lookup_used = std::move(used);
  }
  ++m_stats.lookup_fills;
}

void Translator::set_callout_handler(CalloutHandler* handler) {
  flush();
  m_callouts.handler = handler;
}

void Translator::set_inline_rdtsc(const int64_t* offset) {
  flush();
  m_ctx->tsc_offset = offset;
}

void Translator::update_seg_pinned() {
  const uint8_t pinned = m_seg_used | m_seg_flat;
  for (int s = 0; s < runtime::kNumSegs; ++s) m_ctx->seg_pinned[s] = (pinned >> s) & 1;
}

void Translator::set_gdt(uint32_t base, uint16_t limit) {
  if (m_ctx->gdt_base == base && m_ctx->gdt_limit == limit) return;
  m_ctx->gdt_base = base;
  m_ctx->gdt_limit = limit;
  for (auto& ways : m_ctx->seg_loads)
    for (SegLoadEntry& e : ways) e = SegLoadEntry{};
  for (VerwEntry& e : m_ctx->verw) e = VerwEntry{};
}

// After the CPU model ran a verw callout that completed at CPL 0 (cpu.eip is
// the next instruction: no fault): remember selector -> descriptor bytes ->
// ZF for expand_segment.cpp. Null selectors (ZF = 0 whatever the tables
// hold) and GDT selectors inside the limit whose descriptor reads now
// through the code reader; LDT selectors depend on the LDTR and are left
// to the callout. The operand is read again from guest memory at its
// effective address (verw changes no register, so the address is the one
// the CPU model used).
void Translator::record_verw(const runtime::CpuState& cpu, const CalloutInsn& insn) {
  const GuestInsn& g = insn.insn;
  if (cpu.eip != g.next_eip() || (cpu.sreg(runtime::Seg::CS).selector & 3)) return;
  const ZydisDecodedOperand& op = g.ops[0];
  uint16_t sel = 0;
  if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    sel = uint16_t(cpu.gpr[ZydisRegisterGetId(op.reg.value) & 7]);
  } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && g.insn.address_width == 32) {
    uint32_t ea = uint32_t(op.mem.disp.value);
    if (op.mem.base != ZYDIS_REGISTER_NONE) ea += cpu.gpr[ZydisRegisterGetId(op.mem.base) & 7];
    if (op.mem.index != ZYDIS_REGISTER_NONE) ea += cpu.gpr[ZydisRegisterGetId(op.mem.index) & 7] * op.mem.scale;
    ea += cpu.sreg(seg_of(op.mem.segment)).base;
    uint8_t b[2];
    if (m_code->read(mmu::GuestVirt(ea), b) != sizeof b) return;
    sel = uint16_t(b[0] | (b[1] << 8));
  } else {
    return;
  }
  VerwEntry e;
  e.key = 0x10000u | sel;
  e.zf = cpu.eflags & 0x40;
  if ((sel & 0xfffc) == 0) {
    if (e.zf) return;  // not what verw of a null selector does: leave it to the CPU model
    e.no_read = 1;
  } else {
    const uint32_t offset = sel & 0xfff8u;
    if ((sel & 4) || offset + 7 > m_ctx->gdt_limit) return;
    e.desc_address = m_ctx->gdt_base + offset;
    if (e.desc_address > 0xfffffff8u) return;
    uint8_t b[8];
    if (m_code->read(mmu::GuestVirt(e.desc_address), b) != sizeof b) return;
    std::memcpy(&e.desc, b, sizeof b);
  }
  int way = -1;
  for (int i = 0; i < kVerwWays; ++i)
    if (m_ctx->verw[i].key == e.key) way = i;
  if (way < 0) {
    way = m_ctx->verw_victim;
    m_ctx->verw_victim = uint8_t((way + 1) % kVerwWays);
  }
  m_ctx->verw[way] = e;
}

// After the CPU model ran a mov/pop callout: if it was a load of DS, ES, FS
// or GS that completed at CPL 0, remember selector -> descriptor bytes ->
// SegmentCache so that translated code can replay it (expand_segment.cpp).
// Only what is certain to replay exactly is kept: GDT selectors whose
// descriptor now has the accessed bit set (the replay writes nothing) and
// whose bytes give exactly the cache the CPU model produced, and null
// selectors (no descriptor: the cache is whatever the CPU model stores).
void Translator::record_seg_load(const runtime::CpuState& cpu, const CalloutInsn& insn, uint32_t esp_before) {
  using runtime::Seg;
  const GuestInsn& g = insn.insn;
  const ZydisDecodedOperand& op0 = g.ops[0];
  if (op0.type != ZYDIS_OPERAND_TYPE_REGISTER || ZydisRegisterGetClass(op0.reg.value) != ZYDIS_REGCLASS_SEGMENT) return;
  const Seg s = seg_of(op0.reg.value);
  if (s != Seg::DS && s != Seg::ES && s != Seg::FS && s != Seg::GS) return;
  const bool pop = insn.id() == ZYDIS_MNEMONIC_POP;
  // Completed: at the next instruction, the stack moved exactly as the load
  // moves it (an exception delivered instead pushes at least 12 bytes), CPL 0.
  if (cpu.eip != g.next_eip()) return;
  if (cpu.gpr[runtime::ESP] != esp_before + (pop ? g.insn.operand_width / 8 : 0)) return;
  if (cpu.sreg(Seg::CS).selector & 3) return;
  const runtime::SegmentCache& c = cpu.sreg(s);
  const uint16_t sel = c.selector;
  if (!pop && g.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER &&
      uint16_t(cpu.gpr[ZydisRegisterGetId(g.ops[1].reg.value) & 7]) != sel)
    return;
  SegLoadEntry e;
  e.key = 0x10000u | sel;
  e.cache = c;
  if ((sel & 0xfffc) == 0) {
    e.null_selector = 1;
  } else {
    const uint32_t offset = sel & 0xfff8u;
    if ((sel & 4) || offset + 7 > m_ctx->gdt_limit) return;  // LDT, or outside the GDT
    e.desc_address = m_ctx->gdt_base + offset;
    if (e.desc_address > 0xfffffff8u) return;  // the 8-byte read would leave the window
    uint8_t b[8];
    if (m_code->read(mmu::GuestVirt(e.desc_address), b) != sizeof b) return;
    std::memcpy(&e.desc, b, sizeof b);
    const uint32_t lo = uint32_t(e.desc), hi = uint32_t(e.desc >> 32);
    if (!(hi & (1u << 12)) || !(hi & (1u << 8))) return;  // not code/data, or accessed clear
    // SDM vol. 3, 3.4.5: base, limit (G: 4 KiB units), type..G as CpuState keeps them.
    const uint32_t raw_limit = (lo & 0xffff) | (hi & 0xf0000);
    const runtime::SegmentCache from_bytes{sel, (lo >> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000u),
                                           (hi & (1u << 23)) ? (raw_limit << 12) | 0xfff : raw_limit,
                                           uint16_t(((hi >> 8) & 0xff) | ((hi >> 12) & 0xf00))};
    if (!(from_bytes == c)) return;
  }
  e.checked = m_config.check_segments && not_flat(c, false) ? 1 : 0;
  SegLoadEntry* ways = m_ctx->seg_loads[int(s)];
  int way = -1;
  for (int i = 0; i < kSegLoadWays; ++i)
    if (ways[i].key == e.key) way = i;
  if (way < 0) {
    way = m_ctx->seg_load_victim[int(s)];
    m_ctx->seg_load_victim[int(s)] = uint8_t((way + 1) % kSegLoadWays);
  }
  ways[way] = e;
}

void Translator::drop_blocks() {
  m_cut_count = 0;  // their bytes go with the TC
  m_blocks.clear();
  m_dispatch.fill({});
  m_detached.clear();
  m_callouts.clear();
  m_seg_used = 0;
  m_seg_flat = 0;
  for (auto& list : m_seg_blocks) list.clear();
  update_seg_pinned();
  m_pages.clear();
  m_by_host.clear();
  m_owned.clear();
  clear_lookup();
  m_step_eip.reset();
  m_fault_block = nullptr;
  ++m_generation;
}

Block* Translator::block_by_host(uint64_t host_address) const {
  size_t lo = 0, hi = m_by_host.size();
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (reinterpret_cast<uint64_t>(m_by_host[mid]->host) <= host_address) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return nullptr;
  Block* b = m_by_host[lo - 1];
  const uint64_t start = reinterpret_cast<uint64_t>(b->host);
  return host_address < start + b->host_size ? b : nullptr;
}

// Undoes everything that points at b: chained jumps into it, its own links
// (removed from the targets' incoming lists), its lookup slot, its map and
// page entries. Its code stays in the TC until the next flush.
void Translator::drop_block(Block* b) {
  if (b->dead) return;
  b->dead = true;
  for (const IncomingLink& in : b->incoming) {
    Block* from = in.from;
    if (from->dead) continue;
    ExitSite& site = from->exits[in.exit_index];
    point_site_at_exit(*from, site);
    site.linked = false;
    ++m_stats.chain_unlinks;
  }
  b->incoming.clear();
  for (uint32_t i = 0; i < b->exits.size(); ++i) {
    ExitSite& site = b->exits[i];
    if (!site.linked) continue;
    site.linked = false;
    auto it = m_blocks.find(site.target_eip);
    if (it == m_blocks.end()) continue;
    auto& in = it->second->incoming;
    std::erase_if(in, [&](const IncomingLink& l) { return l.from == b && l.exit_index == i; });
  }
  if (b->host) {
    LookupEntry& e = m_ctx->lookup[b->guest_eip & 0xffff];
    if (e.host == reinterpret_cast<uint64_t>(b->entry())) e = LookupEntry{0, 0, m_miss_stub};
  }
  if (auto it = m_blocks.find(b->guest_eip); it != m_blocks.end() && it->second == b) m_blocks.erase(it);
  forget_dispatch(b);
  for (uint8_t i = 0; i < b->page_count; ++i) {
    auto it = m_pages.find(b->pages[i]);
    if (it == m_pages.end()) continue;
    std::erase(it->second, b);
    if (it->second.empty()) m_pages.erase(it);
  }
}

void Translator::invalidate_code_page(uint32_t phys_page) {
  if (auto d = m_detached.find(phys_page); d != m_detached.end()) {
    std::vector<Block*> victims = std::move(d->second);
    m_detached.erase(d);
    for (Block* b : victims) drop_block(b);
  }
  auto it = m_pages.find(phys_page);
  if (it == m_pages.end()) return;
  std::vector<Block*> victims = std::move(it->second);
  m_pages.erase(it);
  for (Block* b : victims) {
    drop_block(b);
    ++m_stats.blocks_dropped;
  }
  ++m_stats.code_page_invalidations;
  // Stopped at a fault (typically the write that brought us here) inside a
  // block on this page: re-running that block's page as code would protect it
  // again before the write completes, so the faulting instruction runs once
  // from an uncached one-instruction block (QEMU does the same).
  if (Block* f = m_fault_block) {
    for (uint8_t i = 0; i < f->page_count; ++i)
      if (f->pages[i] == phys_page) m_step_eip = m_fault_eip;
  }
}

// Makes b unreachable from translated code and the dispatcher: chained
// jumps into it, its lookup slot, the EIP map. Its own links stay (their
// targets' incoming lists know them, so they are undone if a target goes).
void Translator::unreach(Block* b) {
  for (const IncomingLink& in : b->incoming) {
    Block* from = in.from;
    if (from->dead) continue;
    ExitSite& site = from->exits[in.exit_index];
    if (!site.linked) continue;
    point_site_at_exit(*from, site);
    site.linked = false;
    ++m_stats.chain_unlinks;
  }
  b->incoming.clear();
  if (b->host) {
    LookupEntry& e = m_ctx->lookup[b->guest_eip & 0xffff];
    if (e.host == reinterpret_cast<uint64_t>(b->entry())) e = LookupEntry{0, 0, m_miss_stub};
  }
  if (auto it = m_blocks.find(b->guest_eip); it != m_blocks.end() && it->second == b) m_blocks.erase(it);
  forget_dispatch(b);
}

void Translator::detach_code_page(uint32_t phys_page) {
  auto it = m_pages.find(phys_page);
  if (it == m_pages.end()) return;
  std::vector<Block*> blocks = std::move(it->second);
  m_pages.erase(it);
  std::vector<Block*>& kept = m_detached[phys_page];
  for (Block* b : blocks) {
    unreach(b);
    kept.push_back(b);
    ++m_stats.blocks_detached;
  }
  // The fault that may be pending inside one of them is the owner's to
  // retry: the dispatcher finds (or re-translates) the block again.
}

// A detached block for eip whose page(s) the guest maps to the same frames
// again: back in the maps, as it was (its bytes cannot have changed: a write
// to its page drops it). nullptr if there is none.
Block* Translator::reattach(uint32_t eip) {
  if (m_detached.empty()) return nullptr;
  // phys_page() does not tell a failed walk from a frame: a readable byte does.
  uint8_t probe;
  if (m_code->read(mmu::GuestVirt(eip), std::span<uint8_t>(&probe, 1)) != 1) return nullptr;
  const uint32_t page = m_code->phys_page(mmu::GuestVirt(eip));
  auto it = m_detached.find(page);
  if (it == m_detached.end()) return nullptr;
  std::vector<Block*>& list = it->second;
  for (size_t k = 0; k < list.size(); ++k) {
    Block* b = list[k];
    if (b->dead || b->guest_eip != eip || b->pages[0] != page) continue;
    if (b->page_count == 2) {
      const uint32_t last = b->guest_end - 1;
      if (m_code->read(mmu::GuestVirt(last), std::span<uint8_t>(&probe, 1)) != 1 ||
          m_code->phys_page(mmu::GuestVirt(last)) != b->pages[1])
        continue;
    }
    list.erase(list.begin() + ptrdiff_t(k));
    if (list.empty()) m_detached.erase(it);
    if (b->page_count == 2) {
      if (auto o = m_detached.find(b->pages[1]); o != m_detached.end()) {
        std::erase(o->second, b);
        if (o->second.empty()) m_detached.erase(o);
      }
    }
    m_blocks[eip] = b;
    for (uint8_t i = 0; i < b->page_count; ++i) {
      auto& pl = m_pages[b->pages[i]];
      if (std::find(pl.begin(), pl.end(), b) != pl.end()) continue;
      pl.push_back(b);
      if (pl.size() == 1 && m_on_code_page) m_on_code_page(b->pages[i]);
    }
    ++m_stats.blocks_reattached;
    return b;
  }
  return nullptr;
}

void Translator::try_link(uint64_t site_return, uint32_t target_eip, const runtime::CpuState& cpu) {
  const uint64_t generation = m_generation;
  const Block* target = block_at(target_eip, cpu);  // may translate, and flush a full TC
  if (!target || !target->host || generation != m_generation) return;
  Block* from = block_by_host(site_return - 1);
  if (!from || from->dead || from->ephemeral) return;
  const uint32_t offset = uint32_t(site_return - reinterpret_cast<uint64_t>(from->host)) - kExitSiteSize;
  for (uint32_t i = 0; i < from->exits.size(); ++i) {
    ExitSite& site = from->exits[i];
    if (site.host_offset != offset) continue;
    if (site.linked || site.target_eip != target_eip || site.reason != ExitReason::kBlockEnd) return;
    point_site_at(*from, site, *target);
    site.linked = true;
    const_cast<Block*>(target)->incoming.push_back({from, i});
    ++m_stats.chain_links;
    return;
  }
}

void Translator::flush() {
  drop_blocks();
  m_tc->flush();
  ++m_stats.invalidations;
}

Result<const Block*> Translator::translate(uint32_t eip, bool ephemeral, bool unchecked) {
  if (!ephemeral)
    if (Block* b = reattach(eip)) return b;
  BuildOptions options;
  options.max_insns = ephemeral ? 1 : m_config.max_block_insns;
  options.seg_base = m_seg_base;
  options.callouts = m_callouts.handler ? &m_callouts : nullptr;
  options.inline_rdtsc = m_ctx->tsc_offset != nullptr;
  options.checked_segs = unchecked ? 0 : m_seg_checked;
  options.seg_guards = m_config.check_segments && !unchecked;
  options.fpu_checked = m_fpu_checked && !unchecked;
  // Not in run_one(): the owner's checked step calls out for every load.
  options.fast_segment_loads = m_config.fast_segment_loads && !unchecked;
  options.user_mode = m_config.user_mode;
  options.superblocks = m_config.superblocks;
  DecodedBlock decoded = build_block(*m_code, eip, options);
  if (decoded.end == BlockEnd::kStop) {
    if (m_stats.stops[decoded.stop_reason]++ == 0)
      log::get("translator")->debug("block ends before {:#x}: {}", decoded.end_eip, decoded.stop_reason);
  }
  if (decoded.insns.empty() && decoded.end == BlockEnd::kStop && decoded.stop_reason == kCodeNotReadable) {
    // The guest's #PF handler will make it present (user code is demand
    // paged): answered, not remembered, and nothing allocated per miss.
    m_unreadable = Block{};
    m_unreadable.guest_eip = m_unreadable.guest_end = eip;
    m_unreadable.end = BlockEnd::kStop;
    m_unreadable.stop_reason = kCodeNotReadable;
    m_unreadable.ephemeral = true;
    return &m_unreadable;
  }
  auto block = std::make_unique<Block>();
  if (decoded.insns.empty() && decoded.end == BlockEnd::kStop) {
    // Nothing to run: remember why, so the dispatcher answers at once next time.
    block->guest_eip = block->guest_end = eip;
    block->end = BlockEnd::kStop;
    block->stop_reason = decoded.stop_reason;
  } else {
    EmitOptions emit;
    emit.exit_stub = m_exit_stub;
    // An unchecked step runs exactly one instruction: no links, no in-TC lookup.
    const bool chain = m_config.chain && !unchecked;
    emit.site_stub = chain ? m_site_stub : 0;
    emit.entry_check = true;
    emit.poll_page = reinterpret_cast<uint64_t>(m_tc->poll_page());
    emit.inline_lookup = chain;
    emit.count = m_config.count_in_tc;
    emit.lazy_fpu = true;
    for (int attempt = 0;; ++attempt) {
      auto bytes = emit_block(decoded, m_tc->cursor(), emit, *block);
      if (!bytes) return bytes.error();
      uint8_t* at = m_tc->allocate(bytes->size());
      if (!at) {
        if (attempt > 0) return make_error("translator: block larger than the translation cache");
        drop_blocks();
        m_tc->flush();
        ++m_stats.tc_flushes;
        continue;
      }
      std::memcpy(at, bytes->data(), bytes->size());
      block->host = at;
      block->host_size = uint32_t(bytes->size());
      break;
    }
    ++m_stats.blocks_translated;
    m_stats.guest_insns += decoded.insns.size();
    for (const BlockInsn& insn : decoded.insns) ++m_stats.insns_by_kind[int(insn.kind)];
    m_stats.guest_bytes += decoded.end_eip - decoded.eip;
    m_stats.tc_bytes += block->host_size;
  }
  Block* raw = block.get();
  raw->ephemeral = ephemeral;
  if (raw->host) {
    m_by_host.push_back(raw);  // ascending: the TC is bump-allocated
  }
  m_owned.push_back(std::move(block));
  if (ephemeral) return raw;
  m_blocks[eip] = raw;
  // Recorded only now: a full TC above drops every block, and with them
  // the segments they depended on.
  m_seg_used |= decoded.seg_used;
  m_seg_flat |= decoded.seg_flat;
  update_seg_pinned();
  for (int seg = 0; seg < runtime::kNumSegs; ++seg)
    if (((decoded.seg_used | decoded.seg_flat) >> seg) & 1) m_seg_blocks[seg].push_back(raw);
  // The guest physical pages its bytes came from (at most two: blocks stop at
  // a page boundary, only their last instruction may cross it).
  raw->pages[0] = m_code->phys_page(mmu::GuestVirt(eip));
  raw->page_count = 1;
  if (raw->guest_end > eip && ((raw->guest_end - 1) >> 12) != (eip >> 12)) {
    raw->pages[1] = m_code->phys_page(mmu::GuestVirt(raw->guest_end - 1));
    if (raw->pages[1] != raw->pages[0]) raw->page_count = 2;
  }
  for (uint8_t i = 0; i < raw->page_count; ++i) {
    auto& list = m_pages[raw->pages[i]];
    list.push_back(raw);
    if (list.size() == 1 && m_on_code_page) m_on_code_page(raw->pages[i]);
  }
  if (m_trace_sink && raw->host) m_trace_sink(trace_block(*raw));
  return raw;
}

void Translator::sync_segments(const runtime::CpuState& cpu) {
  // The same six segment caches as at the last sync: nothing below would
  // change (the result depends only on them, check_segments, m_seg_used and
  // m_seg_flat; with equal caches no base and no flatness differs, whatever
  // translations were added since). Called on every dispatch; the caches
  // change only with segment loads (callouts, fast loads).
  if (m_seg_synced && m_seg_snapshot == cpu.seg) return;
  m_seg_snapshot = cpu.seg;
  m_seg_synced = true;
  // Segment bases are constants in translated code: if one that some
  // translation used has changed, the translations that used it go. The
  // same for a segment whose flatness changed (translations stop before
  // accesses through non-flat segments and assume flat ones are flat).
  // Linux keeps its kernel bases for good, and re-encoded FS/GS accesses
  // read the base at run time; but a guest process's TLS segment (GS) has
  // its own base, and glibc reaches it through instructions that fold it
  // (`call *%gs:0x10`, push/pop of a GS operand), so user code sees a new
  // GS base at every switch to another process.
  const uint8_t checked = m_config.check_segments ? checked_segments(cpu) : 0;
  uint8_t stale = (checked ^ m_seg_checked) & m_seg_flat;
  for (int s = 0; s < runtime::kNumSegs; ++s)
    if ((m_seg_used & (1u << s)) && cpu.seg[s].base != m_seg_base[s]) stale |= uint8_t(1u << s);
  if (stale) drop_segment_blocks(stale);
  for (int s = 0; s < runtime::kNumSegs; ++s) m_seg_base[s] = cpu.seg[s].base;
  m_seg_checked = checked;
}

// Drops every block that folded the base of, or assumed the flatness of, a
// segment in `segs` (attached or detached), and only those.
void Translator::drop_segment_blocks(uint8_t segs) {
  ++m_stats.segment_changes;
  for (int s = 0; s < runtime::kNumSegs; ++s) {
    if (!((segs >> s) & 1)) continue;
    std::vector<Block*> victims = std::move(m_seg_blocks[s]);
    m_seg_blocks[s].clear();
    for (Block* b : victims) {
      if (b->dead) continue;  // dropped already, through another segment or its page
      drop_block(b);
      ++m_stats.segment_blocks_dropped;
    }
  }
  // No live block depends on these segments now. (A dropped block's entries
  // in the other segments' lists are dead and skipped.)
  m_seg_used &= uint8_t(~segs);
  m_seg_flat &= uint8_t(~segs);
  update_seg_pinned();
}

const Block* Translator::block_at(uint32_t eip, const runtime::CpuState& cpu) {
  sync_segments(cpu);
  DispatchSlot& d = m_dispatch[dispatch_slot(eip)];
  if (d.eip == eip && d.block) return d.block;
  if (auto it = m_blocks.find(eip); it != m_blocks.end()) {
    d = {eip, it->second};
    return it->second;
  }
  auto b = translate(eip);
  if (!b) {
    log::get("translator")->error("translating {:#x}: {}", eip, b.error().message);
    return nullptr;
  }
  return b.value();
}

RunResult Translator::run(runtime::CpuState& cpu, uint64_t max_blocks) {
  using runtime::Seg;
  RunResult result;
  // EIP is fetched as a linear address: CS must be based at 0.
  if (cpu.sreg(Seg::CS).base != 0) {
    result.stop = RunStop::kUnsupportedState;
    result.eip = cpu.eip;
    result.detail = "CS base not zero";
    return result;
  }
  const uint64_t host_gs = get_gs_base();
  if (host_gs != m_ctx->window_base) set_gs_base(m_ctx->window_base);
  m_ctx->cpu = &cpu;
  m_fault_block = nullptr;
  static thread_local const int this_tid = int(syscall(SYS_gettid));
  m_run_tid.store(this_tid, std::memory_order_release);
  runtime::set_translated_code_hook(&m_hook);

  result.stop = RunStop::kMaxBlocks;
  while (result.blocks_run < max_blocks) {
    if (m_ctx->exit_requested) {
      m_ctx->exit_requested = 0;
      set_poll_page(true);
      ++m_stats.exit_requests;
      result.stop = RunStop::kExitRequested;
      break;
    }
    if (m_cut_count) heal_cut();
    const Block* b = nullptr;
    if (m_unchecked_step) {
      sync_segments(cpu);
      auto r = translate(cpu.eip, /*ephemeral=*/true, /*unchecked=*/true);
      if (r) b = r.value();
    } else if (m_step_eip && *m_step_eip == cpu.eip) {
      m_step_eip.reset();
      // Translations use m_seg_base and m_seg_checked: current, since a
      // fast segment load may have changed an unpinned segment.
      sync_segments(cpu);
      auto r = translate(cpu.eip, /*ephemeral=*/true);
      if (r) b = r.value();
      ++m_stats.uncached_steps;
    } else {
      m_step_eip.reset();
      b = block_at(cpu.eip, cpu);
    }
    if (!b) {
      result.stop = RunStop::kInternalError;
      result.detail = "translation failed";
      break;
    }
    if (!b->host) {
      result.stop = RunStop::kNeedsInterpretation;
      result.detail = b->stop_reason;
      break;
    }
    for (int seg = 0; seg < runtime::kNumSegs; ++seg)
      m_ctx->seg_checked[seg] = m_unchecked_step ? 0 : (m_seg_checked >> seg) & 1;
    m_ctx->exit_reason = uint32_t(ExitReason::kNone);
    m_ctx->last_exit = 0;
    m_enter(m_ctx.get(), b->entry());
    ++result.blocks_run;
    cpu.eip = m_ctx->next_eip;
    const ExitReason reason = ExitReason(m_ctx->exit_reason);
    if (reason == ExitReason::kNeedsInterpretation) {
      // The block that stopped may have been reached through a link; the
      // (cached, empty) block at the stop EIP knows why.
      const Block* stop = block_at(cpu.eip, cpu);
      result.stop = RunStop::kNeedsInterpretation;
      result.detail = stop ? stop->stop_reason : std::string();
      break;
    }
    if (reason == ExitReason::kNeedsChecks) {
      result.stop = RunStop::kNeedsInterpretation;
      result.detail = kNeedsChecksDetail;
      break;
    }
    if (reason == ExitReason::kCalloutStop) {
      result.stop = RunStop::kCallout;
      result.detail = ZydisMnemonicGetString(m_callouts.last_stop);
      break;
    }
    if (reason == ExitReason::kIrqWindow) {
      result.stop = RunStop::kIrqWindow;
      break;
    }
    if (reason == ExitReason::kExitRequested) {
      --result.blocks_run;  // nothing of it ran; the loop head reports it
      continue;
    }
    if (reason == ExitReason::kGuestFault) {
      result.stop = RunStop::kGuestFault;
      result.fault.vector = uint8_t(m_ctx->fault_vector);
      result.fault.error_code = m_ctx->fault_error;
      result.fault.has_error_code = m_ctx->fault_vector == 13 || m_ctx->fault_vector == 14;
      result.fault.linear_address = m_ctx->fault_address;
      result.fault.access = FaultAccess(m_ctx->fault_access);
      m_fault_eip = cpu.eip;
      ++m_stats.guest_faults;
      break;
    }
    if (!m_config.chain) continue;
    if (reason == ExitReason::kBlockEnd && m_ctx->last_exit != 0) {
      try_link(m_ctx->last_exit, cpu.eip, cpu);
    } else if (reason == ExitReason::kIndirect) {
      ++m_stats.lookup_misses;
      if (const Block* t = block_at(cpu.eip, cpu); t && t->host) fill_lookup(cpu.eip, *t);
    }
  }
  runtime::set_translated_code_hook(nullptr);
  m_run_tid.store(0, std::memory_order_release);
  if (m_cut_count) heal_cut();  // no tick cuts any more: leave the links whole
  m_stats.blocks_run += result.blocks_run;
  result.eip = cpu.eip;
  m_ctx->cpu = nullptr;
  if (host_gs != m_ctx->window_base) set_gs_base(host_gs);
  return result;
}

RunResult Translator::run_one(runtime::CpuState& cpu) {
  m_unchecked_step = true;
  RunResult r = run(cpu, 1);
  m_unchecked_step = false;
  ++m_stats.unchecked_steps;
  return r;
}

// Runs inside the signal handler (runtime/host_signals.cpp): no allocation,
// no locks, no exceptions; only reads of structures that do not change while
// translated code runs (m_by_host, the blocks' boundaries).
bool Translator::on_tc_fault(void* opaque, int signo, siginfo_t* si, ucontext_t* uc) {
  auto* t = static_cast<Translator*>(opaque);
  greg_t* g = uc->uc_mcontext.gregs;
  Block* b = t->block_by_host(uint64_t(g[REG_RIP]));
  if (!b) return false;  // a stub: a bt86 bug, not a guest fault
  const uint32_t offset = uint32_t(uint64_t(g[REG_RIP]) - reinterpret_cast<uint64_t>(b->host));
  const InsnBoundary* at = nullptr;
  for (const InsnBoundary& bd : b->boundaries) {
    if (bd.host_offset > offset) break;
    at = &bd;
  }
  TranslatorContext& ctx = *t->m_ctx;
  const uint64_t poll = reinterpret_cast<uint64_t>(t->m_tc->poll_page());
  if (signo == SIGSEGV && reinterpret_cast<uint64_t>(si->si_addr) - poll < 4096) {
    // The exit-request poll at a block entry: nothing of the block has run.
    if (at) return false;
    ctx.next_eip = b->guest_eip;
    ctx.exit_reason = uint32_t(ExitReason::kExitRequested);
    g[REG_RIP] = greg_t(t->m_exit_stub);
    return true;
  }
  if (!at) return false;  // the entry check touches no guest memory
  const uint64_t trapno = uint64_t(g[REG_TRAPNO]), err = uint64_t(g[REG_ERR]);
  const uint64_t addr = reinterpret_cast<uint64_t>(si->si_addr);
  uint32_t vector = 13, error = 0, linear = 0, access = 0;
  switch (signo) {
    case SIGSEGV:
    case SIGBUS:
      if (trapno == 14 || signo == SIGBUS) {
        // SDM vol. 3 §4.7: P (bit 0), W/R (bit 1), I/D (bit 4). The host U
        // bit is always set (the host runs us in user mode); the guest is at
        // CPL 0. Every guest access is GS-relative into the window.
        if (addr - ctx.window_base >= (uint64_t(1) << 32)) {
          // Off the window: a string instruction whose 64-bit pointers
          // (expand_misc.cpp) walked past either end, into the guard areas
          // the owner reserves. The guest's 32-bit ESI/EDI would wrap
          // instead; it gets #GP(0), not a crash of bt86 (README "Known gaps").
          break;
        }
        vector = 14;
        error = uint32_t(err & 0x13);
        if (signo == SIGBUS) error |= 1;
        linear = uint32_t(addr - ctx.window_base);
        access = (err & 0x10) ? 2 : (err & 2) ? 1 : 0;
      } else if (trapno == 17) {
        vector = 17;
      }  // else #GP(0): misaligned SSE operand and the like
      break;
    case SIGFPE:
      vector = trapno == 16 ? 16 : trapno == 19 ? 19 : 0;
      break;
    case SIGILL:
      vector = 6;
      break;
    default:
      return false;
  }
  if (at->restore_from_r13) {
    // x86 register number -> ucontext slot.
    static constexpr int kSlot[8] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_R12, REG_RBP, REG_RSI, REG_RDI};
    g[kSlot[at->restore_from_r13 - 1]] = g[REG_R13];
  }
  // A string instruction ran on ESI/EDI plus segment bases (expand_misc.cpp):
  // the progress it made stays, the bias goes.
  if (at->esi_bias) g[REG_RSI] = greg_t(uint32_t(uint64_t(g[REG_RSI]) - at->esi_bias));
  if (at->edi_bias) g[REG_RDI] = greg_t(uint32_t(uint64_t(g[REG_RDI]) - at->edi_bias));
  ctx.fault_vector = vector;
  ctx.fault_error = error;
  ctx.fault_address = linear;
  ctx.fault_access = access;
  ctx.next_eip = at->guest_eip;
  ctx.exit_reason = uint32_t(ExitReason::kGuestFault);
  t->m_fault_block = b;
  // The exit stub stores the interrupted registers and flags: the state
  // before the faulting instruction (README "Precise faults").
  g[REG_RIP] = greg_t(t->m_exit_stub);
  return true;
}

namespace {

// One line per host instruction, indented under the guest instruction.
void append_host(std::string& out, const uint8_t* code, uint32_t begin, uint32_t end) {
  const uint64_t base = reinterpret_cast<uint64_t>(code);
  ZydisDisassembledInstruction d;
  for (uint32_t off = begin; off < end;) {
    if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, base + off, code + off, end - off, &d))) {
      out += fmt::format("      {:012x}  (bad)\n", base + off);
      return;
    }
    out += fmt::format("      {:012x}  {}\n", base + off, d.text);
    off += d.info.length;
  }
}

}  // namespace

std::string Translator::trace_block(const Block& b) const {
  std::string out = fmt::format("block {:08x}..{:08x}: {} guest insns ({} bytes) -> {} host bytes at {:#x}{}{}\n",
                                b.guest_eip, b.guest_end, b.guest_insns, b.guest_end - b.guest_eip, b.host_size,
                                reinterpret_cast<uint64_t>(b.host), b.dead ? " [dropped]" : "",
                                b.ephemeral ? " [uncached]" : "");
  if (!b.host) return out + "  not translated: " + b.stop_reason + "\n";
  uint32_t first = b.boundaries.empty() ? b.host_size : b.boundaries[0].host_offset;
  if (first > 0) {
    out += fmt::format("  (exit-request leaving path, then the entry at +{:#x}: exit-request check)\n", b.entry_offset);
    append_host(out, b.host, 0, first);
  }
  for (size_t i = 0; i < b.boundaries.size(); ++i) {
    const InsnBoundary& bd = b.boundaries[i];
    const uint32_t end = i + 1 < b.boundaries.size() ? b.boundaries[i + 1].host_offset : b.host_size;
    const bool final_exit = bd.guest_eip == b.guest_end && i + 1 == b.boundaries.size() && b.end != BlockEnd::kBranch;
    if (final_exit) {
      out += fmt::format("  {:08x}  (exit: {})\n", bd.guest_eip,
                         b.end == BlockEnd::kStop ? "needs interpretation: " + b.stop_reason : std::string("fall through"));
    } else {
      uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH] = {};
      const size_t n = m_code->read(mmu::GuestVirt(bd.guest_eip), bytes);
      GuestInsn g;
      const std::string text = decode32(std::span<const uint8_t>(bytes, n), bd.guest_eip, g) ? format_insn(g)
                                                                                               : std::string("(bytes changed)");
      out += fmt::format("  {:08x}  {}\n", bd.guest_eip, text);
    }
    append_host(out, b.host, bd.host_offset, end);
  }
  for (const ExitSite& e : b.exits) {
    if (e.reason == ExitReason::kIndirect)
      out += fmt::format("  exit +{:#x}: indirect (in-TC lookup)\n", e.host_offset);
    else
      out += fmt::format("  exit +{:#x}: {} -> {:08x}{}\n", e.host_offset, exit_reason_name(e.reason), e.target_eip,
                         e.linked ? " [linked]" : "");
  }
  return out;
}

std::string Translator::format_stats() const {
  const TranslatorStats& s = m_stats;
  std::string out = "translator:\n";
  out += fmt::format("  blocks translated   {}\n", s.blocks_translated);
  out += fmt::format("  guest insns in      {}\n", s.guest_insns);
  out += fmt::format("  guest bytes in      {}\n", s.guest_bytes);
  out += fmt::format("  TC bytes out        {} ({:.2f} per guest byte; {} of {} in use)\n", s.tc_bytes,
                     s.guest_bytes ? double(s.tc_bytes) / double(s.guest_bytes) : 0.0, m_tc->used(), m_tc->capacity());
  out += fmt::format("  dispatcher entries  {}\n", s.blocks_run);
  out += fmt::format("  guest FPU loads     {} (lazy: only runs that reached an x87/SSE instruction)\n",
                     m_ctx->fpu_loads);
  out += fmt::format("  chain links made    {} (unlinked {})\n", s.chain_links, s.chain_unlinks);
  if (m_config.count_in_tc) {
    const uint64_t entries = m_ctx->block_entries, hits = m_ctx->lookup_hits;
    const uint64_t chained = entries >= s.blocks_run + hits ? entries - s.blocks_run - hits : 0;
    out += fmt::format("  block entries       {} (chained {}, lookup {}, dispatcher {})\n", entries, chained, hits,
                       s.blocks_run);
    out += fmt::format("  lookup hits         {}\n", hits);
  } else {
    out += "  chain links used    (not counted: TranslatorConfig::count_in_tc is off)\n";
    out += "  lookup hits         (not counted: TranslatorConfig::count_in_tc is off)\n";
  }
  out += fmt::format("  lookup misses       {} (slots filled {})\n", s.lookup_misses, s.lookup_fills);
  out += fmt::format("  exit requests       {} (links cut for them and put back: {})\n", s.exit_requests, s.links_cut);
  out += fmt::format("  guest faults        {}\n", s.guest_faults);
  out += fmt::format("  TC flushes          {} (full) + {} (flush())\n", s.tc_flushes, s.invalidations);
  out += fmt::format("  code page invalidations {} ({} blocks dropped, {} uncached steps)\n",
                     s.code_page_invalidations, s.blocks_dropped, s.uncached_steps);
  out += fmt::format("  blocks detached     {} (page remapped; {} found again instead of translated)\n",
                     s.blocks_detached, s.blocks_reattached);
  out += fmt::format("  segment changes     {} ({} blocks that folded the base or assumed flatness dropped)\n",
                     s.segment_changes, s.segment_blocks_dropped);
  out += fmt::format("  checked steps       {} (one instruction at a time for the owner: run_one)\n",
                     s.unchecked_steps);
  if (m_config.fast_segment_loads)
    out += fmt::format("  segment loads       {} inline, {} missed (to the callout)\n", m_ctx->seg_fast_loads,
                       m_ctx->seg_slow_loads);
  if (m_config.fast_segment_loads)
    out += fmt::format("  verw                {} inline, {} missed (to the callout)\n", m_ctx->verw_fast,
                       m_ctx->verw_slow);
  out += "  insns by kind:";
  for (int k = 0; k < kInsnKindCount; ++k)
    if (s.insns_by_kind[k]) out += fmt::format(" {}={}", insn_kind_name(InsnKind(k)), s.insns_by_kind[k]);
  out += "\n";
  // Callouts by instruction (callout.h counts them by mnemonic).
  if (const std::string callouts = m_callouts.format_counts(); !callouts.empty())
    out += "  callouts by insn:   " + callouts + "\n";
  if (!s.stops.empty()) {
    out += "  blocks ended before:\n";
    for (const auto& [why, n] : s.stops) out += fmt::format("    {:6}  {}\n", n, why);
  }
  return out;
}

}  // namespace bt86::translator
