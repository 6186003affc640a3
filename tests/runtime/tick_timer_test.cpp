// TickTimer: one-shot ticks at an absolute time (the machine arms them at
// its next device deadline) and the periodic tick. The tick signal stays
// blocked here and is taken with sigtimedwait, so no handler is involved
// and nothing else in the process sends it (this test has its own binary).
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <cstdint>

#include "runtime/host_signals.h"
#include "runtime/tick_timer.h"

namespace bt86::test {
namespace {

using runtime::TickTimer;

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

class TickTimerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sigemptyset(&m_set);
    sigaddset(&m_set, runtime::detail::tick_signal());
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &m_set, &m_old), 0);
    while (wait_ms(0)) {
    }
  }
  void TearDown() override {
    while (wait_ms(0)) {
    }
    pthread_sigmask(SIG_SETMASK, &m_old, nullptr);
  }
  // True if a tick arrived within ms milliseconds.
  bool wait_ms(int ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    siginfo_t si;
    for (;;) {
      const int r = sigtimedwait(&m_set, &si, &ts);
      if (r >= 0) return true;
      if (errno != EINTR) return false;
    }
  }

  sigset_t m_set, m_old;
};

TEST_F(TickTimerTest, ArmAtFiresOnceNoEarlierThanItsTime) {
  TickTimer t;
  const uint64_t at = now_ns() + 20'000'000;
  ASSERT_TRUE(t.arm_at(at));
  ASSERT_TRUE(wait_ms(2000)) << "the tick never came";
  EXPECT_GE(now_ns(), at);
  EXPECT_FALSE(wait_ms(100)) << "a one-shot tick came twice";
}

TEST_F(TickTimerTest, ReArmingReplacesTheArmedTime) {
  TickTimer t;
  ASSERT_TRUE(t.arm_at(now_ns() + 600'000'000));
  const uint64_t at = now_ns() + 10'000'000;
  ASSERT_TRUE(t.arm_at(at));  // earlier: the 600 ms tick must not come as well
  ASSERT_TRUE(wait_ms(2000));
  EXPECT_GE(now_ns(), at);
  EXPECT_FALSE(wait_ms(800)) << "the replaced tick came too";
}

TEST_F(TickTimerTest, ATimeAlreadyPastFiresAtOnce) {
  TickTimer t;
  ASSERT_TRUE(t.arm_at(0));
  EXPECT_TRUE(wait_ms(1000));
  ASSERT_TRUE(t.arm_at(now_ns() - 1'000'000));
  EXPECT_TRUE(wait_ms(1000));
}

TEST_F(TickTimerTest, StopDisarms) {
  TickTimer t;
  ASSERT_TRUE(t.arm_at(now_ns() + 20'000'000));
  t.stop();
  EXPECT_FALSE(wait_ms(100));
}

TEST_F(TickTimerTest, StartTicksPeriodicallyUntilArmedOnce) {
  TickTimer t;
  ASSERT_TRUE(t.start(std::chrono::microseconds(5000)));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(wait_ms(2000)) << "tick " << i;
  // A one-shot arm ends the period.
  ASSERT_TRUE(t.arm_at(now_ns() + 5'000'000));
  while (wait_ms(0)) {
  }
  EXPECT_TRUE(wait_ms(2000));
  EXPECT_FALSE(wait_ms(100));
}

}  // namespace
}  // namespace bt86::test
