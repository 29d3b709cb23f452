#include "files/event_capture.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "files/event_restore.h"
#include "sys/kernel.h"
#include "sys/proc.h"

namespace crlib {
namespace {

// The highest inotify watch descriptor restore rebuilds: reaching wd N
// takes N watch allocations (EventRestore's AddWatches).
constexpr uint32_t kMaxInotifyWd = 100000;

absl::Status Refuse(const FdInfo& info, const std::string& why) {
  return absl::UnimplementedError(
      absl::StrFormat("fd %d (%s) is not supported: %s", info.fd, info.link, why));
}

absl::StatusOr<std::string> ReadFdinfo(pid_t pid, int fd) {
  return sys::ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", fd));
}

// The value of "key:" in an fdinfo text, parsed by `parse` (base 10 or 16).
template <typename T>
absl::StatusOr<T> FdinfoNumber(absl::string_view text, absl::string_view key, int base,
                               const FdInfo& info) {
  CRLIB_ASSIGN_OR_RETURN(std::string v, sys::StatusField(text, key));
  T out{};
  bool ok = false;
  if (base == 16) {
    ok = absl::SimpleHexAtoi(v, &out);
  } else if (base == 8) {
    errno = 0;
    char* end = nullptr;
    unsigned long long n = strtoull(v.c_str(), &end, 8);
    ok = errno == 0 && end != v.c_str() && *end == '\0';
    out = static_cast<T>(n);
  } else {
    ok = absl::SimpleAtoi(v, &out);
  }
  if (!ok) {
    return absl::DataLossError(
        absl::StrFormat("fdinfo of fd %d (%s): unparsable %s: %s", info.fd, info.link, key, v));
  }
  return out;
}

// "(s, ns)" of a timerfd's it_value / it_interval, in nanoseconds.
absl::StatusOr<int64_t> FdinfoTimespec(absl::string_view text, absl::string_view key,
                                       const FdInfo& info) {
  CRLIB_ASSIGN_OR_RETURN(std::string v, sys::StatusField(text, key));
  absl::string_view s = v;
  int64_t sec = 0, nsec = 0;
  std::vector<absl::string_view> parts =
      absl::StrSplit(s, absl::ByAnyChar("(), "), absl::SkipEmpty());
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &sec) || !absl::SimpleAtoi(parts[1], &nsec)) {
    return absl::DataLossError(
        absl::StrFormat("fdinfo of fd %d (%s): unparsable %s: %s", info.fd, info.link, key, v));
  }
  return sec * 1000000000 + nsec;
}

absl::StatusOr<EventfdRecord> CaptureEventfd(pid_t pid, const FdInfo& info) {
  CRLIB_ASSIGN_OR_RETURN(std::string text, ReadFdinfo(pid, info.fd));
  EventfdRecord r;
  CRLIB_ASSIGN_OR_RETURN(r.count, FdinfoNumber<uint64_t>(text, "eventfd-count", 16, info));
  // "eventfd-semaphore" since Linux 6.6; before, the mode is nowhere.
  absl::StatusOr<uint32_t> sem = FdinfoNumber<uint32_t>(text, "eventfd-semaphore", 10, info);
  if (absl::IsNotFound(sem.status())) {
    return Refuse(info, "this kernel does not show whether an eventfd is in semaphore mode "
                        "(fdinfo eventfd-semaphore, Linux 6.6)");
  }
  CRLIB_RETURN_IF_ERROR(sem.status());
  r.semaphore = *sem;
  return r;
}

absl::StatusOr<TimerfdRecord> CaptureTimerfd(pid_t pid, const FdInfo& info) {
  // The kernel counts the periods an unread periodic timer missed only
  // when it is read or asked (timerfd_gettime): asked here, through a copy
  // of the same description, the ticks and the next expiry are the ones a
  // read would see. Nothing else changes.
  CRLIB_ASSIGN_OR_RETURN(sys::UniqueFd copy, sys::TakeFd(pid, info.fd));
  struct itimerspec now{};
  if (timerfd_gettime(copy.fd, &now) != 0) {
    return Errno("timerfd_gettime on fd %d of pid %d", info.fd, pid);
  }
  CRLIB_ASSIGN_OR_RETURN(std::string text, ReadFdinfo(getpid(), copy.fd));
  TimerfdRecord r;
  CRLIB_ASSIGN_OR_RETURN(r.clock, FdinfoNumber<int32_t>(text, "clockid", 10, info));
  CRLIB_ASSIGN_OR_RETURN(r.ticks, FdinfoNumber<uint64_t>(text, "ticks", 10, info));
  CRLIB_ASSIGN_OR_RETURN(r.settime_flags, FdinfoNumber<uint32_t>(text, "settime flags", 8, info));
  CRLIB_ASSIGN_OR_RETURN(int64_t remaining, FdinfoTimespec(text, "it_value", info));
  CRLIB_ASSIGN_OR_RETURN(r.interval_ns, FdinfoTimespec(text, "it_interval", info));
  const clockid_t reference = TimerfdReferenceClock(r.clock, r.settime_flags);
  r.reference_now_ns = ClockNs(reference);
  r.deadline_ns = remaining > 0 ? r.reference_now_ns + remaining : 0;
  if (remaining == 0 && r.interval_ns > 0) {
    // Expired and forwarded this instant: the next period is ahead.
    r.deadline_ns = r.reference_now_ns + r.interval_ns;
  }
  return r;
}

absl::StatusOr<SignalfdRecord> CaptureSignalfd(pid_t pid, const FdInfo& info) {
  CRLIB_ASSIGN_OR_RETURN(std::string text, ReadFdinfo(pid, info.fd));
  SignalfdRecord r;
  CRLIB_ASSIGN_OR_RETURN(r.mask, FdinfoNumber<uint64_t>(text, "sigmask", 16, info));
  return r;
}

// The mount of `pid` whose superblock is `dev` (a kernel dev_t, as fdinfo
// prints "sdev"), opened: the mount_fd open_by_handle_at needs. A mount of
// the file system's root first, so that every inode has a path under it.
absl::StatusOr<int> OpenMountOf(pid_t pid, unsigned major_no, unsigned minor_no) {
  CRLIB_ASSIGN_OR_RETURN(std::string text, sys::ReadFile(absl::StrCat("/proc/", pid, "/mountinfo")));
  const std::string want = absl::StrFormat("%u:%u", major_no, minor_no);
  std::string found;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ');
    if (w.size() < 5 || w[2] != want) continue;
    if (found.empty() || w[3] == "/") found = std::string(w[4]);
    if (w[3] == "/") break;
  }
  if (found.empty()) return absl::NotFoundError(absl::StrCat("no mount of device ", want));
  const std::string path = absl::StrCat("/proc/", pid, "/root", found);
  // Not O_PATH: open_by_handle_at takes no O_PATH descriptor (EBADF).
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open %s", path);
  return fd;
}

std::vector<uint8_t> HexBytes(absl::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    uint32_t b = 0;
    if (!absl::SimpleHexAtoi(hex.substr(i, 2), &b)) return {};
    out.push_back(static_cast<uint8_t>(b));
  }
  return out;
}

// One "inotify wd:..." line: the watch, with the path of its inode found
// through its file handle (open_by_handle_at: we are root at dump).
absl::StatusOr<InotifyWatch> ParseWatch(pid_t pid, const FdInfo& info, absl::string_view line) {
  std::map<std::string, std::string> f;
  for (absl::string_view word : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(word, absl::MaxSplits(':', 1));
    f[kv.first] = kv.second;
  }
  InotifyWatch w;
  uint64_t ino = 0;
  uint32_t sdev = 0, type = 0, bytes = 0;
  const std::vector<uint8_t> handle_bytes = HexBytes(f["f_handle"]);
  if (!absl::SimpleHexAtoi(f["wd"], &w.wd) || !absl::SimpleHexAtoi(f["ino"], &ino) ||
      !absl::SimpleHexAtoi(f["sdev"], &sdev) || !absl::SimpleHexAtoi(f["mask"], &w.mask) ||
      !absl::SimpleHexAtoi(f["fhandle-bytes"], &bytes) ||
      !absl::SimpleHexAtoi(f["fhandle-type"], &type) || handle_bytes.size() != bytes) {
    return absl::DataLossError(
        absl::StrFormat("fdinfo of fd %d (%s): unparsable watch: %s", info.fd, info.link, line));
  }
  if (f["ignored_mask"] != "0") {
    return Refuse(info, absl::StrFormat("inotify watch %d has an ignored mask (%s)", w.wd,
                                        f["ignored_mask"]));
  }
  if (w.wd > kMaxInotifyWd) {
    return Refuse(info, absl::StrFormat("inotify watch descriptor %d is above %d: restore gets "
                                        "the same numbers by allocating every one below it",
                                        w.wd, kMaxInotifyWd));
  }
  w.dev = sys::UserDev(sdev);
  w.inode = ino;
  auto removed = [&](const std::string& detail) {
    return Refuse(info, absl::StrFormat("inotify watch %d is on a removed file (inode %d%s), "
                                        "which restore cannot watch again",
                                        w.wd, ino, detail));
  };
  CRLIB_ASSIGN_OR_RETURN(int mount_fd, OpenMountOf(pid, major(w.dev), minor(w.dev)));
  sys::UniqueFd mount(mount_fd);
  std::vector<char> storage(sizeof(struct file_handle) + bytes);
  auto* handle = reinterpret_cast<struct file_handle*>(storage.data());
  handle->handle_bytes = bytes;
  handle->handle_type = static_cast<int>(type);
  std::copy(handle_bytes.begin(), handle_bytes.end(), handle->f_handle);
  sys::UniqueFd opened(open_by_handle_at(mount.fd, handle, O_PATH | O_CLOEXEC));
  if (opened.fd < 0) {
    if (errno == ESTALE) return removed("");
    return Errno("open_by_handle_at for inotify watch %d of fd %d of pid %d", w.wd, info.fd, pid);
  }
  CRLIB_ASSIGN_OR_RETURN(w.path, sys::ReadLink(absl::StrCat("/proc/self/fd/", opened.fd)));
  struct stat st;
  if (absl::EndsWith(w.path, " (deleted)") || lstat(w.path.c_str(), &st) != 0 ||
      st.st_ino != ino || st.st_dev != w.dev) {
    return removed(absl::StrCat(", last at ", absl::StripSuffix(w.path, " (deleted)")));
  }
  return w;
}

absl::StatusOr<InotifyRecord> CaptureInotify(pid_t pid, const FdInfo& info) {
  CRLIB_ASSIGN_OR_RETURN(std::string text, ReadFdinfo(pid, info.fd));
  InotifyRecord r;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (!absl::ConsumePrefix(&line, "inotify ")) continue;
    CRLIB_ASSIGN_OR_RETURN(InotifyWatch w, ParseWatch(pid, info, line));
    r.watches.push_back(std::move(w));
  }
  std::sort(r.watches.begin(), r.watches.end(),
            [](const InotifyWatch& a, const InotifyWatch& b) { return a.wd < b.wd; });
  return r;
}

// The interest list of an epoll, targets not yet named.
absl::StatusOr<EpollRecord> CaptureEpoll(pid_t pid, const FdInfo& info) {
  CRLIB_ASSIGN_OR_RETURN(std::string text, ReadFdinfo(pid, info.fd));
  EpollRecord r;
  absl::StatusOr<std::vector<EpollEntry>> entries = ParseEpollEntries(text);
  if (!entries.ok()) {
    return Annotate(entries.status(), absl::StrFormat("fdinfo of fd %d (%s)", info.fd, info.link));
  }
  r.entries = std::move(*entries);
  return r;
}

// The interest list of epoll `info` of the process that will fill it at
// restore, each target named by its file record in `fd_files`. An epitem
// is keyed by (file, fd number): restore adds each entry at the same fd,
// which must therefore still be the file the entry was added with (the
// epitem keeps its file when the fd is closed or reused).
absl::StatusOr<EpollRecord> CaptureEpollTargets(pid_t pid, const FdInfo& info,
                                                const std::map<int, ObjectRef>& fd_files) {
  CRLIB_ASSIGN_OR_RETURN(EpollRecord r, CaptureEpoll(pid, info));
  std::map<uint32_t, uint32_t> seen;  // fd -> entries with it so far
  for (EpollEntry& entry : r.entries) {
    kcmp_epoll_slot slot{.efd = static_cast<uint32_t>(info.fd), .tfd = entry.fd,
                         .toff = seen[entry.fd]++};
    auto target = fd_files.find(static_cast<int>(entry.fd));
    if (target == fd_files.end() ||
        syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, entry.fd, &slot) != 0) {
      return Refuse(info, absl::StrFormat("its entry for fd %d (data 0x%x) refers to a file that "
                                          "fd %d no longer holds (closed or replaced after "
                                          "EPOLL_CTL_ADD)",
                                          entry.fd, entry.data, entry.fd));
    }
    entry.target = target->second;
  }
  return r;
}

FileKind KindOfLink(const std::string& link) {
  if (link == "anon_inode:[eventfd]") return FileKind::kEventfd;
  if (link == "anon_inode:[timerfd]") return FileKind::kTimerfd;
  if (link == "anon_inode:[signalfd]") return FileKind::kSignalfd;
  if (link == "anon_inode:inotify") return FileKind::kInotify;
  if (link == "anon_inode:[eventpoll]") return FileKind::kEpoll;
  return FileKind::kRegular;  // none of ours
}

// Captures the record of event file `info` (its kind set) and, with a
// writer `w`, writes it under `table` as the record of `file`; an epoll's
// targets are then named through `fd_files`.
absl::Status CaptureEventRecord(pid_t pid, const FdInfo& info, ImageWriter* w, ObjectRef file,
                                ObjectRef table, const std::map<int, ObjectRef>& fd_files) {
  auto write = [&](auto captured) -> absl::Status {
    CRLIB_RETURN_IF_ERROR(captured.status());
    if (w == nullptr) return absl::OkStatus();
    captured->file = file;
    return w->Write(*captured, 0, table);
  };
  switch (static_cast<FileKind>(info.file.kind)) {
    case FileKind::kEventfd:
      return write(CaptureEventfd(pid, info));
    case FileKind::kTimerfd:
      return write(CaptureTimerfd(pid, info));
    case FileKind::kSignalfd:
      return write(CaptureSignalfd(pid, info));
    case FileKind::kInotify:
      return write(CaptureInotify(pid, info));
    case FileKind::kEpoll:
      return w == nullptr ? CaptureEpoll(pid, info).status()
                          : write(CaptureEpollTargets(pid, info, fd_files));
    default:
      return absl::InternalError(
          absl::StrFormat("fd %d (%s) is not an event object", info.fd, info.link));
  }
}

}  // namespace

absl::StatusOr<bool> DescribeEventFile(pid_t pid, FdInfo* info) {
  if (info->link == "anon_inode:[io_uring]") {
    return Refuse(*info, "it is an io_uring instance (io_uring_setup), whose rings, registered "
                         "files and buffers and in-flight requests crlib cannot capture");
  }
  if (info->link == "anon_inode:[fanotify]") {
    return Refuse(*info, "it is a fanotify group (fanotify_init), whose marks and queued "
                         "permission events crlib does not capture");
  }
  const FileKind kind = KindOfLink(info->link);
  if (!IsEventKind(kind)) return false;
  info->file.kind = static_cast<uint32_t>(kind);
  if (kind == FileKind::kEventfd) {
    // Its id tells it from the other eventfds of the shared anonymous
    // inode, so that interning many costs no kcmp against each other.
    CRLIB_ASSIGN_OR_RETURN(std::string text, ReadFdinfo(pid, info->fd));
    CRLIB_ASSIGN_OR_RETURN(uint64_t id, FdinfoNumber<uint64_t>(text, "eventfd-id", 10, *info));
    info->identity = id + 1;  // id 0 exists; 0 means none
  }
  // Read now, so that what cannot be restored is refused before anything
  // is written.
  CRLIB_RETURN_IF_ERROR(CaptureEventRecord(pid, *info, nullptr, 0, 0, {}));
  return true;
}

absl::Status WriteEventFiles(Context* ctx, pid_t pid, const std::vector<EventFile>& files,
                             const std::map<int, ObjectRef>& fd_files, ObjectRef table) {
  for (const EventFile& e : files) {
    CRLIB_RETURN_IF_ERROR(CaptureEventRecord(pid, *e.info, ctx->writer(), e.file, table, fd_files));
  }
  return absl::OkStatus();
}

}  // namespace crlib
