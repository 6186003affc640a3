// Parses the bt86 command line (`bt86 [options] KERNEL`) into Options.
#include "monitor/cli.h"

#include <charconv>

#include "mmu/guest_memory.h"

namespace bt86::monitor {
namespace {

bool takes_value(const std::string& name) {
  return name == "--memory" || name == "--initrd" || name == "--append" || name == "--log" ||
         name == "--module" || name == "--user-code";
}

bool known_flag(const std::string& name) {
  return name == "--stats" || name == "--trace-bt" || name == "--help" || name == "-h";
}

Result<uint32_t> parse_memory(const std::string& text) {
  const std::string shown = "--memory " + text;
  uint64_t value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (text.empty() || ptr != last) {
    if (ec == std::errc::result_out_of_range && ptr == last)
      return make_error(shown + ": out of range (16..3072 MiB)");
    return make_error(shown + ": not a number (size in MiB, 16..3072)");
  }
  if (ec == std::errc::result_out_of_range || value < mmu::GuestMemory::kMinMiB ||
      value > mmu::GuestMemory::kMaxMiB)
    return make_error(shown + ": out of range (16..3072 MiB)");
  return uint32_t(value);
}

bool valid_log_level(const std::string& level) {
  for (const char* name : {"trace", "debug", "info", "warn", "error", "off"})
    if (level == name) return true;
  return false;
}

}  // namespace

Result<Options> Cli::parse(const std::vector<std::string>& args) {
  Options opt;
  std::vector<std::string> positional;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_done || arg.empty() || arg[0] != '-' || arg == "-") {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (const size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (known_flag(name)) {
      if (value) return make_error(name + ": takes no value");
      if (name == "--stats") opt.stats = true;
      else if (name == "--trace-bt") opt.trace_bt = true;
      else opt.help = true;
      continue;
    }
    if (!takes_value(name)) return make_error(name + ": unknown option (see --help)");
    if (!value) {
      if (i + 1 >= args.size()) return make_error(name + ": missing value");
      value = args[++i];
    }
    if (name == "--memory") {
      auto mib = parse_memory(*value);
      if (!mib) return mib.error();
      opt.memory_mib = *mib;
    } else if (name == "--initrd") {
      if (value->empty()) return make_error("--initrd: empty file name");
      opt.initrd = *value;
    } else if (name == "--module") {
      // FILE or FILE,COMMAND LINE (Multiboot modules, QEMU's -initrd syntax).
      const size_t comma = value->find(',');
      Module m{value->substr(0, comma), comma == std::string::npos ? "" : value->substr(comma + 1)};
      if (m.file.empty()) return make_error("--module: empty file name");
      opt.modules.push_back(std::move(m));
    } else if (name == "--append") {
      opt.append = *value;
    } else if (name == "--user-code") {
      if (*value != "auto" && *value != "direct" && *value != "translated")
        return make_error("--user-code " + *value + ": unknown mode (auto|direct|translated)");
      opt.user_code = *value;
    } else if (name == "--log") {
      if (!valid_log_level(*value))
        return make_error("--log " + *value + ": unknown level (trace|debug|info|warn|error|off)");
      opt.log_level = *value;
    }
  }
  if (opt.help) return opt;
  if (positional.empty()) return make_error("no KERNEL given (usage: bt86 [options] KERNEL, see --help)");
  if (positional.size() > 1) return make_error(positional[1] + ": unexpected argument (only one KERNEL)");
  opt.kernel = positional[0];
  return opt;
}

std::string Cli::usage() {
  return R"(usage: bt86 [options] KERNEL

Runs a 32-bit x86 guest. KERNEL is one of:
  a Linux bzImage            (booted in 32-bit protected mode with --initrd
                              and --append, Linux boot protocol)
  a Multiboot v1 ELF kernel  (with --module and --append)
  an ELF32 i386 executable   (a user program, run directly in user mode
                              with a tiny Linux-i386 int 0x80 personality)

options (also accepted as --opt=value):
  --memory MiB      guest RAM in MiB, 16..3072 (default 256)
  --initrd FILE     initial ramdisk for a Linux kernel
  --append CMDLINE  kernel command line
  --module FILE[,CMDLINE]
                    a Multiboot module (repeat for more)
  --log LEVEL       trace|debug|info|warn|error|off (default warn)
  --user-code MODE  how guest user code runs: auto (default: directly on the
                    CPU, translated while a process enters its kernel very
                    often), direct, or translated (always)
  --stats           print exit, translation and mapping statistics to stderr at the end
  --trace-bt        print every translated guest block beside its host code (stderr)
  --help, -h        print this help and exit

exit status:
  0..255  the status the guest passed to exit()
  2       bad command line or input file (missing, unreadable, not a kernel)
  3       the host refused a resource bt86 needs (memory, signals, seccomp)
  4       guest error: the guest faulted or did something bt86 cannot run
)";
}

}  // namespace bt86::monitor
