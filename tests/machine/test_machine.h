// Test doubles for the CPU model: a flat LinearMemory (a byte array with
// pages that can be made absent or supervisor-only), hooks that record what
// the CPU model asked for, and a small protected-mode machine (GDT, LDT, IDT,
// TSSs) like the one a 32-bit kernel sets up.
#pragma once

#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "machine/cpu_hooks.h"
#include "machine/descriptors.h"
#include "machine/linear_memory.h"
#include "machine/vcpu_state.h"

namespace bt86::machine::test {

class FlatMemory final : public LinearMemory {
 public:
  static constexpr uint32_t kSize = 4u << 20;
  FlatMemory() : m_bytes(kSize, 0) {}

  std::optional<GuestFault> read(uint32_t lin, std::span<uint8_t> out, Access kind, bool user) override {
    if (auto f = check(lin, uint32_t(out.size()), false, kind == Access::kFetch, user)) return f;
    std::memcpy(out.data(), &m_bytes[lin], out.size());
    ++reads;
    return std::nullopt;
  }
  std::optional<GuestFault> write(uint32_t lin, std::span<const uint8_t> in, bool user) override {
    if (auto f = check(lin, uint32_t(in.size()), true, false, user)) return f;
    std::memcpy(&m_bytes[lin], in.data(), in.size());
    ++writes;
    return std::nullopt;
  }

  // Page faults for tests: a page that is not present, or supervisor-only.
  void make_absent(uint32_t page) { m_absent.insert(page & ~0xfffu); }
  void make_present(uint32_t page) { m_absent.erase(page & ~0xfffu); }
  void make_supervisor(uint32_t page) { m_supervisor.insert(page & ~0xfffu); }

  void put8(uint32_t a, uint8_t v) { m_bytes.at(a) = v; }
  void put16(uint32_t a, uint16_t v) { std::memcpy(&m_bytes.at(a), &v, 2); }
  void put32(uint32_t a, uint32_t v) { std::memcpy(&m_bytes.at(a), &v, 4); }
  void put(uint32_t a, std::initializer_list<uint8_t> bytes) {
    for (uint8_t b : bytes) m_bytes.at(a++) = b;
  }
  uint8_t get8(uint32_t a) const { return m_bytes.at(a); }
  uint16_t get16(uint32_t a) const { uint16_t v; std::memcpy(&v, &m_bytes.at(a), 2); return v; }
  uint32_t get32(uint32_t a) const { uint32_t v; std::memcpy(&v, &m_bytes.at(a), 4); return v; }

  int reads = 0, writes = 0;

 private:
  std::optional<GuestFault> check(uint32_t lin, uint32_t size, bool write, bool fetch, bool user) const {
    for (uint64_t a = lin & ~0xfffull; a < uint64_t(lin) + size; a += 0x1000) {
      const uint32_t addr = a < lin ? lin : uint32_t(a);
      uint32_t err = (write ? pf::W : 0) | (user ? pf::U : 0) | (fetch ? pf::I : 0);
      if (a >= kSize || m_absent.count(uint32_t(a))) return GuestFault{vec::PF, true, err, addr};
      if (user && m_supervisor.count(uint32_t(a))) return GuestFault{vec::PF, true, err | pf::P, addr};
    }
    return std::nullopt;
  }
  std::vector<uint8_t> m_bytes;
  std::set<uint32_t> m_absent, m_supervisor;
};

class FakeHooks final : public CpuHooks {
 public:
  struct Io { uint16_t port; unsigned size; uint32_t value; bool operator==(const Io&) const = default; };
  uint32_t io_in(uint16_t port, unsigned size) override {
    ins.push_back({port, size, 0});
    return in_value;
  }
  void io_out(uint16_t port, unsigned size, uint32_t value) override { outs.push_back({port, size, value}); }
  void control_register_written(int cr, uint32_t old_value, uint32_t new_value) override {
    cr_writes.push_back({cr, old_value, new_value});
  }
  void invlpg(uint32_t lin) override { invlpgs.push_back(lin); }
  void cache_flush() override { ++flushes; }
  void segments_changed() override { ++segment_changes; }
  uint64_t host_tsc() override { return tsc; }

  struct CrWrite { int cr; uint32_t old_value, new_value; bool operator==(const CrWrite&) const = default; };
  uint32_t in_value = 0xffffffff;
  std::vector<Io> ins, outs;
  std::vector<CrWrite> cr_writes;
  std::vector<uint32_t> invlpgs;
  int flushes = 0, segment_changes = 0;
  uint64_t tsc = 1000000;
};

// Descriptor builders (SDM vol. 3, figure 3-8 and 6-2).
inline Descriptor seg_desc(uint32_t base, uint32_t limit, uint8_t type, uint8_t dpl, bool s = true, bool present = true,
                           bool big = true, bool gran = false) {
  Descriptor d;
  d.lo = (limit & 0xffff) | (base << 16);
  d.hi = ((base >> 16) & 0xff) | (uint32_t(type) << 8) | (s ? 1u << 12 : 0) | (uint32_t(dpl) << 13) |
         (present ? 1u << 15 : 0) | (limit & 0xf0000) | (big ? 1u << 22 : 0) | (gran ? 1u << 23 : 0) |
         (base & 0xff000000u);
  return d;
}
inline Descriptor gate_desc(uint16_t selector, uint32_t offset, uint8_t type, uint8_t dpl, bool present = true) {
  Descriptor d;
  d.lo = (offset & 0xffff) | (uint32_t(selector) << 16);
  d.hi = (offset & 0xffff0000u) | (uint32_t(type) << 8) | (uint32_t(dpl) << 13) | (present ? 1u << 15 : 0);
  return d;
}

// A flat protected-mode machine: kernel at CPL 0 on 0x08/0x10, user on
// 0x1b/0x23, a TSS with ESP0 = kKernelStack and an I/O bitmap, a separate
// TSS for #DF, an LDT, and an IDT whose gate v points at kHandlers + 16 v.
struct TestMachine {
  static constexpr uint32_t kGdt = 0x1000, kIdt = 0x2000, kTss = 0x3000, kDfTss = 0x6000, kLdt = 0x6800;
  static constexpr uint32_t kHandlers = 0x10000, kKernelStack = 0x9000, kDfStack = 0xa000;
  static constexpr uint32_t kUserStack = 0x20000, kCode = 0x30000, kIoBitmap = 0x68;
  static constexpr uint16_t kKCode = 0x08, kKData = 0x10, kUCode = 0x1b, kUData = 0x23, kTssSel = 0x28,
                            kDfTssSel = 0x30, kLdtSel = 0x38, kAbsent = 0x40, kReadOnly = 0x48, kExecOnly = 0x50,
                            kConforming = 0x58, kSmall = 0x60, kExpandDown = 0x68, kUserTaskGate = 0x70;
  static constexpr uint16_t kGdtEntries = 15;

  FlatMemory mem;
  FakeHooks hooks;
  VcpuState s;

  void set_gdt(uint16_t sel, Descriptor d) {
    mem.put32(kGdt + (sel & ~7u), d.lo);
    mem.put32(kGdt + (sel & ~7u) + 4, d.hi);
  }
  Descriptor gdt(uint16_t sel) const { return {mem.get32(kGdt + (sel & ~7u)), mem.get32(kGdt + (sel & ~7u) + 4)}; }
  void set_idt(uint8_t v, Descriptor d) {
    mem.put32(kIdt + v * 8u, d.lo);
    mem.put32(kIdt + v * 8u + 4, d.hi);
  }

  TestMachine() {
    set_gdt(kKCode, seg_desc(0, 0xfffff, 0xa, 0, true, true, true, true));
    set_gdt(kKData, seg_desc(0, 0xfffff, 0x2, 0, true, true, true, true));
    set_gdt(kUCode, seg_desc(0, 0xfffff, 0xa, 3, true, true, true, true));
    set_gdt(kUData, seg_desc(0, 0xfffff, 0x2, 3, true, true, true, true));
    set_gdt(kTssSel, seg_desc(kTss, kIoBitmap + 0x2000, 0x9, 0, false));
    set_gdt(kDfTssSel, seg_desc(kDfTss, 0x67, 0x9, 0, false));
    set_gdt(kLdtSel, seg_desc(kLdt, 0x1f, 0x2, 0, false));
    set_gdt(kAbsent, seg_desc(0, 0xfffff, 0x2, 3, true, false, true, true));
    set_gdt(kReadOnly, seg_desc(0, 0xfffff, 0x0, 3, true, true, true, true));
    set_gdt(kExecOnly, seg_desc(0, 0xfffff, 0x8, 3, true, true, true, true));
    set_gdt(kConforming, seg_desc(0, 0xfffff, 0xe, 0, true, true, true, true));
    set_gdt(kSmall, seg_desc(0x40000, 0xfff, 0x2, 3, true, true, true, false));
    set_gdt(kExpandDown, seg_desc(0x40000, 0xfff, 0x6, 3, true, true, true, false));
    set_gdt(kUserTaskGate, gate_desc(kDfTssSel, 0, desc_type::kTaskGate, 3));
    // LDT entry 0 (selector 0x07): user data.
    mem.put32(kLdt, seg_desc(0x50000, 0xffff, 0x2, 3).lo);
    mem.put32(kLdt + 4, seg_desc(0x50000, 0xffff, 0x2, 3).hi);
    // TSS: ESP0/SS0, I/O bitmap all ones (every port denied) but port 0x80.
    mem.put32(kTss + 4, kKernelStack);
    mem.put16(kTss + 8, kKData);
    mem.put16(kTss + 0x66, kIoBitmap);
    for (uint32_t i = 0; i < 0x2000; ++i) mem.put8(kTss + kIoBitmap + i, 0xff);
    mem.put8(kTss + kIoBitmap + 0x80 / 8, 0xfe);
    mem.put8(kTss + kIoBitmap + 0x2000, 0xff);
    // #DF TSS: its own stack, flat kernel segments, handler at kHandlers + 16*8.
    mem.put32(kDfTss + 0x1c, 0);
    mem.put32(kDfTss + 0x20, kHandlers + 16 * vec::DF);
    mem.put32(kDfTss + 0x24, 0x2);
    mem.put32(kDfTss + 0x38, kDfStack);
    for (int i = 0; i < 6; ++i) mem.put16(kDfTss + 0x48 + 4 * i, i == 1 ? kKCode : kKData);
    for (int v = 0; v < 256; ++v) set_idt(uint8_t(v), gate_desc(kKCode, kHandlers + 16 * v, desc_type::kIntGate32, 0));

    s.sys.cr0 = cr0::PE | cr0::ET;
    s.sys.gdtr = {kGdt, kGdtEntries * 8 - 1};
    s.sys.idtr = {kIdt, 256 * 8 - 1};
    ok(load_tr(s, mem, kTssSel));
    ok(load_ldtr(s, mem, kLdtSel));
    enter_kernel(kCode, kKernelStack);
  }
  static void ok(const Fault& f) {
    if (f) std::abort();
  }
  void enter_kernel(uint32_t eip, uint32_t esp) {
    s.regs = runtime::CpuState::flat_user(eip, esp, kKCode, kKData);
    s.regs.sreg(runtime::Seg::CS) = gdt(kKCode).cache(kKCode);
    s.regs.sreg(runtime::Seg::SS) = gdt(kKData).cache(kKData);
    s.regs.sreg(runtime::Seg::DS) = gdt(kKData).cache(kKData);
    s.regs.sreg(runtime::Seg::ES) = gdt(kKData).cache(kKData);
    s.cpl = 0;
  }
  void enter_user(uint32_t eip, uint32_t esp) {
    s.regs = runtime::CpuState::flat_user(eip, esp, kUCode, kUData);
    s.regs.sreg(runtime::Seg::CS) = gdt(kUCode).cache(kUCode);
    for (auto seg : {runtime::Seg::SS, runtime::Seg::DS, runtime::Seg::ES})
      s.regs.sreg(seg) = gdt(kUData).cache(kUData);
    s.cpl = 3;
  }
};

}  // namespace bt86::machine::test
