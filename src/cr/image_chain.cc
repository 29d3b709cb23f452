#include "cr/image_chain.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "sys/proc.h"

namespace crlib {
namespace {

// A chain longer than this is refused: a loop, or an image better taken
// whole.
constexpr size_t kMaxChain = 256;

absl::StatusOr<uint64_t> StartTime(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<std::string> stat, sys::ReadStatFields(pid));
  uint64_t t = 0;
  // proc(5) field 22 is stat[19].
  if (stat.size() < 20 || !absl::SimpleAtoi(stat[19], &t)) {
    return absl::InternalError(absl::StrFormat("/proc/%d/stat: no start time", pid));
  }
  return t;
}

std::string IdString(uint64_t high, uint64_t low) { return absl::StrFormat("%016x%016x", high, low); }

struct OpenedImage {
  sys::UniqueFd fd;
  struct stat file{};
  std::unique_ptr<FdSource> source;
  std::unique_ptr<ImageReader> reader;
  ProcessImage process;
};

// Image file `path`, its records read (one process, with a chain
// record); `what` names it in messages.
absl::StatusOr<OpenedImage> OpenChainImage(const std::string& path, const std::string& what) {
  OpenedImage o;
  o.fd = sys::UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (o.fd.fd < 0) return Errno("%s %s", what, path);
  if (fstat(o.fd.fd, &o.file) != 0) return Errno("fstat %s", path);
  if (!S_ISREG(o.file.st_mode)) {
    return absl::FailedPreconditionError(absl::StrFormat("%s %s is not an image file", what, path));
  }
  o.source = std::make_unique<FdSource>(o.fd.fd);
  absl::StatusOr<std::unique_ptr<ImageReader>> reader = ImageReader::Open(o.source.get(), {});
  if (!reader.ok()) return Annotate(reader.status(), absl::StrFormat("%s %s", what, path));
  o.reader = std::move(*reader);
  absl::StatusOr<TreeImage> tree = LoadTreeImage(o.reader.get());
  if (!tree.ok()) return Annotate(tree.status(), absl::StrFormat("%s %s", what, path));
  if (tree->processes.size() != 1 || !tree->root().chain) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s %s is not from a dump that kept tracking its process (crlib dump --track or --parent)",
        what, path));
  }
  o.process = std::move(tree->processes.front());
  return o;
}

// The sorted, disjoint ranges of `vmas` flagged kVmaFromParent, within
// `allowed` (sorted, disjoint).
std::vector<std::pair<uint64_t, uint64_t>> Inherited(
    const std::vector<VmaRecord>& vmas, const std::vector<std::pair<uint64_t, uint64_t>>& allowed) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  auto a = allowed.begin();
  for (const VmaRecord& v : vmas) {
    if (!(v.vm_flags & kVmaFromParent)) continue;
    while (a != allowed.end() && a->second <= v.start) ++a;
    for (auto b = a; b != allowed.end() && b->first < v.end; ++b) {
      const uint64_t s = std::max(v.start, b->first), e = std::min(v.end, b->second);
      if (s < e) out.emplace_back(s, e);
    }
  }
  return out;
}

// Everything outside `keep` (sorted, disjoint), as page runs.
std::vector<PageRun> Outside(const std::vector<std::pair<uint64_t, uint64_t>>& keep, uint64_t page) {
  std::vector<PageRun> out;
  const uint64_t top = ~uint64_t{0} / page * page;
  uint64_t at = 0;
  for (auto [s, e] : keep) {
    if (s > at) out.push_back({at, (s - at) / page});
    at = e;
  }
  if (at < top) out.push_back({at, (top - at) / page});
  return out;
}

}  // namespace

absl::StatusOr<ParentImage> ReadParentImage(const std::string& path, pid_t pid) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return Errno("parent image %s", path);
  ParentImage parent{.path = resolved};
  free(resolved);
  absl::StatusOr<OpenedImage> image = OpenChainImage(parent.path, "parent image");
  if (!image.ok()) return absl::InvalidArgumentError(image.status().message());
  CRLIB_ASSIGN_OR_RETURN(uint64_t start_time, StartTime(pid));
  const ChainRecord& chain = *image->process.chain;
  if (image->process.process.pid != static_cast<uint32_t>(pid) || chain.start_time != start_time) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "parent image %s is of another process (pid %d started at tick %d; pid %d started at "
        "tick %d)",
        parent.path, image->process.process.pid, chain.start_time, pid, start_time));
  }
  parent.chain = chain;
  return parent;
}

absl::StatusOr<ChainRecord> NewChainRecord(pid_t pid, int tracking_fd, const ParentImage* parent) {
  ChainRecord c;
  uint64_t id[2];
  if (getrandom(id, sizeof(id), 0) != sizeof(id)) return Errno("getrandom");
  c.id_high = id[0];
  c.id_low = id[1];
  CRLIB_ASSIGN_OR_RETURN(c.start_time, StartTime(pid));
  c.tracking_fd = tracking_fd;
  if (parent != nullptr) {
    c.parent_path = parent->path;
    c.parent_id_high = parent->chain.id_high;
    c.parent_id_low = parent->chain.id_low;
  }
  return c;
}

absl::StatusOr<ImageChain> OpenImageChain(const ProcessImage& image, const struct stat& image_file,
                                          bool trusted) {
  ImageChain chain;
  if (!image.chain || image.chain->parent_path.empty()) return chain;
  const uint64_t page = image.info.page_size;
  std::set<std::pair<uint64_t, uint64_t>> seen = {{image.chain->id_high, image.chain->id_low}};
  const ProcessImage* child = &image;
  // The pages each ancestor may give: inside VMAs every newer image
  // inherits.
  std::vector<std::pair<uint64_t, uint64_t>> allowed = {{0, ~uint64_t{0}}};
  std::deque<ChainLink> newest_first;  // references to them stay valid
  while (child->chain && !child->chain->parent_path.empty()) {
    const ChainRecord& c = *child->chain;
    if (newest_first.size() == kMaxChain) {
      return absl::FailedPreconditionError(
          absl::StrFormat("the image chain is longer than %d images", kMaxChain));
    }
    CRLIB_ASSIGN_OR_RETURN(OpenedImage parent, OpenChainImage(c.parent_path, "parent image"));
    const ChainRecord& pc = *parent.process.chain;
    if (pc.id_high != c.parent_id_high || pc.id_low != c.parent_id_low) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "parent image %s was replaced: it is image %s, the chain names %s", c.parent_path,
          IdString(pc.id_high, pc.id_low), IdString(c.parent_id_high, c.parent_id_low)));
    }
    if (!seen.insert({pc.id_high, pc.id_low}).second) {
      return absl::DataLossError(absl::StrFormat("the image chain loops at %s", c.parent_path));
    }
    if (parent.process.process.pid != image.process.pid || pc.start_time != image.chain->start_time ||
        parent.process.info.page_size != page) {
      return absl::DataLossError(
          absl::StrFormat("parent image %s is of another process", c.parent_path));
    }
    // Its pages go into the restored process: whoever may write it could
    // write that process's memory.
    if (!trusted && ((parent.file.st_uid != image_file.st_uid && parent.file.st_uid != 0) ||
                     (parent.file.st_mode & (S_IWGRP | S_IWOTH)))) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "parent image %s is owned by uid %d or writable by others: it cannot vouch for the "
          "memory of an image owned by uid %d",
          c.parent_path, parent.file.st_uid, image_file.st_uid));
    }
    allowed = Inherited(child->vmas, allowed);
    ChainLink link{.path = c.parent_path,
                   .fd = std::move(parent.fd),
                   .source = std::move(parent.source),
                   .reader = std::move(parent.reader),
                   .process = std::move(parent.process)};
    for (const PageRun& r : Outside(allowed, page)) link.process.stale_pages.push_back(r);
    std::sort(link.process.stale_pages.begin(), link.process.stale_pages.end(),
              [](const PageRun& a, const PageRun& b) { return a.address < b.address; });
    newest_first.push_back(std::move(link));
    child = &newest_first.back().process;
  }
  for (auto l = newest_first.rbegin(); l != newest_first.rend(); ++l) {
    chain.links.push_back(std::move(*l));
  }
  return chain;
}

absl::StatusOr<std::vector<std::string>> DescribeImageChain(const ChainRecord& chain) {
  std::vector<std::string> lines;
  const ChainRecord* at = &chain;
  std::deque<OpenedImage> opened;  // references to them stay valid
  for (size_t depth = 0; at != nullptr && depth <= kMaxChain; ++depth) {
    const ChainRecord& c = *at;
    lines.push_back(absl::StrFormat(
        "image %s%s, tracking %s", IdString(c.id_high, c.id_low),
        c.parent_path.empty() ? " (full)" : absl::StrCat(", parent ", c.parent_path),
        c.tracking_fd >= 0 ? absl::StrFormat("kept at fd %d", c.tracking_fd) : "ended"));
    if (c.parent_path.empty()) break;
    absl::StatusOr<OpenedImage> parent = OpenChainImage(c.parent_path, "parent image");
    if (!parent.ok()) {
      lines.push_back(absl::StrCat("missing: ", parent.status().message()));
      break;
    }
    const ChainRecord& pc = *parent->process.chain;
    if (pc.id_high != c.parent_id_high || pc.id_low != c.parent_id_low) {
      lines.push_back(absl::StrFormat("replaced: %s is image %s, not %s", c.parent_path,
                                      IdString(pc.id_high, pc.id_low),
                                      IdString(c.parent_id_high, c.parent_id_low)));
      break;
    }
    opened.push_back(std::move(*parent));
    at = &*opened.back().process.chain;
  }
  return lines;
}

}  // namespace crlib
