// cpuid: what a user-mode program sees of the CPU (issue 4: the virtual 686
// CPU must look the same from user mode as from the kernel, whose view is
// /proc/cpuinfo). Prints the vendor, family/model/stepping, the leaf 1
// feature bits the virtual CPU promises or denies, and the brand string.
#include <stdio.h>
#include <string.h>

static void cpuid(unsigned leaf, unsigned *a, unsigned *b, unsigned *c, unsigned *d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

int main(void) {
  unsigned a, b, c, d;
  char vendor[13];
  cpuid(0, &a, &b, &c, &d);
  memcpy(vendor, &b, 4);
  memcpy(vendor + 4, &d, 4);
  memcpy(vendor + 8, &c, 4);
  vendor[12] = 0;
  printf("cpuid: vendor %s, max leaf %u\n", vendor, a);
  cpuid(1, &a, &b, &c, &d);
  printf("cpuid: family %u model %u stepping %u\n", (a >> 8) & 15, (a >> 4) & 15, a & 15);
  printf("cpuid: fpu=%u tsc=%u pse=%u pge=%u cmov=%u fxsr=%u sse=%u sse2=%u sep=%u vme=%u pae=%u\n", d & 1,
         (d >> 4) & 1, (d >> 3) & 1, (d >> 13) & 1, (d >> 15) & 1, (d >> 24) & 1, (d >> 25) & 1, (d >> 26) & 1,
         (d >> 11) & 1, (d >> 1) & 1, (d >> 6) & 1);
  char brand[49] = {0};
  cpuid(0x80000000, &a, &b, &c, &d);
  if (a >= 0x80000004) {
    for (unsigned i = 0; i < 3; i++) cpuid(0x80000002 + i, (unsigned *)&brand[16 * i], (unsigned *)&brand[16 * i + 4],
                                           (unsigned *)&brand[16 * i + 8], (unsigned *)&brand[16 * i + 12]);
  }
  printf("cpuid: brand \"%s\"\n", brand);
  return 0;
}
