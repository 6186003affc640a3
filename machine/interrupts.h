// Exceptions, interrupts and task switches (Intel SDM vol. 3, ch. 6 and 7):
// delivery through the IDT (interrupt, trap and task gates; stack switch to
// the TSS's SS0:ESP0 on a privilege change; nested faults becoming #DF and
// a fault during #DF delivery becoming a shutdown), IRET (same privilege,
// outer privilege, NT task return), the hardware task switch, and the
// mapping from a direct-execution exit to the event the guest must see.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "machine/cpu_hooks.h"
#include "machine/descriptors.h"
#include "machine/linear_memory.h"
#include "machine/vcpu_state.h"
#include "runtime/exit_record.h"

namespace bt86::machine {

enum class EventKind : uint8_t {
  kException,          // raised by the CPU (fault, trap, abort); EXT = 1 in nested error codes
  kExternal,           // INTR from the PIC; EXT = 1
  kNmi,                // NMI; EXT = 1
  kSoftware,           // INT n: gate DPL checked against CPL, EXT = 0
  kSoftwareException,  // INT3, INTO: gate DPL checked, EXT = 0
};

// An event to deliver. The caller leaves EIP where the handler must return
// to: at the faulting instruction for faults, after it for traps and INT n.
struct Event {
  EventKind kind = EventKind::kException;
  uint8_t vector = 0;
  bool has_error = false;
  uint32_t error = 0;
  uint32_t cr2 = 0;  // #PF: loaded into CR2 when delivery starts
  // INT n, INT3, INTO: the instruction's length. EIP is after it; a fault
  // while delivering (a gate DPL below CPL, a bad gate) is a fault of the
  // instruction itself, so deliver() moves EIP back by this much first.
  uint8_t insn_length = 0;
  bool operator==(const Event&) const = default;

  static Event exception(const GuestFault& f) {
    return make(EventKind::kException, f.vector, f.has_error, f.error, f.cr2, 0);
  }
  static Event external(uint8_t vector) { return make(EventKind::kExternal, vector, false, 0, 0, 0); }
  static Event nmi() { return make(EventKind::kNmi, vec::NMI, false, 0, 0, 0); }
  static Event software(uint8_t vector, uint8_t length = 2) {
    return make(EventKind::kSoftware, vector, false, 0, 0, length);
  }
  static Event software_exception(uint8_t vector, uint8_t length = 1) {
    return make(EventKind::kSoftwareException, vector, false, 0, 0, length);
  }

  // Built from two 64-bit words, so that stored with copy_event() it is two
  // 8-byte stores: field by field, INT n stored kind and vector as two
  // bytes, and delivery's 2-byte load of both could not be forwarded from
  // them (a ~15-cycle stall per INT n).
  static Event make(EventKind kind, uint8_t vector, bool has_error, uint32_t error, uint32_t cr2,
                    uint8_t insn_length) {
    const uint64_t lo =
        uint64_t(kind) | (uint64_t(vector) << 8) | (uint64_t(has_error) << 16) | (uint64_t(error) << 32);
    const uint64_t hi = uint64_t(cr2) | (uint64_t(insn_length) << 32);
    return std::bit_cast<Event>(std::array<uint64_t, 2>{lo, hi});
  }
};

static_assert(sizeof(Event) == 16 && offsetof(Event, kind) == 0 && offsetof(Event, vector) == 1 &&
                  offsetof(Event, has_error) == 2 && offsetof(Event, error) == 4 && offsetof(Event, cr2) == 8 &&
                  offsetof(Event, insn_length) == 12,
              "Event::make builds this layout");

// d = s as one 16-byte move. A plain copy moves bytes 0..7 and 5..12 as two
// 8-byte words; right after `s` was stored, the unaligned one does not get
// its data forwarded from the store (a ~15-cycle stall): deliver() hands
// its event back this way, and execute() copies it on the same way.
inline void copy_event(Event& d, const Event& s) {
  static_assert(std::is_trivially_copyable_v<Event> && sizeof(Event) == 16);
  std::memcpy(&d, &s, sizeof d);
}

struct DeliveryResult {
  bool shutdown = false;  // triple fault: the machine must stop (shutdown_reason says why)
  Event delivered;        // the event whose handler now runs (#DF after a double fault)
  int nested_faults = 0;  // faults raised while delivering (each one replaced the event)
  std::string shutdown_reason;
};

// Delivers `event`: on return either the handler's first instruction is at
// CS:EIP with the frame pushed (HALT state cleared), or shutdown is set and
// the state is whatever the last attempt left. Calls hooks.segments_changed()
// (CS/SS changed) and control_register_written(3, ...) if a task switch
// loaded CR3. Real mode uses the IVT.
DeliveryResult deliver(VcpuState& state, const Event& event, LinearMemory& mem, CpuHooks& hooks);

// IRET with operand size 2 or 4, EIP at the IRET; `next_eip` (after the
// IRET) is what an NT task return saves in the old TSS. On a fault nothing
// in the state changed and the fault is returned (the caller delivers it).
Fault iret(VcpuState& state, LinearMemory& mem, CpuHooks& hooks, unsigned operand_size, uint32_t next_eip);

// Why a task switch happens (SDM vol. 3, 7.3, table 7-2): CALL and
// interrupts nest (back link, NT, old TSS stays busy), JMP and IRET do not.
enum class TaskSwitchReason : uint8_t { kCall, kInterrupt, kJmp, kIret };

// Switches to the task whose TSS descriptor is `tss` (already checked by the
// caller for type, busy state and presence); `return_eip` is the EIP saved
// in the old TSS. Faults before the old state is saved leave
// everything unchanged; faults while loading the new task's segments happen
// in the new task (state already switched), as on hardware.
Fault task_switch(VcpuState& state, LinearMemory& mem, CpuHooks& hooks, uint16_t selector,
                  const DescriptorRef& tss, TaskSwitchReason reason, bool ext, uint32_t return_eip);

// EFLAGS after POPF or IRET loads `popped` at privilege `cpl` (SDM vol. 2,
// POPF/IRET): IF only if CPL <= IOPL, IOPL only at CPL 0, VM/VIF/VIP never
// here; RF cleared by POPF, loaded by IRET; 16-bit forms touch bits 0..15.
uint32_t merge_eflags(uint32_t old, uint32_t popped, uint8_t cpl, unsigned operand_size, bool is_iret);

// What the machine loop does with an exit from direct execution.
enum class ExitActionKind : uint8_t {
  kDeliver,     // deliver `event` (EIP already where the handler returns to)
  kPageFault,   // ask the MMU about `page_fault`; a true fault is delivered as Event::exception
  kInterpret,   // run execute() on the instruction at EIP (cpuid, rdtsc, #GP: privileged
                // instructions the guest may be allowed, e.g. IOPL 3 in/out), with
                // `page_fault` (the #GP) as ExecuteOptions::unimplemented_fault
  kSegmentLimit,// a limit bt86 truncated was hit: the MMU/loop decides (emulate or #PF)
  kNone,        // nothing for the guest (preemption, host signal): the loop polls and resumes
  kGuestError,  // the guest cannot go on (escaped to 64-bit, unenterable state): stop
};

struct ExitAction {
  ExitActionKind kind = ExitActionKind::kNone;
  Event event;
  GuestFault page_fault;  // kPageFault: the #PF; kInterpret: the fault the exit carried
  std::string reason;     // kGuestError: one line for the user
};

// Maps an exit of guest user code to the action above. Adjusts the state
// where the architecture requires it: EIP back to a faulting syscall/
// sysenter (both #UD on this CPU), DR6.BS for a single-step trap.
ExitAction action_for_exit(const runtime::ExitRecord& exit, VcpuState& state);

}  // namespace bt86::machine
