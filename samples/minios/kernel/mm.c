// Physical page frames, the kernel's identity map and per-process address
// spaces with demand paging (Intel SDM vol. 3, 4.3: 32-bit paging, 4 KiB
// pages only, no PSE or PGE, so any x86 from the i386 on can run it).
//
// Every address space shares the kernel's page tables for [0, 8 MiB),
// mapped supervisor-only (U/S = 0): ring 3 cannot touch the kernel. User
// pages exist only once touched: the #PF handler calls mm_demand_fault(),
// which fills a fresh frame from the user image (text/data) or with zeros
// (bss, stack) and maps it, read-only for text and rodata.
#include "kernel.h"

#define PTE_P 0x001u
#define PTE_W 0x002u
#define PTE_U 0x004u
#define PF_P 0x1u  // #PF error code (SDM vol. 3, 4.7): protection, not absence
#define PF_W 0x2u

extern char __kernel_end[];
extern const char user_blob_start[], user_blob_end[];

static uint32_t g_kernel_pd[1024] __attribute__((aligned(4096)));
static uint32_t g_kernel_pt[kKernelMapEnd / (4096u * 1024u)][1024] __attribute__((aligned(4096)));

#define kMaxFrames (kKernelMapEnd / kPageSize)
static uint32_t g_free[kMaxFrames];
static uint32_t g_free_count, g_total, g_peak;

static const UserHeader* g_header;
static uint32_t g_blob_size;

static void* memset_k(void* d, int c, uint32_t n) {
  uint8_t* p = d;
  while (n--) *p++ = (uint8_t)c;
  return d;
}

static void copy_k(void* d, const void* s, uint32_t n) {
  uint8_t* a = d;
  const uint8_t* b = s;
  while (n--) *a++ = *b++;
}

static uint32_t frame_alloc(void) {
  if (!g_free_count) return 0;
  uint32_t f = g_free[--g_free_count];
  if (g_total - g_free_count > g_peak) g_peak = g_total - g_free_count;
  memset_k((void*)f, 0, kPageSize);
  return f;
}

static void frame_free(uint32_t f) { g_free[g_free_count++] = f; }

uint32_t mm_frames_in_use(void) { return g_total - g_free_count; }
uint32_t mm_frames_total(void) { return g_total; }
uint32_t mm_frames_peak(void) { return g_peak; }
uint32_t mm_kernel_pd(void) { return (uint32_t)g_kernel_pd; }
const UserHeader* mm_user_header(void) { return g_header; }

void mm_init(uint32_t mem_upper_kib) {
  uint32_t mem_end = 0x100000u + mem_upper_kib * 1024u;
  if (mem_end < kKernelMapEnd) panic("need at least %u KiB of RAM, have %u", kKernelMapEnd / 1024, mem_end / 1024);
  uint32_t first = ((uint32_t)__kernel_end + kPageSize - 1) & ~(kPageSize - 1);
  // Push in reverse so that allocation hands out ascending addresses.
  for (uint32_t f = kKernelMapEnd - kPageSize; f >= first; f -= kPageSize) g_free[g_free_count++] = f;
  g_total = g_free_count;

  // Identity map, supervisor read/write. Page 0 stays unmapped so that a
  // kernel NULL dereference faults instead of reading the real-mode IVT.
  for (uint32_t t = 0; t < kKernelMapEnd / (4096u * 1024u); ++t) {
    for (uint32_t i = 0; i < 1024; ++i) {
      uint32_t addr = (t * 1024u + i) * kPageSize;
      g_kernel_pt[t][i] = addr ? (addr | PTE_P | PTE_W) : 0;
    }
    g_kernel_pd[t] = (uint32_t)g_kernel_pt[t] | PTE_P | PTE_W;
  }

  g_header = (const UserHeader*)user_blob_start;
  g_blob_size = (uint32_t)(user_blob_end - user_blob_start);
  if (g_blob_size < sizeof(UserHeader) || g_header->magic != kUserMagic || g_header->count == 0 ||
      g_header->count > kMaxPrograms || g_header->text_end < kUserBase ||
      g_header->image_end < kUserBase + g_blob_size || g_header->image_end > kUserStackTop - kUserStackSize)
    panic("bad user image header");
}

void mm_enable_paging(void) {
  write_cr3((uint32_t)g_kernel_pd);
  // PG, and WP so that even the kernel cannot write through a read-only
  // PTE (SDM vol. 3, 2.5).
  write_cr0(read_cr0() | 0x80000000u | 0x10000u);
}

int mm_create(AddressSpace* as) {
  uint32_t pd = frame_alloc();
  if (!pd) return -1;
  for (uint32_t t = 0; t < kKernelMapEnd / (4096u * 1024u); ++t) ((uint32_t*)pd)[t] = g_kernel_pd[t];
  as->pd = pd;
  as->user_frames = 0;
  return 0;
}

void mm_destroy(AddressSpace* as) {
  uint32_t* pd = (uint32_t*)as->pd;
  for (uint32_t t = kKernelMapEnd / (4096u * 1024u); t < 1024; ++t) {
    if (!(pd[t] & PTE_P)) continue;
    uint32_t* pt = (uint32_t*)(pd[t] & ~0xFFFu);
    for (uint32_t i = 0; i < 1024; ++i)
      if (pt[i] & PTE_P) frame_free(pt[i] & ~0xFFFu);
    frame_free((uint32_t)pt);
  }
  frame_free(as->pd);
  as->pd = 0;
  as->user_frames = 0;
}

static int in_image(uint32_t addr) { return addr >= kUserBase && addr < g_header->image_end; }
static int in_stack(uint32_t addr) { return addr >= kUserStackTop - kUserStackSize && addr < kUserStackTop; }

int mm_user_range_ok(uint32_t addr, uint32_t len) {
  if (len == 0) return 1;
  uint32_t last = addr + len - 1;
  if (last < addr) return 0;
  return (in_image(addr) && in_image(last)) || (in_stack(addr) && in_stack(last));
}

const char* mm_demand_fault(AddressSpace* as, uint32_t addr, uint32_t error) {
  if (error & PF_P) {
    if (addr < kKernelMapEnd) return "user access to a kernel page";
    return (error & PF_W) ? "write to a read-only page" : "protection violation";
  }
  if (!in_image(addr) && !in_stack(addr)) return "no mapping at this address";
  uint32_t page = addr & ~(kPageSize - 1);
  int writable = !in_image(addr) || page >= g_header->text_end;
  if ((error & PF_W) && !writable) return "write to a read-only page";

  uint32_t* pde = &((uint32_t*)as->pd)[addr >> 22];
  if (!(*pde & PTE_P)) {
    uint32_t pt = frame_alloc();
    if (!pt) return "out of memory";
    *pde = pt | PTE_P | PTE_W | PTE_U;
    ++as->user_frames;
  }
  uint32_t frame = frame_alloc();
  if (!frame) return "out of memory";
  if (in_image(addr)) {
    uint32_t off = page - kUserBase;
    if (off < g_blob_size) copy_k((void*)frame, user_blob_start + off, g_blob_size - off < kPageSize ? g_blob_size - off : kPageSize);
  }
  // A not-present entry is never cached in the TLB (SDM vol. 3, 4.10.2.3),
  // so the new mapping needs no invlpg.
  ((uint32_t*)(*pde & ~0xFFFu))[(addr >> 12) & 1023] = frame | PTE_P | PTE_U | (writable ? PTE_W : 0);
  ++as->user_frames;
  return 0;
}
