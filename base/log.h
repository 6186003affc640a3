// One named spdlog logger per subsystem ("runtime", "mmu", "monitor", ...),
// all writing to stderr so that guest output on stdout stays clean.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string_view>

namespace bt86::log {

// The logger for a subsystem; created on first use with the global level.
std::shared_ptr<spdlog::logger> get(std::string_view subsystem);

// Parses "trace|debug|info|warn|error|off"; false if the name is unknown.
bool set_level(std::string_view level_name);

}  // namespace bt86::log
