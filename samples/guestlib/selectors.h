/* The GDT layout every guestlib program uses (gdt_load_flat() builds it),
   and the Multiboot header flags. Plain #defines: included from assembly
   and C alike. */
#pragma once
#define KCODE 0x08   /* kernel code, DPL 0 */
#define KDATA 0x10   /* kernel data, DPL 0 */
#define UCODE 0x1b   /* user code, DPL 3 (RPL 3) */
#define UDATA 0x23   /* user data, DPL 3 (RPL 3) */
#define TSS_SEL 0x28 /* the one 32-bit TSS */
/* Multiboot v1 header flags (spec 3.1.2): bit 0 page-align modules, bit 1
   give memory information. */
#define MB_FLAGS 0x3
