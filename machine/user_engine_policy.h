// UserEnginePolicy: which engine runs guest user code (CPL 3) next.
//
// Direct execution runs user code at native speed, but every way out of it
// is a host signal: a guest system call (int 0x80) costs ~10 µs here
// (DESIGN.md §2) against ~0.2 µs natively. Translated user code runs at
// 1.1-1.4x native (README, translator ratios) and its int 0x80 is a callout:
// a call, not a signal. So a process that enters the kernel often is better
// translated, and one that computes for long stretches is better direct.
//
// The policy measures each user stint: the user time between two entries
// into the kernel that translation makes cheaper (system calls, #GP, #UD,
// int3: callouts in translated code, host signals in direct execution), and
// keeps a moving average per address space (CR3). Page faults and external
// interrupts cost the same in both engines: the stint goes on across them
// (the kernel's time is not counted). A stint under `translate_below_ns` on
// average means the traps dominate: translate. Once a stint passes
// `reset_above_ns` (a compute phase) the average is set to it at once, so
// a process that starts computing goes back to direct execution within
// that time even if it never makes a system call. Address spaces not seen yet start translated (a new
// process usually begins with system calls; a wrong guess costs one tick of
// translated execution). CR3 values are reused by the guest: the table is a
// hint, never a correctness matter: both engines run every user instruction
// exactly.
#pragma once

#include <array>
#include <cstdint>

namespace bt86::machine {

struct UserEnginePolicyConfig {
  // Wall time, so a stint also holds the hidden faults (shadow fills) of
  // its user code and any host preemption: measured on this host, the
  // parent of a fork+waitpid loop averages 40-100 us between system calls
  // by this clock although its own code runs for a few microseconds.
  uint64_t translate_below_ns = 100000;
  uint64_t reset_above_ns = 500000;
  bool enabled = true;  // false: always direct (bt86 --user-code direct)
  bool always = false;  // always translated (bt86 --user-code translated)
};

class UserEnginePolicy {
 public:
  explicit UserEnginePolicy(const UserEnginePolicyConfig& config = {}) : m_config(config) {}

  // Guest user code runs again in address space cr3 from now_ns (a stint
  // paused by a page fault or interrupt goes on if cr3 is the same).
  void user_entered(uint32_t cr3, uint64_t now_ns) {
    Slot* s = &slot(cr3);
    if (s != m_paused) m_stint_ns = 0;
    m_paused = nullptr;
    m_slot = s;
    m_entered_ns = now_ns;
  }
  // The guest entered its kernel at now_ns: ends the stint if
  // `ends_stint` (a system call or another trap translation makes cheap),
  // else pauses it (a page fault, an external interrupt).
  void user_left(uint64_t now_ns, bool ends_stint = true) {
    if (!m_slot) return;
    m_stint_ns += now_ns - m_entered_ns;
    if (m_stint_ns >= m_config.reset_above_ns) {
      m_slot->average_ns = m_stint_ns;
    } else if (ends_stint) {
      m_slot->average_ns = (3 * m_slot->average_ns + m_stint_ns) / 4;
    }
    if (ends_stint) {
      m_stint_ns = 0;
    } else {
      m_paused = m_slot;
    }
    m_slot = nullptr;
  }
  // Whether the current stint should run translated at now_ns: a stint
  // that has already run past reset_above_ns without entering the kernel
  // (a loop with no interrupts either) is a compute phase.
  bool translate(uint64_t now_ns) const {
    if (!m_config.enabled) return false;
    if (m_config.always) return true;
    if (!m_slot || m_slot->average_ns >= m_config.translate_below_ns) return false;
    return m_stint_ns + (now_ns - m_entered_ns) < m_config.reset_above_ns;
  }
  // The average stint of an address space (tests, --stats).
  uint64_t average_ns(uint32_t cr3) const {
    const Slot& s = m_slots[index(cr3)];
    return s.cr3 == cr3 ? s.average_ns : 0;
  }

 private:
  struct Slot {
    uint32_t cr3 = UINT32_MAX;  // no page directory is at 0xffffffff (4 KiB aligned)
    uint64_t average_ns = 0;
  };
  static uint32_t index(uint32_t cr3) { return (cr3 >> 12) % kSlots; }
  Slot& slot(uint32_t cr3) {
    Slot& s = m_slots[index(cr3)];
    if (s.cr3 != cr3) s = Slot{cr3, 0};
    return s;
  }

  static constexpr uint32_t kSlots = 64;
  UserEnginePolicyConfig m_config;
  std::array<Slot, kSlots> m_slots{};
  Slot* m_slot = nullptr;    // the address space of the running stint
  Slot* m_paused = nullptr;  // a stint paused by a page fault or interrupt
  uint64_t m_entered_ns = 0;
  uint64_t m_stint_ns = 0;   // user time of the stint so far
};

}  // namespace bt86::machine
