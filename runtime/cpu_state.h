// The guest CPU as plain data: everything a snapshot needs to save and
// restore, nothing that points into the host. Both execution engines (direct
// execution for CPL 3, the translator for CPL 0) read and write this.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

namespace bt86::runtime {

// General registers in x86 encoding order (ModRM reg field).
enum Reg : uint8_t { EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI };
// Segment registers in x86 encoding order (sreg field).
enum class Seg : uint8_t { ES, CS, SS, DS, FS, GS };
inline constexpr int kNumSegs = 6;

// EFLAGS bits (Intel SDM vol. 1, 3.4.3).
namespace flags {
inline constexpr uint32_t CF = 1u << 0, Fixed1 = 1u << 1, PF = 1u << 2, AF = 1u << 4,
                          ZF = 1u << 6, SF = 1u << 7, TF = 1u << 8, IF = 1u << 9,
                          DF = 1u << 10, OF = 1u << 11, IOPL = 3u << 12, NT = 1u << 14,
                          RF = 1u << 16, VM = 1u << 17, AC = 1u << 18, VIF = 1u << 19,
                          VIP = 1u << 20, ID = 1u << 21;
inline constexpr uint32_t Arith = CF | PF | AF | ZF | SF | OF;
}  // namespace flags

// A segment register's hidden part (the "descriptor cache", SDM vol. 3,
// 3.4.3): what the CPU uses after the load, even if the table changes later.
struct SegmentCache {
  uint16_t selector = 0;
  uint32_t base = 0;
  uint32_t limit = 0;   // in bytes, granularity already applied
  uint16_t attr = 0;    // descriptor bits 40..55: type:4 S:1 DPL:2 P:1 AVL:1 L:1 DB:1 G:1

  static constexpr uint16_t kS = 1 << 4, kP = 1 << 7, kAvl = 1 << 8, kL = 1 << 9, kDb = 1 << 10,
                            kG = 1 << 11;
  uint8_t type() const { return attr & 0xf; }
  uint8_t dpl() const { return (attr >> 5) & 3; }
  bool present() const { return attr & kP; }
  bool system() const { return !(attr & kS); }
  bool code() const { return !system() && (type() & 8); }
  bool data() const { return !system() && !(type() & 8); }
  bool readable() const { return data() || (type() & 2); }
  bool writable() const { return data() && (type() & 2); }
  bool expand_down() const { return data() && (type() & 4); }
  bool conforming() const { return code() && (type() & 4); }
  bool big() const { return attr & kDb; }
  bool operator==(const SegmentCache&) const = default;

  // Flat 4 GiB segments as a protected-mode OS sets them up for user mode.
  static SegmentCache flat_code(uint16_t selector, uint8_t dpl = 3) {
    return {selector, 0, 0xffffffff, uint16_t(0xb | kS | (dpl << 5) | kP | kDb | kG)};
  }
  static SegmentCache flat_data(uint16_t selector, uint8_t dpl = 3) {
    return {selector, 0, 0xffffffff, uint16_t(0x3 | kS | (dpl << 5) | kP | kDb | kG)};
  }
};

// x87/MMX/SSE state in the FXSAVE layout (SDM vol. 1, 10.5.1), 64-bit form.
struct alignas(16) FpuState {
  std::array<uint8_t, 512> fxsave{};

  uint16_t fcw() const { uint16_t v; std::memcpy(&v, &fxsave[0], 2); return v; }
  uint32_t mxcsr() const { uint32_t v; std::memcpy(&v, &fxsave[24], 4); return v; }
  // The state after FNINIT plus the default MXCSR, as a CPU has at reset.
  static FpuState reset() {
    FpuState s;
    uint16_t fcw = 0x037f;
    uint32_t mxcsr = 0x1f80, mask = 0xffff;
    std::memcpy(&s.fxsave[0], &fcw, 2);
    std::memcpy(&s.fxsave[24], &mxcsr, 4);
    std::memcpy(&s.fxsave[28], &mask, 4);
    return s;
  }
  bool operator==(const FpuState&) const = default;
};

struct CpuState {
  std::array<uint32_t, 8> gpr{};  // indexed by Reg
  uint32_t eip = 0;
  uint32_t eflags = flags::Fixed1 | flags::IF;
  std::array<SegmentCache, kNumSegs> seg{};  // indexed by Seg
  FpuState fpu = FpuState::reset();

  // A flat 32-bit user-mode state as a protected-mode OS sets up a process
  // (Linux i386: CS 0x73, SS = DS = ES 0x7b, FS and GS null).
  static CpuState flat_user(uint32_t eip, uint32_t esp, uint16_t cs = 0x73, uint16_t ds = 0x7b) {
    CpuState cpu;
    cpu.sreg(Seg::CS) = SegmentCache::flat_code(cs);
    cpu.sreg(Seg::SS) = SegmentCache::flat_data(ds);
    cpu.sreg(Seg::DS) = SegmentCache::flat_data(ds);
    cpu.sreg(Seg::ES) = SegmentCache::flat_data(ds);
    cpu.eip = eip;
    cpu.gpr[ESP] = esp;
    return cpu;
  }

  uint32_t& reg(Reg r) { return gpr[r]; }
  uint32_t reg(Reg r) const { return gpr[r]; }
  SegmentCache& sreg(Seg s) { return seg[static_cast<int>(s)]; }
  const SegmentCache& sreg(Seg s) const { return seg[static_cast<int>(s)]; }
  bool operator==(const CpuState&) const = default;
};

const char* reg_name(Reg r);
const char* seg_name(Seg s);

}  // namespace bt86::runtime
