#include "sys/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status.h"

namespace crlib::sys {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open %s", path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status st = Errno("read %s", path);
      close(fd);
      return st;
    }
    if (n == 0) break;
    out.append(buf, n);
  }
  close(fd);
  return out;
}

absl::StatusOr<std::string> ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  if (n < 0) return Errno("readlink %s", path);
  if (n == sizeof(buf)) return absl::OutOfRangeError("readlink " + path + ": target too long");
  return std::string(buf, n);
}

namespace {

bool ParseHex(absl::string_view s, uint64_t* out) {
  return absl::SimpleHexAtoi(s, out);
}

}  // namespace

namespace {

// One "start-end perms offset major:minor inode [path]" line.
absl::StatusOr<MapsEntry> ParseMapsLine(absl::string_view line) {
  MapsEntry e;
  std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(' ', 5));
  auto bad = [&] { return absl::DataLossError(absl::StrCat("unparsable maps line: ", line)); };
  if (f.size() < 5) return bad();
  std::pair<absl::string_view, absl::string_view> range = absl::StrSplit(f[0], '-');
  std::pair<absl::string_view, absl::string_view> dev = absl::StrSplit(f[3], ':');
  uint64_t major, minor;
  if (!ParseHex(range.first, &e.start) || !ParseHex(range.second, &e.end) ||
      f[1].size() != 4 || !ParseHex(f[2], &e.offset) || !ParseHex(dev.first, &major) ||
      !ParseHex(dev.second, &minor) || !absl::SimpleAtoi(f[4], &e.inode)) {
    return bad();
  }
  e.read = f[1][0] == 'r';
  e.write = f[1][1] == 'w';
  e.exec = f[1][2] == 'x';
  e.shared = f[1][3] == 's';
  e.dev_major = static_cast<uint32_t>(major);
  e.dev_minor = static_cast<uint32_t>(minor);
  if (f.size() == 6) e.path = std::string(absl::StripLeadingAsciiWhitespace(f[5]));
  return e;
}

}  // namespace

absl::StatusOr<std::vector<MapsEntry>> ParseMaps(absl::string_view text) {
  std::vector<MapsEntry> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    CRLIB_ASSIGN_OR_RETURN(MapsEntry e, ParseMapsLine(line));
    out.push_back(std::move(e));
  }
  return out;
}

namespace {

// Adds what one line of /proc/PID/smaps says to `out`.
absl::Status ParseSmapsLine(absl::string_view line, std::vector<MapsEntry>* out) {
  // "Key: value" lines follow their mapping's line, whose first word
  // (the address range) never ends with a colon.
  absl::string_view first = line.substr(0, line.find(' '));
  if (!absl::EndsWith(first, ":")) {
    CRLIB_ASSIGN_OR_RETURN(MapsEntry e, ParseMapsLine(line));
    out->push_back(std::move(e));
    return absl::OkStatus();
  }
  if (first == "ProtectionKey:" && !out->empty()) {
    (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(first.size())),
                           &out->back().protection_key);
    return absl::OkStatus();
  }
  if (first != "VmFlags:") return absl::OkStatus();
  if (out->empty()) return absl::DataLossError("smaps: VmFlags before any mapping");
  out->back().vm_flags = std::string(absl::StripAsciiWhitespace(line.substr(first.size())));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<MapsEntry>> ParseSmaps(absl::string_view text) {
  std::vector<MapsEntry> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    CRLIB_RETURN_IF_ERROR(ParseSmapsLine(line, &out));
  }
  return out;
}

absl::StatusOr<std::vector<MapsEntry>> ReadMaps(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::string text, ReadFile(absl::StrCat("/proc/", pid, "/maps")));
  return ParseMaps(text);
}

absl::StatusOr<std::vector<MapsEntry>> ReadSmaps(pid_t pid) {
  // Parsed as it is read, through one buffer, rather than gathered whole
  // first: smaps holds ~800 bytes per mapping (~170 KB for a process that
  // links libcrlib.so), and a string growing by doubling to that size
  // touches ~100 fresh pages, which on VMs that fault each one in from the
  // host (~10 us) cost a dump a millisecond.
  const std::string path = absl::StrCat("/proc/", pid, "/smaps");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open %s", path);
  std::vector<MapsEntry> out;
  std::string buf(64 << 10, '\0');
  size_t held = 0;  // bytes of buf not parsed yet: a line's beginning
  absl::Status st;
  for (bool end = false; !end && st.ok();) {
    if (held == buf.size()) buf.resize(2 * buf.size());  // a line longer than the buffer
    ssize_t n = read(fd, buf.data() + held, buf.size() - held);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = Errno("read %s", path);
      break;
    }
    end = n == 0;
    held += static_cast<size_t>(n);
    absl::string_view text(buf.data(), held);
    size_t start = 0;
    for (size_t nl; st.ok() && (nl = text.find('\n', start)) != text.npos; start = nl + 1) {
      if (nl > start) st = ParseSmapsLine(text.substr(start, nl - start), &out);
    }
    if (end && st.ok() && start < held) st = ParseSmapsLine(text.substr(start), &out);
    held -= start;
    memmove(buf.data(), buf.data() + start, held);
  }
  close(fd);
  CRLIB_RETURN_IF_ERROR(st);
  return out;
}

absl::StatusOr<std::string> StatusField(absl::string_view status, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (absl::ConsumePrefix(&line, key) && absl::ConsumePrefix(&line, ":")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return absl::NotFoundError(absl::StrCat("no ", key, " in /proc status"));
}

absl::StatusOr<LockLine> ParseLockLine(absl::string_view line) {
  std::vector<absl::string_view> w = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  LockLine lock;
  size_t i = 1;  // after "N:"
  if (w.size() > i && w[i] == "->") {
    lock.waiter = true;
    ++i;
  }
  auto bad = [&] { return absl::InvalidArgumentError(absl::StrCat("lock line: ", line)); };
  if (w.size() < i + 7) return bad();
  lock.kind = std::string(w[i]);
  lock.mode = std::string(w[i + 1]);
  lock.type = std::string(w[i + 2]);
  std::vector<absl::string_view> id = absl::StrSplit(w[i + 4], ':');
  if (!absl::SimpleAtoi(w[i + 3], &lock.pid) || id.size() != 3 ||
      !absl::SimpleHexAtoi(id[0], &lock.major) || !absl::SimpleHexAtoi(id[1], &lock.minor) ||
      !absl::SimpleAtoi(id[2], &lock.inode) || !absl::SimpleAtoi(w[i + 5], &lock.start) ||
      (w[i + 6] != "EOF" && !absl::SimpleAtoi(w[i + 6], &lock.end))) {
    return bad();
  }
  return lock;
}

absl::StatusOr<std::vector<std::string>> ReadStatFields(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::string stat, ReadFile(absl::StrCat("/proc/", pid, "/stat")));
  // comm may hold spaces and parentheses: split after the last ')'.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return absl::DataLossError("unparsable /proc/PID/stat");
  return absl::StrSplit(absl::StripAsciiWhitespace(absl::string_view(stat).substr(close + 1)), ' ');
}

namespace {

absl::StatusOr<std::vector<long>> ListNumbers(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return Errno("opendir %s", dir);
  std::vector<long> out;
  while (dirent* e = readdir(d)) {
    long n;
    if (absl::SimpleAtoi(e->d_name, &n)) out.push_back(n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::StatusOr<std::vector<pid_t>> ListThreads(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<long> n, ListNumbers(absl::StrCat("/proc/", pid, "/task")));
  return std::vector<pid_t>(n.begin(), n.end());
}

absl::StatusOr<UniqueFd> TakeFd(pid_t pid, int fd) {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd.fd < 0) return Errno("pidfd_open(%d)", pid);
  UniqueFd ours(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.fd, fd, 0)));
  if (ours.fd < 0) return Errno("pidfd_getfd of fd %d of pid %d", fd, pid);
  return ours;
}

absl::StatusOr<std::vector<int>> ListFds(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<long> n, ListNumbers(absl::StrCat("/proc/", pid, "/fd")));
  return std::vector<int>(n.begin(), n.end());
}

absl::StatusOr<std::vector<pid_t>> ListChildren(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<pid_t> threads, ListThreads(pid));
  std::vector<pid_t> out;
  for (pid_t tid : threads) {
    auto text = ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/children"));
    if (!text.ok()) continue;  // the thread exited meanwhile
    for (absl::string_view s : absl::StrSplit(*text, ' ', absl::SkipWhitespace())) {
      pid_t child;
      if (absl::SimpleAtoi(s, &child)) out.push_back(child);
    }
  }
  return out;
}

absl::StatusOr<std::vector<Limit>> ReadLimits(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/limits");
  CRLIB_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<Limit> limits;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  // A header line, then one line per resource in RLIMIT_* order: the name
  // (padded to 26 columns), the soft and hard limits, the units.
  constexpr size_t kNameWidth = 26;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].size() <= kNameWidth) return absl::DataLossError("unparsable line in " + path);
    std::vector<absl::string_view> v =
        absl::StrSplit(lines[i].substr(kNameWidth), ' ', absl::SkipWhitespace());
    Limit lim;
    auto parse = [](absl::string_view s, uint64_t* out) {
      if (s == "unlimited") {
        *out = ~uint64_t{0};  // RLIM_INFINITY
        return true;
      }
      return absl::SimpleAtoi(s, out);
    };
    if (v.size() < 2 || !parse(v[0], &lim.cur) || !parse(v[1], &lim.max)) {
      return absl::DataLossError(absl::StrCat("unparsable line in ", path, ": ", lines[i]));
    }
    limits.push_back(lim);
  }
  return limits;
}

bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

absl::StatusOr<uint64_t> StatusMask(absl::string_view status, absl::string_view key) {
  CRLIB_ASSIGN_OR_RETURN(std::string v, StatusField(status, key));
  uint64_t bits;
  if (!absl::SimpleHexAtoi(v, &bits)) {
    return absl::DataLossError(absl::StrCat("/proc status: unparsable ", key, ": ", v));
  }
  return bits;
}

bool AwaitTidRelease(pid_t tid, std::chrono::steady_clock::time_point deadline) {
  const int saved = errno;
  const bool wait = !ProcessExists(tid) && std::chrono::steady_clock::now() < deadline;
  if (wait) std::this_thread::sleep_for(std::chrono::microseconds(200));
  errno = saved;
  return wait;
}

absl::StatusOr<uint64_t> NonDefaultSignals(absl::string_view status) {
  uint64_t mask = 0;
  for (const char* key : {"SigIgn", "SigCgt"}) {
    CRLIB_ASSIGN_OR_RETURN(uint64_t bits, StatusMask(status, key));
    mask |= bits;
  }
  return mask;
}

absl::Status ReadProcessMemory(int mem_fd, pid_t pid, uint64_t address, void* buffer, size_t size) {
  auto* p = static_cast<char*>(buffer);
  // process_vm_readv copies once, from the pinned pages of the process;
  // /proc/PID/mem copies twice, through a kernel bounce page, and costs
  // about 1.4 times the CPU for a dump's bulk reads. But only
  // /proc/PID/mem reads pages the process itself may not (PROT_NONE, with
  // FOLL_FORCE): whatever process_vm_readv leaves is read from there.
  while (size > 0) {
    const iovec local{p, size};
    const iovec remote{reinterpret_cast<void*>(address), size};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    p += n;
    address += static_cast<uint64_t>(n);
    size -= static_cast<size_t>(n);
  }
  while (size > 0) {
    ssize_t n = pread(mem_fd, p, size, static_cast<off_t>(address));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return n < 0 ? Errno("read of %d bytes at 0x%x in pid %d", size, address, pid)
                   : absl::OutOfRangeError(absl::StrFormat(
                         "read of %d bytes at 0x%x in pid %d: unmapped", size, address, pid));
    }
    p += n;
    address += static_cast<uint64_t>(n);
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace crlib::sys
