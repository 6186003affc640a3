// Processes, the round-robin scheduler, system calls and trap dispatch.
//
// Every entry into the kernel goes through isr_dispatch() with a TrapFrame on the
// current kernel stack. A frame from ring 3 always sits at the top of the
// running process's own kernel stack (TSS.ESP0), so a process is suspended
// simply by remembering that frame; isr_dispatch() returns the frame to resume
// (another process's, or the idle loop's), and guestlib's entry.S pops it and irets.
// The kernel itself never blocks and runs with IF = 0, so a nested trap
// (a #PF while write() reads a not-yet-present user page) never switches.
#include <stdarg.h>

#include "fmt.h"
#include "kernel.h"

typedef enum { kUnused, kReady, kRunning, kSleeping, kDone } ProcState;

typedef struct {
  uint32_t pid;
  char name[12];
  ProcState state;
  AddressSpace as;
  TrapFrame* frame;  // saved user context while not running
  uint32_t wake_tick;
  int32_t exit_status;
  const char* killed;  // why the kernel killed it, or 0
  uint32_t faults, syscalls, user_ticks;
  uint8_t kstack[4096] __attribute__((aligned(16)));
} Proc;

static Proc g_procs[kMaxPrograms];
static uint32_t g_nprocs;
static Proc* g_current;  // 0 while the idle loop runs
static uint32_t g_last;  // index of the process that ran last (round-robin cursor)
static TrapFrame* g_idle_frame;
// The idle loop's stack. Its first frame is a ring 0 frame: iret pops no
// SS:ESP, so the stack top after it is &frame.user_esp, and every later
// interrupt of the idle loop lands its frame at the same place.
static struct {
  uint8_t stack[1024];
  TrapFrame frame;
} g_idle __attribute__((aligned(16)));

static uint32_t g_ticks, g_user_ticks, g_idle_ticks, g_slice;
static uint32_t g_preemptions, g_switches, g_stray_irqs;

static void idle_loop(void) {
  // sti's one-instruction interrupt shadow (SDM vol. 2, STI) means the
  // wake-up interrupt cannot slip in between sti and hlt.
  for (;;) __asm__ volatile("sti; hlt");
}

void proc_init(void) {
  const UserHeader* h = mm_user_header();
  for (uint32_t i = 0; i < h->count; ++i) {
    Proc* p = &g_procs[i];
    p->pid = i + 1;
    for (int c = 0; c < 11 && h->programs[i].name[c]; ++c) p->name[c] = h->programs[i].name[c];
    if (mm_create(&p->as)) panic("out of memory creating process %u", p->pid);
    // The first "return to user mode": iret to the image's crt entry with
    // EAX = main and EBX = the program's name, both user addresses.
    TrapFrame* f = (TrapFrame*)(p->kstack + sizeof p->kstack) - 1;
    f->gs = f->fs = f->es = f->ds = kUserDs;
    f->cs = kUserCs;
    f->eip = h->start;
    f->eflags = 0x202;  // IF
    f->user_esp = kUserStackTop;
    f->user_ss = kUserDs;
    f->eax = h->programs[i].main;
    f->ebx = kUserBase + (uint32_t)((const char*)h->programs[i].name - (const char*)h);
    p->frame = f;
    p->state = kReady;
  }
  g_nprocs = h->count;
  g_last = g_nprocs - 1;

  TrapFrame* f = &g_idle.frame;
  f->gs = f->fs = f->es = f->ds = kKernelDs;
  f->cs = kKernelCs;
  f->eip = (uint32_t)idle_loop;
  f->eflags = 0x202;
  g_idle_frame = f;
}

static void finish(void) __attribute__((noreturn));
static void finish(void) {
  kprintf("minios: all %u processes finished\n", g_nprocs);
  kprintf("minios: pid name        result          faults syscalls\n");
  for (uint32_t i = 0; i < g_nprocs; ++i) {
    Proc* p = &g_procs[i];
    char result[16];
    if (p->killed)
      ksnprintf(result, sizeof result, "killed (%s)", p->killed);
    else
      ksnprintf(result, sizeof result, "exit %d", p->exit_status);
    kprintf("minios: %3u %-11s %-15s %6u %8u\n", p->pid, p->name, result, p->faults, p->syscalls);
  }
  if (mm_frames_in_use() == 0)
    kprintf("minios: all page frames returned\n");
  else
    kprintf("minios: LEAK: %u page frames still in use\n", mm_frames_in_use());
  // Counts that vary from run to run (and frame totals that vary with the
  // kernel's size) go on this one line, which the golden test checks apart.
  kprintf("minios: timer: %u ticks, %u in user mode, %u idle, %u preemptions, %u switches; frames: %u, peak %u in use\n",
          g_ticks, g_user_ticks, g_idle_ticks, g_preemptions, g_switches, mm_frames_total(), mm_frames_peak());
  if (g_stray_irqs) kprintf("minios: %u stray interrupts\n", g_stray_irqs);
  kprintf("minios: halting\n");
  debug_exit(0);  // exit status 1 under bt86 and QEMU's isa-debug-exit
}

static TrapFrame* switch_to(Proc* p) {
  if (p != g_current) {
    ++g_switches;
    g_slice = 0;
    write_cr3(p->as.pd);
  }
  g_current = p;
  g_last = (uint32_t)(p - g_procs);
  p->state = kRunning;
  tss_set_kernel_stack((uint32_t)(p->kstack + sizeof p->kstack));
  return p->frame;
}

// Round robin: the first ready process after the one that ran last.
static TrapFrame* schedule(void) {
  for (uint32_t i = 1; i <= g_nprocs; ++i) {
    Proc* p = &g_procs[(g_last + i) % g_nprocs];
    if (p->state == kReady) return switch_to(p);
  }
  int alive = 0;
  for (uint32_t i = 0; i < g_nprocs; ++i) alive |= g_procs[i].state != kDone;
  if (!alive) finish();
  if (g_current) write_cr3(mm_kernel_pd());
  g_current = 0;
  return g_idle_frame;
}

static TrapFrame* proc_exit(Proc* p, int32_t status) {
  p->state = kDone;
  p->exit_status = status;
  // Leave the dying address space before freeing its page directory.
  write_cr3(mm_kernel_pd());
  mm_destroy(&p->as);
  g_current = 0;
  return schedule();
}

// Prints "[pid name] killed: <message>" and ends the process. `tag` is the
// short cause shown in the summary (#PF, #GP, ...).
static TrapFrame* kill(Proc* p, const char* tag, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static TrapFrame* kill(Proc* p, const char* tag, const char* fmt, ...) {
  char msg[160];
  va_list ap;
  va_start(ap, fmt);
  fmt_vformat(msg, sizeof msg, fmt, ap);
  va_end(ap);
  kprintf("[%u %s] killed: %s\n", p->pid, p->name, msg);
  p->killed = tag;
  return proc_exit(p, -1);
}

static TrapFrame* on_timer(TrapFrame* f) {
  pic_eoi(0);
  ++g_ticks;
  if (from_user(f)) {
    ++g_user_ticks;
    ++g_current->user_ticks;
  } else if (!g_current) {
    ++g_idle_ticks;
  }
  for (uint32_t i = 0; i < g_nprocs; ++i)
    if (g_procs[i].state == kSleeping && (int32_t)(g_ticks - g_procs[i].wake_tick) >= 0) g_procs[i].state = kReady;
  if (!g_current) return schedule();
  if (++g_slice < kQuantumTicks) return f;
  g_slice = 0;
  for (uint32_t i = 0; i < g_nprocs; ++i) {
    if (g_procs[i].state == kReady) {
      // Quantum used up and someone else can run: preempt.
      ++g_preemptions;
      g_current->state = kReady;
      return schedule();
    }
  }
  return f;
}

static TrapFrame* on_syscall(TrapFrame* f) {
  Proc* p = g_current;
  ++p->syscalls;
  switch (f->eax) {
    case kSysExit:
      return proc_exit(p, (int32_t)f->ebx);
    case kSysWrite:
      // The buffer must lie in one user region; pages not touched yet are
      // brought in by the nested #PF while serial_write() reads them.
      if (f->ecx > 4096 || !mm_user_range_ok(f->ebx, f->ecx)) {
        f->eax = (uint32_t)-kEFault;
      } else {
        serial_write((const char*)f->ebx, f->ecx);
        f->eax = f->ecx;
      }
      return f;
    case kSysGetpid:
      f->eax = p->pid;
      return f;
    case kSysYield:
      f->eax = 0;
      p->state = kReady;
      return schedule();
    case kSysSleep:
      f->eax = 0;
      p->state = kSleeping;
      p->wake_tick = g_ticks + (f->ebx ? f->ebx : 1);
      return schedule();
    default:
      f->eax = (uint32_t)-kENoSys;
      return f;
  }
}

static TrapFrame* on_page_fault(TrapFrame* f) {
  uint32_t addr = read_cr2();
  Proc* p = g_current;
  if (p && (from_user(f) || addr >= kUserBase)) {
    ++p->faults;
    const char* why = mm_demand_fault(&p->as, addr, f->err);
    if (!why) return f;
    if (from_user(f))
      return kill(p, "#PF", "page fault on %s 0x%08x: %s", (f->err & 2) ? "write to" : "read of", addr, why);
  }
  panic("page fault in the kernel at 0x%08x, eip 0x%08x, error 0x%x", addr, f->eip, f->err);
}

// SDM vol. 3, table 6-1.
static const char* const kExceptionNames[32] = {
    "divide error",         "debug exception",   "NMI",
    "breakpoint",           "overflow",          "BOUND range exceeded",
    "invalid opcode",       "device not available", "double fault",
    "coprocessor overrun",  "invalid TSS",       "segment not present",
    "stack fault",          "general protection", "page fault",
    "reserved",             "x87 FPU error",     "alignment check",
    "machine check",        "SIMD exception",    "virtualization exception",
    "control protection",   "reserved",          "reserved",
    "reserved",             "reserved",          "reserved",
    "reserved",             "reserved",          "reserved",
    "reserved",             "reserved"};
static const char* const kExceptionTags[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#9",  "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
    "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23", "#24", "#25", "#26", "#27", "#28", "#29", "#30", "#31"};

TrapFrame* isr_dispatch(TrapFrame* f) {
  if (from_user(f))
    g_current->frame = f;
  else if (!g_current)
    g_idle_frame = f;

  uint32_t v = f->vector;
  if (v == kSyscallVector) return on_syscall(f);
  if (v == kIrqBase) return on_timer(f);
  if (v > kIrqBase && v < kIrqBase + 16) {
    // Everything but IRQ 0 is masked; IRQ 7 / 15 can still arrive as
    // spurious requests (8259A datasheet), which take no EOI.
    ++g_stray_irqs;
    unsigned irq = v - kIrqBase;
    if (irq != 7 && irq != 15) pic_eoi(irq);
    return f;
  }
  if (v == 14) return on_page_fault(f);
  if (v < 32 && from_user(f)) return kill(g_current, kExceptionTags[v], "%s, error code 0x%x", kExceptionNames[v], f->err);
  panic("%s in the kernel, eip 0x%08x, error 0x%x", v < 32 ? kExceptionNames[v] : "unknown vector", f->eip, f->err);
}

void proc_start(void) { isr_resume(schedule()); }
