// Helpers for the monitor tests: build small ELF/bzImage files in memory and
// run the bt86 binary as a child process, capturing its output and status.
#pragma once

#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace bt86::monitor::test {

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

inline std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "bt86_monitor_" + std::to_string(getpid()) + "_" + name;
}

// A minimal ELF32 i386 executable: one PT_LOAD of `code` at vaddr, entry at
// its start; `extra` bytes (e.g. a Multiboot header) follow the headers.
inline std::vector<uint8_t> exit_seven_code() {
  // mov eax, 1; mov ebx, 7; int 0x80
  return std::vector<uint8_t>{0xb8, 1, 0, 0, 0, 0xbb, 7, 0, 0, 0, 0xcd, 0x80};
}

struct ElfSpec {
  uint32_t vaddr = 0x08048000;
  std::vector<uint8_t> code = exit_seven_code();
  std::vector<uint8_t> extra;
  uint16_t machine = EM_386;
  uint16_t type = ET_EXEC;
  uint32_t flags = PF_R | PF_X;
  int64_t memsz_delta = 0;  // added to p_memsz
};

inline std::vector<uint8_t> build_elf(const ElfSpec& spec) {
  Elf32_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS32;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = spec.type;
  eh.e_machine = spec.machine;
  eh.e_version = EV_CURRENT;
  eh.e_phoff = sizeof(Elf32_Ehdr);
  eh.e_ehsize = sizeof(Elf32_Ehdr);
  eh.e_phentsize = sizeof(Elf32_Phdr);
  eh.e_phnum = 1;
  const uint32_t code_offset = uint32_t(sizeof(Elf32_Ehdr) + sizeof(Elf32_Phdr) + spec.extra.size());
  // The whole file is loaded, so the entry point is vaddr + code_offset.
  eh.e_entry = spec.vaddr + code_offset;
  Elf32_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0;
  ph.p_vaddr = ph.p_paddr = spec.vaddr;
  ph.p_filesz = code_offset + uint32_t(spec.code.size());
  ph.p_memsz = uint32_t(int64_t(ph.p_filesz) + spec.memsz_delta);
  ph.p_flags = spec.flags;
  ph.p_align = 0x1000;
  std::vector<uint8_t> out(code_offset + spec.code.size());
  std::memcpy(out.data(), &eh, sizeof eh);
  std::memcpy(out.data() + sizeof eh, &ph, sizeof ph);
  std::memcpy(out.data() + sizeof eh + sizeof ph, spec.extra.data(), spec.extra.size());
  std::memcpy(out.data() + code_offset, spec.code.data(), spec.code.size());
  return out;
}

inline std::vector<uint8_t> multiboot_header(uint32_t flags = 0) {
  const uint32_t words[3] = {0x1badb002, flags, uint32_t(-(0x1badb002 + flags))};
  std::vector<uint8_t> out(12);
  std::memcpy(out.data(), words, 12);
  return out;
}

inline std::vector<uint8_t> fake_bzimage() {
  std::vector<uint8_t> out(8192, 0);
  out[0x1fe] = 0x55;
  out[0x1ff] = 0xaa;
  std::memcpy(&out[0x202], "HdrS", 4);
  out[0x206] = 0x0f;  // boot protocol 2.15
  out[0x207] = 0x02;
  return out;
}

struct RunResult {
  bool exited = false;
  int status = -1;   // exit status if exited
  int signal = 0;    // terminating signal otherwise
  bool timed_out = false;
  std::string out, err;
};

// Runs bt86 with args; kills it after timeout and says so.
inline RunResult run_bt86(const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) return {};
  std::vector<std::string> argv_s = {BT86_BINARY};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  RunResult r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, int(left.count())) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, size_t(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  r.exited = WIFEXITED(wstatus);
  if (r.exited) r.status = WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) r.signal = WTERMSIG(wstatus);
  return r;
}

}  // namespace bt86::monitor::test
