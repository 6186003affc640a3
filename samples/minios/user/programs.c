// The minios user programs and the image header that lists them. Each runs
// as its own process (own address space, own copy of the globals below).
// Three do real work and print results anyone can check; four misbehave
// and must be killed by the kernel without hurting the others.
#include <stdint.h>

#include "abi.h"
#include "ulib.h"

// --- primes: sieve of Eratosthenes over a 1 MB array in .bss -------------
// The array is never in the image: its 245 pages are demand-faulted zero
// pages, mapped as the sieve first touches them.
#define kSieveLimit 1000000u
static uint8_t g_composite[kSieveLimit];

static int primes_main(void) {
  say("sieve of Eratosthenes below %u", kSieveLimit);
  for (uint32_t i = 2; i * i < kSieveLimit; ++i)
    if (!g_composite[i])
      for (uint32_t j = i * i; j < kSieveLimit; j += i) g_composite[j] = 1;
  sys_yield();
  uint32_t count = 0, largest = 0;
  for (uint32_t q = 1; q <= 4; ++q) {
    uint32_t end = kSieveLimit / 4 * q;
    for (uint32_t i = kSieveLimit / 4 * (q - 1); i < end; ++i)
      if (i >= 2 && !g_composite[i]) ++count, largest = i;
    say("primes below %u: %u", end, count);
  }
  say("largest prime below %u: %u", kSieveLimit, largest);
  return 0;
}

// --- collatz: longest 3n+1 chain --------------------------------------------
static int collatz_main(void) {
  uint32_t best = 1, best_steps = 0;
  for (uint32_t start = 1; start < 100000; ++start) {
    uint64_t n = start;
    uint32_t steps = 0;
    while (n != 1) {
      n = (n & 1) ? 3 * n + 1 : n >> 1;
      ++steps;
    }
    if (steps > best_steps) best = start, best_steps = steps;
    if ((start + 1) % 25000 == 0) say("below %u: longest chain starts at %u, %u steps", start + 1, best, best_steps);
  }
  return 0;
}

// --- crc: CRC-32 (IEEE 802.3, as zlib) of four pseudo-random 64 KiB blocks -
static uint32_t g_crc_table[256];
static uint8_t g_block[65536];

static int crc_main(void) {
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    g_crc_table[i] = c;
  }
  uint32_t seed = 12345;
  for (uint32_t round = 1; round <= 4; ++round) {
    for (uint32_t i = 0; i < sizeof g_block; ++i) {
      seed = seed * 1103515245u + 12345u;  // the C standard's example rand()
      g_block[i] = (uint8_t)(seed >> 16);
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < sizeof g_block; ++i) crc = g_crc_table[(crc ^ g_block[i]) & 0xFF] ^ (crc >> 8);
    say("block %u: crc32 %08x", round, crc ^ 0xFFFFFFFFu);
    sys_sleep(5);  // let the others run; the idle loop runs if nobody can
  }
  return 0;
}

// --- processes the kernel must kill ------------------------------------------
static int wild_main(void) {
  say("reading 0xdeadbeef");
  uint32_t v = *(volatile uint32_t*)0xdeadbeefu;
  say("read %08x: not reached", v);
  return 1;
}

static int kwrite_main(void) {
  say("writing to kernel memory at 0x00100000");
  *(volatile uint32_t*)0x00100000u = 0;
  say("not reached");
  return 1;
}

static int rowrite_main(void) {
  // The image header sits at kUserBase in a read-only text page.
  say("writing over my own read-only image header at 0x%08x", kUserBase);
  *(volatile uint32_t*)kUserBase = 0;
  say("not reached");
  return 1;
}

static int cli_main(void) {
  say("executing cli in user mode");
  __asm__ volatile("cli");
  say("not reached");
  return 1;
}

extern char __utext_end[], __uimage_end[];
void _ustart(void);

__attribute__((section(".uheader"), used)) const UserHeader g_user_header = {
    .magic = kUserMagic,
    .text_end = (uint32_t)__utext_end,
    .image_end = (uint32_t)__uimage_end,
    .start = (uint32_t)_ustart,
    .count = 7,
    .programs = {
        {"primes", (uint32_t)primes_main},
        {"collatz", (uint32_t)collatz_main},
        {"crc", (uint32_t)crc_main},
        {"wild", (uint32_t)wild_main},
        {"kwrite", (uint32_t)kwrite_main},
        {"rowrite", (uint32_t)rowrite_main},
        {"cli", (uint32_t)cli_main},
    }};
