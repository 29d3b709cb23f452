// Which pages a running process writes: linux-cr had no answer (it froze
// the container for the whole dump); this kernel has userfaultfd
// write-protect in its asynchronous mode, read back with PAGEMAP_SCAN.
//
// The userfaultfd is the process's own (userfaultfd(2) binds it to the
// caller's address space): the dump makes it with one remote call and
// takes it with pidfd_getfd, and from then on every ioctl runs here while
// the process runs. A write to a protected page never blocks or signals
// anyone: the kernel only drops the page's protection, which PAGEMAP_SCAN
// reports as PAGE_IS_WRITTEN and protects again in the same walk. A page
// the process zaps (MADV_DONTNEED, munmap of part of a VMA) reports as
// written too, and so does a page first touched after arming
// (UFFD_FEATURE_WP_UNPOPULATED puts markers on empty page tables).
#ifndef CRLIB_MM_DIRTY_TRACKER_H_
#define CRLIB_MM_DIRTY_TRACKER_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mm/memory_capture.h"
#include "sys/kernel.h"
#include "sys/unique_fd.h"

namespace crlib {

class DirtyTracker {
 public:
  // Takes (pidfd_getfd) the userfaultfd that `pid` holds as `fd` (made by
  // userfaultfd(2) inside the process) and enables asynchronous
  // write-protect on it. The caller closes `fd` in the process afterwards:
  // the tracking lives as long as this object, whose destruction ends it
  // (the kernel then drops every protection it set).
  static absl::StatusOr<std::unique_ptr<DirtyTracker>> Adopt(pid_t pid, int fd);

  // Takes the userfaultfd an earlier dump left in `pid` as `fd` to keep
  // tracking (`crlib dump --track`), already in asynchronous
  // write-protect mode: FailedPrecondition if `fd` is not such a
  // userfaultfd. Resume() then says what it still tracks.
  static absl::StatusOr<std::unique_ptr<DirtyTracker>> AdoptTracking(pid_t pid, int fd);

  // For a tracker from AdoptTracking, before Track: the VMAs of `vmas`
  // registered whole with it all along (since the dump that left it),
  // whose pages written since are reported by CollectWritten and the
  // others unchanged. They are tracked from now on too. Returns them.
  absl::StatusOr<std::vector<std::pair<uint64_t, uint64_t>>> Resume(const std::vector<VmaInfo>& vmas);

  // Registers and write-protects the VMAs of `vmas` that can hold pages an
  // image stores (private memory). A VMA the kernel will not register is
  // left untracked: the dump copies it while the process is stopped.
  // Returns the number of bytes protected. Runs while the process runs.
  absl::StatusOr<uint64_t> Track(const std::vector<VmaInfo>& vmas);

  // Whether [start, end) was registered by Track.
  bool Tracks(uint64_t start, uint64_t end) const;

  // Calls `run` for each range of pages of [start, end) written since
  // Track (or since the last call that covered them), and write-protects
  // them again in the same walk, so a write after the walk reports again.
  using RangeFn = absl::FunctionRef<absl::Status(uint64_t start, uint64_t end)>;
  // VMAs in [start, end) that are not registered (mapped since) are
  // passed over.
  absl::Status CollectWritten(uint64_t start, uint64_t end, RangeFn run);
  // The same over every range Track registered.
  absl::Status CollectWritten(RangeFn run);

  // Whether all of [start, end) is registered for asynchronous
  // write-protect now (a VMA mapped there since is not): asked of the
  // page tables with PAGEMAP_SCAN, which skips registered VMAs whole.
  absl::StatusOr<bool> StillTracked(uint64_t start, uint64_t end);

  pid_t pid() const { return pid_; }

 private:
  DirtyTracker(pid_t pid, sys::UniqueFd uffd, sys::UniqueFd pagemap)
      : pid_(pid), uffd_(std::move(uffd)), pagemap_(std::move(pagemap)) {}
  static absl::StatusOr<std::unique_ptr<DirtyTracker>> Take(pid_t pid, int fd, bool set_up);
  // Whether all of [start, end) is registered now (with any userfaultfd:
  // the page tables cannot tell which).
  absl::StatusOr<bool> Registered(uint64_t start, uint64_t end);
  pid_t pid_;
  sys::UniqueFd uffd_;
  sys::UniqueFd pagemap_;
  std::vector<std::pair<uint64_t, uint64_t>> tracked_;  // sorted, disjoint
  std::vector<sys::PageRegion> regions_;
};

}  // namespace crlib

#endif  // CRLIB_MM_DIRTY_TRACKER_H_
