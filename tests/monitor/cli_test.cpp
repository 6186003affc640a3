// Unit tests of the command-line parser.
#include "monitor/cli.h"

#include <gtest/gtest.h>

namespace bt86::monitor {
namespace {

Result<Options> parse(std::vector<std::string> args) { return Cli::parse(args); }

TEST(Cli, Defaults) {
  auto o = parse({"kernel.elf"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->kernel, "kernel.elf");
  EXPECT_EQ(o->memory_mib, 256u);
  EXPECT_EQ(o->log_level, "warn");
  EXPECT_FALSE(o->stats);
  EXPECT_FALSE(o->initrd);
  EXPECT_FALSE(o->append);
  EXPECT_EQ(o->user_code, "auto");
}

TEST(Cli, AllOptionsBothSpellings) {
  auto o = parse({"--memory", "64", "--initrd=rd.img", "--append", "console=ttyS0 quiet", "--log=debug",
                  "--stats", "--user-code", "translated", "bzImage"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->memory_mib, 64u);
  EXPECT_EQ(*o->initrd, "rd.img");
  EXPECT_EQ(*o->append, "console=ttyS0 quiet");
  EXPECT_EQ(o->log_level, "debug");
  EXPECT_TRUE(o->stats);
  EXPECT_EQ(o->user_code, "translated");
  EXPECT_EQ(o->kernel, "bzImage");
}

TEST(Cli, MemoryLimits) {
  EXPECT_TRUE(parse({"--memory=16", "k"}).ok());
  EXPECT_TRUE(parse({"--memory=3072", "k"}).ok());
  for (const char* bad : {"8", "15", "3073", "4000", "99999999999999999999999"}) {
    auto o = parse({"--memory", bad, "k"});
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_NE(o.error().message.find(std::string("--memory ") + bad), std::string::npos) << o.error().message;
    EXPECT_NE(o.error().message.find("out of range"), std::string::npos) << o.error().message;
  }
  for (const char* bad : {"abc", "", "64M", "-5", "1e3"}) {
    auto o = parse({"--memory", bad, "k"});
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_NE(o.error().message.find("--memory"), std::string::npos) << o.error().message;
  }
}

TEST(Cli, Errors) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const Case cases[] = {
      {{}, "KERNEL"},
      {{"--stats"}, "KERNEL"},
      {{"--bogus", "k"}, "--bogus"},
      {{"--bogus=1", "k"}, "--bogus"},
      {{"k", "--memory"}, "--memory"},
      {{"--log", "loud", "k"}, "loud"},
      {{"--user-code=fast", "k"}, "fast"},
      {{"--stats=yes", "k"}, "--stats"},
      {{"k1", "k2"}, "k2"},
  };
  for (const auto& c : cases) {
    auto o = parse(c.args);
    ASSERT_FALSE(o.ok()) << c.names;
    EXPECT_NE(o.error().message.find(c.names), std::string::npos) << o.error().message;
  }
}

TEST(Cli, HelpWinsAndUsageListsStatuses) {
  auto o = parse({"--help"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->help);
  EXPECT_TRUE(parse({"-h", "k"})->help);
  const std::string usage = Cli::usage();
  for (const char* word : {"--memory", "--initrd", "--append", "--log", "--stats", "--user-code", "exit status", "guest error"})
    EXPECT_NE(usage.find(word), std::string::npos) << word;
}

TEST(Cli, DoubleDashEndsOptions) {
  auto o = parse({"--", "--weird-name"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->kernel, "--weird-name");
}

}  // namespace
}  // namespace bt86::monitor
