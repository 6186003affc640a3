// bt86 entry point: parses the command line, classifies KERNEL and runs it.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "base/log.h"
#include "monitor/cli.h"
#include "monitor/kernel_image.h"
#include "monitor/user_program.h"
#include "monitor/vm_runner.h"

namespace {

int fail(const std::string& message, int status) {
  std::fprintf(stderr, "bt86: %s\n", message.c_str());
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace bt86::monitor;
  auto options = Cli::parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!options) return fail(options.error().message, kExitUsage);
  if (options->help) {
    std::fputs(Cli::usage().c_str(), stdout);
    return 0;
  }
  bt86::log::set_level(options->log_level);
  auto log = bt86::log::get("monitor");
  // Guest output to a closed pipe must end in -EPIPE for the guest, not kill bt86.
  std::signal(SIGPIPE, SIG_IGN);

  auto image = KernelImage::load(options->kernel);
  if (!image) return fail(image.error().message, kExitUsage);
  if (options->initrd) {
    if (auto s = check_readable_file(*options->initrd); !s) return fail("--initrd " + s.error().message, kExitUsage);
  }
  log->info("{}: {}", image->name(), image->description());

  switch (image->kind()) {
    case ImageKind::LinuxBzImage:
    case ImageKind::Multiboot:
      return run_vm(*options, *image);
    case ImageKind::UserProgram:
      break;
  }
  if (options->initrd || options->append)
    log->warn("--initrd and --append are ignored for a user program");
  if (auto s = UserProgram::check_layout(*image, options->memory_mib); !s) return fail(s.error().message, kExitUsage);
  auto program = UserProgram::create(*image, UserProgramConfig{options->memory_mib, options->stats});
  if (!program) return fail(program.error().message, kExitHostFailure);
  return (*program)->run();
}
