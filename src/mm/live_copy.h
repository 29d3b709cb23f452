// A live dump's memory: the process's private pages copied into the image
// while it runs (pre-copy, as live migration does). Every page is copied
// once, then, round after round, the pages the process wrote meanwhile
// (DirtyTracker), until few are left; the stop copies those and anything
// tracking could not follow (VMAs mapped or moved since). A page copied
// twice is in the image twice: restore applies page records in order, so
// the last copy wins. Pages copied earlier whose addresses the process
// has unmapped since are listed in a stale_pages record for restore to
// skip.
#ifndef CRLIB_MM_LIVE_COPY_H_
#define CRLIB_MM_LIVE_COPY_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/records.h"
#include "mm/dirty_tracker.h"
#include "mm/memory_capture.h"
#include "mm/page_array.h"

namespace crlib {

// Sorted, disjoint address ranges [start, end).
class RangeSet {
 public:
  void Add(uint64_t start, uint64_t end);
  // The parts of the set inside [start, end), in order.
  std::vector<std::pair<uint64_t, uint64_t>> Within(uint64_t start, uint64_t end) const;
  // The parts of the set outside every range of `keep` (sorted, disjoint).
  std::vector<std::pair<uint64_t, uint64_t>> Outside(
      const std::vector<std::pair<uint64_t, uint64_t>>& keep) const;
  uint64_t bytes() const;
  // Whether all of [start, end) is in the set.
  bool Covers(uint64_t start, uint64_t end) const;
  bool empty() const { return ranges_.empty(); }

 private:
  std::map<uint64_t, uint64_t> ranges_;  // start -> end
};

class LiveCopy {
 public:
  // `mm_ref` is the memory map the pages belong to (its record is written
  // at the stop, before these pages in the image: ImageWriter::Reserve).
  LiveCopy(std::unique_ptr<DirtyTracker> tracker, PageCopier copier, ObjectRef mm_ref)
      : tracker_(std::move(tracker)), copier_(std::move(copier)), mm_ref_(mm_ref) {}

  // Round 0, while the process runs: tracks `vmas`, then copies every
  // page they need, so a write after the tracking began is seen. With
  // `resume` (a tracker left by an earlier dump, DirtyTracker::Resume),
  // VMAs tracked all along since give only the pages written since that
  // dump: the others are its image's.
  absl::Status Start(const std::vector<VmaInfo>& vmas, PageArray& pages, bool resume = false);

  // One more round, while the process runs: the pages written since the
  // last one. Returns the bytes copied.
  absl::StatusOr<uint64_t> CopyWritten(PageArray& pages);

  // At the end of the rounds, while it runs: reads the VMAs with their
  // VmFlags (smaps, whose cost grows with populated pages).
  absl::Status ScanBeforeStop();

  // At the stop: the process's VMAs, from /proc/PID/maps (cheap) and the
  // VmFlags ScanBeforeStop read when no line changed since and VmLck
  // (`status`'s) is the same, else from smaps; `userfaultfd` set where
  // this tracker's registration still covers the VMA.
  absl::StatusOr<std::vector<VmaInfo>> ScanAtStop(absl::string_view status);
  // After ScanAtStop: whether no maps line changed since ScanBeforeStop.
  bool unchanged_at_stop() const { return unchanged_at_stop_; }

  // At the stop, on VMAs from ScanAtStop: whether `v` was tracked all along.
  bool Tracked(const VmaInfo& v) const {
    return v.userfaultfd && tracker_->Tracks(v.map.start, v.map.end);
  }

  // At the stop, on VMAs from ScanAtStop: whether `v` was tracked all
  // along since the earlier dump a resumed tracker comes from, so that the
  // image holds only its pages written since (kVmaFromParent).
  bool FromParent(const VmaInfo& v) const {
    return Tracked(v) && inherited_.Covers(v.map.start, v.map.end);
  }

  // At the stop: runs copied earlier that lie outside the private memory
  // of `vmas` (unmapped since, or mapped again as something else).
  std::vector<PageRun> StaleRuns(const std::vector<VmaInfo>& vmas) const;

  // At the stop, with the process's VMAs and guard regions now: the pages
  // written since the last round; VMAs tracking did not follow, whole,
  // with zero pages kept where an earlier round copied a page.
  absl::Status Finish(const std::vector<VmaInfo>& vmas, absl::Span<const PageRun> guards,
                      PageArray& pages);

  ObjectRef mm_ref() const { return mm_ref_; }
  pid_t pid() const { return tracker_->pid(); }
  uint64_t tracked_bytes() const { return tracked_bytes_; }
  uint64_t copied_bytes() const { return copied_bytes_; }

 private:
  // Copies [start, end) in pieces that read: a page the process unmapped
  // or guarded meanwhile fails to read, and is left to the stop.
  absl::Status CopyWhileRunning(PageArray& pages, uint64_t start, uint64_t end);

  std::unique_ptr<DirtyTracker> tracker_;
  PageCopier copier_;
  ObjectRef mm_ref_;
  RangeSet copied_;   // pages the image holds a copy of
  RangeSet retry_;    // written pages that did not read while it ran
  RangeSet inherited_;  // tracked since an earlier dump (Start with resume)
  std::vector<VmaInfo> before_stop_;  // ScanBeforeStop
  std::string locked_before_stop_;    // VmLck then
  bool unchanged_at_stop_ = false;
  uint64_t tracked_bytes_ = 0;
  uint64_t copied_bytes_ = 0;
};

// Refuses memory registered with a userfaultfd other than `live`'s (the
// process's own, or a monitor's that handles its faults): what handles
// those faults is not carried.
absl::Status RefuseUserfaultfdMemory(const std::vector<VmaInfo>& vmas, const LiveCopy* live);

}  // namespace crlib

#endif  // CRLIB_MM_LIVE_COPY_H_
