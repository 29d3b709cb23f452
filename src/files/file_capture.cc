#include "files/file_capture.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "files/tty_capture.h"
#include "sys/proc.h"
#include "task/nocr.h"

namespace crlib {
namespace {

std::string FdPath(pid_t pid, int fd) { return absl::StrCat("/proc/", pid, "/fd/", fd); }

// "TCP", "UDP", "UNIX stream" ... for an error message; best effort.
std::string SocketKind(pid_t pid, int fd) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return "socket";
  int sock = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0));
  close(pidfd);
  if (sock < 0) return "socket";
  int domain = 0, type = 0, protocol = 0;
  socklen_t len = sizeof(int);
  getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &domain, &len);
  len = sizeof(int);
  getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len);
  len = sizeof(int);
  getsockopt(sock, SOL_SOCKET, SO_PROTOCOL, &protocol, &len);
  close(sock);
  if (domain == AF_UNIX) return type == SOCK_DGRAM ? "UNIX datagram" : "UNIX stream";
  const char* family = domain == AF_INET6 ? "6" : "";
  if (protocol == IPPROTO_TCP) return absl::StrCat("TCP", family);
  if (protocol == IPPROTO_UDP) return absl::StrCat("UDP", family);
  return absl::StrFormat("socket family %d type %d", domain, type);
}

absl::Status Unsupported(int fd, const std::string& what) {
  return absl::UnimplementedError(absl::StrFormat("fd %d (%s) is not supported", fd, what));
}

// Reads "pos:" and "flags:" from /proc/PID/fdinfo/N.
absl::Status ReadFdinfo(pid_t pid, int fd, uint64_t* pos, uint32_t* flags) {
  CRLIB_ASSIGN_OR_RETURN(std::string info,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", fd)));
  CRLIB_ASSIGN_OR_RETURN(std::string p, sys::StatusField(info, "pos"));
  CRLIB_ASSIGN_OR_RETURN(std::string f, sys::StatusField(info, "flags"));
  if (!absl::SimpleAtoi(p, pos)) return absl::DataLossError("fdinfo pos: " + p);
  unsigned long v = strtoul(f.c_str(), nullptr, 8);
  *flags = static_cast<uint32_t>(v);
  return absl::OkStatus();
}

bool IsTerminalPath(const std::string& path) {
  return absl::StartsWith(path, "/dev/pts/") || absl::StartsWith(path, "/dev/tty") ||
         path == "/dev/console";
}

}  // namespace

absl::StatusOr<std::vector<FdInfo>> ScanFds(pid_t pid, absl::Span<const int> skip_fds) {
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
  std::map<uint64_t, std::pair<bool, bool>> pipe_ends;  // inode -> (reader, writer)
  for (auto& [fd, link] : fds) {
    FdInfo info;
    info.fd = fd;
    info.link = std::move(link);
    struct stat st;
    if (stat(FdPath(pid, fd).c_str(), &st) != 0) {
      return Unsupported(fd, info.link);  // anon inodes and the like cannot be stat'ed by path
    }
    FileRecord& f = info.file;
    CRLIB_RETURN_IF_ERROR(ReadFdinfo(pid, fd, &f.offset, &f.flags));
    if (f.flags & O_CLOEXEC) info.fd_flags = FD_CLOEXEC;
    f.flags &= ~O_CLOEXEC;
    f.mode = st.st_mode;
    f.size = static_cast<uint64_t>(st.st_size);
    f.dev = st.st_dev;
    f.inode = st.st_ino;
    f.rdev = st.st_rdev;
    f.path = info.link;
    const bool std_stream = fd <= 2;
    if (S_ISREG(st.st_mode)) {
      if (absl::StartsWith(info.link, "/memfd:")) {
        f.kind = static_cast<uint32_t>(FileKind::kMemfd);
      } else if (st.st_nlink == 0) {
        f.kind = static_cast<uint32_t>(FileKind::kDeletedRegular);
        f.path = std::string(absl::StripSuffix(info.link, " (deleted)"));
      } else {
        f.kind = static_cast<uint32_t>(FileKind::kRegular);
      }
    } else if (S_ISDIR(st.st_mode)) {
      f.kind = static_cast<uint32_t>(FileKind::kDirectory);
    } else if (S_ISFIFO(st.st_mode)) {
      bool anonymous = absl::StartsWith(info.link, "pipe:");
      f.kind = static_cast<uint32_t>(anonymous ? FileKind::kPipe : FileKind::kFifo);
      uint32_t mode = f.flags & O_ACCMODE;
      auto& ends = pipe_ends[f.inode];
      if (mode == O_RDONLY || mode == O_RDWR) ends.first = true;
      if (mode == O_WRONLY || mode == O_RDWR) ends.second = true;
    } else if (S_ISCHR(st.st_mode)) {
      f.kind = static_cast<uint32_t>(std_stream && IsTerminalPath(info.link) ? FileKind::kInherited
                                                                            : FileKind::kCharDevice);
    } else if (S_ISSOCK(st.st_mode)) {
      if (!std_stream) return Unsupported(fd, absl::StrCat(info.link, ", ", SocketKind(pid, fd)));
      f.kind = static_cast<uint32_t>(FileKind::kInherited);
    } else {
      return Unsupported(fd, info.link);
    }
    if (absl::StartsWith(info.link, "anon_inode:")) return Unsupported(fd, info.link);
    out.push_back(std::move(info));
  }
  CRLIB_RETURN_IF_ERROR(ClassifyTerminals(pid, &out));
  // An anonymous pipe is restorable only when both its ends are ours; a
  // standard stream that leads elsewhere is reconnected at restore.
  for (FdInfo& info : out) {
    if (info.file.kind != static_cast<uint32_t>(FileKind::kPipe)) continue;
    auto [reader, writer] = pipe_ends[info.file.inode];
    if (reader && writer) continue;
    if (info.fd <= 2) {
      info.file.kind = static_cast<uint32_t>(FileKind::kInherited);
    } else {
      return absl::UnimplementedError(absl::StrFormat(
          "fd %d (%s) is not supported: its other end is outside the process", info.fd,
          info.link));
    }
  }
  return out;
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
                            ObjectRef process) {
  ImageWriter* w = ctx->writer();
  ObjectRegistry& reg = ctx->registry();
  ObjectRef table = reg.NewRef();
  CRLIB_RETURN_IF_ERROR(
      w->Write(FileTableRecord{.fd_count = static_cast<uint32_t>(fds.size())}, table, process));
  std::map<ObjectRef, int> representative;  // file ref -> an fd that has it
  for (const FdInfo& info : fds) {
    FileRecord file = info.file;
    // Descriptors that share one open file description (dup, fork) share
    // one record: same dev/inode, confirmed by kcmp(KCMP_FILE).
    auto entry = reg.Intern({ObjectKind::kFile, file.dev, file.inode}, [&](ObjectRef ref) {
      return syscall(SYS_kcmp, pid, pid, KCMP_FILE, representative[ref], info.fd) == 0;
    });
    if (entry.inserted) {
      representative[entry.ref] = info.fd;
      const auto kind = static_cast<FileKind>(file.kind);
      if (kind == FileKind::kPipe || kind == FileKind::kFifo) {
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
    }
    CRLIB_RETURN_IF_ERROR(w->Write(
        FdRecord{.fd = static_cast<uint32_t>(info.fd), .fd_flags = info.fd_flags, .file = entry.ref},
        0, table));
  }
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
