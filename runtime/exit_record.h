// An exit record says why guest code stopped running and what the guest was
// doing at the time. It is a value: the monitor loop decides what it means
// for the guest (reflect an exception, emulate an instruction, deliver an
// interrupt). CpuState holds the registers at the exit.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/cpu_state.h"

namespace bt86::runtime {

enum class ExitKind : uint8_t {
  PageFault,           // #PF: fault_address, error_code; eip at the instruction
  GeneralProtection,   // #GP: error_code; eip at the instruction (privileged insn, bad selector...)
  SegmentLimit,        // #GP/#SS from a segment limit: segment, fault_address (linear)
  StackFault,          // #SS not caused by a limit we truncated
  SegmentNotPresent,   // #NP: error_code
  InvalidOpcode,       // #UD
  DivideError,         // #DE
  FpuError,            // #MF: unmasked x87 exception
  SimdError,           // #XM: unmasked SSE exception
  AlignmentCheck,      // #AC
  Overflow,            // #OF from into: eip after the instruction
  BoundRange,          // #BR from bound
  Breakpoint,          // #BP from int3 / int 3: eip after the instruction
  SingleStep,          // #DB after an instruction with TF set: eip after it
  Debug,               // #DB for any other reason (icebp)
  SoftwareInterrupt,   // int n (including int 0x80): vector, eip after the instruction
  Cpuid,               // cpuid (needs host CPUID faulting): eip at the instruction
  Rdtsc,               // rdtsc or rdtscp (TSC faulting): eip at the instruction; instruction_length
  Syscall,             // a stray syscall: eip after it (ECX, R11 clobbered by hardware)
  Sysenter,            // a stray sysenter: eip after it if the host kept it
  Preempted,           // the preemption tick (or request_exit) fired
  HostSignal,          // another host signal arrived while the guest ran (host_signal)
  Escaped64,           // guest code reached 64-bit mode (DESIGN.md §6); the guest is not trusted further
  InvalidState,        // CpuState cannot be entered (bad CS/SS); nothing ran
};

struct ExitRecord {
  ExitKind kind = ExitKind::InvalidState;
  uint8_t vector = 0;              // architectural exception/interrupt vector
  uint32_t error_code = 0;         // as the CPU pushed it
  uint32_t fault_address = 0;      // #PF: CR2; SegmentLimit: linear address of the access
  Seg segment = Seg::DS;           // SegmentLimit: segment of the access
  bool beyond_guest_limit = false; // SegmentLimit: also outside the guest's own limit
  uint8_t instruction_length = 0;  // when the exit decoded the instruction (0 if not)
  int host_signal = 0;             // the host signal that carried the exit
  std::string detail;              // for logs: e.g. "rdtscp", "sysenter eip lost"
};

const char* exit_kind_name(ExitKind kind);
std::string describe(const ExitRecord& exit, const CpuState& cpu);

}  // namespace bt86::runtime
