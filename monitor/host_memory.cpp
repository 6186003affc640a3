#include "monitor/host_memory.h"

#include <fstream>
#include <iterator>

#include <spdlog/fmt/fmt.h>

namespace bt86::monitor {
namespace {

// "Name:    1234 kB" -> MiB; false if the field is absent or malformed.
bool field_mib(std::string_view text, std::string_view name, double& out) {
  size_t at = 0;
  while ((at = text.find(name, at)) != std::string_view::npos) {
    if ((at == 0 || text[at - 1] == '\n') && text.substr(at + name.size(), 1) == ":") break;
    at += name.size();
  }
  if (at == std::string_view::npos) return false;
  size_t p = at + name.size() + 1;
  while (p < text.size() && (text[p] == ' ' || text[p] == '\t')) ++p;
  unsigned long long kb = 0;
  size_t digits = 0;
  while (p < text.size() && text[p] >= '0' && text[p] <= '9') {
    kb = kb * 10 + unsigned(text[p++] - '0');
    ++digits;
  }
  if (digits == 0 || text.substr(p, 3) != " kB") return false;
  out = double(kb) / 1024.0;
  return true;
}

}  // namespace

Result<HostMemory> parse_proc_status(std::string_view text) {
  HostMemory m;
  for (auto [name, dst] : {std::pair<std::string_view, double*>{"RssAnon", &m.anon_mib}, {"RssFile", &m.file_mib},
                           {"RssShmem", &m.shmem_mib}, {"VmHWM", &m.peak_mib}})
    if (!field_mib(text, name, *dst)) return make_error(fmt::format("no {} field in the process status", name));
  return m;
}

std::string own_memory_line() {
  std::ifstream in("/proc/self/status");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto m = parse_proc_status(text);
  if (!m) return "memory: unknown (" + m.error().message + ")\n";
  return fmt::format(
      "memory: beyond guest RAM: {:.1f} MiB (resident anonymous {:.1f} MiB: translation cache, tables, heap; "
      "files {:.1f} MiB: bt86 and its libraries); guest RAM resident {:.1f} MiB (shared, counted per mapping); "
      "peak resident {:.1f} MiB\n",
      m->beyond_guest_ram_mib(), m->anon_mib, m->file_mib, m->shmem_mib, m->peak_mib);
}

}  // namespace bt86::monitor
