#include "files/file_restore.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "files/carried_inode.h"
#include "files/tty_restore.h"
#include "sys/credentials.h"

namespace crlib {
namespace {

constexpr int kOpenFlagsMask = ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC);

absl::Status WriteAll(int fd, const Bytes& data, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("write of %d bytes to %s", data.size(), what);
    done += n;
  }
  return absl::OkStatus();
}

std::string Dirname(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

OpenedFiles::~OpenedFiles() {
  for (int fd : all()) close(fd);
}

std::vector<int> OpenedFiles::all() const {
  std::vector<int> out = extra_;
  for (const auto& [ref, fd] : fds_) out.push_back(fd);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int OpenedFiles::fd(ObjectRef ref) const {
  auto it = fds_.find(ref);
  return it == fds_.end() ? -1 : it->second;
}

absl::Status OpenedFiles::Place(ObjectRef ref, int fd) {
  // Move above every number the image uses, so that putting the image's
  // descriptors in place never overwrites one still needed.
  int high = fcntl(fd, F_DUPFD_CLOEXEC, base_);
  if (high < 0) {
    absl::Status st = Errno("fcntl(F_DUPFD) to %d or above", base_);
    close(fd);
    return st;
  }
  close(fd);
  fds_[ref] = high;
  return absl::OkStatus();
}

absl::StatusOr<int> OpenedFiles::OpenFile(const ProcessImage& image, const FileImage& file) {
  const FileRecord& f = file.record;
  const int flags = static_cast<int>(f.flags) & kOpenFlagsMask;
  if (f.object) {
    // A memfd or deleted file: a new open file description of the
    // restored inode, with the recorded flags and offset.
    const int inode = fd(f.object);
    if (inode < 0) return absl::InternalError(absl::StrFormat("inode %d of %s not opened", f.object, f.path));
    int reopened = -1;
    if (static_cast<FileKind>(f.kind) == FileKind::kMemfd && (flags & O_ACCMODE) == O_RDWR &&
        memfd_description_used_.insert(f.object).second) {
      // memfd_create's own description writes without counting as a
      // writer, which lets the memfd be executed (fexecve); a reopen for
      // writing would make that fail with ETXTBSY. Every other fd of it
      // is a reopen, as it was in the process.
      reopened = fcntl(inode, F_DUPFD_CLOEXEC, 0);
      if (reopened < 0) return Errno("fcntl(F_DUPFD) of memfd %s", f.path);
      if (fcntl(reopened, F_SETFL, flags & ~O_ACCMODE) != 0) {
        absl::Status st = Errno("fcntl(F_SETFL) on memfd %s", f.path);
        close(reopened);
        return st;
      }
    } else {
      reopened = open(absl::StrCat("/proc/self/fd/", inode).c_str(), flags | O_CLOEXEC);
    }
    if (reopened < 0) return Errno("reopen of %s as uid %d", f.path, fsuid_);
    if (lseek(reopened, static_cast<off_t>(f.offset), SEEK_SET) < 0) {
      absl::Status st = Errno("lseek %s to %d", f.path, f.offset);
      close(reopened);
      return st;
    }
    return reopened;
  }
  switch (static_cast<FileKind>(f.kind)) {
    case FileKind::kRegular:
    case FileKind::kDirectory:
    case FileKind::kCharDevice: {
      int fd = open(f.path.c_str(), flags | O_CLOEXEC);
      if (fd < 0) return Errno("open %s as uid %d", f.path, fsuid_);
      struct stat st;
      if (fstat(fd, &st) == 0 && static_cast<FileKind>(f.kind) == FileKind::kRegular &&
          st.st_ino != f.inode) {
        close(fd);
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s is not the file the image was taken with (inode %d, was %d)", f.path, st.st_ino,
            f.inode));
      }
      if (static_cast<FileKind>(f.kind) == FileKind::kRegular &&
          lseek(fd, static_cast<off_t>(f.offset), SEEK_SET) < 0) {
        absl::Status st2 = Errno("lseek %s to %d", f.path, f.offset);
        close(fd);
        return st2;
      }
      return fd;
    }
    case FileKind::kDeletedRegular: {
      // An unlinked file with the saved contents, in the directory the
      // original lived in when it still exists (else /tmp).
      // Created owner-only, so that we (the image's user) can write it and
      // reopen it with the recorded flags; its recorded mode comes last.
      std::string dir = Dirname(f.path);
      int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, S_IRUSR | S_IWUSR);
      if (fd < 0) fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, S_IRUSR | S_IWUSR);
      if (fd < 0) return Errno("open(O_TMPFILE) for deleted file %s as uid %d", f.path, fsuid_);
      absl::Status st = WriteAll(fd, file.contents, f.path);
      if (st.ok()) {
        // Reopen with the recorded flags: a new open file description.
        int reopened = open(absl::StrCat("/proc/self/fd/", fd).c_str(), flags | O_CLOEXEC);
        close(fd);
        if (reopened < 0) return Errno("reopen of deleted file %s as uid %d", f.path, fsuid_);
        fd = reopened;
        if (lseek(fd, static_cast<off_t>(f.offset), SEEK_SET) < 0) st = Errno("lseek %s", f.path);
        if (st.ok() && fchmod(fd, f.mode & 07777) != 0) {
          st = Errno("fchmod of deleted file %s to %04o", f.path, f.mode & 07777);
        }
      }
      if (!st.ok()) {
        close(fd);
        return st;
      }
      return fd;
    }
    case FileKind::kPipe:
    case FileKind::kFifo: {
      const PipeImage& pipe = image.pipes.at(f.pipe);
      auto it = pipes_.find(f.pipe);
      if (it == pipes_.end()) {
        int p[2];
        if (static_cast<FileKind>(f.kind) == FileKind::kFifo) {
          // Opening for both directions never blocks; it holds the FIFO
          // open while the recorded ends are opened through it.
          int holder = open(f.path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
          if (holder < 0) return Errno("open FIFO %s as uid %d", f.path, fsuid_);
          p[0] = p[1] = holder;
        } else if (pipe2(p, O_CLOEXEC) != 0) {
          return Errno("pipe2");
        }
        if (pipe.record.capacity) fcntl(p[1], F_SETPIPE_SZ, pipe.record.capacity);
        CRLIB_RETURN_IF_ERROR(WriteAll(p[1], pipe.buffered, "a restored pipe"));
        it = pipes_.emplace(f.pipe, std::make_pair(p[0], p[1])).first;
        extra_.push_back(p[0]);
        if (p[1] != p[0]) extra_.push_back(p[1]);
      }
      // Each recorded end gets its own open file description.
      int end = (flags & O_ACCMODE) == O_WRONLY ? it->second.second : it->second.first;
      int fd = open(absl::StrCat("/proc/self/fd/", end).c_str(), flags | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) return Errno("reopen of pipe end for %s", f.path);
      if (!(flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags & ~O_ACCMODE);
      return fd;
    }
    case FileKind::kPtyMaster: {
      // One open file description per pair: dups share it, so the
      // record's status flags go on it.
      CRLIB_ASSIGN_OR_RETURN(int master, PtyMaster(image, f.tty));
      int fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return Errno("fcntl(F_DUPFD) of the master of %s", f.path);
      if (fcntl(fd, F_SETFL, flags & ~O_ACCMODE) != 0) {
        absl::Status st = Errno("fcntl(F_SETFL) on the master of %s", f.path);
        close(fd);
        return st;
      }
      return fd;
    }
    case FileKind::kPtySlave: {
      CRLIB_ASSIGN_OR_RETURN(int master, PtyMaster(image, f.tty));
      return OpenPtySlave(master, image.ttys.at(f.tty), flags);
    }
    case FileKind::kInherited:
    case FileKind::kDevTty:  // opened by the process itself: RestoreControllingTerminal
      return -1;
    case FileKind::kMemfd:
      break;  // always with an inode (LoadProcessImage checks)
  }
  return absl::DataLossError(absl::StrFormat("file %s has unknown kind %d", f.path, f.kind));
}

absl::StatusOr<int> OpenedFiles::PtyMaster(const ProcessImage& image, ObjectRef tty) {
  auto it = pty_masters_.find(tty);
  if (it != pty_masters_.end()) return it->second;
  CRLIB_ASSIGN_OR_RETURN(int master, OpenPtyPair(image.ttys.at(tty), options_.any_pty_index));
  extra_.push_back(master);
  pty_masters_[tty] = master;
  return master;
}

absl::StatusOr<OpenedFiles> OpenedFiles::Open(const ProcessImage& image,
                                              const OpenFilesOptions& options) {
  // Every permission check must be the restored process's, never ours: a
  // file it could not open now must fail the restore, not be handed to it.
  // A thread of our own takes the image's credentials (raw calls change
  // only that thread) and opens everything; the descriptors are the
  // process's. The kernel's checks are then exactly the image's.
  // Staged shmem and memfd inodes get their recorded owner with our own
  // rights first (an owner other than the process's own is how it was),
  // when the image's credentials could have given it.
  for (const auto& [ref, inode] : image.inodes) {
    CRLIB_RETURN_IF_ERROR(ChownStagedInode(inode, image.process));
  }
  std::optional<absl::StatusOr<OpenedFiles>> result;
  std::thread opener([&] {
    absl::Status st = sys::SetThisThreadCredentials(ImageCredentials(image.process));
    if (st.ok()) {
      result.emplace(OpenAll(image, options));
    } else {
      result.emplace(Annotate(st, absl::StrFormat("taking the image's credentials (uid %d) to "
                                                  "open its files",
                                                  image.process.euid)));
    }
  });
  opener.join();
  return std::move(*result);
}

absl::StatusOr<OpenedFiles> OpenedFiles::OpenAll(const ProcessImage& image,
                                                 const OpenFilesOptions& options) {
  const ProcessRecord& p = image.process;
  // chdir runs in the restored process once it has these credentials;
  // checking here makes a cwd it cannot enter an error before anything
  // exists. A cwd under another root is resolved only after chroot.
  if (p.root == "/" && faccessat(AT_FDCWD, p.cwd.c_str(), X_OK, AT_EACCESS) != 0) {
    return Errno("chdir %s as uid %d", p.cwd, p.fsuid);
  }
  OpenedFiles files;
  files.fsuid_ = p.fsuid;
  files.options_ = options;
  int max_fd = 2;
  for (const FdRecord& fd : image.fds) max_fd = std::max<int>(max_fd, static_cast<int>(fd.fd));
  files.base_ = std::max(max_fd + 1, 64);
  // Inodes whose contents the image carries, before the files that
  // reopen them; mappings map them through fd(ref).
  for (const auto& [ref, inode] : image.inodes) {
    CRLIB_ASSIGN_OR_RETURN(int fd, OpenCarriedInode(inode, p.fsuid));
    if (fd >= 0) CRLIB_RETURN_IF_ERROR(files.Place(ref, fd));
  }
  for (const auto& [ref, file] : image.files) {
    FileImage f = file;
    // A file mapped shared and writable must be open for writing.
    for (const VmaRecord& v : image.vmas) {
      if (v.file == ref && (v.flags & MAP_SHARED) && (v.prot & PROT_WRITE)) {
        f.record.flags = (f.record.flags & ~O_ACCMODE) | O_RDWR;
      }
    }
    CRLIB_ASSIGN_OR_RETURN(int fd, files.OpenFile(image, f));
    if (fd >= 0) CRLIB_RETURN_IF_ERROR(files.Place(ref, fd));
  }
  for (const auto& [ref, inode] : image.inodes) {
    if (files.fd(ref) >= 0) CRLIB_RETURN_IF_ERROR(FinishCarriedInode(inode, files.fd(ref), p.fsuid));
  }
  for (const auto& [tty, master] : files.pty_masters_) {
    CRLIB_RETURN_IF_ERROR(FinishPtyPair(master, image.ttys.at(tty)));
  }
  // Pipe holders move above the base too, out of the way of the image's fds.
  for (int& fd : files.extra_) {
    int high = fcntl(fd, F_DUPFD_CLOEXEC, files.base_);
    if (high < 0) return Errno("fcntl(F_DUPFD)");
    close(fd);
    fd = high;
  }
  return files;
}

}  // namespace crlib
