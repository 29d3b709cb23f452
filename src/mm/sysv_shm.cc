#include "mm/sysv_shm.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"

namespace crlib {
namespace {

constexpr const char* kNextId = "/proc/sys/kernel/shm_next_id";

enum class Plan { kAttach, kRecreate };

std::string Describe(const InodeRecord& r) {
  return absl::StrFormat("SysV segment id %d (key 0x%08x, %d bytes)", r.sysv_id,
                         static_cast<uint32_t>(r.sysv_key), r.size);
}

// The kernel's ipcperms() for the image's credentials: the new process
// attaches with ours, so a segment the image could not attach must be
// refused here.
bool ImageMayAttach(const ProcessRecord& p, const ipc_perm& perm, bool write) {
  if (p.cap_effective & (uint64_t{1} << CAP_IPC_OWNER)) return true;
  int granted = perm.mode;
  if (p.euid == perm.uid || p.euid == perm.cuid) {
    granted >>= 6;
  } else if (p.egid == perm.gid || p.egid == perm.cgid ||
             std::find(p.groups.begin(), p.groups.end(), perm.gid) != p.groups.end() ||
             std::find(p.groups.begin(), p.groups.end(), perm.cgid) != p.groups.end()) {
    granted >>= 3;
  }
  const int wanted = write ? 06 : 04;
  return (granted & wanted) == wanted;
}

// What restore does for segment `r`, or why it cannot.
absl::StatusOr<Plan> PlanFor(const ProcessImage& image, const InodeImage& inode) {
  const InodeRecord& r = inode.record;
  const bool removed = r.sysv_flags & kSysvRemoved;
  bool write = false;
  for (const VmaRecord& v : image.vmas) write |= v.object == inode.ref && (v.prot & PROT_WRITE);
  shmid_ds ds{};
  if (shmctl(static_cast<int>(r.sysv_id), IPC_STAT, &ds) == 0) {
    const bool same = ds.shm_segsz == r.size &&
                      (removed ? (ds.shm_perm.mode & SHM_DEST) != 0
                               : ds.shm_perm.__key == r.sysv_key);
    if (same && !ImageMayAttach(image.process, ds.shm_perm, write)) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "%s (owner %d, mode %04o) may not be attached %s by the image's uid %d", Describe(r),
          ds.shm_perm.uid, ds.shm_perm.mode & 0777, write ? "read-write" : "read-only",
          image.process.euid));
    }
    if (same) return Plan::kAttach;
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: that id now belongs to another segment (key 0x%08x, %d bytes)", Describe(r),
        static_cast<uint32_t>(ds.shm_perm.__key), ds.shm_segsz));
  }
  if (errno != EINVAL && errno != EIDRM) return Errno("shmctl(%d, IPC_STAT)", r.sysv_id);
  if (!removed && r.sysv_key != IPC_PRIVATE) {
    int other = shmget(r.sysv_key, 0, 0);
    if (other >= 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s is gone and its key is taken by segment id %d", Describe(r), other));
    }
  }
  if (!ImageMayOwn(image.process, r.uid, r.gid)) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s is owned by %d:%d, which the image's credentials (uid %d) could not give it",
        Describe(r), r.uid, r.gid, image.process.euid));
  }
  if (access(kNextId, W_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is gone; recreating it with its id needs write access to %s (root)", Describe(r),
        kNextId));
  }
  return Plan::kRecreate;
}

absl::Status WriteNextId(int64_t id) {
  int fd = open(kNextId, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open %s", kNextId);
  std::string v = absl::StrCat(id);
  ssize_t n = write(fd, v.data(), v.size());
  absl::Status st = n == static_cast<ssize_t>(v.size()) ? absl::OkStatus()
                                                          : Errno("write %s to %s", v, kNextId);
  close(fd);
  return st;
}

// A new segment with the image's id, key, mode, owner and contents.
absl::Status Recreate(const InodeImage& inode) {
  const InodeRecord& r = inode.record;
  const bool removed = r.sysv_flags & kSysvRemoved;
  CRLIB_RETURN_IF_ERROR(WriteNextId(r.sysv_id));
  int id = shmget(removed ? IPC_PRIVATE : r.sysv_key, r.size, IPC_CREAT | IPC_EXCL | 0600);
  // The kernel forgets the chosen id once it used it; not after a failure.
  if (id < 0) return Errno("shmget to recreate %s", Describe(r));
  auto fail = [&](absl::Status st) {
    shmctl(id, IPC_RMID, nullptr);
    return st;
  };
  if (static_cast<uint32_t>(id) != r.sysv_id) {
    return fail(absl::FailedPreconditionError(absl::StrFormat(
        "recreating %s gave id %d (another process created a segment meanwhile?)", Describe(r), id)));
  }
  if (!r.runs.empty()) {
    void* p = shmat(id, nullptr, 0);
    if (p == reinterpret_cast<void*>(-1)) return fail(Errno("shmat of recreated %s", Describe(r)));
    absl::Status st;
    for (const DataRun& run : r.runs) {
      for (uint64_t done = 0; done < run.length && st.ok();) {
        ssize_t n = pread(*inode.staged, static_cast<uint8_t*>(p) + run.offset + done,
                          run.length - done, static_cast<off_t>(run.offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) st = Errno("read of staged contents of %s", Describe(r));
        done += n > 0 ? static_cast<uint64_t>(n) : 0;
      }
    }
    shmdt(p);
    if (!st.ok()) return fail(st);
  }
  shmid_ds ds{};
  if (shmctl(id, IPC_STAT, &ds) != 0) return fail(Errno("shmctl(%d, IPC_STAT)", id));
  ds.shm_perm.uid = r.uid;
  ds.shm_perm.gid = r.gid;
  ds.shm_perm.mode = r.mode & 0777;
  if (shmctl(id, IPC_SET, &ds) != 0) return fail(Errno("shmctl(%d, IPC_SET) of %s", id, Describe(r)));
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSysvSegments(const ProcessImage& image) {
  for (const auto& [ref, inode] : image.inodes) {
    if (static_cast<InodeKind>(inode.record.kind) != InodeKind::kSysvShm) continue;
    CRLIB_RETURN_IF_ERROR(PlanFor(image, inode).status());
  }
  return absl::OkStatus();
}

absl::Status AttachSysvSegments(Tracee* t, const ProcessImage& image) {
  std::vector<const InodeImage*> recreated;
  for (const auto& [ref, inode] : image.inodes) {
    if (static_cast<InodeKind>(inode.record.kind) != InodeKind::kSysvShm) continue;
    CRLIB_ASSIGN_OR_RETURN(Plan plan, PlanFor(image, inode));
    if (plan == Plan::kRecreate) {
      CRLIB_RETURN_IF_ERROR(Recreate(inode));
      recreated.push_back(&inode);
    }
  }
  for (const VmaRecord& v : image.vmas) {
    if (static_cast<VmaKind>(v.kind) != VmaKind::kSysvShm) continue;
    const InodeRecord& r = image.inodes.at(v.object).record;
    const uint64_t flags = ((v.prot & PROT_WRITE) ? 0 : SHM_RDONLY) | ((v.prot & PROT_EXEC) ? SHM_EXEC : 0);
    CRLIB_RETURN_IF_ERROR(
        t->CheckedSyscall("shmat", SYS_shmat, {r.sysv_id, v.start, flags}).status());
    const uint32_t attached = PROT_READ | ((v.prot & PROT_WRITE) ? PROT_WRITE : 0) |
                              ((v.prot & PROT_EXEC) ? PROT_EXEC : 0);
    if (attached != v.prot) {
      CRLIB_RETURN_IF_ERROR(
          t->CheckedSyscall("mprotect of a SysV attachment", SYS_mprotect,
                            {v.start, v.end - v.start, v.prot})
              .status());
    }
  }
  // Removed segments go again once attached: they live while attached.
  for (const InodeImage* inode : recreated) {
    if ((inode->record.sysv_flags & kSysvRemoved) &&
        shmctl(static_cast<int>(inode->record.sysv_id), IPC_RMID, nullptr) != 0) {
      return Errno("shmctl(%d, IPC_RMID) of the recreated removed segment", inode->record.sysv_id);
    }
  }
  return absl::OkStatus();
}

}  // namespace crlib
