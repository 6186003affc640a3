// bt86's own memory, as the host kernel counts it (/proc/self/status), for
// --stats: what bt86 costs beyond the guest's RAM. Guest RAM is a memfd, so
// its resident pages are shared memory (RssShmem, counted once per mapping);
// everything else resident (RssAnon: translation cache, lookup table, shadow
// and translator metadata, heap, stacks; RssFile: bt86's code and libraries)
// is bt86's own.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace bt86::monitor {

struct HostMemory {
  double anon_mib = 0;   // RssAnon
  double file_mib = 0;   // RssFile
  double shmem_mib = 0;  // RssShmem (guest RAM, counted per mapping)
  double peak_mib = 0;   // VmHWM (peak resident, all kinds)
  double beyond_guest_ram_mib() const { return anon_mib + file_mib; }
};

// Parses the text of /proc/<pid>/status.
Result<HostMemory> parse_proc_status(std::string_view text);

// One line for --stats: "memory: beyond guest RAM: X MiB (...)".
std::string own_memory_line();

}  // namespace bt86::monitor
