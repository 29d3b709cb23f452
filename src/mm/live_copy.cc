#include "mm/live_copy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sys/proc.h"
#include "core/status.h"

namespace crlib {

void RangeSet::Add(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= start) {
      start = prev->first;
      end = std::max(end, prev->second);
      it = ranges_.erase(prev);
    }
  }
  while (it != ranges_.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  ranges_.emplace(start, end);
}

std::vector<std::pair<uint64_t, uint64_t>> RangeSet::Within(uint64_t start, uint64_t end) const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  for (; it != ranges_.end() && it->first < end; ++it) {
    const uint64_t s = std::max(start, it->first), e = std::min(end, it->second);
    if (s < e) out.emplace_back(s, e);
  }
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> RangeSet::Outside(
    const std::vector<std::pair<uint64_t, uint64_t>>& keep) const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  auto k = keep.begin();
  for (const auto& [first, end] : ranges_) {
    uint64_t start = first;
    while (k != keep.end() && k->second <= start) ++k;
    for (auto j = k; start < end; ++j) {
      if (j == keep.end() || j->first >= end) {
        out.emplace_back(start, end);
        break;
      }
      if (j->first > start) out.emplace_back(start, j->first);
      start = std::max(start, j->second);
    }
  }
  return out;
}

bool RangeSet::Covers(uint64_t start, uint64_t end) const {
  const auto within = Within(start, end);
  return within.size() == 1 && within[0] == std::make_pair(start, end);
}

uint64_t RangeSet::bytes() const {
  uint64_t n = 0;
  for (auto [s, e] : ranges_) n += e - s;
  return n;
}

absl::Status LiveCopy::CopyWhileRunning(PageArray& pages, uint64_t start, uint64_t end) {
  const uint64_t page = copier_.page_size();
  auto copy = [&](uint64_t s, uint64_t e) -> bool {
    if (!copier_.Copy(pages, s, e, {}).ok()) return false;
    copied_.Add(s, e);
    copied_bytes_ += e - s;
    return true;
  };
  // A range that does not read whole (part unmapped, a guard installed,
  // meanwhile) is retried page by page; what still fails is the stop's.
  // A failed Copy may have committed a prefix: that part reads again now.
  constexpr uint64_t kChunk = 1 << 20;
  for (uint64_t at = start; at < end;) {
    const uint64_t next = std::min(end, at + kChunk);
    if (!copy(at, next)) {
      copied_.Add(at, next);  // whatever the failed attempt committed
      for (uint64_t p = at; p < next; p += page) {
        if (!copy(p, p + page)) retry_.Add(p, p + page);
      }
    }
    at = next;
  }
  return absl::OkStatus();
}

absl::Status LiveCopy::Start(const std::vector<VmaInfo>& vmas, PageArray& pages, bool resume) {
  if (resume) {
    CRLIB_ASSIGN_OR_RETURN(auto resumed, tracker_->Resume(vmas));
    for (auto [s, e] : resumed) inherited_.Add(s, e);
  }
  CRLIB_ASSIGN_OR_RETURN(tracked_bytes_, tracker_->Track(vmas));
  CRLIB_RETURN_IF_ERROR(pages.SetParent(mm_ref_));
  for (const VmaInfo& v : vmas) {
    if (!tracker_->Tracks(v.map.start, v.map.end)) continue;
    std::vector<std::pair<uint64_t, uint64_t>> needed;
    absl::Status st;
    if (inherited_.Covers(v.map.start, v.map.end)) {
      // Tracked since the earlier dump: what it wrote since, zero pages
      // too (the earlier image may hold the page's old contents).
      st = tracker_->CollectWritten(v.map.start, v.map.end, [&](uint64_t s, uint64_t e) {
        needed.emplace_back(s, e);
        return absl::OkStatus();
      });
      CRLIB_RETURN_IF_ERROR(st);
      pages.set_keep_zero(true);
    } else if (v.from_image) {
      // Memory a mapped restore gave it: whole (pages never touched since
      // are in the image file only).
      needed.emplace_back(v.map.start, v.map.end);
    } else {
      st = copier_.ForEachNeeded(v, [&](uint64_t s, uint64_t e) {
        needed.emplace_back(s, e);
        return absl::OkStatus();
      });
    }
    // A VMA gone since it was read: nothing of it to copy now.
    if (st.ok()) {
      for (auto [s, e] : needed) {
        st = CopyWhileRunning(pages, s, e);
        if (!st.ok()) break;
      }
    } else {
      st = absl::OkStatus();
    }
    pages.set_keep_zero(false);
    CRLIB_RETURN_IF_ERROR(st);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> LiveCopy::CopyWritten(PageArray& pages) {
  CRLIB_RETURN_IF_ERROR(pages.SetParent(mm_ref_));
  const uint64_t before = copied_bytes_;
  std::vector<std::pair<uint64_t, uint64_t>> written;
  CRLIB_RETURN_IF_ERROR(tracker_->CollectWritten([&](uint64_t s, uint64_t e) {
    written.emplace_back(s, e);
    return absl::OkStatus();
  }));
  // Zero pages too: an earlier round may hold the page's old contents.
  pages.set_keep_zero(true);
  absl::Status st;
  for (auto [s, e] : written) {
    st = CopyWhileRunning(pages, s, e);
    if (!st.ok()) break;
  }
  pages.set_keep_zero(false);
  CRLIB_RETURN_IF_ERROR(st);
  return copied_bytes_ - before;
}

namespace {

// Where restore may write pages: the private memory of `vmas` (never a
// shared or special mapping, whatever was there when a round copied).
std::vector<std::pair<uint64_t, uint64_t>> PageHolders(const std::vector<VmaInfo>& vmas) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const VmaInfo& v : vmas) {
    if (MayHoldPages(v.kind, v.map.shared)) out.emplace_back(v.map.start, v.map.end);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<PageRun> LiveCopy::StaleRuns(const std::vector<VmaInfo>& vmas) const {
  const uint64_t page = copier_.page_size();
  std::vector<PageRun> out;
  for (auto [s, e] : copied_.Outside(PageHolders(vmas))) out.push_back({s, (e - s) / page});
  return out;
}

absl::Status LiveCopy::Finish(const std::vector<VmaInfo>& vmas, absl::Span<const PageRun> guards,
                              PageArray& pages) {
  CRLIB_RETURN_IF_ERROR(pages.SetParent(mm_ref_));
  auto copy = [&](uint64_t s, uint64_t e) { return copier_.Copy(pages, s, e, guards); };
  // Written since the last round, and what did not read while it ran.
  RangeSet again = retry_;
  std::vector<std::pair<uint64_t, uint64_t>> ours;
  for (const VmaInfo& v : vmas) {
    if (Tracked(v)) ours.emplace_back(v.map.start, v.map.end);
  }
  for (auto [s, e] : ours) {
    CRLIB_RETURN_IF_ERROR(tracker_->CollectWritten(s, e, [&](uint64_t a, uint64_t b) {
      again.Add(a, b);
      return absl::OkStatus();
    }));
  }
  pages.set_keep_zero(true);
  absl::Status st;
  for (auto [s, e] : ours) {
    for (auto [a, b] : again.Within(s, e)) {
      st = copy(a, b);
      if (!st.ok()) break;
    }
    if (!st.ok()) break;
  }
  // VMAs tracking did not follow (mapped, moved or changed since it
  // began): whole, and zero pages too where an earlier round copied.
  for (const VmaInfo& v : vmas) {
    if (!st.ok() || Tracked(v) || !MayHoldPages(v.kind, v.map.shared)) continue;
    for (auto [a, b] : copied_.Within(v.map.start, v.map.end)) {
      st = copy(a, b);
      if (!st.ok()) break;
    }
    if (!st.ok()) break;
    pages.set_keep_zero(false);
    st = v.from_image ? copy(v.map.start, v.map.end) : copier_.ForEachNeeded(v, copy);
    pages.set_keep_zero(true);
  }
  pages.set_keep_zero(false);
  return st;
}

namespace {

bool SameLine(const sys::MapsEntry& a, const sys::MapsEntry& b) {
  return a.start == b.start && a.end == b.end && a.read == b.read && a.write == b.write &&
         a.exec == b.exec && a.shared == b.shared && a.offset == b.offset &&
         a.dev_major == b.dev_major && a.dev_minor == b.dev_minor && a.inode == b.inode &&
         a.path == b.path;
}

absl::StatusOr<std::string> LockedMemory(absl::string_view status) {
  return sys::StatusField(status, "VmLck");
}

}  // namespace

absl::Status LiveCopy::ScanBeforeStop() {
  CRLIB_ASSIGN_OR_RETURN(before_stop_, ScanVmas(pid()));
  CRLIB_ASSIGN_OR_RETURN(std::string status, sys::ReadFile(absl::StrCat("/proc/", pid(), "/status")));
  CRLIB_ASSIGN_OR_RETURN(locked_before_stop_, LockedMemory(status));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<VmaInfo>> LiveCopy::ScanAtStop(absl::string_view status) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> maps, sys::ReadMaps(pid()));
  CRLIB_ASSIGN_OR_RETURN(std::string locked, LockedMemory(status));
  bool same = locked == locked_before_stop_ && maps.size() == before_stop_.size();
  for (size_t i = 0; same && i < maps.size(); ++i) same = SameLine(maps[i], before_stop_[i].map);
  std::vector<VmaInfo> vmas;
  unchanged_at_stop_ = same;
  if (same) {
    vmas = before_stop_;
  } else {
    // Something was mapped, unmapped or changed since: smaps again.
    CRLIB_ASSIGN_OR_RETURN(vmas, ScanVmas(pid()));
  }
  if (same) {
    // A VMA mapped again with the same line since smaps was read is no
    // longer registered: the page tables say.
    for (VmaInfo& v : vmas) {
      if (!tracker_->Tracks(v.map.start, v.map.end)) continue;
      CRLIB_ASSIGN_OR_RETURN(v.userfaultfd, tracker_->StillTracked(v.map.start, v.map.end));
    }
  }
  return vmas;
}

absl::Status RefuseUserfaultfdMemory(const std::vector<VmaInfo>& vmas, const LiveCopy* live) {
  for (const VmaInfo& v : vmas) {
    if (!v.userfaultfd || (live != nullptr && live->Tracked(v))) continue;
    return absl::UnimplementedError(absl::StrFormat(
        "mapping 0x%x-0x%x %s is not supported: it is registered with a userfaultfd, whose "
        "fault handler (the process itself or another) crlib does not carry",
        v.map.start, v.map.end, v.map.path.empty() ? "(anonymous)" : v.map.path));
  }
  return absl::OkStatus();
}

}  // namespace crlib

