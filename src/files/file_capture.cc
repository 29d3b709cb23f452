#include "files/file_capture.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/kcmp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "files/event_capture.h"
#include "files/tty_capture.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "sys/nocr.h"

namespace crlib {
namespace {

std::string FdPath(pid_t pid, int fd) { return absl::StrCat("/proc/", pid, "/fd/", fd); }

absl::Status Unsupported(int fd, const std::string& what) {
  // crlib's own, kept by `crlib dump --track`, is known only to its chain.
  const char* hint = what == "anon_inode:[userfaultfd]"
                         ? "; if it is crlib's write tracking (crlib dump --track), dump with "
                           "--parent and the newest image of that chain"
                         : "";
  return absl::UnimplementedError(absl::StrFormat("fd %d (%s) is not supported%s", fd, what, hint));
}

// The "lock:" lines of /proc/PID/fdinfo/N: the locks and leases held on
// that open file description, e.g.
//   lock:	1: POSIX  ADVISORY  WRITE 7584 fe:00:10953325 5 14
// A lease being broken, a delegation or a kind we do not know is refused.
// Whether process `other` has a descriptor on the open file description
// of fd `fd` of `pid`.
bool SharesDescription(pid_t pid, int fd, pid_t other) {
  absl::StatusOr<std::vector<int>> fds = sys::ListFds(other);
  if (!fds.ok()) return false;
  for (int ofd : *fds) {
    if (syscall(SYS_kcmp, pid, other, KCMP_FILE, fd, ofd) == 0) return true;
  }
  return false;
}

absl::Status ParseLocks(absl::string_view info, pid_t pid, int fd, const std::string& link,
                        std::vector<FileLockRecord>* locks) {
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    if (!absl::ConsumePrefix(&line, "lock:")) continue;
    auto refuse = [&](absl::string_view why) {
      return absl::UnimplementedError(absl::StrFormat("fd %d (%s) is not supported: %s (lock: %s)",
                                                      fd, link, why, absl::StripAsciiWhitespace(line)));
    };
    absl::StatusOr<sys::LockLine> parsed = sys::ParseLockLine(line);
    if (!parsed.ok() || parsed->waiter) return refuse("a lock line we cannot read");
    const sys::LockLine& l = *parsed;
    FileLockRecord lock;
    if (l.kind == "FLOCK") {
      lock.kind = static_cast<uint32_t>(FileLockKind::kFlock);
    } else if (l.kind == "POSIX") {
      lock.kind = static_cast<uint32_t>(FileLockKind::kPosix);
    } else if (l.kind == "OFDLCK") {
      lock.kind = static_cast<uint32_t>(FileLockKind::kOfd);
    } else if (l.kind == "LEASE") {
      lock.kind = static_cast<uint32_t>(FileLockKind::kLease);
      if (l.mode != "ACTIVE") return refuse("a lease that is being broken");
    } else {
      return refuse(absl::StrCat("a lock of kind ", l.kind));
    }
    if (l.kind != "LEASE" && l.mode != "ADVISORY") return refuse(absl::StrCat("a ", l.mode, " lock"));
    if (l.type == "READ") {
      lock.type = F_RDLCK;
    } else if (l.type == "WRITE") {
      lock.type = F_WRLCK;
    } else {
      return refuse(absl::StrCat("a lock of type ", l.type));
    }
    lock.start = l.start;
    lock.length = l.end == UINT64_MAX ? 0 : l.end - l.start + 1;
    // A lock of the description that another process took (flock(1),
    // a parent before fork) and still holds the description of: it would
    // keep the lock, and the restore would find it taken.
    const bool of_description = l.kind == "FLOCK" || l.kind == "LEASE";
    if (of_description && l.pid > 0 && l.pid != pid &&
        SharesDescription(pid, fd, static_cast<pid_t>(l.pid))) {
      return refuse(absl::StrFormat("its %s is held through an open file pid %d shares, which "
                                    "would keep it",
                                    l.kind == "FLOCK" ? "flock" : "lease", l.pid));
    }
    locks->push_back(lock);
  }
  return absl::OkStatus();
}

// Reads "pos:", "flags:" and the locks from /proc/PID/fdinfo/N.
absl::Status ReadFdinfo(pid_t pid, int fd, uint64_t* pos, uint32_t* flags,
                        const std::string& link, std::vector<FileLockRecord>* locks) {
  CRLIB_ASSIGN_OR_RETURN(std::string info,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", fd)));
  CRLIB_RETURN_IF_ERROR(ParseLocks(info, pid, fd, link, locks));
  CRLIB_ASSIGN_OR_RETURN(std::string p, sys::StatusField(info, "pos"));
  CRLIB_ASSIGN_OR_RETURN(std::string f, sys::StatusField(info, "flags"));
  if (!absl::SimpleAtoi(p, pos)) return absl::DataLossError("fdinfo pos: " + p);
  unsigned long v = strtoul(f.c_str(), nullptr, 8);
  *flags = static_cast<uint32_t>(v);
  return absl::OkStatus();
}

// Regular files of filesystems whose files are not data reachable by
// path: a POSIX message queue ("/name" is relative to the mqueue mount,
// and reopening it by path, or saving it as a deleted file, would give
// the process a plain file) and memfd_secret (unreadable to anyone else).
absl::Status RefuseSpecialRegularFile(pid_t pid, int fd, const std::string& link) {
  struct statfs fs;
  if (statfs(FdPath(pid, fd).c_str(), &fs) != 0) return Errno("statfs %s", FdPath(pid, fd));
  if (static_cast<uint64_t>(fs.f_type) == sys::kMqueueMagic) {
    return absl::UnimplementedError(absl::StrFormat(
        "fd %d (%s) is not supported: it is a POSIX message queue (mq_open), whose queued "
        "messages and attributes are not carried",
        fd, link));
  }
  if (static_cast<uint64_t>(fs.f_type) == sys::kSecretmemMagic) {
    return absl::UnimplementedError(absl::StrFormat(
        "fd %d (%s) is not supported: it is memfd_secret memory, which nobody but the process "
        "can read",
        fd, link));
  }
  return absl::OkStatus();
}

// "net" for a namespace file's link "net:[4026531840]", else "".
std::string NamespaceType(const std::string& link) {
  size_t colon = link.find(":[");
  if (colon == std::string::npos || colon == 0 || link.back() != ']') return "";
  std::string type = link.substr(0, colon);
  for (const char* not_ns : {"pipe", "socket", "anon_inode"}) {
    if (type == not_ns) return "";
  }
  return type;
}

// Whether CAP_MKNOD is in the effective set of `pid`.
absl::StatusOr<bool> HasCapMknod(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::string status, sys::ReadFile(absl::StrCat("/proc/", pid, "/status")));
  CRLIB_ASSIGN_OR_RETURN(uint64_t effective, sys::StatusMask(status, "CapEff"));
  return (effective >> CAP_MKNOD) & 1;
}

// Terminals (tty, ptmx, pts) are files/tty_capture.cc's, removed or not:
// a pts node goes from devpts when its master is closed.
bool IsTerminalDevice(dev_t rdev) {
  const unsigned m = major(rdev);
  return m == 4 || m == 5 || (m >= 136 && m <= 143);
}

bool IsTerminalPath(const std::string& path) {
  return absl::StartsWith(path, "/dev/pts/") || absl::StartsWith(path, "/dev/tty") ||
         path == "/dev/console";
}

// A pidfd (its fdinfo's "Pid:" is the PID in our namespace, -1 once the
// process has exited and been reaped, 0 when it has none here): carried when it refers to one of
// `targets` or to nobody any more, refused when to a process that lives
// outside them, whose pidfd restore could not make.
absl::Status DescribePidfd(pid_t pid, const std::set<pid_t>& targets, FdInfo* info) {
  const int fd = info->fd;
  FileRecord& f = info->file;
  CRLIB_ASSIGN_OR_RETURN(std::string fdinfo,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", fd)));
  CRLIB_ASSIGN_OR_RETURN(std::string pid_text, sys::StatusField(fdinfo, "Pid"));
  int64_t target = 0;
  if (!absl::SimpleAtoi(pid_text, &target)) {
    return absl::DataLossError(absl::StrFormat("fdinfo of fd %d of pid %d: Pid %s", fd, pid, pid_text));
  }
  if (target == 0) {  // alive, but of a PID namespace above ours: no number here
    return absl::UnimplementedError(absl::StrFormat(
        "fd %d (%s) is not supported: a pidfd of a process outside crlib's PID namespace", fd,
        info->link));
  }
  const bool thread = f.flags & sys::kPidfdThread;
  if (target > 0 && !targets.contains(static_cast<pid_t>(target))) {
    absl::StatusOr<std::string> status = sys::ReadFile(absl::StrCat("/proc/", target, "/status"));
    absl::StatusOr<std::string> tgid =
        status.ok() ? sys::StatusField(*status, "Tgid") : absl::StatusOr<std::string>("");
    int64_t group = 0;
    if (thread && tgid.ok() && absl::SimpleAtoi(*tgid, &group) &&
        targets.contains(static_cast<pid_t>(group))) {
      return absl::UnimplementedError(absl::StrFormat(
          "fd %d (%s) is not supported: a pidfd of thread %d of pid %d (PIDFD_THREAD), which is "
          "not its main thread; restore makes pidfds before such threads exist",
          fd, info->link, target, group));
    }
    return absl::UnimplementedError(absl::StrFormat(
        "fd %d (%s) is not supported: a pidfd of pid %d, which is outside the dumped processes",
        fd, info->link, target));
  }
  f.kind = static_cast<uint32_t>(FileKind::kPidfd);
  f.pid = target > 0 ? static_cast<uint32_t>(target) : 0;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<FdInfo>> ScanFds(pid_t pid, const std::set<pid_t>& pidfd_targets,
                                            absl::Span<const int> skip_fds, TcpFreeze* tcp) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<int> all_fds, sys::ListFds(pid));
  // Links first: a nocr mark is the answer even when another descriptor
  // is unsupported too.
  std::vector<std::pair<int, std::string>> fds;
  for (int fd : all_fds) {
    if (std::find(skip_fds.begin(), skip_fds.end(), fd) != skip_fds.end()) continue;
    absl::StatusOr<std::string> link = sys::ReadLink(FdPath(pid, fd));
    if (!link.ok() && absl::IsNotFound(link.status())) continue;  // closed meanwhile
    if (!link.ok()) return link.status();
    if (std::optional<std::string> reason = NoCrReasonFromLink(*link)) {
      return NotCheckpointableError(pid, *reason);
    }
    fds.emplace_back(fd, std::move(*link));
  }
  std::vector<FdInfo> out;
  for (auto& [fd, link] : fds) {
    FdInfo info;
    info.fd = fd;
    info.link = std::move(link);
    struct stat st;
    if (stat(FdPath(pid, fd).c_str(), &st) != 0) {
      return Unsupported(fd, info.link);  // anon inodes and the like cannot be stat'ed by path
    }
    FileRecord& f = info.file;
    CRLIB_RETURN_IF_ERROR(ReadFdinfo(pid, fd, &f.offset, &f.flags, info.link, &info.locks));
    const bool leased = std::any_of(info.locks.begin(), info.locks.end(), [](const auto& l) {
      return l.kind == static_cast<uint32_t>(FileLockKind::kLease);
    });
    if ((f.flags & O_ASYNC) && !leased) {
      // The owner (F_SETOWN) and signal (F_SETSIG) that make it useful are
      // nowhere in /proc: reopened, the fd would signal no one. A lease
      // sets O_ASYNC itself, and restoring it sets the owner again.
      return absl::UnimplementedError(absl::StrFormat(
          "fd %d (%s) is not supported: it has O_ASYNC set (signal-driven I/O), and its owner "
          "and signal (F_SETOWN, F_SETSIG) are not restored",
          fd, info.link));
    }
    if (f.flags & O_CLOEXEC) info.fd_flags = FD_CLOEXEC;
    f.flags &= ~O_CLOEXEC;
    f.mode = st.st_mode;
    f.size = static_cast<uint64_t>(st.st_size);
    f.dev = st.st_dev;
    f.inode = st.st_ino;
    f.rdev = st.st_rdev;
    f.path = info.link;
    if (info.link == "anon_inode:[pidfd]") {
      CRLIB_RETURN_IF_ERROR(DescribePidfd(pid, pidfd_targets, &info));
      out.push_back(std::move(info));
      continue;
    }
    if (absl::StartsWith(info.link, "anon_inode:")) {
      CRLIB_ASSIGN_OR_RETURN(bool event, DescribeEventFile(pid, &info));
      if (!event) return Unsupported(fd, info.link);
      out.push_back(std::move(info));
      continue;
    }
    const bool std_stream = fd <= 2;
    const bool removed = st.st_nlink == 0;
    if (removed) f.path = std::string(absl::StripSuffix(info.link, " (deleted)"));
    if (const std::string ns = NamespaceType(info.link); !ns.empty()) {
      // Only a namespace the restorer is in can be opened again; crlib
      // restores where it dumps, so its own namespaces are the test.
      struct stat own;
      const std::string own_path = absl::StrCat("/proc/self/ns/", ns);
      if (stat(own_path.c_str(), &own) != 0) {
        if (errno == ENOENT) return Unsupported(fd, info.link);  // not a namespace after all
        return Errno("stat %s", own_path);
      }
      if (own.st_ino != st.st_ino || own.st_dev != st.st_dev) {
        return absl::UnimplementedError(absl::StrFormat(
            "fd %d (%s) is not supported: a %s namespace other than crlib's own (%s:[%d])", fd,
            info.link, ns, ns, own.st_ino));
      }
      f.kind = static_cast<uint32_t>(FileKind::kNamespace);
    } else if (f.flags & O_PATH) {
      if (!absl::StartsWith(info.link, "/")) {
        return absl::UnimplementedError(absl::StrFormat(
            "fd %d (%s) is not supported: an O_PATH descriptor of a file with no path", fd,
            info.link));
      }
      if (removed) {
        return absl::UnimplementedError(absl::StrFormat(
            "fd %d (%s) is not supported: an O_PATH descriptor of a removed file", fd, info.link));
      }
      f.kind = static_cast<uint32_t>(FileKind::kPath);
    } else if (S_ISREG(st.st_mode)) {
      CRLIB_RETURN_IF_ERROR(RefuseSpecialRegularFile(pid, fd, info.link));
      if (absl::StartsWith(info.link, "/memfd:")) {
        f.kind = static_cast<uint32_t>(FileKind::kMemfd);
      } else if (st.st_nlink == 0) {
        f.kind = static_cast<uint32_t>(FileKind::kDeletedRegular);
        f.path = std::string(absl::StripSuffix(info.link, " (deleted)"));
      } else {
        f.kind = static_cast<uint32_t>(FileKind::kRegular);
      }
    } else if (S_ISDIR(st.st_mode)) {
      f.kind = static_cast<uint32_t>(removed ? FileKind::kDeletedDirectory : FileKind::kDirectory);
    } else if (S_ISFIFO(st.st_mode)) {
      bool anonymous = absl::StartsWith(info.link, "pipe:");
      f.kind = static_cast<uint32_t>(anonymous  ? FileKind::kPipe
                                     : removed ? FileKind::kDeletedFifo
                                               : FileKind::kFifo);
    } else if (S_ISCHR(st.st_mode) && removed && !IsTerminalDevice(st.st_rdev)) {
      // Made again at restore with mknod, with the image's credentials:
      // only a process that could make it itself gets it back.
      CRLIB_ASSIGN_OR_RETURN(bool can_mknod, HasCapMknod(pid));
      if (!can_mknod) {
        return absl::UnimplementedError(absl::StrFormat(
            "fd %d (%s) is not supported: a removed device node (character %d:%d), which "
            "restore can make again only with CAP_MKNOD, and pid %d does not have it",
            fd, info.link, major(st.st_rdev), minor(st.st_rdev), pid));
      }
      f.kind = static_cast<uint32_t>(FileKind::kDeletedDevice);
    } else if (S_ISCHR(st.st_mode)) {
      f.kind = static_cast<uint32_t>(std_stream && IsTerminalPath(info.link) ? FileKind::kInherited
                                                                            : FileKind::kCharDevice);
    } else if (S_ISSOCK(st.st_mode)) {
      // ClassifySockets decides, once the whole tree is read, whether it
      // is restored, external or the restorer's own stream.
      f.kind = static_cast<uint32_t>(FileKind::kSocket);
      // A standard stream's connection is not held still: unless it leads
      // inside, it is the restorer's stream, and a filter would outlive it.
      absl::StatusOr<SocketCapture> socket =
          CaptureSocket(pid, fd, info.link, st.st_ino, std_stream ? nullptr : tcp);
      if (socket.ok()) {
        info.socket = std::move(*socket);
      } else if (std_stream) {
        info.socket_error = socket.status();
      } else {
        return socket.status();
      }
    } else {
      return Unsupported(fd, info.link);
    }
    if (absl::StartsWith(info.link, "anon_inode:")) return Unsupported(fd, info.link);
    const auto kind = static_cast<FileKind>(f.kind);
    if (!info.locks.empty() && (kind == FileKind::kInherited || kind == FileKind::kNamespace)) {
      return absl::UnimplementedError(absl::StrFormat(
          "fd %d (%s) is not supported: it holds a lock, and restore would not open it again", fd,
          info.link));
    }
    out.push_back(std::move(info));
  }
  CRLIB_RETURN_IF_ERROR(ClassifyTerminals(pid, &out));
  // A removed cwd is restored (WriteFileTable); a removed root is not.
  struct stat root;
  const std::string root_path = absl::StrCat("/proc/", pid, "/root");
  if (stat(root_path.c_str(), &root) != 0) return Errno("stat %s", root_path);
  if (root.st_nlink == 0) {
    CRLIB_ASSIGN_OR_RETURN(std::string link, sys::ReadLink(root_path));
    return absl::UnimplementedError(absl::StrFormat(
        "pid %d is not supported: its root directory %s was removed", pid,
        absl::StripSuffix(link, " (deleted)")));
  }
  return out;
}

absl::Status ClassifyPipeEnds(absl::Span<std::vector<FdInfo>* const> tree) {
  struct Ends {
    bool reader = false, writer = false;
    bool above_std = false;  // an fd above 2 has it
  };
  std::map<uint64_t, Ends> ends;  // by pipe inode
  for (const std::vector<FdInfo>* fds : tree) {
    for (const FdInfo& info : *fds) {
      if (info.file.kind != static_cast<uint32_t>(FileKind::kPipe)) continue;
      const uint32_t mode = info.file.flags & O_ACCMODE;
      Ends& e = ends[info.file.inode];
      if (mode == O_RDONLY || mode == O_RDWR) e.reader = true;
      if (mode == O_WRONLY || mode == O_RDWR) e.writer = true;
      if (info.fd > 2) e.above_std = true;
    }
  }
  for (std::vector<FdInfo>* fds : tree) {
    for (FdInfo& info : *fds) {
      if (info.file.kind != static_cast<uint32_t>(FileKind::kPipe)) continue;
      const Ends& e = ends[info.file.inode];
      if (e.reader && e.writer) continue;
      // Neither end is opened again at restore: a lock on it would be lost.
      if (!info.locks.empty()) {
        return absl::UnimplementedError(absl::StrFormat(
            "fd %d (%s) is not supported: it holds a lock, and its other end is outside the "
            "dumped processes",
            info.fd, info.link));
      }
      // A standard stream that leads elsewhere is reconnected to the
      // restorer's own; any other fd is the caller's to give at restore,
      // and so are the standard streams on the same pipe (a `exec 3>&1`
      // shares one description, which one record of one kind holds).
      info.file.kind = static_cast<uint32_t>(info.fd <= 2 && !e.above_std ? FileKind::kInherited
                                                                          : FileKind::kExternal);
      info.file.path = absl::StrCat("pipe:[", info.file.inode, "]");
    }
  }
  return absl::OkStatus();
}

namespace {

// The bytes buffered in a pipe, read without consuming them: tee(2) copies
// them into a pipe of our own, which we then drain.
struct PipeContents {
  Bytes data;
  uint32_t capacity = 0;
};

absl::StatusOr<PipeContents> PeekPipe(pid_t pid, int fd) {
  std::string path = FdPath(pid, fd);
  int in = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (in < 0) return Errno("open %s", path);
  int queued = 0;
  if (ioctl(in, FIONREAD, &queued) != 0) {
    absl::Status st = Errno("ioctl(FIONREAD) on %s", path);
    close(in);
    return st;
  }
  PipeContents out;
  int capacity = fcntl(in, F_GETPIPE_SZ);
  if (capacity > 0) out.capacity = static_cast<uint32_t>(capacity);
  Bytes& data = out.data;
  if (queued > 0) {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
      close(in);
      return Errno("pipe2");
    }
    fcntl(p[1], F_SETPIPE_SZ, queued);
    ssize_t n = tee(in, p[1], queued, SPLICE_F_NONBLOCK);
    absl::Status st = n < 0 ? Errno("tee from %s", path) : absl::OkStatus();
    if (st.ok()) {
      data.resize(n);
      ssize_t got = read(p[0], data.data(), data.size());
      if (got != n) st = Errno("read of teed pipe data from %s", path);
    }
    close(p[0]);
    close(p[1]);
    if (!st.ok()) {
      close(in);
      return st;
    }
  }
  close(in);
  return out;
}

}  // namespace

std::optional<CarriedInodeSource> CarriedInodeOfFd(pid_t pid, const FdInfo& info) {
  const auto kind = static_cast<FileKind>(info.file.kind);
  if (kind != FileKind::kMemfd && kind != FileKind::kDeletedRegular) return std::nullopt;
  CarriedInodeSource s;
  s.kind = kind == FileKind::kMemfd ? InodeKind::kMemfd : InodeKind::kDeletedFile;
  s.open_path = FdPath(pid, info.fd);
  s.what = absl::StrFormat("fd %d (%s)", info.fd, info.link);
  s.name = kind == FileKind::kMemfd
               ? std::string(absl::StripSuffix(absl::StripPrefix(info.link, "/memfd:"), " (deleted)"))
               : info.file.path;
  s.dev = info.file.dev;
  s.inode = info.file.inode;
  return s;
}

absl::Status WriteFileTable(Context* ctx, pid_t pid, const std::vector<FdInfo>& fds,
                            ObjectRef process, DescriptionHolders* holders) {
  ImageWriter* w = ctx->writer();
  ObjectRegistry& reg = ctx->registry();
  ObjectRef table = reg.NewRef();
  CRLIB_RETURN_IF_ERROR(
      w->Write(FileTableRecord{.fd_count = static_cast<uint32_t>(fds.size())}, table, process));
  std::map<std::pair<uint64_t, uint64_t>, ObjectRef> removed_dirs;  // (dev, inode) -> file
  std::map<int, ObjectRef> fd_files;  // every fd's file, for an epoll's targets
  std::vector<EventFile> event_files;  // written after the loop, once fd_files is whole
  for (const FdInfo& info : fds) {
    FileRecord file = info.file;
    // Descriptors that share one open file description (dup, fork) share
    // one record: same dev/inode, confirmed by kcmp(KCMP_FILE).
    // Across processes too: a description inherited over fork is one.
    const uint64_t key = info.identity ? info.identity : file.inode;
    auto entry = reg.Intern({ObjectKind::kFile, file.dev, key}, [&](ObjectRef ref) {
      const auto [holder, holder_fd] = holders->at(ref);
      return syscall(SYS_kcmp, holder, pid, KCMP_FILE, holder_fd, info.fd) == 0;
    });
    if (entry.inserted) {
      (*holders)[entry.ref] = {pid, info.fd};
      const auto kind = static_cast<FileKind>(file.kind);
      if (kind == FileKind::kPipe || kind == FileKind::kFifo || kind == FileKind::kDeletedFifo) {
        auto pipe = reg.Intern({ObjectKind::kPipe, file.inode});
        if (pipe.inserted) {
          CRLIB_ASSIGN_OR_RETURN(PipeContents pipe_data, PeekPipe(pid, info.fd));
          iovec bulk{pipe_data.data.data(), pipe_data.data.size()};
          PipeRecord rec{.inode = file.inode, .capacity = pipe_data.capacity};
          CRLIB_RETURN_IF_ERROR(w->Write(rec, pipe.ref, table,
                                         pipe_data.data.empty() ? absl::Span<const iovec>()
                                                                : absl::MakeConstSpan(&bulk, 1)));
        }
        file.pipe = pipe.ref;
      }
      if (kind == FileKind::kSocket) {
        const ObjectRef socket = reg.NewRef();
        iovec bulk{const_cast<uint8_t*>(info.socket->data.data()), info.socket->data.size()};
        CRLIB_RETURN_IF_ERROR(w->Write(info.socket->record, socket, table,
                                       bulk.iov_len ? absl::MakeConstSpan(&bulk, 1)
                                                    : absl::Span<const iovec>()));
        file.socket = socket;
        if (const std::optional<TcpConnectionCapture>& tcp = info.socket->tcp) {
          iovec sendq{const_cast<uint8_t*>(tcp->send_queue.data()), tcp->send_queue.size()};
          CRLIB_RETURN_IF_ERROR(w->Write(tcp->record, 0, socket,
                                         sendq.iov_len ? absl::MakeConstSpan(&sendq, 1)
                                                       : absl::Span<const iovec>()));
        }
      }
      if (kind == FileKind::kPtyMaster || kind == FileKind::kPtySlave ||
          kind == FileKind::kDevTty) {
        CRLIB_ASSIGN_OR_RETURN(file.tty, InternTty(ctx, pid, fds, info, table));
      }
      // A memfd's or deleted file's contents go once into its inode
      // record, which its mappings name too.
      if (std::optional<CarriedInodeSource> carried = CarriedInodeOfFd(pid, info)) {
        CRLIB_ASSIGN_OR_RETURN(file.object, InternCarriedInode(ctx, *carried, table));
      }
      CRLIB_RETURN_IF_ERROR(w->Write(file, entry.ref, table));
      if (IsEventKind(kind)) event_files.push_back({&info, entry.ref});
      if (kind == FileKind::kDeletedDirectory) removed_dirs[{file.dev, file.inode}] = entry.ref;
      for (FileLockRecord lock : info.locks) {
        lock.file = entry.ref;
        CRLIB_RETURN_IF_ERROR(w->Write(lock, 0, table));
      }
    }
    fd_files[info.fd] = entry.ref;
    CRLIB_RETURN_IF_ERROR(w->Write(
        FdRecord{.fd = static_cast<uint32_t>(info.fd), .fd_flags = info.fd_flags, .file = entry.ref},
        0, table));
  }
  CRLIB_RETURN_IF_ERROR(WriteEventFiles(ctx, pid, event_files, fd_files, table));
  // Which directories the cwd and root are, for restore to check; a
  // removed cwd comes back as a removed directory (one an fd also holds is
  // the same directory). A removed root was refused by ScanFds.
  ProcessDirsRecord dirs;
  const std::string cwd_path = absl::StrCat("/proc/", pid, "/cwd");
  const std::string root_path = absl::StrCat("/proc/", pid, "/root");
  struct stat cwd, root;
  if (stat(cwd_path.c_str(), &cwd) != 0) return Errno("stat %s", cwd_path);
  if (stat(root_path.c_str(), &root) != 0) return Errno("stat %s", root_path);
  dirs.cwd_dev = cwd.st_dev;
  dirs.cwd_inode = cwd.st_ino;
  dirs.root_dev = root.st_dev;
  dirs.root_inode = root.st_ino;
  if (cwd.st_nlink == 0) {
    if (auto it = removed_dirs.find({cwd.st_dev, cwd.st_ino}); it != removed_dirs.end()) {
      dirs.cwd = it->second;
    } else {
      CRLIB_ASSIGN_OR_RETURN(std::string link, sys::ReadLink(cwd_path));
      dirs.cwd = reg.NewRef();
      FileRecord dir{.kind = static_cast<uint32_t>(FileKind::kDeletedDirectory),
                     .flags = O_RDONLY | O_DIRECTORY, .mode = cwd.st_mode, .dev = cwd.st_dev,
                     .inode = cwd.st_ino,
                     .path = std::string(absl::StripSuffix(link, " (deleted)"))};
      CRLIB_RETURN_IF_ERROR(w->Write(dir, dirs.cwd, table));
    }
  }
  CRLIB_RETURN_IF_ERROR(w->Write(dirs, 0, process));
  return absl::OkStatus();
}

absl::StatusOr<ObjectRef> InternMappedFile(Context* ctx, const std::string& path, uint64_t dev,
                                           uint64_t inode, ObjectRef parent) {
  auto entry = ctx->registry().Intern({ObjectKind::kInode, dev, inode});
  if (entry.inserted) {
    struct stat st{};
    if (stat(path.c_str(), &st) != 0) return Errno("stat of mapped file %s", path);
    if (st.st_dev != dev || st.st_ino != inode) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "mapped file %s was replaced on disk since it was mapped", path));
    }
    FileRecord f{.kind = static_cast<uint32_t>(FileKind::kRegular), .flags = O_RDONLY,
                 .mode = st.st_mode, .size = static_cast<uint64_t>(st.st_size), .dev = dev,
                 .inode = inode, .path = path};
    CRLIB_RETURN_IF_ERROR(ctx->writer()->Write(f, entry.ref, parent));
  }
  return entry.ref;
}

}  // namespace crlib
