// Locks and leases on restore: taken by the restorer on the open file
// descriptions the restored process inherits (flock, OFD, leases), probed
// (POSIX: the process's own, taken by RestoreProcessLocks), or checked
// against /proc/locks when the original still runs. Part of OpenedFiles
// (files/file_restore.h).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>

#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "files/file_restore.h"
#include "sys/proc.h"

namespace crlib {
namespace {

std::string LockRange(const FileLockRecord& lock) {
  if (static_cast<FileLockKind>(lock.kind) == FileLockKind::kFlock ||
      static_cast<FileLockKind>(lock.kind) == FileLockKind::kLease) {
    return "";
  }
  if (lock.length == 0) return absl::StrFormat(" (from byte %d to the end)", lock.start);
  return absl::StrFormat(" (bytes %d-%d)", lock.start, lock.start + lock.length - 1);
}

const char* LockKindName(uint32_t kind);

// One line that names the lock and why it cannot be had.
absl::Status CannotTake(const FileLockRecord& lock, const std::string& path, const std::string& why) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "cannot take the %s %s lock on %s%s: %s", LockKindName(lock.kind),
      lock.type == F_WRLCK ? "write" : "read", path, LockRange(lock), why));
}

std::string HolderText(int64_t pid) {
  return pid > 0 ? absl::StrFormat("pid %d holds a conflicting lock", pid)
                 : "another open file holds a conflicting lock";
}

// How /proc/locks names a lock kind.
const char* ProcLocksKind(uint32_t kind) {
  switch (static_cast<FileLockKind>(kind)) {
    case FileLockKind::kFlock: return "FLOCK";
    case FileLockKind::kPosix: return "POSIX";
    case FileLockKind::kOfd: return "OFDLCK";
    case FileLockKind::kLease: return "LEASE";
  }
  return "";
}

const char* LockKindName(uint32_t kind) {
  switch (static_cast<FileLockKind>(kind)) {
    case FileLockKind::kFlock: return "flock";
    case FileLockKind::kPosix: return "POSIX";
    case FileLockKind::kOfd: return "OFD";
    case FileLockKind::kLease: return "lease";
  }
  return "unknown";
}

struct flock FlockOf(const FileLockRecord& lock) {
  struct flock fl{};
  fl.l_type = static_cast<short>(lock.type);
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(lock.start);
  fl.l_len = static_cast<off_t>(lock.length);
  return fl;
}

// The image's fd number for file `ref`, or -1.
int ImageFdOf(const ProcessImage& image, ObjectRef ref) {
  for (const FdRecord& fd : image.fds) {
    if (fd.file == ref) return static_cast<int>(fd.fd);
  }
  return -1;
}


}  // namespace

absl::Status OpenedFiles::TakeLocks(const ProcessImage& image) const {
  for (const FileLockRecord& lock : image.locks) {
    const FileRecord& f = image.files.at(lock.file).record;
    const int fd = this->fd(lock.file);
    if (fd < 0) {
      return absl::DataLossError(absl::StrFormat("a %s lock on %s, a file restore does not open",
                                                 LockKindName(lock.kind), f.path));
    }
    auto cannot = [&](const std::string& why) { return CannotTake(lock, f.path, why); };
    auto holder = [&](int get_cmd) -> std::string {
      struct flock probe = FlockOf(lock);
      if (fcntl(fd, get_cmd, &probe) != 0 || probe.l_type == F_UNLCK) return "";
      return HolderText(probe.l_pid);
    };
    struct flock fl = FlockOf(lock);
    switch (static_cast<FileLockKind>(lock.kind)) {
      case FileLockKind::kFlock:
        if (flock(fd, (lock.type == F_WRLCK ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
          if (errno == EWOULDBLOCK) return cannot("another open file holds a conflicting flock");
          return Errno("flock on %s", f.path);
        }
        break;
      case FileLockKind::kOfd:
        if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
          if (errno == EAGAIN || errno == EACCES) {
            std::string who = holder(F_OFD_GETLK);
            return cannot(who.empty() ? "a conflicting lock is held" : who);
          }
          return Errno("fcntl(F_OFD_SETLK) on %s", f.path);
        }
        break;
      case FileLockKind::kPosix: {
        // Taken in the restored process (RestoreProcessLocks): probed here.
        std::string who = holder(F_GETLK);
        if (!who.empty()) return cannot(who);
        break;
      }
      case FileLockKind::kLease:
        if (fcntl(fd, F_SETLEASE, static_cast<int>(lock.type)) != 0) {
          if (errno == EAGAIN) return cannot("the file is open elsewhere in a conflicting mode");
          return Errno("fcntl(F_SETLEASE) on %s as uid %d", f.path, fsuid_);
        }
        break;
      default:
        return absl::DataLossError(absl::StrFormat("lock of unknown kind %d on %s", lock.kind, f.path));
    }
  }
  return absl::OkStatus();
}

absl::Status OpenedFiles::CheckLocksHeldByOthers(const ProcessImage& image) {
  CRLIB_ASSIGN_OR_RETURN(std::string text, sys::ReadFile("/proc/locks"));
  std::vector<sys::LockLine> held;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    absl::StatusOr<sys::LockLine> l = sys::ParseLockLine(line);
    if (l.ok() && !l->waiter) held.push_back(*l);
  }
  auto same_file = [](const sys::LockLine& l, const FileRecord& f) {
    return l.inode == f.inode && l.major == major(f.dev) && l.minor == minor(f.dev);
  };
  auto last = [](const FileLockRecord& lock) {
    return lock.length == 0 ? UINT64_MAX : lock.start + lock.length - 1;
  };
  // The process's own locks are listed too, exactly as recorded: each
  // recorded lock accounts for one line.
  std::vector<bool> own(held.size());
  for (const FileLockRecord& lock : image.locks) {
    const FileRecord& f = image.files.at(lock.file).record;
    for (size_t i = 0; i < held.size(); ++i) {
      const sys::LockLine& l = held[i];
      if (!own[i] && same_file(l, f) && l.kind == ProcLocksKind(lock.kind) &&
          l.type == (lock.type == F_WRLCK ? "WRITE" : "READ") && l.start == lock.start &&
          l.end == last(lock)) {
        own[i] = true;
        break;
      }
    }
  }
  for (const FileLockRecord& lock : image.locks) {
    const auto kind = static_cast<FileLockKind>(lock.kind);
    if (kind == FileLockKind::kLease) continue;  // leases conflict with opens, not locks
    const FileRecord& f = image.files.at(lock.file).record;
    for (size_t i = 0; i < held.size(); ++i) {
      const sys::LockLine& l = held[i];
      if (own[i] || !same_file(l, f)) continue;
      // flock locks conflict with flock locks; POSIX and OFD ones with each other.
      const bool flock_family = l.kind == "FLOCK";
      if (flock_family != (kind == FileLockKind::kFlock)) continue;
      if (!flock_family && l.kind != "POSIX" && l.kind != "OFDLCK") continue;
      if (!flock_family && (l.end < lock.start || l.start > last(lock))) continue;
      if (l.type != "WRITE" && lock.type != F_WRLCK) continue;
      return CannotTake(lock, f.path, HolderText(l.kind == "OFDLCK" ? -1 : l.pid));
    }
  }
  return absl::OkStatus();
}

absl::Status RestoreProcessLocks(Tracee* t, const ProcessImage& image, uint64_t scratch) {
  for (const FileLockRecord& lock : image.locks) {
    const auto kind = static_cast<FileLockKind>(lock.kind);
    if (kind != FileLockKind::kPosix && kind != FileLockKind::kLease) continue;
    const int fd = ImageFdOf(image, lock.file);
    if (fd < 0) continue;  // not reachable: locks are captured from descriptors
    if (kind == FileLockKind::kPosix) {
      struct flock fl = FlockOf(lock);
      CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, &fl, sizeof(fl)));
      CRLIB_RETURN_IF_ERROR(
          t->CheckedSyscall("fcntl(F_SETLK)", SYS_fcntl,
                            {static_cast<uint64_t>(fd), F_SETLK, scratch})
              .status());
    } else {
      CRLIB_RETURN_IF_ERROR(
          t->CheckedSyscall("fcntl(F_SETOWN)", SYS_fcntl,
                            {static_cast<uint64_t>(fd), F_SETOWN, static_cast<uint64_t>(t->tid())})
              .status());
    }
  }
  return absl::OkStatus();
}


}  // namespace crlib
