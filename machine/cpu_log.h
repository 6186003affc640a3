// The "cpu" logger, shared by the instruction interpreter and interrupt
// delivery (one spdlog instance: an inline function's static is one object).
#pragma once

#include "base/log.h"

namespace bt86::machine {

inline spdlog::logger& cpu_logger() {
  static std::shared_ptr<spdlog::logger> instance = bt86::log::get("cpu");
  return *instance;
}

}  // namespace bt86::machine
