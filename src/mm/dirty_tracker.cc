#include "mm/dirty_tracker.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "sys/proc.h"
#include "core/status.h"

namespace crlib {
namespace {

constexpr uint64_t kMaxTrackedVma = uint64_t{8} << 30;

// Whether VMA `v` is tracked: private memory the process can write as it
// is. Protecting puts a marker in every empty page table entry
// (UFFD_FEATURE_WP_UNPOPULATED: a page zapped or first touched later must
// count as written): page tables for the whole VMA, 2 MiB of them per
// GiB. A larger VMA is a sparse reservation (a sanitizer's shadow, a
// runtime's heap reserve), and so is one the process cannot write
// (ASan's allocator reserves dozens of PROT_NONE regions just under 8 GiB:
// tracked, they cost 300 MiB of page tables and got the process killed
// for memory). Their pages are copied at the stop; one made writable
// since (mprotect) is a changed VMA, copied whole there too.
bool Trackable(const VmaInfo& v) {
  return MayHoldPages(v.kind, v.map.shared) && v.map.write &&
         v.map.end - v.map.start <= kMaxTrackedVma;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DirtyTracker>> DirtyTracker::Adopt(pid_t pid, int fd) {
  return Take(pid, fd, /*set_up=*/true);
}

absl::StatusOr<std::unique_ptr<DirtyTracker>> DirtyTracker::AdoptTracking(pid_t pid, int fd) {
  // Whatever is at `fd` now must be a userfaultfd in asynchronous
  // write-protect mode (fdinfo's "API:\t<api>:<features>:<ioctls>"): the
  // process may have closed ours and opened something else there.
  const std::string info_path = absl::StrFormat("/proc/%d/fdinfo/%d", pid, fd);
  absl::StatusOr<std::string> link = sys::ReadLink(absl::StrFormat("/proc/%d/fd/%d", pid, fd));
  absl::StatusOr<std::string> info = sys::ReadFile(info_path);
  if (!link.ok() || *link != "anon_inode:[userfaultfd]" || !info.ok()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("its fd %d, which held the tracking, is %s", fd,
                        link.ok() ? absl::StrCat("now ", *link) : "closed"));
  }
  uint64_t features = 0;
  for (absl::string_view line : absl::StrSplit(*info, '\n')) {
    if (!absl::ConsumePrefix(&line, "API:")) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(absl::StripLeadingAsciiWhitespace(line), ':');
    if (parts.size() >= 2) (void)absl::SimpleHexAtoi(parts[1], &features);
  }
  constexpr uint64_t kOurs = sys::kUffdFeatureWpAsync | sys::kUffdFeatureWpUnpopulated;
  if ((features & kOurs) != kOurs) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "its fd %d is a userfaultfd without asynchronous write-protect (features 0x%x): not "
        "crlib's tracking", fd, features));
  }
  return Take(pid, fd, /*set_up=*/false);
}

absl::StatusOr<std::unique_ptr<DirtyTracker>> DirtyTracker::Take(pid_t pid, int fd, bool set_up) {
  sys::UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd.fd < 0) return Errno("pidfd_open of pid %d", pid);
  sys::UniqueFd uffd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.fd, fd, 0)));
  if (uffd.fd < 0) return Errno("pidfd_getfd of the userfaultfd (fd %d) of pid %d", fd, pid);
  if (set_up) {
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = sys::kUffdFeatureWpAsync | sys::kUffdFeatureWpUnpopulated;
    if (ioctl(uffd.fd, UFFDIO_API, &api) != 0) {
      return Errno("ioctl(UFFDIO_API) with asynchronous write-protect (Linux 6.7) for pid %d", pid);
    }
  }
  const std::string path = absl::StrCat("/proc/", pid, "/pagemap");
  sys::UniqueFd pagemap(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (pagemap.fd < 0) return Errno("open %s", path);
  std::unique_ptr<DirtyTracker> t(new DirtyTracker(pid, std::move(uffd), std::move(pagemap)));
  t->regions_.resize(4096);
  return t;
}

absl::StatusOr<std::vector<std::pair<uint64_t, uint64_t>>> DirtyTracker::Resume(
    const std::vector<VmaInfo>& vmas) {
  // Registration is lost, never gained, between dumps: a VMA mapped since
  // is not registered, nor one moved by mremap (the kernel drops it from
  // a userfaultfd without UFFD_FEATURE_EVENT_REMAP), nor the new part of
  // one grown in place (it is not whole in tracked_ below).
  std::vector<std::pair<uint64_t, uint64_t>> resumed;
  for (const VmaInfo& v : vmas) {
    if (!Trackable(v)) continue;
    CRLIB_ASSIGN_OR_RETURN(bool registered, Registered(v.map.start, v.map.end));
    if (!registered) continue;
    resumed.emplace_back(v.map.start, v.map.end);
    tracked_.emplace_back(v.map.start, v.map.end);
  }
  std::sort(tracked_.begin(), tracked_.end());
  return resumed;
}

absl::StatusOr<uint64_t> DirtyTracker::Track(const std::vector<VmaInfo>& vmas) {
  uint64_t bytes = 0;
  for (const VmaInfo& v : vmas) {
    if (!Trackable(v)) continue;
    if (Tracks(v.map.start, v.map.end)) continue;  // resumed: protections kept
    uffdio_register reg{};
    reg.range = {.start = v.map.start, .len = v.map.end - v.map.start};
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    // The process may have unmapped or changed the VMA since it was read
    // (it runs): then it is simply not tracked, and copied while stopped.
    if (ioctl(uffd_.fd, UFFDIO_REGISTER, &reg) != 0) continue;
    uffdio_writeprotect wp{};
    wp.range = reg.range;
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    if (ioctl(uffd_.fd, UFFDIO_WRITEPROTECT, &wp) != 0) {
      uffdio_range range = reg.range;
      (void)ioctl(uffd_.fd, UFFDIO_UNREGISTER, &range);
      continue;
    }
    tracked_.emplace_back(v.map.start, v.map.end);
    bytes += v.map.end - v.map.start;
  }
  std::sort(tracked_.begin(), tracked_.end());
  return bytes;
}

bool DirtyTracker::Tracks(uint64_t start, uint64_t end) const {
  auto it = std::upper_bound(tracked_.begin(), tracked_.end(), std::make_pair(start, UINT64_MAX));
  if (it == tracked_.begin()) return false;
  --it;
  return it->first <= start && end <= it->second;
}

absl::Status DirtyTracker::CollectWritten(uint64_t start, uint64_t end, RangeFn run) {
  sys::PmScanArg arg{};
  arg.size = sizeof(arg);
  arg.flags = sys::kPmScanWpMatching;
  arg.vec = reinterpret_cast<uint64_t>(regions_.data());
  arg.vec_len = regions_.size();
  // Only VMAs registered for asynchronous write-protect: in any other
  // every page would count as written.
  arg.category_mask = sys::kPageIsWritten | sys::kPageIsWpAllowed;
  arg.return_mask = sys::kPageIsWritten;
  for (uint64_t at = start; at < end;) {
    arg.start = at;
    arg.end = end;
    arg.walk_end = 0;
    int n = ioctl(pagemap_.fd, sys::kPagemapScan, &arg);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Errno("ioctl(PAGEMAP_SCAN, write-protect written pages) of pid %d, 0x%x-0x%x",
                   pid_, at, end);
    }
    uint64_t walked = at;
    for (int i = 0; i < n; ++i) {
      const sys::PageRegion& r = regions_[i];
      if (r.start < at || r.end <= r.start || r.end > end) {
        return absl::InternalError(absl::StrFormat(
            "ioctl(PAGEMAP_SCAN) of pid %d, 0x%x-0x%x: region 0x%x-0x%x out of range", pid_, at,
            end, r.start, r.end));
      }
      walked = r.end;
      CRLIB_RETURN_IF_ERROR(run(r.start, r.end));
    }
    // As in ScanNeededRanges: the walk stops when the vector is full;
    // go on after the last region, or where the kernel says it stopped.
    const uint64_t next = std::max<uint64_t>(arg.walk_end, walked);
    if (next <= at || next > end) {
      return absl::InternalError(absl::StrFormat(
          "ioctl(PAGEMAP_SCAN) of pid %d, 0x%x-0x%x: walk ended at 0x%x", pid_, at, end,
          arg.walk_end));
    }
    at = next;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> DirtyTracker::StillTracked(uint64_t start, uint64_t end) {
  if (!Tracks(start, end)) return false;
  return Registered(start, end);
}

absl::StatusOr<bool> DirtyTracker::Registered(uint64_t start, uint64_t end) {
  sys::PmScanArg arg{};
  arg.size = sizeof(arg);
  arg.start = start;
  arg.end = end;
  arg.vec = reinterpret_cast<uint64_t>(regions_.data());
  arg.vec_len = 1;
  arg.max_pages = 1;
  // Pages (holes too) of VMAs that are not write-protect-allowed: one
  // is enough to know.
  arg.category_inverted = sys::kPageIsWpAllowed;
  arg.category_mask = sys::kPageIsWpAllowed;
  arg.return_mask = sys::kPageIsWpAllowed;
  int n;
  do {
    n = ioctl(pagemap_.fd, sys::kPagemapScan, &arg);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno("ioctl(PAGEMAP_SCAN, unregistered VMAs) of pid %d, 0x%x-0x%x", pid_, start, end);
  return n == 0;
}

absl::Status DirtyTracker::CollectWritten(RangeFn run) {
  for (auto [start, end] : tracked_) CRLIB_RETURN_IF_ERROR(CollectWritten(start, end, run));
  return absl::OkStatus();
}

}  // namespace crlib
