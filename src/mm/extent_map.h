// Disjoint address ranges, each carrying a value that moves along with the
// address: the part of an extent from `x` on has value + (x - start). A lazy
// restore keeps two: where in the image each page lies (value: a byte offset
// in a pages record), and which pages a process is still owed (value: the
// page's address in the image, which mremap may have moved it away from).
#ifndef CRLIB_MM_EXTENT_MAP_H_
#define CRLIB_MM_EXTENT_MAP_H_

#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

namespace crlib {

struct Extent {
  uint64_t start = 0, end = 0;  // [start, end)
  uint32_t tag = 0;             // not shifted: which record, say
  uint64_t value = 0;           // at `start`
};

// Not thread-safe.
class ExtentMap {
 public:
  bool empty() const { return map_.empty(); }
  size_t size() const { return map_.size(); }
  // The extent holding `address`, or nullptr. Valid until the next change.
  const Extent* Find(uint64_t address) const {
    auto it = map_.upper_bound(address);
    if (it == map_.begin()) return nullptr;
    --it;
    return address < it->second.end ? &it->second : nullptr;
  }
  // The first extent, or nullptr.
  const Extent* First() const { return map_.empty() ? nullptr : &map_.begin()->second; }
  // The extents (or parts) overlapping [start, end), clipped to it, in order.
  std::vector<Extent> Overlapping(uint64_t start, uint64_t end) const {
    std::vector<Extent> out;
    auto it = map_.upper_bound(start);
    if (it != map_.begin()) --it;
    for (; it != map_.end() && it->first < end; ++it) {
      if (it->second.end <= start) continue;
      out.push_back(Clip(it->second, start, end));
    }
    return out;
  }
  // Removes [start, end), splitting extents that stick out; returns what
  // was removed, clipped, in order.
  std::vector<Extent> Cut(uint64_t start, uint64_t end) {
    std::vector<Extent> removed = Overlapping(start, end);
    if (removed.empty()) return removed;
    auto it = map_.upper_bound(start);
    if (it != map_.begin() && std::prev(it)->second.end > start) --it;
    while (it != map_.end() && it->first < end) {
      const Extent e = it->second;
      it = map_.erase(it);
      if (e.start < start) map_[e.start] = Clip(e, e.start, start);
      if (e.end > end) it = map_.emplace(end, Clip(e, end, e.end)).first;
    }
    return removed;
  }
  // Adds `e`, replacing whatever it overlaps.
  void Insert(const Extent& e) {
    if (e.start >= e.end) return;
    Cut(e.start, e.end);
    map_[e.start] = e;
  }
  std::vector<Extent> All() const {
    std::vector<Extent> out;
    for (const auto& [start, e] : map_) out.push_back(e);
    return out;
  }

 private:
  static Extent Clip(const Extent& e, uint64_t start, uint64_t end) {
    const uint64_t s = start > e.start ? start : e.start;
    const uint64_t t = end < e.end ? end : e.end;
    return {s, t, e.tag, e.value + (s - e.start)};
  }
  std::map<uint64_t, Extent> map_;  // by start
};

}  // namespace crlib

#endif  // CRLIB_MM_EXTENT_MAP_H_
