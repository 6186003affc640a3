// The whole virtual CPU as plain data: the registers both execution engines
// use (runtime::CpuState) plus the system state only the monitor touches
// (control registers, descriptor-table registers, debug registers, MSRs).
// Everything a snapshot needs; nothing that points into the host.
#pragma once

#include <array>
#include <cstdint>

#include "runtime/cpu_state.h"

namespace bt86::machine {

// CR0 / CR4 bits (Intel SDM vol. 3, 2.5).
namespace cr0 {
inline constexpr uint32_t PE = 1u << 0, MP = 1u << 1, EM = 1u << 2, TS = 1u << 3, ET = 1u << 4,
                          NE = 1u << 5, WP = 1u << 16, AM = 1u << 18, NW = 1u << 29, CD = 1u << 30,
                          PG = 1u << 31;
}
namespace cr4 {
inline constexpr uint32_t VME = 1u << 0, PVI = 1u << 1, TSD = 1u << 2, DE = 1u << 3, PSE = 1u << 4,
                          PAE = 1u << 5, MCE = 1u << 6, PGE = 1u << 7, PCE = 1u << 8,
                          OSFXSR = 1u << 9, OSXMMEXCPT = 1u << 10;
}

// Exception vectors (SDM vol. 3, table 6-1).
namespace vec {
inline constexpr uint8_t DE = 0, DB = 1, NMI = 2, BP = 3, OF = 4, BR = 5, UD = 6, NM = 7, DF = 8,
                         TS = 10, NP = 11, SS = 12, GP = 13, PF = 14, MF = 16, AC = 17, MC = 18,
                         XM = 19;
}

// #PF error code bits.
namespace pf {
inline constexpr uint32_t P = 1u << 0, W = 1u << 1, U = 1u << 2, RSVD = 1u << 3, I = 1u << 4;
}

struct TableReg {
  uint32_t base = 0;
  uint16_t limit = 0xffff;
  bool operator==(const TableReg&) const = default;
};

struct SystemRegs {
  uint32_t cr0 = cr0::ET;  // the loader sets PE for a protected-mode entry
  uint32_t cr2 = 0;
  uint32_t cr3 = 0;
  uint32_t cr4 = 0;
  TableReg gdtr;
  TableReg idtr{0, 0x3ff};
  runtime::SegmentCache ldtr;  // selector + cache of the current LDT
  runtime::SegmentCache tr;    // selector + cache of the current TSS
  std::array<uint32_t, 8> dr{0, 0, 0, 0, 0, 0, 0xffff0ff0, 0x400};  // DR4/DR5 alias DR6/DR7
  int64_t tsc_offset = 0;           // guest TSC = host TSC + tsc_offset
  uint64_t apic_base = 0xfee00900;  // IA32_APIC_BASE (BSP, enabled)
  uint32_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  bool operator==(const SystemRegs&) const = default;
};

// A guest exception about to be delivered through the IDT.
struct GuestFault {
  uint8_t vector = 0;
  bool has_error = false;
  uint32_t error = 0;
  uint32_t cr2 = 0;  // #PF only: the linear address
  bool operator==(const GuestFault&) const = default;
};

struct VcpuState {
  runtime::CpuState regs;
  SystemRegs sys;
  uint8_t cpl = 0;                // current privilege level (CS.RPL in protected mode)
  bool halted = false;            // HLT executed, waiting for an interrupt
  bool interrupt_shadow = false;  // the instruction after sti / mov ss: no interrupt yet
  bool operator==(const VcpuState&) const = default;

  bool protected_mode() const { return sys.cr0 & cr0::PE; }
  bool paging() const { return (sys.cr0 & (cr0::PE | cr0::PG)) == (cr0::PE | cr0::PG); }
  bool interrupts_enabled() const { return regs.eflags & runtime::flags::IF; }
};

}  // namespace bt86::machine
