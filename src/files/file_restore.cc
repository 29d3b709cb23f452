#include "files/file_restore.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "files/carried_inode.h"
#include "files/event_restore.h"
#include "files/socket_restore.h"
#include "files/tty_restore.h"
#include "sys/credentials.h"
#include "sys/kernel.h"
#include "sys/proc.h"

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

// A new directory only we can enter, next to `path` when its directory
// still exists, else in /tmp: where a removed FIFO or directory is made
// before its name goes again.
absl::StatusOr<std::string> PrivateDirNear(const std::string& path, uint32_t uid) {
  for (std::string dir : {Dirname(path), std::string("/tmp")}) {
    std::string templ = absl::StrCat(dir == "/" ? "" : dir, "/.crlib-removed-XXXXXX");
    if (mkdtemp(templ.data()) != nullptr) return templ;
  }
  return Errno("mkdtemp near %s and in /tmp as uid %d", path, uid);
}

// A path opened again must be the file checkpointed: removed or replaced
// since, the restore fails here, before anything exists.
absl::Status CheckSameFile(int fd, const FileRecord& f) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Errno("fstat of %s", f.path);
  const bool device = S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode);
  if ((st.st_mode & S_IFMT) != (f.mode & S_IFMT) || (device && st.st_rdev != f.rdev)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not the file the image was taken with (mode %o, was %o)", f.path, st.st_mode,
        f.mode));
  }
  if (!device && st.st_ino != f.inode) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not the file the image was taken with (inode %d, was %d)", f.path, st.st_ino,
        f.inode));
  }
  return absl::OkStatus();
}

// The root, and the cwd when restored by path, must be the directories
// the image was taken with (the cwd path is resolved from our root, which
// is why only a process with our root has its cwd checked).
absl::Status CheckDirs(const ProcessImage& image) {
  if (!image.dirs) return absl::OkStatus();
  const ProcessRecord& p = image.process;
  struct Dir {
    const char* what;
    const std::string& path;
    uint64_t dev, inode;
    bool check;
  };
  for (const Dir& d : {Dir{"root", p.root, image.dirs->root_dev, image.dirs->root_inode, true},
                       Dir{"cwd", p.cwd, image.dirs->cwd_dev, image.dirs->cwd_inode,
                           p.root == "/" && !image.RemovedCwd()}}) {
    if (!d.check) continue;
    struct stat st;
    if (stat(d.path.c_str(), &st) != 0) return Errno("stat of the %s %s", d.what, d.path);
    if (!S_ISDIR(st.st_mode) || st.st_ino != d.inode) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s %s is not the directory the image was taken with (inode %d, was %d)", d.what,
          d.path, st.st_ino, d.inode));
    }
  }
  return absl::OkStatus();
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
    case FileKind::kCharDevice:
    case FileKind::kPath: {
      // kPath: flags hold O_PATH, and O_NOFOLLOW for a symlink itself.
      int fd = open(f.path.c_str(), flags | O_CLOEXEC);
      if (fd < 0) return Errno("open %s as uid %d", f.path, fsuid_);
      if (absl::Status same = CheckSameFile(fd, f); !same.ok()) {
        close(fd);
        return same;
      }
      if (static_cast<FileKind>(f.kind) == FileKind::kRegular && !(flags & O_PATH) &&
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
    case FileKind::kNamespace: {
      // Only the restorer's own namespace of that inode.
      const std::string type = f.path.substr(0, f.path.find(":["));
      const std::string own = absl::StrCat("/proc/self/ns/", type);
      int fd = open(own.c_str(), flags | O_CLOEXEC);
      if (fd < 0) return Errno("open %s as uid %d", own, fsuid_);
      struct stat st;
      if (fstat(fd, &st) != 0 || st.st_ino != f.inode) {
        close(fd);
        return absl::FailedPreconditionError(absl::StrFormat(
            "namespace %s is not this restorer's own (%s:[%d])", f.path, type, st.st_ino));
      }
      return fd;
    }
    case FileKind::kDeletedDirectory: {
      // Made, opened and removed again: a removed directory is empty.
      CRLIB_ASSIGN_OR_RETURN(std::string dir, PrivateDirNear(f.path, fsuid_));
      int fd = open(dir.c_str(), flags | O_DIRECTORY | O_CLOEXEC);
      absl::Status st = fd < 0 ? Errno("open %s as uid %d", dir, fsuid_) : absl::OkStatus();
      if (rmdir(dir.c_str()) != 0 && st.ok()) st = Errno("rmdir %s", dir);
      if (st.ok() && fchmod(fd, f.mode & 07777) != 0) {
        st = Errno("fchmod of removed directory %s to %04o", f.path, f.mode & 07777);
      }
      if (!st.ok()) {
        if (fd >= 0) close(fd);
        return Annotate(st, absl::StrCat("removed directory ", f.path));
      }
      return fd;
    }
    case FileKind::kDeletedDevice: {
      // mknod with the image's credentials (CAP_MKNOD, checked at dump
      // too), in a directory only we can enter, opened with the image's
      // rights, and nameless again at once.
      CRLIB_ASSIGN_OR_RETURN(std::string dir, PrivateDirNear(f.path, fsuid_));
      const std::string node = dir + "/dev";
      int fd = -1;
      absl::Status st =
          mknod(node.c_str(), S_IFCHR | (f.mode & 07777), static_cast<dev_t>(f.rdev)) != 0
              ? Errno("mknod %s as uid %d", node, fsuid_)
              : absl::OkStatus();
      if (st.ok()) {
        fd = open(node.c_str(), flags | O_CLOEXEC);
        if (fd < 0) st = Errno("open %s as uid %d", node, fsuid_);
      }
      if (st.ok() && fchmod(fd, f.mode & 07777) != 0) {
        st = Errno("fchmod to %04o", f.mode & 07777);  // our umask took bits off
      }
      unlink(node.c_str());
      rmdir(dir.c_str());
      if (!st.ok()) {
        if (fd >= 0) close(fd);
        return Annotate(st, absl::StrFormat("removed device node %s (character %d:%d)", f.path,
                                            major(f.rdev), minor(f.rdev)));
      }
      return fd;
    }
    case FileKind::kPipe:
    case FileKind::kFifo:
    case FileKind::kDeletedFifo: {
      const PipeImage& pipe = image.pipes.at(f.pipe);
      auto it = pipes_.find(f.pipe);
      if (it == pipes_.end()) {
        int p[2];
        if (static_cast<FileKind>(f.kind) == FileKind::kFifo) {
          // Opening for both directions never blocks; it holds the FIFO
          // open while the recorded ends are opened through it.
          int holder = open(f.path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
          if (holder < 0) return Errno("open FIFO %s as uid %d", f.path, fsuid_);
          if (absl::Status same = CheckSameFile(holder, f); !same.ok()) {
            close(holder);
            return same;
          }
          p[0] = p[1] = holder;
        } else if (static_cast<FileKind>(f.kind) == FileKind::kDeletedFifo) {
          // A new FIFO in a directory of its own, held open, then nameless.
          CRLIB_ASSIGN_OR_RETURN(std::string dir, PrivateDirNear(f.path, fsuid_));
          const std::string name = dir + "/fifo";
          int holder = -1;
          absl::Status st = mkfifo(name.c_str(), 0600) != 0 ? Errno("mkfifo %s", name)
                                                            : absl::OkStatus();
          if (st.ok()) {
            holder = open(name.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
            if (holder < 0) st = Errno("open FIFO %s as uid %d", name, fsuid_);
          }
          unlink(name.c_str());
          rmdir(dir.c_str());
          if (st.ok() && fchmod(holder, f.mode & 07777) != 0) {
            st = Errno("fchmod of removed FIFO %s to %04o", f.path, f.mode & 07777);
          }
          if (!st.ok()) {
            if (holder >= 0) close(holder);
            return Annotate(st, absl::StrCat("removed FIFO ", f.path));
          }
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
    case FileKind::kExternal: {
      // The restorer's own description, shared; unmapped only in a dump's
      // check of its own image (CheckInheritFds).
      auto given = options_.inherit_fds.find(f.path);
      if (given == options_.inherit_fds.end()) return -1;
      int fd = fcntl(given->second, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return Errno("fcntl(F_DUPFD) of fd %d, given for %s", given->second, f.path);
      return fd;
    }
    case FileKind::kSocket: {
      // The socket's one open file description, with the recorded flags.
      auto made = sockets_.find(f.socket);
      if (made == sockets_.end()) {
        return absl::InternalError(absl::StrFormat("socket %d of %s not made", f.socket, f.path));
      }
      int fd = fcntl(made->second, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return Errno("fcntl(F_DUPFD) of %s", f.path);
      if (fcntl(fd, F_SETFL, flags & ~O_ACCMODE) != 0) {
        absl::Status st = Errno("fcntl(F_SETFL) on %s", f.path);
        close(fd);
        return st;
      }
      return fd;
    }
    case FileKind::kPidfd:  // made by its holder: RestorePidfds
    case FileKind::kInherited:
    case FileKind::kDevTty:  // opened by the process itself: RestoreControllingTerminal
      return -1;
    case FileKind::kEventfd:
    case FileKind::kTimerfd:
    case FileKind::kSignalfd:
    case FileKind::kInotify:
    case FileKind::kEpoll:
      return OpenEventFile(image, file, fsuid_);
    case FileKind::kMemfd:
      break;  // always with an inode (LoadTreeImage checks)
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
  // Identity only, with our rights: a chroot made before the process
  // dropped its privileges may be a path its user cannot reach.
  CRLIB_RETURN_IF_ERROR(CheckDirs(image));
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

absl::StatusOr<OpenedFiles> OpenedFiles::OpenTree(absl::Span<const ProcessImage* const> images,
                                                  const OpenFilesOptions& options) {
  const ProcessImage& root = *images.front();
  // The view every Open gets: the fds of the whole tree (its descriptors go
  // above all their numbers) and its mappings (a file mapped shared and
  // writable anywhere opens for writing).
  ProcessImage all = root;
  all.fds.clear();
  all.locks.clear();
  all.vmas.clear();
  for (const ProcessImage* image : images) {
    all.fds.insert(all.fds.end(), image->fds.begin(), image->fds.end());
    all.locks.insert(all.locks.end(), image->locks.begin(), image->locks.end());
    all.vmas.insert(all.vmas.end(), image->vmas.begin(), image->vmas.end());
  }
  // Each distinct set of credentials with the first process that has it.
  std::vector<std::pair<sys::Credentials, size_t>> groups;
  std::vector<size_t> group_of(images.size(), 0);
  for (size_t i = 0; i < images.size(); ++i) {
    if (i > 0 && (images[i]->process.flags & kProcessZombie)) continue;  // holds nothing
    const sys::Credentials creds = ImageCredentials(images[i]->process);
    size_t g = 0;
    while (g < groups.size() && groups[g].first != creds) ++g;
    if (g == groups.size()) groups.emplace_back(creds, i);
    group_of[i] = g;
  }
  if (groups.size() == 1) return Open(all, options);

  // The first process (its index) holding each file and inode.
  std::map<ObjectRef, size_t> first;
  auto hold = [&](ObjectRef ref, size_t i) {
    if (ref) first.emplace(ref, i);
  };
  for (size_t i = 0; i < images.size(); ++i) {
    const ProcessImage& image = *images[i];
    if (i > 0 && (image.process.flags & kProcessZombie)) continue;
    if (image.dirs) {
      hold(image.dirs->cwd, i);
      hold(image.dirs->root, i);
    }
    hold(image.mm.exe_file, i);
    for (const FdRecord& fd : image.fds) hold(fd.file, i);
    for (const VmaRecord& v : image.vmas) {
      hold(v.file, i);
      hold(v.object, i);
    }
  }
  // One object behind several file records (a pipe, a pty pair, a carried
  // inode) is made once, by whoever holds any of them first. Pipe, tty and
  // inode refs are distinct refs of one registry, so one map keys them.
  auto object_of = [&](const FileRecord& f) {
    if (f.socket) return SocketGroupAnchor(root, f.socket);
    return f.object ? f.object : f.pipe ? f.pipe : f.tty ? f.tty : ObjectRef{0};
  };
  for (const auto& [ref, file] : root.files) {
    const ObjectRef object = object_of(file.record);
    auto held = first.find(ref);
    if (!object || held == first.end()) continue;
    auto [it, inserted] = first.emplace(object, held->second);
    it->second = std::min(it->second, held->second);
  }
  // Anything nobody holds (not reachable from a valid image) goes with the root.
  auto group_of_ref = [&](ObjectRef ref) {
    auto it = first.find(ref);
    return it == first.end() ? size_t{0} : group_of[it->second];
  };
  auto file_group = [&](ObjectRef ref, const FileRecord& f) {
    const ObjectRef object = object_of(f);
    return group_of_ref(object ? object : ref);
  };

  std::optional<OpenedFiles> result;
  for (size_t g = 0; g < groups.size(); ++g) {
    const ProcessImage& leader = *images[groups[g].second];
    ProcessImage view = all;
    view.process = leader.process;
    view.dirs = leader.dirs;
    view.mm = leader.mm;
    view.files.clear();
    view.inodes.clear();
    view.locks.clear();
    for (const auto& [ref, file] : all.files) {
      if (file_group(ref, file.record) == g) view.files.emplace(ref, file);
    }
    for (const auto& [ref, inode] : all.inodes) {
      if (group_of_ref(ref) == g) view.inodes.emplace(ref, inode);
    }
    for (const FileLockRecord& lock : all.locks) {
      if (view.files.contains(lock.file)) view.locks.push_back(lock);
    }
    absl::StatusOr<OpenedFiles> opened = Open(view, options);
    if (!opened.ok()) {
      return Annotate(opened.status(),
                      absl::StrFormat("opening the files pid %d holds first", leader.process.pid));
    }
    if (result) {
      result->Absorb(std::move(*opened));
    } else {
      result.emplace(std::move(*opened));
    }
  }
  return std::move(*result);
}

void OpenedFiles::Absorb(OpenedFiles&& other) {
  fds_.merge(other.fds_);
  extra_.insert(extra_.end(), other.extra_.begin(), other.extra_.end());
  other.fds_.clear();
  other.extra_.clear();
}

absl::StatusOr<OpenedFiles> OpenedFiles::OpenAll(const ProcessImage& image,
                                                 const OpenFilesOptions& options) {
  const ProcessRecord& p = image.process;
  // chdir runs in the restored process once it has these credentials;
  // checking here makes a cwd it cannot enter an error before anything
  // exists. A cwd under another root is resolved only after chroot.
  if (p.root == "/" && !image.RemovedCwd() &&
      faccessat(AT_FDCWD, p.cwd.c_str(), X_OK, AT_EACCESS) != 0) {
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
  std::set<std::pair<uint64_t, uint64_t>> leased;  // (dev, inode) the original holds a lease on
  for (const FileLockRecord& lock : image.locks) {
    const FileRecord& f = image.files.at(lock.file).record;
    if (options.original_alive && static_cast<FileLockKind>(lock.kind) == FileLockKind::kLease) {
      leased.insert({f.dev, f.inode});
    }
  }
  // Sockets, made together (pairs, listeners and who waits on them).
  std::set<ObjectRef> sockets;
  for (const auto& [ref, file] : image.files) {
    if (file.record.socket) sockets.insert(file.record.socket);
  }
  if (!sockets.empty()) {
    CRLIB_ASSIGN_OR_RETURN(files.sockets_, MakeSockets(image, sockets,
                                                           {.original_alive = options.original_alive,
                                                            .check_only = options.check_only}));
  }
  absl::Cleanup close_sockets = [&] {
    for (const auto& [ref, fd] : files.sockets_) close(fd);
    files.sockets_.clear();
  };
  for (const auto& [ref, file] : image.files) {
    FileImage f = file;
    if (static_cast<FileKind>(f.record.kind) == FileKind::kRegular &&
        leased.contains({f.record.dev, f.record.inode})) {
      f.record.flags = O_PATH;  // checks the path and identity, breaks no lease
    }
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
  CRLIB_RETURN_IF_ERROR(options.original_alive ? CheckLocksHeldByOthers(image)
                                                : files.TakeLocks(image));
  // Pipe holders move above the base too, out of the way of the image's fds.
  for (int& fd : files.extra_) {
    int high = fcntl(fd, F_DUPFD_CLOEXEC, files.base_);
    if (high < 0) return Errno("fcntl(F_DUPFD)");
    close(fd);
    fd = high;
  }
  return files;
}

absl::Status EnterRemovedCwd(Tracee* t, const ProcessImage& image, const OpenedFiles& files) {
  if (!image.RemovedCwd()) return absl::OkStatus();
  return t->CheckedSyscall("fchdir to the removed cwd", SYS_fchdir,
                           {static_cast<uint64_t>(files.fd(image.RemovedCwd()))})
      .status();
}

}  // namespace crlib
