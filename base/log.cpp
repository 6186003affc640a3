#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace bt86::log {
namespace {
std::mutex g_mutex;
spdlog::level::level_enum g_level = spdlog::level::warn;
}  // namespace

std::shared_ptr<spdlog::logger> get(std::string_view subsystem) {
  std::lock_guard lock(g_mutex);
  std::string name(subsystem);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_level(g_level);
  logger->set_pattern("[%n] %^%l%$: %v");
  return logger;
}

bool set_level(std::string_view level_name) {
  auto level = spdlog::level::from_str(std::string(level_name));
  // from_str maps unknown names to "off"; only accept "off" when asked for.
  if (level == spdlog::level::off && level_name != "off") return false;
  std::lock_guard lock(g_mutex);
  g_level = level;
  spdlog::set_level(level);
  return true;
}

}  // namespace bt86::log
