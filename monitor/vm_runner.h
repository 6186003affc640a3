// Runs a whole-machine guest (a Multiboot kernel or a Linux bzImage): reads
// the files the command line names, builds the Machine, loads the guest,
// connects COM1 to the terminal, runs, and turns the way the run ended into
// bt86's exit status and one line for the user.
#pragma once

#include "monitor/cli.h"
#include "monitor/kernel_image.h"

namespace bt86::monitor {

// Returns bt86's exit status: the debug-exit value ((v << 1) | 1), 0 for a
// power-off, reboot or Ctrl-A x, kExitUsage for unusable input,
// kExitHostFailure, or kExitGuestError (triple fault, panic, a guest bt86
// cannot run).
int run_vm(const Options& options, const KernelImage& image);

}  // namespace bt86::monitor
