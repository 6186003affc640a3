// Motorola MC146818A real-time clock with its 128 bytes of CMOS RAM, at
// ports 0x70 (index, and the NMI mask in bit 7) and 0x71 (data), on IRQ 8.
// Source for behaviour: the MC146818A datasheet (Motorola), cited as
// [146818] with the section name; the PC's use of the CMOS bytes follows
// the IBM PC AT Technical Reference (memory size fields) and QEMU's
// hw/rtc/mc146818rtc.c.
//
// Time of day is the host's (UTC) plus an offset the guest changes when it
// sets the clock. Like the PIT, nothing is stepped: registers are rendered
// from the clock when read, and update(now) raises the periodic, alarm and
// update-ended interrupts that are due.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "devices/clock.h"
#include "devices/io_bus.h"
#include "devices/irq_line.h"

namespace bt86::devices {

class CmosRtc final : public IoDevice {
 public:
  // CMOS indices ([146818] "Address Map"; PC AT layout above 0x0D).
  enum : uint8_t {
    kSeconds = 0x00, kSecondsAlarm = 0x01, kMinutes = 0x02, kMinutesAlarm = 0x03, kHours = 0x04,
    kHoursAlarm = 0x05, kDayOfWeek = 0x06, kDayOfMonth = 0x07, kMonth = 0x08, kYear = 0x09,
    kRegA = 0x0A, kRegB = 0x0B, kRegC = 0x0C, kRegD = 0x0D,
    kBaseMemLow = 0x15, kBaseMemHigh = 0x16,  // base memory in KiB (640)
    kExtMemLow = 0x17, kExtMemHigh = 0x18,    // memory above 1 MiB in KiB, up to 63 MiB
    kExtMem2Low = 0x30, kExtMem2High = 0x31,  // the same, as POST reports it
    kCentury = 0x32,
    kHighMemLow = 0x34, kHighMemHigh = 0x35,  // memory above 16 MiB in 64 KiB units (QEMU/SeaBIOS)
  };
  // Register A/B/C bits ([146818] "Register A".."Register D").
  static constexpr uint8_t kRegAUip = 0x80;
  static constexpr uint8_t kRegBSet = 0x80, kRegBPie = 0x40, kRegBAie = 0x20, kRegBUie = 0x10,
                           kRegBSqwe = 0x08, kRegBBinary = 0x04, kRegB24Hour = 0x02, kRegBDse = 0x01;
  static constexpr uint8_t kRegCIrqf = 0x80, kRegCPf = 0x40, kRegCAf = 0x20, kRegCUf = 0x10;
  static constexpr uint8_t kRegDVrt = 0x80;
  // [146818] "Update Cycle": UIP rises 244 us before the registers change.
  static constexpr uint64_t kUipLeadNs = 244'000;

  struct State {
    std::array<uint8_t, 128> cmos{};  // 0-9 hold the time only while SET=1; 0x0E-0x7F are RAM
    uint8_t index = 0;
    bool nmi_disabled = false;        // port 0x70 bit 7
    int64_t unix_minus_now_ns = 0;    // guest wall time (ns since 1970, UTC) = now() + this
    uint64_t periodic_start_ns = 0;   // when the current periodic rate took effect
    uint64_t periodic_counted = 0;    // periods since periodic_start_ns already flagged
    int64_t last_second = 0;          // last guest second whose update cycle was flagged
  };

  // `now` is the monotonic clock the PIT also uses; `unix_minus_now_ns`
  // relates it to wall time (nullopt: take the host's CLOCK_REALTIME).
  // `ram_bytes` fills the memory size fields of the CMOS.
  CmosRtc(NowFn now, std::optional<int64_t> unix_minus_now_ns, uint64_t ram_bytes,
          IrqLine& irq8 = NullIrqLine::instance());

  std::string_view name() const override { return "MC146818 RTC/CMOS"; }
  uint32_t io_read(uint16_t offset, unsigned size) override;
  void io_write(uint16_t offset, unsigned size, uint32_t value) override;

  void connect_irq(IrqLine& irq8) {
    m_irq = &irq8;
    update_irq();
  }

  // Flags the periodic, alarm and update-ended events due by `now_ns` and
  // drives IRQ 8 (IRQF in register C).
  void update(uint64_t now_ns);
  // When the next enabled interrupt is due, or kNoDeadline.
  uint64_t next_deadline_ns() const;

  // Guest wall time in ns since the epoch, and the periodic period in ns
  // (0 when register A selects none).
  int64_t guest_time_ns(uint64_t now_ns) const { return int64_t(now_ns) + m_state.unix_minus_now_ns; }
  uint64_t periodic_period_ns() const;
  bool nmi_disabled() const { return m_state.nmi_disabled; }

  const State& state() const { return m_state; }
  void load_state(const State& state) {
    m_state = state;
    m_state.index &= 0x7F;
    update_irq();
  }

 private:
  bool binary() const { return m_state.cmos[kRegB] & kRegBBinary; }
  bool set_mode() const { return m_state.cmos[kRegB] & kRegBSet; }
  uint8_t encode(unsigned value) const;
  unsigned decode(uint8_t value) const;
  uint8_t encode_hour(unsigned hour) const;
  unsigned decode_hour(uint8_t value) const;
  void render_time(uint64_t now_ns);  // clock -> registers 0, 2, 4, 6-9 and the century
  void commit_time(uint64_t now_ns);  // registers -> clock (SET cleared)
  bool alarm_matches(int64_t second) const;
  void restart_periodic(uint64_t now_ns);
  uint8_t read_register(uint8_t index);
  void write_register(uint8_t index, uint8_t value);
  void update_irq();

  NowFn m_now;
  IrqLine* m_irq;
  State m_state;
};

}  // namespace bt86::devices
