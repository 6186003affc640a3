// MC146818A RTC and CMOS RAM. [146818] is the Motorola MC146818A datasheet;
// register and bit names are its own (UIP, SET, PIE, AIE, UIE, DM, 24/12,
// IRQF, PF, AF, UF, VRT).
#include "devices/cmos_rtc.h"

#include <algorithm>
#include <ctime>

namespace bt86::devices {
namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr int64_t kLatestSecond = 7'258'118'400;  // 2200-01-01 00:00:00 UTC
constexpr uint8_t kAlarmDontCare = 0xC0;  // [146818] "Alarm": 11xxxxxx matches any value

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t host_unix_minus(const NowFn& now) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * kNsPerSecond + ts.tv_nsec - int64_t(now());
}

}  // namespace

CmosRtc::CmosRtc(NowFn now, std::optional<int64_t> unix_minus_now_ns, uint64_t ram_bytes, IrqLine& irq8)
    : m_now(std::move(now)), m_irq(&irq8) {
  State& s = m_state;
  s.unix_minus_now_ns = unix_minus_now_ns ? *unix_minus_now_ns : host_unix_minus(m_now);
  // What a PC BIOS leaves: 32.768 kHz time base with the 1024 Hz periodic
  // rate (0x26), 24-hour BCD mode, valid RAM and time.
  s.cmos[kRegA] = 0x26;
  s.cmos[kRegB] = kRegB24Hour;
  s.cmos[kRegD] = kRegDVrt;
  // Memory sizes (IBM PC AT Technical Reference, "CMOS RAM Address Map").
  const uint64_t kib = ram_bytes / 1024;
  const uint64_t ext_kib = kib > 1024 ? std::min<uint64_t>(kib - 1024, 0xFFFF) : 0;
  const uint64_t high_64k = ram_bytes > (16u << 20) ? std::min<uint64_t>((ram_bytes - (16u << 20)) >> 16, 0xFFFF) : 0;
  s.cmos[kBaseMemLow] = 640 & 0xFF;
  s.cmos[kBaseMemHigh] = 640 >> 8;
  s.cmos[kExtMemLow] = s.cmos[kExtMem2Low] = uint8_t(ext_kib);
  s.cmos[kExtMemHigh] = s.cmos[kExtMem2High] = uint8_t(ext_kib >> 8);
  s.cmos[kHighMemLow] = uint8_t(high_64k);
  s.cmos[kHighMemHigh] = uint8_t(high_64k >> 8);
  // The AT checksum over 0x10-0x2D, big-endian at 0x2E.
  unsigned sum = 0;
  for (unsigned i = 0x10; i <= 0x2D; ++i) sum += s.cmos[i];
  s.cmos[0x2E] = uint8_t(sum >> 8);
  s.cmos[0x2F] = uint8_t(sum);
  const uint64_t now_ns = m_now();
  s.periodic_start_ns = now_ns;
  s.last_second = floor_div(guest_time_ns(now_ns), kNsPerSecond);
  render_time(now_ns);
}

uint8_t CmosRtc::encode(unsigned value) const {
  // [146818] "Data Mode": DM=1 binary, DM=0 BCD.
  return binary() ? uint8_t(value) : uint8_t((value / 10 % 10) << 4 | value % 10);
}

unsigned CmosRtc::decode(uint8_t value) const {
  return binary() ? value : (value >> 4) * 10u + (value & 0x0F);
}

uint8_t CmosRtc::encode_hour(unsigned hour) const {
  if (m_state.cmos[kRegB] & kRegB24Hour) return encode(hour);
  // 12-hour mode: 1-12, bit 7 set for PM ([146818] "Time, Calendar and Alarm").
  unsigned h12 = hour % 12 == 0 ? 12 : hour % 12;
  return uint8_t(encode(h12) | (hour >= 12 ? 0x80 : 0));
}

unsigned CmosRtc::decode_hour(uint8_t value) const {
  if (m_state.cmos[kRegB] & kRegB24Hour) return decode(value);
  return decode(value & 0x7F) % 12 + ((value & 0x80) ? 12 : 0);
}

void CmosRtc::render_time(uint64_t now_ns) {
  const time_t seconds = time_t(floor_div(guest_time_ns(now_ns), kNsPerSecond));
  std::tm tm{};
  if (gmtime_r(&seconds, &tm) == nullptr) return;  // out of range: keep what is there
  std::array<uint8_t, 128>& c = m_state.cmos;
  const unsigned year = unsigned(tm.tm_year + 1900);
  c[kSeconds] = encode(unsigned(tm.tm_sec));
  c[kMinutes] = encode(unsigned(tm.tm_min));
  c[kHours] = encode_hour(unsigned(tm.tm_hour));
  c[kDayOfWeek] = encode(unsigned(tm.tm_wday) + 1);  // 1 = Sunday
  c[kDayOfMonth] = encode(unsigned(tm.tm_mday));
  c[kMonth] = encode(unsigned(tm.tm_mon) + 1);
  c[kYear] = encode(year % 100);
  c[kCentury] = encode(year / 100 % 100);
}

void CmosRtc::commit_time(uint64_t now_ns) {
  const std::array<uint8_t, 128>& c = m_state.cmos;
  unsigned century = decode(c[kCentury]);
  if (century > 99) century = 20;
  std::tm tm{};
  tm.tm_sec = int(decode(c[kSeconds]));
  tm.tm_min = int(decode(c[kMinutes]));
  tm.tm_hour = int(decode_hour(c[kHours]));
  tm.tm_mday = int(decode(c[kDayOfMonth]));
  tm.tm_mon = int(decode(c[kMonth])) - 1;
  tm.tm_year = int(century * 100 + decode(c[kYear]) % 100) - 1900;
  // timegm normalises out-of-range fields (a guest writing garbage gets some
  // date, never a crash).
  // Kept within 1970..2200 so that nanoseconds fit in 64 bits whatever the
  // guest wrote (the registers can say 0000 or 9999).
  const int64_t seconds = std::clamp<int64_t>(int64_t(timegm(&tm)), 0, kLatestSecond);
  const int64_t sub_second = guest_time_ns(now_ns) - floor_div(guest_time_ns(now_ns), kNsPerSecond) * kNsPerSecond;
  m_state.unix_minus_now_ns = seconds * kNsPerSecond + sub_second - int64_t(now_ns);
  m_state.last_second = seconds;
}

uint64_t CmosRtc::periodic_period_ns() const {
  // [146818] Table "Periodic Interrupt Rate" for the 32.768 kHz time base:
  // RS = 1 and 2 repeat rates 8 and 9; otherwise 32768 >> (RS - 1) Hz.
  unsigned rate = m_state.cmos[kRegA] & 0x0F;
  if (rate == 0) return 0;
  if (rate <= 2) rate += 7;
  return (uint64_t(1) << (rate - 1)) * kNsPerSecond / 32768;
}

void CmosRtc::restart_periodic(uint64_t now_ns) {
  m_state.periodic_start_ns = now_ns;
  m_state.periodic_counted = 0;
}

bool CmosRtc::alarm_matches(int64_t second) const {
  const time_t t = time_t(second);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return false;
  const std::array<uint8_t, 128>& c = m_state.cmos;
  auto match = [](uint8_t alarm, uint8_t now) { return alarm >= kAlarmDontCare || alarm == now; };
  return match(c[kSecondsAlarm], encode(unsigned(tm.tm_sec))) && match(c[kMinutesAlarm], encode(unsigned(tm.tm_min))) &&
         match(c[kHoursAlarm], encode_hour(unsigned(tm.tm_hour)));
}

void CmosRtc::update(uint64_t now_ns) {
  State& s = m_state;
  uint8_t& flags = s.cmos[kRegC];
  if (const uint64_t period = periodic_period_ns(); period != 0 && now_ns > s.periodic_start_ns) {
    const uint64_t n = (now_ns - s.periodic_start_ns) / period;
    if (n > s.periodic_counted) {
      flags |= kRegCPf;  // set whatever PIE says; PIE only gates IRQF
      s.periodic_counted = n;
    }
  }
  // [146818] "Update Cycle": no updates while SET is 1.
  const int64_t second = floor_div(guest_time_ns(now_ns), kNsPerSecond);
  if (set_mode()) {
    s.last_second = second;
  } else if (second > s.last_second) {
    flags |= kRegCUf;
    if (alarm_matches(second)) flags |= kRegCAf;
    s.last_second = second;
  } else if (second < s.last_second) {
    s.last_second = second;  // the host clock relation changed; no event
  }
  update_irq();
}

uint64_t CmosRtc::next_deadline_ns() const {
  const State& s = m_state;
  const uint8_t b = s.cmos[kRegB];
  uint64_t deadline = kNoDeadline;
  if (const uint64_t period = periodic_period_ns(); period != 0 && (b & kRegBPie)) {
    deadline = s.periodic_start_ns + (s.periodic_counted + 1) * period;
  }
  if ((b & (kRegBUie | kRegBAie)) && !(b & kRegBSet)) {
    const int64_t next = (s.last_second + 1) * kNsPerSecond - s.unix_minus_now_ns;
    deadline = std::min(deadline, next < 0 ? uint64_t(0) : uint64_t(next));
  }
  return deadline;
}

void CmosRtc::update_irq() {
  // [146818] "Register C": IRQF = PF.PIE + AF.AIE + UF.UIE; the IRQ pin
  // follows IRQF until register C is read.
  uint8_t& c = m_state.cmos[kRegC];
  const uint8_t b = m_state.cmos[kRegB];
  const bool irqf = ((c & kRegCPf) && (b & kRegBPie)) || ((c & kRegCAf) && (b & kRegBAie)) ||
                    ((c & kRegCUf) && (b & kRegBUie));
  c = uint8_t((c & 0x70) | (irqf ? kRegCIrqf : 0));
  m_irq->set_level(irqf);
}

uint8_t CmosRtc::read_register(uint8_t index) {
  State& s = m_state;
  const uint64_t now_ns = m_now();
  switch (index) {
    case kSeconds: case kMinutes: case kHours: case kDayOfWeek: case kDayOfMonth: case kMonth: case kYear:
    case kCentury:
      if (!set_mode()) render_time(now_ns);
      return s.cmos[index];
    case kRegA: {
      // UIP: an update is due within 244 us ([146818] "Update Cycle").
      const int64_t t = guest_time_ns(now_ns);
      const int64_t into_second = t - floor_div(t, kNsPerSecond) * kNsPerSecond;
      const bool uip = !set_mode() && into_second >= kNsPerSecond - int64_t(kUipLeadNs);
      return uint8_t((s.cmos[kRegA] & 0x7F) | (uip ? kRegAUip : 0));
    }
    case kRegC: {
      // Reading C returns the flags and clears them, which drops IRQ 8.
      update(now_ns);
      const uint8_t value = s.cmos[kRegC];
      s.cmos[kRegC] = 0;
      update_irq();
      return value;
    }
    case kRegD:
      return kRegDVrt;  // the battery is always good
    default:
      return s.cmos[index];
  }
}

void CmosRtc::write_register(uint8_t index, uint8_t value) {
  State& s = m_state;
  const uint64_t now_ns = m_now();
  switch (index) {
    case kSeconds: case kMinutes: case kHours: case kDayOfWeek: case kDayOfMonth: case kMonth: case kYear:
    case kCentury:
      if (set_mode()) {
        s.cmos[index] = value;  // takes effect when SET is cleared
      } else {
        // A write without SET: the chip would take it at once.
        render_time(now_ns);
        s.cmos[index] = value;
        commit_time(now_ns);
      }
      break;
    case kRegA: {
      const uint8_t before = s.cmos[kRegA];
      s.cmos[kRegA] = value & 0x7F;  // UIP is read-only
      if ((before ^ value) & 0x7F) {
        update(now_ns);  // flag what the old rate produced first
        restart_periodic(now_ns);
      }
      break;
    }
    case kRegB: {
      update(now_ns);
      const bool was_set = set_mode();
      // [146818] "Register B": writing SET=1 aborts updates and clears UIE.
      if (value & kRegBSet) value &= uint8_t(~kRegBUie);
      if (!was_set && (value & kRegBSet)) render_time(now_ns);  // freeze the current time
      s.cmos[kRegB] = value;
      if (was_set && !(value & kRegBSet)) commit_time(now_ns);
      break;
    }
    case kRegC:
    case kRegD:
      note_unexpected(index == kRegC ? "write to read-only register C" : "write to read-only register D", index,
                      value);
      return;
    default:
      s.cmos[index] = value;
      return;
  }
  update_irq();
}

uint32_t CmosRtc::io_read(uint16_t offset, unsigned) {
  if (offset == 0) {
    // Port 0x70 is write-only on the AT.
    note_unexpected("read of the index port", offset, 0);
    return 0xFF;
  }
  return read_register(m_state.index);
}

void CmosRtc::io_write(uint16_t offset, unsigned, uint32_t value) {
  if (offset == 0) {
    // Port 0x70: bits 6-0 select the CMOS byte, bit 7 masks NMI on the AT.
    m_state.index = uint8_t(value & 0x7F);
    m_state.nmi_disabled = value & 0x80;
    return;
  }
  write_register(m_state.index, uint8_t(value));
}

}  // namespace bt86::devices
