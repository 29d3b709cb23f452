#include "cr/live_dump.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "mm/dirty_tracker.h"
#include "mm/memory_capture.h"
#include "remote/tracee.h"
#include "remote/vdso_site.h"
#include "sys/proc.h"
#include "task/attributes.h"

namespace crlib {
namespace {

// Rounds stop when one copies no more than this, or copies more than
// kShrink of the one before (the process writes as fast as we copy: the
// stop takes the rest), or after kMaxRounds.
constexpr uint64_t kSmallRound = 256 * 1024;
constexpr double kShrink = 0.75;
constexpr int kMaxRounds = 8;
// Carried inodes (shared memory, memfds, deleted files) are written with
// the records, at the stop, into the reservation: above this much, the
// process is dumped stopped.
constexpr uint64_t kMaxCarriedBytes = 64 << 20;

// Gives every thread of a brief stop its own registers and mask back and
// detaches it; a thread that cannot be (a failed ptrace) gets the process
// killed rather than left to run with borrowed registers.
absl::Status ResumeOrKill(pid_t pid, absl::Span<const std::unique_ptr<Tracee>> threads) {
  for (const std::unique_ptr<Tracee>& t : threads) {
    absl::Status st = t->RestoreInitialState();
    if (st.ok()) st = t->Detach();
    if (!st.ok()) {
      Tracee::KillProcess(threads);
      return Annotate(st, absl::StrFormat("pid %d killed: thread %d could not be resumed as it was",
                                          pid, t->tid()));
    }
  }
  return absl::OkStatus();
}

// The lowest descriptor a kept tracking may take in process `pid`: high,
// out of the way of a program that expects its next descriptors to be the
// lowest free ones, yet below its RLIMIT_NOFILE.
absl::StatusOr<uint64_t> TrackingFdFloor(pid_t pid) {
  rlimit files{};
  if (prlimit(pid, RLIMIT_NOFILE, nullptr, &files) != 0) return Errno("prlimit of pid %d", pid);
  const uint64_t soft = std::min<uint64_t>(files.rlim_cur, 1 << 20);
  return soft > 128 ? soft - 64 : std::max<uint64_t>(3, soft / 2);
}

// The remote calls of a kept tracking, at `site`: `fd` moved to a new
// number (the lowest free from TrackingFdFloor), close-on-exec, so that
// an image naming the old number no longer finds it. Returns the new one.
absl::StatusOr<int> MoveTrackingFd(Tracee* t, uint64_t site, int fd) {
  CRLIB_ASSIGN_OR_RETURN(uint64_t floor, TrackingFdFloor(t->tid()));
  CRLIB_RETURN_IF_ERROR(t->BorrowAt(site));
  CRLIB_ASSIGN_OR_RETURN(int64_t moved,
                         t->CheckedSyscall("fcntl(F_DUPFD_CLOEXEC) of crlib's userfaultfd", SYS_fcntl,
                                           {static_cast<uint64_t>(fd), F_DUPFD_CLOEXEC, floor}));
  CRLIB_RETURN_IF_ERROR(
      t->CheckedSyscall("close of crlib's userfaultfd", SYS_close, {static_cast<uint64_t>(fd)})
          .status());
  return static_cast<int>(moved);
}

struct MadeTracker {
  std::unique_ptr<DirtyTracker> tracker;
  int kept_fd = -1;  // where the process keeps it (plan.keep)
};

// Makes the userfaultfd inside stopped process `threads` (one remote call
// at a site that recovers by itself), takes it and closes it there; or,
// with plan.resume_fd, takes the one an earlier dump left. With plan.keep
// it stays in the process, at a new number (MoveTrackingFd). Every thread
// is left stopped with its own registers and mask back.
absl::StatusOr<MadeTracker> MakeTracker(absl::Span<const std::unique_ptr<Tracee>> threads,
                                        const TrackingPlan& plan) {
  Tracee* t = threads.front().get();
  const pid_t pid = t->tid();
  CRLIB_RETURN_IF_ERROR(SuspendSeccomp(threads));
  MadeTracker made;
  if (plan.resume_fd >= 0) {
    // Moved before anything is read: were this dump to fail, its scans
    // would have protected pages again that the earlier image does not
    // hold as they are now, and that image must not find the tracking.
    CRLIB_ASSIGN_OR_RETURN(made.tracker, DirtyTracker::AdoptTracking(pid, plan.resume_fd));
    CRLIB_ASSIGN_OR_RETURN(VdsoCallSite site, VdsoCallSite::Install(t));
    absl::StatusOr<int> moved = MoveTrackingFd(t, site.address(), plan.resume_fd);
    absl::Status restored = t->RestoreInitialState();
    absl::Status removed = site.Remove();
    CRLIB_RETURN_IF_ERROR(moved.status());
    CRLIB_RETURN_IF_ERROR(restored);
    CRLIB_RETURN_IF_ERROR(removed);
    made.kept_fd = *moved;
    return made;
  }
  // Without plan.keep the site closes the descriptor right after making
  // it: if crlib dies at any moment, the process is left without it.
  // (Kept, a crlib killed between the calls leaves it an idle one.)
  CRLIB_ASSIGN_OR_RETURN(VdsoCallSite site, VdsoCallSite::Install(t, /*close_result=*/!plan.keep));
  // UFFD_USER_MODE_ONLY: allowed to unprivileged processes, and the
  // asynchronous write-protect never delivers a fault anyway.
  const absl::Status borrowed = t->BorrowAt(site.address());
  absl::StatusOr<int64_t> fd =
      borrowed.ok() ? t->CheckedSyscall("userfaultfd", SYS_userfaultfd,
                                        {O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY})
                    : absl::StatusOr<int64_t>(borrowed);
  absl::StatusOr<std::unique_ptr<DirtyTracker>> tracker =
      fd.ok() ? DirtyTracker::Adopt(pid, static_cast<int>(*fd)) : fd.status();
  absl::Status closed;
  if (fd.ok() && plan.keep && tracker.ok()) {
    absl::StatusOr<int> moved = MoveTrackingFd(t, site.address(), static_cast<int>(*fd));
    if (moved.ok()) made.kept_fd = *moved;
    closed = moved.status();
  } else if (fd.ok() && site.closes_result()) {
    closed = t->RunToSyscallExit(SYS_close).status();
  } else if (fd.ok()) {
    // A vDSO without room for our site (none seen), or a tracker not
    // taken: a call of its own.
    closed = t->BorrowAt(site.address());
    if (closed.ok()) {
      closed = t->CheckedSyscall("close of crlib's userfaultfd", SYS_close,
                                 {static_cast<uint64_t>(*fd)})
                   .status();
    }
  }
  absl::Status restored = t->RestoreInitialState();
  if (restored.ok()) restored = closed;
  absl::Status removed = site.Remove();
  CRLIB_RETURN_IF_ERROR(tracker.status());
  CRLIB_RETURN_IF_ERROR(restored);
  CRLIB_RETURN_IF_ERROR(removed);
  made.tracker = std::move(*tracker);
  return made;
}

// Room for the records written at the stop: generous, since running out
// means writing the image again, stopped. Carried inodes' contents are
// records' bulk.
absl::StatusOr<uint64_t> RecordRoom(pid_t pid, size_t threads, const std::vector<VmaInfo>& vmas) {
  // Their data (holes not counted), once per inode.
  std::set<std::pair<dev_t, ino_t>> seen;
  uint64_t carried = 0;
  auto add = [&](const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && seen.insert({st.st_dev, st.st_ino}).second) {
      carried += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  };
  for (const VmaInfo& v : vmas) {
    if (v.kind == VmaKind::kSharedAnonymous || v.kind == VmaKind::kSysvShm ||
        v.kind == VmaKind::kCarriedFile) {
      add(absl::StrFormat("/proc/%d/map_files/%x-%x", pid, v.map.start, v.map.end));
    }
  }
  CRLIB_ASSIGN_OR_RETURN(std::vector<int> fds, sys::ListFds(pid));
  for (int fd : fds) {
    const std::string path = absl::StrCat("/proc/", pid, "/fd/", fd);
    absl::StatusOr<std::string> link = sys::ReadLink(path);
    if (link.ok() && absl::EndsWith(*link, " (deleted)")) add(path);
  }
  if (carried > kMaxCarriedBytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "it carries %d MiB of shared memory or deleted files, written while it is stopped",
        carried >> 20));
  }
  // Per thread its registers and xstate (AMX tiles: 8 KiB); per VMA and
  // fd a record with a path.
  const uint64_t room = (64 << 10) + threads * (24 << 10) + vmas.size() * 768 +
                        fds.size() * 1024 + carried + carried / 8;
  return AlignUp(room, 4096);
}

// Round 0 and the rounds after it, while process `pid` runs, with the
// tracker MakeTracker made: StartLiveDump's work past the brief stop.
absl::StatusOr<std::unique_ptr<LiveDump>> CopyWhileItRuns(Context* ctx, pid_t pid, ByteSink* sink,
                                                         const ImageInfo& info, size_t thread_count,
                                                         const TrackingPlan& plan,
                                                         MadeTracker tracker) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<VmaInfo> vmas, ScanVmas(pid));
  // Resumed, its VMAs are registered with our tracking: they are told
  // apart from the process's own once the copy knows them.
  if (plan.resume_fd < 0 && !RefuseUserfaultfdMemory(vmas, nullptr).ok()) {
    return absl::FailedPreconditionError("it uses userfaultfd itself");
  }
  CRLIB_ASSIGN_OR_RETURN(uint64_t room, RecordRoom(pid, thread_count, vmas));

  auto live = std::make_unique<LiveDump>();
  live->tracking_fd = tracker.kept_fd;
  live->writer = std::make_unique<ImageWriter>(sink, info);
  CRLIB_RETURN_IF_ERROR(live->writer->Begin());
  CRLIB_ASSIGN_OR_RETURN(live->reservation, live->writer->Reserve(room));
  const ObjectRef mm_ref = ctx->registry().NewRef();
  CRLIB_ASSIGN_OR_RETURN(PageCopier copier, PageCopier::Open(pid, info.page_size));
  live->copy = std::make_unique<LiveCopy>(std::move(tracker.tracker), std::move(copier), mm_ref);
  ctx->set_writer(live->writer.get());
  live->pages = std::make_unique<PageArray>(ctx, mm_ref);
  live->pages->set_phase(Phase::kFreeze);  // it runs: not frozen yet
  absl::Status st = live->copy->Start(vmas, *live->pages, /*resume=*/plan.resume_fd >= 0);
  if (st.ok() && plan.resume_fd >= 0 && !RefuseUserfaultfdMemory(vmas, live->copy.get()).ok()) {
    st = absl::FailedPreconditionError("it uses userfaultfd itself");
  }
  uint64_t last = UINT64_MAX;
  while (st.ok() && live->rounds < kMaxRounds) {
    // Still before the freeze (CRLIB_PHASE_FREEZE): it runs.
    st = ctx->Progress(Phase::kFreeze, live->copy->copied_bytes(), 0);
    if (!st.ok()) break;
    absl::StatusOr<uint64_t> copied = live->copy->CopyWritten(*live->pages);
    if (!copied.ok()) {
      st = copied.status();
      break;
    }
    ++live->rounds;
    if (*copied <= kSmallRound || static_cast<double>(*copied) > kShrink * static_cast<double>(last)) {
      break;
    }
    last = *copied;
  }
  // What the rounds copied is written before the stop, not during it.
  if (st.ok()) st = live->pages->Flush();
  if (st.ok()) st = live->copy->ScanBeforeStop();
  if (st.ok()) {
    // The VMAs' memory policies with those VMAs, before the stop: the
    // file walks every page table.
    absl::StatusOr<std::string> numa =
        sys::ReadFile(absl::StrFormat("/proc/%d/task/%d/numa_maps", pid, pid));
    if (numa.ok()) live->numa_maps = std::move(*numa);
  }
  if (!st.ok()) {
    live.reset();  // its page array's worker first
    ctx->set_writer(nullptr);
    return st;
  }
  return live;
}

}  // namespace

absl::Status EndTracking(Tracee* t, int fd) {
  CRLIB_ASSIGN_OR_RETURN(VdsoCallSite site, VdsoCallSite::Install(t));
  absl::Status closed = t->BorrowAt(site.address());
  if (closed.ok()) {
    closed = t->CheckedSyscall("close of crlib's tracking userfaultfd", SYS_close,
                               {static_cast<uint64_t>(fd)})
                 .status();
  }
  absl::Status restored = t->RestoreInitialState();
  absl::Status removed = site.Remove();
  CRLIB_RETURN_IF_ERROR(closed);
  CRLIB_RETURN_IF_ERROR(restored);
  return removed;
}

absl::Status EndTrackingOf(pid_t pid, int fd) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Tracee>> threads, Tracee::SeizeProcess(pid));
  absl::Status st = EndTracking(threads.front().get(), fd);
  CRLIB_RETURN_IF_ERROR(ResumeOrKill(pid, threads));
  return st;
}

ImageInfo DescribeImage(const ArchBackend& arch, const Options& options) {
  ImageInfo info;
  info.cpu_family = arch.family();
  info.page_size = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));
  info.xsave_features = arch.HostXsaveFeatures();
  info.xsave_size = arch.HostXsaveSize();
  utsname uts{};
  if (uname(&uts) == 0) info.kernel_release = uts.release;
  if (options.compression_level > 0) info.flags |= kImageCompressed;
  else if (options.mappable) info.flags |= kImageMappable;
  return info;
}

absl::StatusOr<std::unique_ptr<LiveDump>> StartLiveDump(Context* ctx, pid_t pid, ByteSink* sink,
                                                       const std::vector<pid_t>& skip_children,
                                                       const TrackingPlan& plan) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<pid_t> children, sys::ListChildren(pid));
  for (pid_t c : children) {
    if (std::find(skip_children.begin(), skip_children.end(), c) == skip_children.end()) {
      return absl::FailedPreconditionError(
          "it has children: a tree is dumped stopped (its processes' memory shared "
          "copy-on-write is compared while they are all stopped)");
    }
  }
  // The brief stop: the tracking's userfaultfd is made inside.
  CRLIB_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Tracee>> threads, Tracee::SeizeProcess(pid));
  absl::StatusOr<MadeTracker> tracker = MakeTracker(threads, plan);
  const ImageInfo info = DescribeImage(threads.front()->arch(), ctx->options());
  const size_t thread_count = threads.size();
  CRLIB_RETURN_IF_ERROR(ResumeOrKill(pid, threads));
  threads.clear();
  if (!tracker.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("its writes cannot be tracked: ", tracker.status().message()));
  }
  const int kept = tracker->kept_fd;
  absl::StatusOr<std::unique_ptr<LiveDump>> live =
      CopyWhileItRuns(ctx, pid, sink, info, thread_count, plan, std::move(*tracker));
  // A failed dump leaves no tracking behind that no image names.
  if (!live.ok() && kept >= 0) (void)EndTrackingOf(pid, kept);
  return live;
}

}  // namespace crlib
