#include "monitor/host_memory.h"

#include <gtest/gtest.h>

namespace bt86::monitor {
namespace {

constexpr const char* kStatus =
    "Name:\tbt86\n"
    "VmPeak:\t 8000000 kB\n"
    "VmHWM:\t  307200 kB\n"
    "VmRSS:\t  300000 kB\n"
    "RssAnon:\t   20480 kB\n"
    "RssFile:\t    5120 kB\n"
    "RssShmem:\t  274400 kB\n";

TEST(HostMemory, ParsesTheResidentSetFields) {
  auto m = parse_proc_status(kStatus);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_DOUBLE_EQ(m->anon_mib, 20.0);
  EXPECT_DOUBLE_EQ(m->file_mib, 5.0);
  EXPECT_DOUBLE_EQ(m->shmem_mib, 274400.0 / 1024);
  EXPECT_DOUBLE_EQ(m->peak_mib, 300.0);
  EXPECT_DOUBLE_EQ(m->beyond_guest_ram_mib(), 25.0);
}

TEST(HostMemory, AMissingFieldIsAnError) {
  EXPECT_FALSE(parse_proc_status("Name:\tbt86\nRssAnon:\t 1 kB\n"));
  EXPECT_FALSE(parse_proc_status("RssAnon:\t x kB\nRssFile:\t1 kB\nRssShmem:\t1 kB\nVmHWM:\t1 kB\n"));
}

TEST(HostMemory, OwnLineNamesTheFigureMeasureShReads) {
  const std::string line = own_memory_line();
  EXPECT_EQ(line.rfind("memory: beyond guest RAM: ", 0), 0u) << line;
}

}  // namespace
}  // namespace bt86::monitor
