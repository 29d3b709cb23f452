#include "files/carried_inode.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "image/process_image.h"
#include "sys/kernel.h"
#include "sys/unique_fd.h"

namespace crlib {
namespace {

constexpr uint32_t kAllSeals =
    F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | sys::kFSealExec;

// Opens the inode for reading without touching its access time when we
// may (O_NOATIME needs ownership or CAP_FOWNER).
absl::StatusOr<int> OpenForReading(const CarriedInodeSource& source) {
  int fd = open(source.open_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = open(source.open_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == EPERM && source.open_path.find("/map_files/") != std::string::npos) {
    return Errno("open %s for %s (map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)",
                 source.open_path, source.what);
  }
  if (fd < 0) return Errno("open %s for %s", source.open_path, source.what);
  return fd;
}

// The byte ranges of `fd` that hold data, by SEEK_DATA/SEEK_HOLE; all of
// it where the file system cannot tell.
absl::StatusOr<std::vector<DataRun>> FindDataRuns(int fd, uint64_t size, const std::string& what) {
  std::vector<DataRun> runs;
  for (uint64_t at = 0; at < size;) {
    off_t data = lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;
    if (data < 0 && errno == EINVAL && at == 0) return std::vector<DataRun>{{0, size}};
    if (data < 0) return Errno("lseek(SEEK_DATA) at %d in %s", at, what);
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return Errno("lseek(SEEK_HOLE) at %d in %s", data, what);
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    if (static_cast<uint64_t>(data) >= end) break;
    runs.push_back({static_cast<uint64_t>(data), end - static_cast<uint64_t>(data)});
    at = end;
  }
  return runs;
}

absl::Status FillSysv(const CarriedInodeSource& source, InodeRecord* rec) {
  unsigned key = 0;
  if (sscanf(source.name.c_str(), "/SYSV%x", &key) != 1) {
    return absl::DataLossError("unparsable SysV mapping name " + source.name);
  }
  rec->sysv_key = static_cast<int32_t>(key);
  rec->sysv_id = static_cast<uint32_t>(source.inode);  // the kernel sets i_ino to the id
  shmid_ds ds{};
  if (shmctl(static_cast<int>(rec->sysv_id), IPC_STAT, &ds) != 0) {
    return Errno("shmctl(%d, IPC_STAT) for %s", rec->sysv_id, source.what);
  }
  rec->mode = ds.shm_perm.mode & 0777;
  rec->uid = ds.shm_perm.uid;
  rec->gid = ds.shm_perm.gid;
  rec->size = ds.shm_segsz;
  if (ds.shm_perm.mode & SHM_DEST) rec->sysv_flags |= kSysvRemoved;
  return absl::OkStatus();
}

// The recorded access and modification times, after the last write.
absl::Status SetTimes(int fd, const InodeRecord& r) {
  const timespec times[2] = {{r.atime_ns / 1000000000, r.atime_ns % 1000000000},
                             {r.mtime_ns / 1000000000, r.mtime_ns % 1000000000}};
  if (futimens(fd, times) != 0) return Errno("futimens of the restored %s", r.name);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CarriedInodeFacts> InspectCarriedInode(const CarriedInodeSource& source) {
  CRLIB_ASSIGN_OR_RETURN(int raw, OpenForReading(source));
  sys::UniqueFd fd(raw);
  CarriedInodeFacts facts;
  if (fstat(fd.fd, &facts.st) != 0) return Errno("fstat %s", source.open_path);
  struct statfs fs{};
  if (fstatfs(fd.fd, &fs) == 0) facts.hugetlb = fs.f_type == HUGETLBFS_MAGIC;
  if (source.kind == InodeKind::kMemfd) {
    int seals = fcntl(fd.fd, F_GET_SEALS);
    if (seals < 0) return Errno("fcntl(F_GET_SEALS) on %s", source.what);
    facts.seals = static_cast<uint32_t>(seals);
  }
  if (S_ISREG(facts.st.st_mode) && !facts.hugetlb) {
    CRLIB_ASSIGN_OR_RETURN(std::vector<DataRun> runs,
                           FindDataRuns(fd.fd, static_cast<uint64_t>(facts.st.st_size), source.what));
    for (const DataRun& r : runs) facts.data_bytes += r.length;
  }
  return facts;
}

absl::Status CheckCarriedInode(const CarriedInodeSource& source, const CarriedInodeFacts& facts,
                               uint64_t deleted_file_limit) {
  auto refuse = [&](const std::string& why) {
    return absl::UnimplementedError(absl::StrCat(source.what, " is not supported: ", why));
  };
  if (facts.hugetlb) return refuse("hugetlbfs memory is not carried");
  if (!S_ISREG(facts.st.st_mode)) return refuse("a deleted inode that is not a regular file");
  if (source.kind == InodeKind::kDeletedFile && facts.data_bytes > deleted_file_limit) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: the deleted file holds %d bytes of data, above the limit of %d bytes for deleted "
        "files the image carries; raise it with --deleted-file-limit BYTES "
        "(CheckpointOptions::deleted_file_limit)",
        source.what, facts.data_bytes, deleted_file_limit));
  }
  return absl::OkStatus();
}

absl::StatusOr<ObjectRef> InternCarriedInode(Context* ctx, const CarriedInodeSource& source,
                                             ObjectRef parent) {
  auto entry = ctx->registry().Intern({ObjectKind::kCarriedInode, source.dev, source.inode});
  if (!entry.inserted) return entry.ref;
  CRLIB_ASSIGN_OR_RETURN(int raw, OpenForReading(source));
  sys::UniqueFd fd(raw);
  struct stat st{};
  if (fstat(fd.fd, &st) != 0) return Errno("fstat %s", source.open_path);
  InodeRecord rec;
  rec.kind = static_cast<uint32_t>(source.kind);
  rec.mode = st.st_mode;
  rec.uid = st.st_uid;
  rec.gid = st.st_gid;
  rec.size = static_cast<uint64_t>(st.st_size);
  rec.dev = source.dev;
  rec.inode = source.inode;
  rec.atime_ns = int64_t{st.st_atim.tv_sec} * 1000000000 + st.st_atim.tv_nsec;
  rec.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  rec.name = source.name;
  if (source.kind == InodeKind::kMemfd) {
    int seals = fcntl(fd.fd, F_GET_SEALS);
    if (seals < 0) return Errno("fcntl(F_GET_SEALS) on %s", source.what);
    rec.seals = static_cast<uint32_t>(seals);
  }
  if (source.kind == InodeKind::kSysvShm) CRLIB_RETURN_IF_ERROR(FillSysv(source, &rec));
  CRLIB_ASSIGN_OR_RETURN(rec.runs, FindDataRuns(fd.fd, rec.size, source.what));
  // The bulk comes straight from a read-only mapping of the inode: no
  // copy in our memory, whatever its size.
  std::vector<iovec> bulk;
  void* map = MAP_FAILED;
  Bytes copy;
  if (!rec.runs.empty()) {
    map = mmap(nullptr, rec.size, PROT_READ, MAP_SHARED, fd.fd, 0);
    if (map == MAP_FAILED) {
      // A file system without mmap: read the runs.
      uint64_t total = 0;
      for (const DataRun& r : rec.runs) total += r.length;
      copy.resize(total);
      uint64_t at = 0;
      for (const DataRun& r : rec.runs) {
        for (uint64_t done = 0; done < r.length;) {
          ssize_t n = pread(fd.fd, copy.data() + at + done, r.length - done,
                            static_cast<off_t>(r.offset + done));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) return Errno("read of %s at %d", source.what, r.offset + done);
          done += static_cast<uint64_t>(n);
        }
        at += r.length;
      }
      bulk.push_back({copy.data(), copy.size()});
    } else {
      for (const DataRun& r : rec.runs) {
        bulk.push_back({static_cast<uint8_t*>(map) + r.offset, r.length});
      }
    }
  }
  absl::Status st2 = ctx->writer()->Write(rec, entry.ref, parent, bulk);
  if (map != MAP_FAILED) munmap(map, rec.size);
  CRLIB_RETURN_IF_ERROR(st2);
  return entry.ref;
}

absl::Status ChownStagedInode(const InodeImage& inode, const ProcessRecord& p) {
  const InodeRecord& r = inode.record;
  const auto kind = static_cast<InodeKind>(r.kind);
  if (kind != InodeKind::kSharedAnonymous && kind != InodeKind::kMemfd) return absl::OkStatus();
  if (!ImageMayOwn(p, r.uid, r.gid)) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "the image's %s is owned by %d:%d, which its credentials (uid %d, gid %d, no CAP_CHOWN) "
        "could not give it",
        r.name, r.uid, r.gid, p.euid, p.egid));
  }
  struct stat st{};
  if (fstat(*inode.staged, &st) != 0) return Errno("fstat of the restored %s", r.name);
  if (st.st_uid == r.uid && st.st_gid == r.gid) return absl::OkStatus();
  if (fchown(*inode.staged, r.uid, r.gid) != 0) {
    return Errno("fchown of the restored %s to %d:%d", r.name, r.uid, r.gid);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> OpenCarriedInode(const InodeImage& inode, uint32_t fsuid) {
  const InodeRecord& r = inode.record;
  const int staged = *inode.staged;
  switch (static_cast<InodeKind>(r.kind)) {
    case InodeKind::kSysvShm:
      return -1;
    case InodeKind::kSharedAnonymous:
    case InodeKind::kMemfd: {
      int fd = fcntl(staged, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return Errno("fcntl(F_DUPFD) of the restored %s", r.name);
      return fd;
    }
    case InodeKind::kDeletedFile: {
      // An unlinked file in the directory the original lived in when it
      // still exists (else /tmp), owner-only until its mode comes last.
      std::string dir = r.name;
      size_t slash = dir.find_last_of('/');
      dir = slash == std::string::npos || slash == 0 ? "/" : dir.substr(0, slash);
      sys::UniqueFd fd(open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, S_IRUSR | S_IWUSR));
      if (fd.fd < 0) fd.fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, S_IRUSR | S_IWUSR);
      if (fd.fd < 0) return Errno("open(O_TMPFILE) for deleted file %s as uid %d", r.name, fsuid);
      if (ftruncate(fd.fd, static_cast<off_t>(r.size)) != 0) {
        return Errno("ftruncate of deleted file %s to %d bytes", r.name, r.size);
      }
      // Only the runs: the holes stay holes.
      // copy_file_range between file systems of different types fails
      // (EXDEV): then through a buffer of 1 MiB.
      bool in_kernel = true;
      std::vector<uint8_t> buffer;
      for (const DataRun& run : r.runs) {
        loff_t in = static_cast<loff_t>(run.offset), out = in;
        for (uint64_t left = run.length; left > 0;) {
          ssize_t n = -1;
          if (in_kernel) {
            n = copy_file_range(staged, &in, fd.fd, &out, left, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
              in_kernel = false;
              continue;
            }
          } else {
            buffer.resize(1 << 20);
            n = pread(staged, buffer.data(), std::min<uint64_t>(left, buffer.size()), in);
            if (n > 0) n = pwrite(fd.fd, buffer.data(), static_cast<size_t>(n), out);
            if (n > 0) {
              in += n;
              out += n;
            }
          }
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) return Errno("copy into deleted file %s at %d", r.name, out);
          left -= static_cast<uint64_t>(n);
        }
      }
      struct stat st{};
      if (fstat(fd.fd, &st) != 0) return Errno("fstat of deleted file %s", r.name);
      if ((st.st_uid != r.uid || st.st_gid != r.gid) && fchown(fd.fd, r.uid, r.gid) != 0) {
        return Errno("fchown of deleted file %s to %d:%d as uid %d", r.name, r.uid, r.gid, fsuid);
      }
      return fd.release();
    }
  }
  return absl::DataLossError(absl::StrFormat("inode %s has unknown kind %d", r.name, r.kind));
}

absl::Status FinishCarriedInode(const InodeImage& inode, int fd, uint32_t fsuid) {
  const InodeRecord& r = inode.record;
  const auto kind = static_cast<InodeKind>(r.kind);
  if (kind != InodeKind::kMemfd && kind != InodeKind::kDeletedFile) return absl::OkStatus();
  // The mode before the seals (F_SEAL_EXEC keeps it), the times after the
  // last write.
  if (fchmod(fd, r.mode & 07777) != 0) {
    return Errno("fchmod of the restored %s to %04o as uid %d", r.name, r.mode & 07777, fsuid);
  }
  CRLIB_RETURN_IF_ERROR(SetTimes(fd, r));
  if (kind == InodeKind::kMemfd) {
    int seals = fcntl(fd, F_GET_SEALS);
    const uint32_t want = r.seals & kAllSeals;
    if (seals >= 0 && static_cast<uint32_t>(seals) != want &&
        fcntl(fd, F_ADD_SEALS, static_cast<int>(want)) != 0) {
      return Errno("fcntl(F_ADD_SEALS, 0x%x) on memfd %s", want, r.name);
    }
  }
  return absl::OkStatus();
}

}  // namespace crlib
