// fault_injector: runs a command as its ptrace tracee and makes one of its
// system calls fail, to walk every error path of `crlib dump` and `crlib
// restore` (tests/task/fault_test.cc).
//
//   fault_injector --report FILE count -- CMD ARGS...
//       Runs CMD; FILE gets "calls N", then "NAME COUNT" per system call,
//       then "site N S" per call: N its number, S the number of its site.
//   fault_injector --report FILE fail N [--errno E] -- CMD ARGS...
//       Runs CMD with its Nth counted call failing with errno E (EIO);
//       FILE gets "failed N NAME", or "not-reached N calls M" when CMD
//       made fewer calls this time.
// Either way the injector exits with CMD's exit code (128 + signal if a
// signal ended it); 125 on its own errors.
//
// What is followed and counted:
// - Only CMD's initial thread: no PTRACE_O_TRACECLONE/TRACEFORK. crlib's
//   worker threads are left alone, and the child a restore creates calls
//   PTRACE_TRACEME itself, which it could not if we traced it.
// - Only from main() on: a breakpoint at CMD's `main` (from its symbol
//   table) starts the count. The dynamic loader's and libc's start-up calls
//   are not the command's error paths; a failure there is the loader's
//   message.
// - Not the calls whose failure is a C++ runtime abort or cannot happen,
//   rather than an error path of the command:
//     memory management (mmap, munmap, mremap, brk, mprotect, madvise): a
//       failing malloc or operator new throws std::bad_alloc, and glibc's
//       free() does not check munmap/madvise;
//     futex: glibc calls __libc_fatal on an unexpected futex error;
//     thread creation (clone and clone3 with CLONE_THREAD): std::thread
//       throws std::system_error (a clone3 without CLONE_THREAD, such as
//       the one that creates a restored process, is counted);
//     calls that never return (exit, exit_group, rt_sigreturn, execve);
//     calls that cannot fail (getpid, gettid, getppid, get[e]uid,
//       get[e]gid, getpgrp, umask, sched_yield).
//
// A call's site is where in CMD's own code it was made: its number and the
// innermost kSiteDepth return addresses on the stack that point into CMD's
// executable text (the libc and libstdc++ frames between are left out). A
// loop over threads, pages or /proc lines calls from one site many times:
// the test fails a call of each site rather than every call. Sites are
// numbered in their order of first appearance, 1 on. The stack is scanned
// word by word, not unwound (crlib has no frame pointers): a word that is
// no return address (a function pointer, a stale slot in a live frame) can
// only split one site in two, which costs runs, never coverage.
//
// A failed call is skipped by the kernel (orig_rax = -1 at syscall entry)
// and returns -E (rax at syscall exit). Signals CMD receives are passed on
// to it, so it behaves as without the injector.
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

constexpr int kToolError = 125;

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "fault_injector: %s: %s\n", what.c_str(), strerror(errno));
  exit(kToolError);
}

[[noreturn]] void Usage() {
  fprintf(stderr,
          "usage: fault_injector --report FILE count -- CMD ARGS...\n"
          "       fault_injector --report FILE fail N [--errno E] -- CMD ARGS...\n");
  exit(kToolError);
}

// Names for the report, of the calls crlib and glibc make; others print
// as their number.
const char* SyscallName(long nr) {
  switch (nr) {
#define CASE(name) \
  case SYS_##name: \
    return #name;
    CASE(read) CASE(write) CASE(open) CASE(close) CASE(stat) CASE(fstat) CASE(lstat) CASE(poll)
    CASE(lseek) CASE(mmap) CASE(mprotect) CASE(munmap) CASE(brk) CASE(rt_sigaction)
    CASE(rt_sigprocmask) CASE(rt_sigreturn) CASE(ioctl) CASE(pread64) CASE(pwrite64) CASE(readv)
    CASE(writev) CASE(access) CASE(pipe) CASE(select) CASE(sched_yield) CASE(mremap)
    CASE(madvise) CASE(dup) CASE(dup2) CASE(nanosleep) CASE(getitimer) CASE(setitimer)
    CASE(getpid) CASE(sendfile) CASE(socket) CASE(clone) CASE(fork) CASE(vfork) CASE(execve)
    CASE(exit) CASE(wait4) CASE(kill) CASE(uname) CASE(fcntl) CASE(fsync) CASE(fdatasync)
    CASE(truncate) CASE(ftruncate) CASE(getcwd) CASE(chdir) CASE(fchdir) CASE(rename)
    CASE(mkdir) CASE(rmdir) CASE(unlink) CASE(readlink) CASE(chmod) CASE(fchmod) CASE(umask)
    CASE(getrlimit) CASE(getrusage) CASE(ptrace) CASE(getuid) CASE(getgid) CASE(setuid)
    CASE(setgid) CASE(geteuid) CASE(getegid) CASE(setpgid) CASE(getppid) CASE(getpgrp)
    CASE(setsid) CASE(setresuid) CASE(setresgid) CASE(getpgid) CASE(getsid) CASE(sigaltstack)
    CASE(personality) CASE(statfs) CASE(fstatfs) CASE(prctl) CASE(arch_prctl) CASE(chroot)
    CASE(gettid) CASE(tkill) CASE(futex) CASE(getdents64) CASE(set_tid_address)
    CASE(clock_gettime) CASE(clock_nanosleep) CASE(exit_group) CASE(tgkill) CASE(waitid)
    CASE(openat) CASE(newfstatat) CASE(unlinkat) CASE(renameat) CASE(readlinkat)
    CASE(set_robust_list) CASE(get_robust_list) CASE(tee) CASE(splice) CASE(dup3) CASE(pipe2)
    CASE(preadv) CASE(pwritev) CASE(rt_tgsigqueueinfo) CASE(rt_sigqueueinfo) CASE(prlimit64)
    CASE(process_vm_readv) CASE(process_vm_writev) CASE(kcmp) CASE(renameat2) CASE(getrandom)
    CASE(memfd_create) CASE(statx) CASE(rseq) CASE(pidfd_open) CASE(clone3) CASE(close_range)
    CASE(openat2) CASE(pidfd_send_signal) CASE(faccessat2) CASE(sched_getaffinity)
    CASE(linkat) CASE(copy_file_range) CASE(fallocate) CASE(sync_file_range) CASE(fadvise64)
    CASE(ppoll) CASE(pselect6) CASE(epoll_wait) CASE(restart_syscall)
#undef CASE
    default:
      return nullptr;
  }
}

std::string NameOf(long nr) {
  const char* n = SyscallName(nr);
  return n ? n : "syscall_" + std::to_string(nr);
}

// The calls never failed nor counted; the file comment says why.
bool Excluded(pid_t pid, long nr, const uint64_t args[6]) {
  switch (nr) {
    case SYS_mmap: case SYS_munmap: case SYS_mremap: case SYS_brk: case SYS_mprotect:
    case SYS_madvise: case SYS_futex: case SYS_exit: case SYS_exit_group: case SYS_rt_sigreturn:
    case SYS_execve: case SYS_getpid: case SYS_gettid: case SYS_getppid: case SYS_getuid:
    case SYS_geteuid: case SYS_getgid: case SYS_getegid: case SYS_getpgrp: case SYS_umask:
    case SYS_sched_yield:
      return true;
    case SYS_clone:
      return (args[0] & CLONE_THREAD) != 0;
    case SYS_clone3: {
      uint64_t flags = 0;  // the first field of struct clone_args
      iovec local{&flags, sizeof(flags)};
      iovec remote{reinterpret_cast<void*>(args[0]), sizeof(flags)};
      if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != sizeof(flags)) return true;
      return (flags & CLONE_THREAD) != 0;
    }
    default:
      return false;
  }
}

// The run-time address of `main` in the stopped, just exec'd `pid`: its
// value in the executable's symbol table, plus the load bias (AT_ENTRY
// minus the ELF entry point). The executable is mapped, not read: crlib
// with its debug information is some 36 MB, and reading all of it took
// more than half a second of every run.
uint64_t MainAddress(pid_t pid) {
  const std::string exe = "/proc/" + std::to_string(pid) + "/exe";
  const int fd = open(exe.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) Die("cannot open " + exe);
  void* map = mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) Die("mmap " + exe);
  close(fd);
  // Left mapped: the injector runs one command and exits.
  const std::string_view elf(static_cast<const char*>(map), st.st_size);
  if (elf.size() < sizeof(Elf64_Ehdr)) Die("cannot read " + exe);
  auto at = [&](uint64_t off, size_t n) {
    if (off + n > elf.size()) {
      errno = EINVAL;
      Die("truncated ELF file " + exe);
    }
    return elf.data() + off;
  };
  Elf64_Ehdr eh;
  memcpy(&eh, at(0, sizeof(eh)), sizeof(eh));
  uint64_t main_value = 0;
  for (int i = 0; i < eh.e_shnum && main_value == 0; ++i) {
    Elf64_Shdr sh;
    memcpy(&sh, at(eh.e_shoff + i * sizeof(sh), sizeof(sh)), sizeof(sh));
    if (sh.sh_type != SHT_SYMTAB) continue;
    Elf64_Shdr strtab;
    memcpy(&strtab, at(eh.e_shoff + sh.sh_link * sizeof(sh), sizeof(sh)), sizeof(sh));
    for (uint64_t off = 0; off + sizeof(Elf64_Sym) <= sh.sh_size; off += sizeof(Elf64_Sym)) {
      Elf64_Sym sym;
      memcpy(&sym, at(sh.sh_offset + off, sizeof(sym)), sizeof(sym));
      if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_value == 0) continue;
      if (strcmp(at(strtab.sh_offset + sym.st_name, 1), "main") == 0) {
        main_value = sym.st_value;
        break;
      }
    }
  }
  if (main_value == 0) {
    errno = ENOENT;
    Die("no symbol 'main' in " + exe + " (stripped?)");
  }
  std::ifstream auxv("/proc/" + std::to_string(pid) + "/auxv", std::ios::binary);
  uint64_t pair[2];
  while (auxv.read(reinterpret_cast<char*>(pair), sizeof(pair))) {
    if (pair[0] == AT_ENTRY) return main_value + (pair[1] - eh.e_entry);
  }
  errno = ENOENT;
  Die("no AT_ENTRY in /proc/" + std::to_string(pid) + "/auxv");
}

// Return addresses per site: enough to tell apart a helper (ReadFile)
// called from different places, and its callers' callers.
constexpr int kSiteDepth = 3;
// How much of the stack above the stack pointer is scanned for them.
constexpr size_t kSiteScanBytes = 4096;

// The executable mappings of `pid`'s executable (CMD's own code: crlib
// links its library statically), as [start, end) pairs.
std::vector<std::pair<uint64_t, uint64_t>> ExecutableText(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  char exe[4096];
  const ssize_t n = readlink((proc + "/exe").c_str(), exe, sizeof(exe) - 1);
  if (n <= 0) Die("readlink " + proc + "/exe");
  exe[n] = 0;
  std::vector<std::pair<uint64_t, uint64_t>> text;
  std::ifstream maps(proc + "/maps");
  for (std::string line; std::getline(maps, line);) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, path;
    in >> range >> perms >> offset >> dev >> inode;
    std::getline(in >> std::ws, path);
    if (perms.size() < 3 || perms[2] != 'x' || path != exe) continue;
    const size_t dash = range.find('-');
    text.emplace_back(std::stoull(range.substr(0, dash), nullptr, 16),
                      std::stoull(range.substr(dash + 1), nullptr, 16));
  }
  if (text.empty()) {
    errno = ENOENT;
    Die("no executable mapping of " + std::string(exe) + " in " + proc + "/maps");
  }
  return text;
}

// The site key of the call `nr` that `pid` is entering: the number and
// the first kSiteDepth words above the stack pointer that point into `text`.
std::vector<uint64_t> SiteKey(pid_t pid, long nr,
                              const std::vector<std::pair<uint64_t, uint64_t>>& text) {
  user_regs_struct regs;
  if (ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) Die("ptrace(GETREGS)");
  uint64_t stack[kSiteScanBytes / sizeof(uint64_t)];
  iovec local{stack, sizeof(stack)};
  iovec remote{reinterpret_cast<void*>(regs.rsp), sizeof(stack)};
  const ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);  // short at the top
  std::vector<uint64_t> key = {static_cast<uint64_t>(nr)};
  for (ssize_t i = 0; i < got / 8 && static_cast<int>(key.size()) <= kSiteDepth; ++i) {
    for (const auto& [start, end] : text) {
      if (stack[i] >= start && stack[i] < end) key.push_back(stack[i]);
    }
  }
  return key;
}

// waitpid for our one tracee; exits with its status once it has ended.
int WaitStop(pid_t pid, const std::function<void(int)>& on_exit) {
  int status;
  while (waitpid(pid, &status, __WALL) < 0) {
    if (errno != EINTR) Die("waitpid");
  }
  if (WIFEXITED(status)) on_exit(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) on_exit(128 + WTERMSIG(status));
  return status;
}

// The signal to pass on at a stop that is not ours (not a syscall stop,
// not a ptrace event): a signal-delivery stop passes its signal; a
// group-stop (PTRACE_GETSIGINFO fails) passes none.
int SignalToForward(pid_t pid, int status) {
  const int sig = WSTOPSIG(status);
  siginfo_t si;
  if (ptrace(PTRACE_GETSIGINFO, pid, nullptr, &si) != 0) return 0;
  return sig;
}

}  // namespace

int main(int argc, char** argv) {
  std::string report_path, mode;
  long fail_at = 0;
  int fail_errno = EIO;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--report" && i + 1 < argc) {
      report_path = argv[++i];
    } else if (a == "--errno" && i + 1 < argc) {
      fail_errno = atoi(argv[++i]);
    } else if (a == "count") {
      mode = a;
    } else if (a == "fail" && i + 1 < argc) {
      mode = a;
      fail_at = atol(argv[++i]);
    } else {
      Usage();
    }
  }
  if (mode.empty() || i >= argc || report_path.empty() || (mode == "fail" && fail_at <= 0)) {
    Usage();
  }
  FILE* report = fopen(report_path.c_str(), "we");
  if (report == nullptr) Die("open " + report_path);

  pid_t pid = fork();
  if (pid < 0) Die("fork");
  if (pid == 0) {
    if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) _exit(kToolError);
    raise(SIGSTOP);
    execvp(argv[i], argv + i);
    fprintf(stderr, "fault_injector: exec %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }

  long calls = 0;
  std::map<std::string, long> histogram;
  std::vector<std::pair<uint64_t, uint64_t>> text;  // count mode: CMD's code, for sites
  std::map<std::vector<uint64_t>, long> site_numbers;
  std::vector<long> call_sites;  // call_sites[n - 1]: the site of call n
  std::string failed_name;
  auto finish = [&](int code) {
    if (mode == "count") {
      fprintf(report, "calls %ld\n", calls);
      for (const auto& [name, n] : histogram) fprintf(report, "%s %ld\n", name.c_str(), n);
      for (size_t n = 0; n < call_sites.size(); ++n) {
        fprintf(report, "site %zu %ld\n", n + 1, call_sites[n]);
      }
    } else if (!failed_name.empty()) {
      fprintf(report, "failed %ld %s\n", fail_at, failed_name.c_str());
    } else {
      fprintf(report, "not-reached %ld calls %ld\n", fail_at, calls);
    }
    fclose(report);
    exit(code);
  };
  auto ended_early = [&](int code) {
    fprintf(stderr, "fault_injector: %s ended (code %d) before main()\n", argv[i], code);
    exit(kToolError);
  };

  // Stopped before exec: from here we see the exec, then run to main().
  int status = WaitStop(pid, ended_early);
  if (ptrace(PTRACE_SETOPTIONS, pid, nullptr,
             PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL) != 0) {
    Die("ptrace(SETOPTIONS)");
  }
  int forward = 0;
  uint64_t main_at = 0, saved_word = 0;
  for (;;) {
    if (ptrace(PTRACE_CONT, pid, nullptr, forward) != 0) Die("ptrace(CONT)");
    forward = 0;
    status = WaitStop(pid, ended_early);
    if (status >> 8 == (SIGTRAP | (PTRACE_EVENT_EXEC << 8))) {
      main_at = MainAddress(pid);
      errno = 0;
      saved_word = static_cast<uint64_t>(ptrace(PTRACE_PEEKTEXT, pid, main_at, nullptr));
      if (errno != 0) Die("ptrace(PEEKTEXT) at main");
      uint64_t trap = (saved_word & ~uint64_t{0xff}) | 0xcc;  // int3
      if (ptrace(PTRACE_POKETEXT, pid, main_at, trap) != 0) Die("ptrace(POKETEXT) at main");
      continue;
    }
    if (main_at != 0 && WSTOPSIG(status) == SIGTRAP) {
      user_regs_struct regs;
      if (ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) Die("ptrace(GETREGS)");
      if (regs.rip == main_at + 1) {
        if (ptrace(PTRACE_POKETEXT, pid, main_at, saved_word) != 0) Die("ptrace(POKETEXT)");
        regs.rip = main_at;
        if (ptrace(PTRACE_SETREGS, pid, nullptr, &regs) != 0) Die("ptrace(SETREGS)");
        if (mode == "count") text = ExecutableText(pid);
        break;
      }
    }
    forward = SignalToForward(pid, status);
  }

  // From main() on: every system call stops at entry and exit.
  bool failing = false;  // the call now inside the kernel is the one failed
  for (;;) {
    if (ptrace(PTRACE_SYSCALL, pid, nullptr, forward) != 0) Die("ptrace(SYSCALL)");
    forward = 0;
    status = WaitStop(pid, finish);
    if (WSTOPSIG(status) != (SIGTRAP | 0x80)) {
      if (status >> 16 == 0) forward = SignalToForward(pid, status);
      continue;
    }
    __ptrace_syscall_info info;
    if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof(info), &info) <= 0) {
      Die("ptrace(GET_SYSCALL_INFO)");
    }
    if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
      const long nr = static_cast<long>(info.entry.nr);
      if (Excluded(pid, nr, reinterpret_cast<const uint64_t*>(info.entry.args))) continue;
      ++calls;
      ++histogram[NameOf(nr)];
      if (mode == "count") {
        auto site = site_numbers.emplace(SiteKey(pid, nr, text), site_numbers.size() + 1);
        call_sites.push_back(site.first->second);
      }
      if (mode == "fail" && calls == fail_at) {
        failing = true;
        failed_name = NameOf(nr);
        // The kernel skips a call whose number is -1.
        if (ptrace(PTRACE_POKEUSER, pid, offsetof(user_regs_struct, orig_rax), -1L) != 0) {
          Die("ptrace(POKEUSER orig_rax)");
        }
      }
    } else if (info.op == PTRACE_SYSCALL_INFO_EXIT && failing) {
      failing = false;
      if (ptrace(PTRACE_POKEUSER, pid, offsetof(user_regs_struct, rax),
                 static_cast<long>(-fail_errno)) != 0) {
        Die("ptrace(POKEUSER rax)");
      }
    }
  }
}
