// nanobench: the nanobenchmarks of Adams and Agesen, "A Comparison of
// Software and Hardware Techniques for x86 Virtualization" (ASPLOS 2006,
// section 6.2), as a Multiboot guest. Each one times a single kind of
// event that a VMM may have to intervene in:
//
//   syscall  int 0x80 from ring 3 to a null handler and iret back
//   in       inb from port 0x80 in ring 0
//   callret  call and ret in ring 0 (a binary translator must rewrite both)
//   pgfault  a true #PF in ring 0: the handler maps the page and unmaps
//            the other of a pair, so every touch faults
//   divzero  #DE in ring 0: the handler skips the div
//   ptemod   a write to a live PTE followed by invlpg, in ring 0
//
// Time is rdtsc, calibrated against the 8254's counter 2 (gated through port
// 0x61, as Linux's pit_calibrate_tsc does), so results are in ns whatever
// the TSC rate. Results go to COM1 as "nanobench: <name> <ns> ns ..."; then
// the guest writes 0 to the debug-exit port (exit status 1).
#include <stdint.h>

#include "guestlib.h"

#define kPageA 0x00400000u  // guest.S uses the same two pages
#define kPageB 0x00401000u
#define kPtemodPage 0x00402000u
#define kPitHz 1193182u

// ---- guest.S ----------------------------------------------------------------
void nb_de_entry(void);
void nb_pf_entry(void);
void nb_syscall_entry(void);
void nb_leave_user_entry(void);
void nb_run_user(void (*fn)(void), uint32_t stack_top);
void nb_user_syscall(void);
void nb_loop_callret(uint32_t n);
void nb_loop_in(uint32_t n);
void nb_loop_divzero(uint32_t n);
void nb_loop_pgfault(uint32_t n);
void nb_loop_ptemod(uint32_t n, volatile uint32_t* pte, uint32_t page);

// Shared with guest.S.
volatile uint32_t* nb_pte_a;
volatile uint32_t* nb_pte_b;
uint32_t nb_saved_esp;
volatile uint32_t nb_user_count;
volatile uint64_t nb_user_cycles;

// ---- output: guestlib's serial_printf (fmt.h) --------------------------------
#define print serial_printf

// Every vector without a benchmark handler has guestlib's stub: report and stop.
struct regs* isr_dispatch(struct regs* f) {
  print("nanobench: FAIL: unexpected exception %u, error 0x%x, eip 0x%x, cs 0x%x, cr2 0x%x\n", f->vector, f->err,
        f->eip, f->cs, read_cr2());
  debug_exit(0x7f);
}

// ---- descriptors, paging -----------------------------------------------------
static uint64_t g_gdt[6] __attribute__((aligned(8)));
static struct tss g_tss __attribute__((aligned(16)));
static uint64_t g_idt[256] __attribute__((aligned(8)));
static uint32_t g_pd[1024] __attribute__((aligned(4096)));
static uint32_t g_pt[2][1024] __attribute__((aligned(4096)));
static uint8_t g_trap_stack[4096] __attribute__((aligned(16)));
static uint8_t g_user_stack[4096] __attribute__((aligned(16)));

static void setup_cpu(void) {
  gdt_load_flat(g_gdt, 6, &g_tss, (uint32_t)(g_trap_stack + sizeof g_trap_stack));
  for (unsigned v = 1; v < 32; ++v) g_idt[v] = make_gate(isr_stub(v), 0, 0);
  g_idt[0] = make_gate((uint32_t)nb_de_entry, 0, 0);
  g_idt[14] = make_gate((uint32_t)nb_pf_entry, 0, 0);
  g_idt[0x80] = make_gate((uint32_t)nb_syscall_entry, 3, 0);
  g_idt[0x81] = make_gate((uint32_t)nb_leave_user_entry, 3, 0);
  idt_load(g_idt, 256);
}

// [0, 8 MiB) identity-mapped, user-accessible (the syscall loop runs in
// ring 3 from the kernel's own pages), page 0 not present.
static void setup_paging(void) {
  for (uint32_t t = 0; t < 2; ++t) {
    for (uint32_t i = 0; i < 1024; ++i) {
      uint32_t a = (t * 1024 + i) * 4096;
      g_pt[t][i] = a ? (a | 7) : 0;
    }
    g_pd[t] = (uint32_t)g_pt[t] | 7;
  }
  nb_pte_a = &g_pt[kPageA >> 22][(kPageA >> 12) & 1023];
  nb_pte_b = &g_pt[kPageB >> 22][(kPageB >> 12) & 1023];
  *nb_pte_a &= ~1u;  // the first touch of A faults
  __asm__ volatile("mov %0, %%cr3\n mov %%cr0, %%eax\n or $0x80010000, %%eax\n mov %%eax, %%cr0" ::"r"(g_pd)
                   : "eax", "memory");
}

// ---- timing -------------------------------------------------------------------
static uint64_t g_tsc_khz;
static uint64_t g_calibration_ppm;  // bracket width of the chosen attempt

// 8254 datasheet: counter 2 in mode 0 starts counting once the MSB of the
// count is written (GATE 2, port 0x61 bit 0, high) and raises OUT 2 (port
// 0x61 bit 5) at zero. Both ends are bracketed by TSC reads. An emulated or
// virtualized vCPU can lose the host CPU for milliseconds in the middle of
// a bracket, so 5 ms attempts are repeated until one has brackets tighter
// than 0.05% of its length (at most 60 tries), and the tightest one wins.
static int calibrate(void) {
  const uint32_t count = 5966;  // 5 ms at 1.193182 MHz
  uint64_t best_width = ~0ull, best_cycles = 0;
  for (int attempt = 0; attempt < 60 && (best_cycles == 0 || best_width * 2000 > best_cycles); ++attempt) {
    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));  // gate on, speaker off
    outb(0x43, 0xB0);                                    // counter 2, LSB then MSB, mode 0
    outb(0x42, (uint8_t)count);
    uint64_t start_lo = rdtsc();
    outb(0x42, (uint8_t)(count >> 8));
    uint64_t start_hi = rdtsc();
    uint64_t prev_before = start_lo, before, after;
    uint32_t polls = 0;
    for (;;) {
      before = rdtsc();
      uint8_t v = inb(0x61);
      after = rdtsc();
      if (v & 0x20) break;
      if (++polls > 100000000u) return -1;
      prev_before = before;
    }
    // The edge came after the last read that saw OUT 2 low (issued after
    // prev_before) and before the read that saw it high returned (after).
    uint64_t width = (start_hi - start_lo) + (after - prev_before);
    uint64_t cycles = (prev_before + after) / 2 - (start_lo + start_hi) / 2;
    if (width < best_width) best_width = width, best_cycles = cycles;
  }
  g_tsc_khz = best_cycles * kPitHz / ((uint64_t)count * 1000u);
  g_calibration_ppm = best_cycles ? best_width * 1000000 / best_cycles : 0;
  return g_tsc_khz ? 0 : -1;
}

typedef void (*Loop)(uint32_t n);

static void loop_ptemod(uint32_t n) {
  volatile uint32_t* pte = &g_pt[kPtemodPage >> 22][(kPtemodPage >> 12) & 1023];
  nb_loop_ptemod(n, pte, kPtemodPage);
}

static void loop_syscall(uint32_t n) {
  nb_user_count = n;
  nb_run_user(nb_user_syscall, (uint32_t)(g_user_stack + sizeof g_user_stack) - 4);
}

static uint64_t time_loop(Loop loop, int from_user, uint32_t n) {
  if (from_user) {
    loop(n);
    return nb_user_cycles;
  }
  uint64_t t0 = rdtsc();
  loop(n);
  return rdtsc() - t0;
}

// Rows named on the Multiboot command line (e.g. "pgfault divzero"), or
// all of them when it names none: a profiler can then look at one path.
static const char* g_cmdline;

static int selected(const char* name) {
  static const char* const kRows[] = {"syscall", "in", "callret", "pgfault", "divzero", "ptemod"};
  int any = 0, match = 0;
  if (!g_cmdline) return 1;
  for (const char* p = g_cmdline; *p; ++p) {
    if (p != g_cmdline && p[-1] != ' ') continue;
    for (unsigned r = 0; r < sizeof kRows / sizeof kRows[0]; ++r) {
      unsigned i = 0;
      while (kRows[r][i] && p[i] == kRows[r][i]) ++i;
      if (kRows[r][i] || (p[i] && p[i] != ' ')) continue;
      any = 1;
      const char* n = name;
      unsigned j = 0;
      while (n[j] && n[j] == kRows[r][j]) ++j;
      if (!n[j] && !kRows[r][j]) match = 1;
    }
  }
  return !any || match;
}

static void run(const char* name, Loop loop, int from_user) {
  if (!selected(name)) return;
  // Grow n until one run lasts 20 ms, then keep the best of five runs (the
  // vCPU may lose the host CPU during any one of them).
  const uint64_t target = g_tsc_khz * 20;
  uint32_t n = 256;
  uint64_t cycles = time_loop(loop, from_user, n);
  while (cycles < target && n < (1u << 26)) {
    n *= 4;
    cycles = time_loop(loop, from_user, n);
  }
  for (int i = 0; i < 4; ++i) {
    uint64_t c = time_loop(loop, from_user, n);
    if (c < cycles) cycles = c;
  }
  uint64_t milli_cycles_per_op = cycles * 1000 / n;
  uint64_t ps = milli_cycles_per_op * 1000000 / g_tsc_khz;
  uint64_t tenth_ns = (ps + 50) / 100;
  print("nanobench: %s %llu.%u ns %llu cycles n=%u\n", name, tenth_ns / 10, (uint32_t)(tenth_ns % 10),
        (milli_cycles_per_op + 500) / 1000, n);
}

void guest_main(uint32_t magic, const void* mbi) {
  // Multiboot information: flags bit 2 says cmdline (offset 16) is valid.
  const uint32_t* info = (const uint32_t*)mbi;
  if (magic == MULTIBOOT_BOOTLOADER_MAGIC && (info[0] & 4)) g_cmdline = (const char*)info[4];
  serial_init();
  print("nanobench: start\n");
  if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
    print("nanobench: FAIL: not started by a Multiboot loader\n");
    debug_exit(0x7f);
  }
  setup_cpu();
  setup_paging();
  if (calibrate()) {
    print("nanobench: FAIL: PIT counter 2 never reached zero; cannot calibrate the TSC\n");
    debug_exit(0x7f);
  }
  print("nanobench: tsc %llu.%llu MHz (PIT counter 2, uncertainty %llu ppm)\n", g_tsc_khz / 1000, g_tsc_khz % 1000 / 100,
        g_calibration_ppm);
  run("syscall", loop_syscall, 1);
  run("in", nb_loop_in, 0);
  run("callret", nb_loop_callret, 0);
  run("pgfault", nb_loop_pgfault, 0);
  run("divzero", nb_loop_divzero, 0);
  run("ptemod", loop_ptemod, 0);
  print("nanobench: done\n");
  debug_exit(0);
}
