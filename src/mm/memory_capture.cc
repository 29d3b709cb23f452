#include "mm/memory_capture.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "mm/mapped_restore.h"
#include "mm/page_array.h"
#include "sys/kernel.h"
#include "sys/unique_fd.h"

namespace crlib {

std::optional<VmaKind> SpecialMappingKind(const std::string& name) {
  if (name == "[vdso]") return VmaKind::kVdso;
  if (name == "[vvar]") return VmaKind::kVvar;
  if (name == "[vvar_vclock]") return VmaKind::kVvarVclock;
  if (name == "[vsyscall]") return VmaKind::kVsyscall;
  return std::nullopt;
}

uint32_t VmaFlagsFromSmaps(absl::string_view codes) {
  static constexpr struct {
    const char* code;
    uint32_t flag;
  } kCodes[] = {
      {"nr", kVmaNoReserve},  {"dc", kVmaDontFork},    {"wf", kVmaWipeOnFork},
      {"dd", kVmaDontDump},   {"hg", kVmaHugePage},    {"nh", kVmaNoHugePage},
      {"mg", kVmaMergeable},  {"lo", kVmaLocked},      {"lf", kVmaLockOnFault},
  };
  uint32_t out = 0;
  for (absl::string_view code : absl::StrSplit(codes, ' ', absl::SkipEmpty())) {
    for (const auto& c : kCodes) {
      if (code == c.code) out |= c.flag;
    }
  }
  return out;
}

namespace {

// VMA state that restore does not rebuild, and would silently drop: the
// dump refuses it instead, naming it. `unsupported(why)` builds the error.
template <typename Unsupported>
absl::Status RefuseUncarriedVmaState(const sys::MapsEntry& m, Unsupported unsupported) {
  if (m.protection_key != 0) {
    return unsupported(absl::StrFormat(
        "it is protected by memory protection key %d (pkey_mprotect); protection keys are "
        "not restored",
        m.protection_key));
  }
  for (absl::string_view code : absl::StrSplit(m.vm_flags, ' ', absl::SkipEmpty())) {
    if (code == "sl") {
      return unsupported(
          "it is sealed (mseal); a sealed mapping cannot be rebuilt in place and sealing is not "
          "restored");
    }
    if (code == "ss") return unsupported("it is a shadow stack (x86 user shadow stack)");
  }
  // Memory of an anonymous-inode file (io_uring rings, perf buffers, BPF
  // maps ...) or of memfd_secret: nothing could reopen it by path.
  if (m.path == "anon_inode:[io_uring]") {
    return unsupported("it is an io_uring ring (io_uring_setup), mapped even if its fd is closed; "
                       "crlib cannot capture an io_uring instance");
  }
  if (absl::StartsWith(m.path, "anon_inode:")) {
    return unsupported("memory of an anonymous-inode file, which nothing can reopen");
  }
  if (m.path == "/secretmem (deleted)") {
    return unsupported("it is memfd_secret memory, which nobody but the process can read");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<VmaInfo>> ScanVmas(pid_t pid) {
  // smaps, not maps: the VmFlags are only there. Its cost grows with the
  // populated pages (the kernel counts them for Rss/Pss), not with the
  // virtual size; measured in docs/CHECKPOINT.md.
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> maps, sys::ReadSmaps(pid));
  std::vector<VmaInfo> out;
  ImageFileCache images;
  for (sys::MapsEntry& m : maps) {
    VmaInfo v;
    auto unsupported = [&](absl::string_view why) {
      return absl::UnimplementedError(absl::StrFormat(
          "mapping 0x%x-0x%x %s is not supported: %s", m.start, m.end,
          m.path.empty() ? "(anonymous)" : m.path, why));
    };
    CRLIB_RETURN_IF_ERROR(RefuseUncarriedVmaState(m, unsupported));
    if (auto special = SpecialMappingKind(m.path)) {
      v.kind = *special;
    } else if (m.path == "[heap]") {
      v.kind = VmaKind::kHeap;
    } else if (m.path == "[stack]") {
      v.kind = VmaKind::kStack;
    } else if (m.path.empty() || absl::StartsWith(m.path, "[anon:")) {
      if (m.shared) return unsupported("shared anonymous memory without its inode");
      v.kind = VmaKind::kAnonymous;
    } else if (m.path == "/[aio] (deleted)" || m.path == "/[aio]") {
      // The ring is the context's id and its size gives io_setup's
      // limit, but nothing shows whether a request is still in flight:
      // rebuilt, such a request would be lost without a trace.
      return unsupported(
          "it is an aio context's ring (io_setup); aio contexts are not supported, as the "
          "kernel does not show whether requests are in flight");
    } else if (absl::StartsWith(m.path, "[anon_shmem:") ||
               (m.shared && m.path == "/dev/zero (deleted)")) {
      // MAP_SHARED|MAP_ANONYMOUS and shared mappings of /dev/zero: one
      // shmem inode each (named with PR_SET_VMA_ANON_NAME: the name is
      // not carried).
      v.kind = VmaKind::kSharedAnonymous;
      v.inode_kind = InodeKind::kSharedAnonymous;
    } else if (m.path[0] == '[') {
      return unsupported("unknown special mapping");
    } else if (absl::StartsWith(m.path, "/SYSV") && absl::EndsWith(m.path, " (deleted)")) {
      v.kind = VmaKind::kSysvShm;
      v.inode_kind = InodeKind::kSysvShm;
    } else if (absl::StartsWith(m.path, "/memfd:") && absl::EndsWith(m.path, " (deleted)")) {
      v.kind = VmaKind::kCarriedFile;
      v.inode_kind = InodeKind::kMemfd;
    } else if (absl::EndsWith(m.path, " (deleted)")) {
      v.kind = VmaKind::kCarriedFile;
      v.inode_kind = InodeKind::kDeletedFile;
    } else if (m.inode == 0) {
      return unsupported("a mapping of a file without an inode");
    } else {
      v.kind = VmaKind::kFile;
    }
    if ((v.kind == VmaKind::kFile || v.kind == VmaKind::kCarriedFile) && !m.shared) {
      v.from_image = MapsCrlibImage(pid, m, &images);
      if (v.from_image) {
        // As the anonymous memory it was: no file, which the next image
        // would otherwise depend on.
        v.kind = VmaKind::kAnonymous;
        m.path.clear();
        m.offset = m.inode = 0;
        m.dev_major = m.dev_minor = 0;
      }
    }
    v.vm_flags = VmaFlagsFromSmaps(m.vm_flags);
    for (absl::string_view code : absl::StrSplit(m.vm_flags, ' ', absl::SkipEmpty())) {
      v.userfaultfd |= code == "um" || code == "uw" || code == "ui";
    }
    v.map = std::move(m);
    out.push_back(std::move(v));
  }
  return out;
}

bool InheritableFromParent(const VmaInfo& v, const ParentMemory& parent) {
  const bool private_memory =
      !v.map.shared && (v.kind == VmaKind::kAnonymous || v.kind == VmaKind::kHeap ||
                        v.kind == VmaKind::kStack || v.kind == VmaKind::kFile);
  constexpr uint32_t kNotForked = kVmaDontFork | kVmaWipeOnFork;
  // Memory mapped from an image is stored whole (WritePages).
  if (!private_memory || (v.vm_flags & kNotForked) || v.from_image) return false;
  for (const VmaInfo& p : *parent.vmas) {
    if (p.map.start == v.map.start && p.map.end == v.map.end && p.kind == v.kind &&
        !p.map.shared && !p.from_image && p.map.read == v.map.read && p.map.write == v.map.write &&
        p.map.exec == v.map.exec && !(p.vm_flags & kNotForked) &&
        // A file mapping: the same file at the same offset.
        p.map.offset == v.map.offset && p.map.inode == v.map.inode &&
        p.map.dev_major == v.map.dev_major && p.map.dev_minor == v.map.dev_minor &&
        p.map.path == v.map.path) {
      return true;
    }
  }
  return false;
}

std::optional<CarriedInodeSource> CarriedInodeOfVma(pid_t pid, const VmaInfo& v) {
  if (v.kind != VmaKind::kSharedAnonymous && v.kind != VmaKind::kSysvShm &&
      v.kind != VmaKind::kCarriedFile) {
    return std::nullopt;
  }
  CarriedInodeSource s;
  s.kind = v.inode_kind;
  s.open_path = absl::StrFormat("/proc/%d/map_files/%x-%x", pid, v.map.start, v.map.end);
  s.what = absl::StrFormat("mapping 0x%x-0x%x %s", v.map.start, v.map.end, v.map.path);
  const absl::string_view path = absl::StripSuffix(v.map.path, " (deleted)");
  switch (v.inode_kind) {
    case InodeKind::kMemfd:
      s.name = std::string(absl::StripPrefix(path, "/memfd:"));
      break;
    case InodeKind::kSharedAnonymous:
      s.name = "/dev/zero";
      break;
    default:
      s.name = std::string(path);
  }
  s.dev = makedev(v.map.dev_major, v.map.dev_minor);
  s.inode = v.map.inode;
  return s;
}

bool MayHoldPages(VmaKind kind, bool shared) {
  switch (kind) {
    case VmaKind::kAnonymous:
    case VmaKind::kHeap:
    case VmaKind::kStack:
      return true;
    case VmaKind::kFile:
    case VmaKind::kCarriedFile:
      return !shared;
    default:
      return false;
  }
}

namespace {

// Which pages of such a VMA the image needs, by their pagemap entry: the
// fallback for kernels without PAGEMAP_SCAN, with the same selection as
// ScanNeededRanges.
bool PageNeeded(VmaKind kind, uint64_t pagemap) {
  if (kind != VmaKind::kFile && kind != VmaKind::kCarriedFile) return pagemap & (sys::kPagemapPresent | sys::kPagemapSwapped);
  // A private file page differs from the file once it was copied on
  // write: then it is anonymous (present without the file bit) or swapped.
  return (pagemap & sys::kPagemapSwapped) ||
         ((pagemap & sys::kPagemapPresent) && !(pagemap & sys::kPagemapFileOrShared));
}

using RangeFn = PageRangeFn;

// Calls `run` for each range of pages of `v` the image needs, in address
// order, from one pagemap entry per page: time grows with the VMA's
// virtual size, so only for kernels before 6.7.
absl::Status ReadNeededRanges(int pagemap, const std::string& path, const VmaInfo& v,
                              uint64_t page, RangeFn run) {
  std::vector<uint64_t> entries;
  const uint64_t total = (v.map.end - v.map.start) / page;
  for (uint64_t first = 0; first < total;) {
    const uint64_t count = std::min<uint64_t>(total - first, 65536);
    entries.resize(count);
    const uint64_t base = v.map.start + first * page;
    ssize_t n = pread(pagemap, entries.data(), count * 8, static_cast<off_t>(base / page * 8));
    if (n < 0) return Errno("read of %s at 0x%x", path, base);
    if (n != static_cast<ssize_t>(count * 8)) {
      return absl::InternalError(
          absl::StrFormat("read of %s at 0x%x: %d of %d bytes", path, base, n, count * 8));
    }
    for (uint64_t i = 0; i < count;) {
      if (!PageNeeded(v.kind, entries[i])) {
        ++i;
        continue;
      }
      uint64_t j = i;
      while (j < count && PageNeeded(v.kind, entries[j])) ++j;
      CRLIB_RETURN_IF_ERROR(run(base + i * page, base + j * page));
      i = j;
    }
    first += count;
  }
  return absl::OkStatus();
}

// The same with the PAGEMAP_SCAN ioctl (6.7): the kernel skips unpopulated
// page tables, so a 1 TiB reservation with a few pages costs a few pages.
// Returns Unimplemented, before calling `run`, when the kernel lacks it.
absl::Status ScanNeededRanges(int pagemap, const std::string& path, const VmaInfo& v,
                              std::vector<sys::PageRegion>* vec, RangeFn run) {
  sys::PmScanArg arg{};
  arg.size = sizeof(arg);
  arg.vec = reinterpret_cast<uint64_t>(vec->data());
  arg.vec_len = vec->size();
  // Present or swapped, and never the shared zero page: it is present but
  // all zero (today's byte check would drop it anyway, after a copy).
  arg.category_inverted = sys::kPageIsPfnZero;
  arg.category_mask = sys::kPageIsPfnZero;
  arg.category_anyof_mask = sys::kPageIsPresent | sys::kPageIsSwapped;
  // Regions merge pages whose returned categories are equal, so asking for
  // the file bit lets private file mappings keep only copied-on-write pages.
  arg.return_mask = sys::kPageIsPresent | sys::kPageIsSwapped | sys::kPageIsFile;
  const bool file = v.kind == VmaKind::kFile || v.kind == VmaKind::kCarriedFile;
  for (uint64_t at = v.map.start; at < v.map.end;) {
    arg.start = at;
    arg.end = v.map.end;
    arg.walk_end = 0;
    int n = ioctl(pagemap, sys::kPagemapScan, &arg);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == ENOTTY || errno == EINVAL) && at == v.map.start) {
      return absl::UnimplementedError(
          absl::StrFormat("ioctl(PAGEMAP_SCAN) on %s: %s", path, strerror(errno)));
    }
    if (n < 0) {
      return Errno("ioctl(PAGEMAP_SCAN) on %s, 0x%x-0x%x", path, at, v.map.end);
    }
    uint64_t walked = at;  // regions come in address order
    for (int i = 0; i < n; ++i) {
      const sys::PageRegion& r = (*vec)[i];
      if (r.start < at || r.end <= r.start || r.end > v.map.end) {
        return absl::InternalError(absl::StrFormat(
            "ioctl(PAGEMAP_SCAN) on %s, 0x%x-0x%x: region 0x%x-0x%x out of range", path, at,
            v.map.end, r.start, r.end));
      }
      walked = r.end;
      // A private file page differs from the file once it was copied on
      // write: then it is anonymous (present without the file bit) or
      // swapped.
      if (file && !(r.categories & sys::kPageIsSwapped) && (r.categories & sys::kPageIsFile)) {
        continue;
      }
      CRLIB_RETURN_IF_ERROR(run(r.start, r.end));
    }
    // The walk stops early when `vec` is full (or at max_pages); walk_end
    // says where, and the next call starts there. On 6.18 walk_end can
    // also lag behind regions already returned (a walk across a 512 GiB
    // PGD boundary reported walk_end at the boundary with every region
    // past it filled in too): continue after the last region, so no page
    // is stored twice.
    const uint64_t next = std::max<uint64_t>(arg.walk_end, walked);
    if (next <= at || next > v.map.end) {
      return absl::InternalError(absl::StrFormat(
          "ioctl(PAGEMAP_SCAN) on %s, 0x%x-0x%x: walk ended at 0x%x", path, at, v.map.end,
          arg.walk_end));
    }
    at = next;
  }
  return absl::OkStatus();
}

// The guard regions (MADV_GUARD_INSTALL) of `vmas`, merged and in address
// order. PAGEMAP_SCAN's PAGE_IS_GUARD (6.14) skips unpopulated page
// tables; older kernels fall back to one pagemap entry per page.
absl::StatusOr<std::vector<PageRun>> ScanGuardRegions(int pagemap, const std::string& path,
                                                      const std::vector<VmaInfo>& vmas,
                                                      uint64_t page) {
  std::vector<PageRun> out;
  auto add = [&](uint64_t start, uint64_t end) {
    if (!out.empty() && out.back().address + out.back().pages * page == start) {
      out.back().pages += (end - start) / page;
    } else {
      out.push_back({.address = start, .pages = (end - start) / page});
    }
  };
  std::vector<sys::PageRegion> vec(1024);
  bool scan = true;
  for (const VmaInfo& v : vmas) {
    // [vsyscall] lies outside what pagemap covers; no special mapping
    // takes guards.
    if (SpecialMappingKind(v.map.path)) continue;
    for (uint64_t at = v.map.start; scan && at < v.map.end;) {
      sys::PmScanArg arg{};
      arg.size = sizeof(arg);
      arg.vec = reinterpret_cast<uint64_t>(vec.data());
      arg.vec_len = vec.size();
      arg.start = at;
      arg.end = v.map.end;
      arg.category_anyof_mask = sys::kPageIsGuard;
      arg.return_mask = sys::kPageIsGuard;
      int n = ioctl(pagemap, sys::kPagemapScan, &arg);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == ENOTTY || errno == EINVAL)) {
        scan = false;  // no PAGEMAP_SCAN, or no PAGE_IS_GUARD in it
        break;
      }
      if (n < 0) return Errno("ioctl(PAGEMAP_SCAN) for guard regions on %s, 0x%x-0x%x", path, at, v.map.end);
      uint64_t walked = at;
      for (int i = 0; i < n; ++i) {
        add(vec[i].start, vec[i].end);
        walked = vec[i].end;
      }
      const uint64_t next = std::max<uint64_t>(arg.walk_end, walked);
      if (next <= at) {
        return absl::InternalError(absl::StrFormat(
            "ioctl(PAGEMAP_SCAN) for guard regions on %s, 0x%x-0x%x: walk ended at 0x%x", path, at,
            v.map.end, arg.walk_end));
      }
      at = next;
    }
    if (scan) continue;
    out.erase(std::remove_if(out.begin(), out.end(),
                             [&](const PageRun& r) { return r.address >= v.map.start; }),
              out.end());
    std::vector<uint64_t> entries(65536);
    for (uint64_t base = v.map.start; base < v.map.end;) {
      const uint64_t count = std::min<uint64_t>((v.map.end - base) / page, entries.size());
      ssize_t n = pread(pagemap, entries.data(), count * 8, static_cast<off_t>(base / page * 8));
      if (n != static_cast<ssize_t>(count * 8)) return Errno("read of %s at 0x%x", path, base);
      for (uint64_t i = 0; i < count; ++i) {
        if (entries[i] & sys::kPagemapGuardRegion) add(base + i * page, base + (i + 1) * page);
      }
      base += count * page;
    }
  }
  return out;
}

// The pagemap entries of [start, end) of process `path`'s pagemap.
absl::StatusOr<std::vector<uint64_t>> ReadPagemap(int pagemap, const std::string& path,
                                                  uint64_t start, uint64_t end, uint64_t page) {
  std::vector<uint64_t> entries((end - start) / page);
  const size_t bytes = entries.size() * 8;
  size_t done = 0;
  while (done < bytes) {
    ssize_t n = pread(pagemap, reinterpret_cast<uint8_t*>(entries.data()) + done, bytes - done,
                      static_cast<off_t>(start / page * 8 + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read of %s at 0x%x", path, start);
    if (n == 0) return absl::InternalError(absl::StrFormat("short read of %s at 0x%x", path, start));
    done += static_cast<size_t>(n);
  }
  return entries;
}

// Whether a page is in memory or swap, and which: the frame or swap entry
// with its present and swapped bits (one page frame for two processes is
// a page they share copy-on-write).
constexpr uint64_t kPagemapFrameBits = (uint64_t{1} << 55) - 1;
bool HasPage(uint64_t entry) { return entry & (sys::kPagemapPresent | sys::kPagemapSwapped); }
bool SamePage(uint64_t a, uint64_t b) {
  constexpr uint64_t kWhere = sys::kPagemapPresent | sys::kPagemapSwapped;
  return HasPage(a) && (a & kWhere) == (b & kWhere) && (a & kPagemapFrameBits) != 0 &&
         (a & kPagemapFrameBits) == (b & kPagemapFrameBits);
}

// Pagemap entries compared at a time (512 KiB of entries per process).
constexpr uint64_t kCompareChunkPages = 65536;
using AddressRange = std::pair<uint64_t, uint64_t>;

// For each VMA of the child that it shares with its parent (kVmaInherited),
// the pages it must store (its own copies) and drop (the parent's that it
// lacks), by comparing the two processes' pagemaps.
absl::Status CompareWithParent(pid_t pid, const std::vector<VmaInfo>& vmas, const ParentMemory& parent,
                               uint64_t page, WrittenMemoryMap* map) {
  const std::string path = absl::StrCat("/proc/", pid, "/pagemap");
  const std::string parent_path = absl::StrCat("/proc/", parent.pid, "/pagemap");
  sys::UniqueFd own(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (own.fd < 0) return Errno("open %s", path);
  sys::UniqueFd theirs(open(parent_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (theirs.fd < 0) return Errno("open %s", parent_path);
  map->inherited.assign(vmas.size(), false);
  map->own_pages.assign(vmas.size(), {});
  std::vector<sys::PageRegion> regions(4096);
  for (size_t i = 0; i < vmas.size(); ++i) {
    const VmaInfo& v = vmas[i];
    if (!InheritableFromParent(v, parent)) continue;
    // Only where either process has pages: a VMA may be a sparse
    // reservation of terabytes (a sanitizer's shadow, a JVM heap), whose
    // pagemap is far too large to read whole. PAGEMAP_SCAN finds them.
    std::vector<AddressRange> ranges;
    for (auto [fd, where] : {std::pair{own.fd, &path}, {theirs.fd, &parent_path}}) {
      auto collect = [&](uint64_t start, uint64_t end) -> absl::Status {
        ranges.push_back({start, end});
        return absl::OkStatus();
      };
      absl::Status st = ScanNeededRanges(fd, *where, v, &regions, collect);
      if (absl::IsUnimplemented(st)) st = ReadNeededRanges(fd, *where, v, page, collect);
      CRLIB_RETURN_IF_ERROR(st);
    }
    std::sort(ranges.begin(), ranges.end());
    const size_t drops_before = map->drops.size();
    bool frames = true;  // without CAP_SYS_ADMIN pagemap shows no frames
    auto add = [&](std::vector<PageRun>* runs, uint64_t address) {
      if (!runs->empty() && runs->back().address + runs->back().pages * page == address) {
        ++runs->back().pages;
      } else {
        runs->push_back({address, 1});
      }
    };
    // The pages an image holds for such a VMA: any of anonymous memory;
    // of a private file mapping, those copied on write (the others are the
    // file's, which a drop gives back).
    auto held = [&](uint64_t entry) { return PageNeeded(v.kind, entry); };
    uint64_t done = v.map.start;  // ranges overlap: each page once
    for (const AddressRange& r : ranges) {
      for (uint64_t at = std::max(r.first, done); at < r.second && frames;) {
        const uint64_t end = std::min(r.second, at + kCompareChunkPages * page);
        CRLIB_ASSIGN_OR_RETURN(std::vector<uint64_t> mine, ReadPagemap(own.fd, path, at, end, page));
        CRLIB_ASSIGN_OR_RETURN(std::vector<uint64_t> other,
                               ReadPagemap(theirs.fd, parent_path, at, end, page));
        for (size_t k = 0; k < mine.size(); ++k) {
          const uint64_t address = at + k * page;
          if (held(mine[k])) {
            if ((mine[k] & sys::kPagemapPresent) && !(mine[k] & kPagemapFrameBits)) frames = false;
            if (!SamePage(mine[k], other[k])) add(&map->own_pages[i], address);
          } else if (held(other[k])) {
            add(&map->drops, address);
          }
        }
        at = end;
      }
      done = std::max(done, r.second);
    }
    if (!frames) {  // nothing can be told shared: stored whole, as ever
      map->own_pages[i].clear();
      map->drops.resize(drops_before);
      continue;
    }
    map->inherited[i] = true;
  }
  std::sort(map->drops.begin(), map->drops.end(),
            [](const PageRun& x, const PageRun& y) { return x.address < y.address; });
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PageCopier> PageCopier::Open(pid_t pid, uint64_t page_size) {
  PageCopier c;
  c.pid_ = pid;
  c.page_ = page_size;
  c.pagemap_path_ = absl::StrCat("/proc/", pid, "/pagemap");
  c.pagemap_ = sys::UniqueFd(open(c.pagemap_path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (c.pagemap_.fd < 0) return Errno("open %s", c.pagemap_path_);
  const std::string mem = absl::StrCat("/proc/", pid, "/mem");
  c.mem_ = sys::UniqueFd(open(mem.c_str(), O_RDONLY | O_CLOEXEC));
  if (c.mem_.fd < 0) return Errno("open %s", mem);
  c.regions_.resize(4096);
  return c;
}

absl::Status PageCopier::ForEachNeeded(const VmaInfo& v, RangeFn run) {
  if (scan_) {
    absl::Status st = ScanNeededRanges(pagemap_.fd, pagemap_path_, v, &regions_, run);
    if (!absl::IsUnimplemented(st)) return st;
    scan_ = false;
  }
  return ReadNeededRanges(pagemap_.fd, pagemap_path_, v, page_, run);
}

absl::Status PageCopier::Read(uint64_t address, void* buffer, size_t size) {
  return sys::ReadProcessMemory(mem_.fd, pid_, address, buffer, size);
}

absl::Status PageCopier::ReadRun(PageArray& pages, uint64_t start, uint64_t end) {
  for (uint64_t at = start; at < end;) {
    CRLIB_ASSIGN_OR_RETURN(absl::Span<uint8_t> buf, pages.Reserve(at, (end - at) / page_));
    CRLIB_RETURN_IF_ERROR(Read(at, buf.data(), buf.size()));
    CRLIB_RETURN_IF_ERROR(pages.Commit(buf.size() / page_));
    at += buf.size();
  }
  return absl::OkStatus();
}

absl::Status PageCopier::Copy(PageArray& pages, uint64_t start, uint64_t end,
                              absl::Span<const PageRun> guards) {
  // Guard regions show as swapped, but reading one fails (EIO): they are
  // cut out, their record says where they go.
  auto g = std::upper_bound(guards.begin(), guards.end(), start,
                            [](uint64_t a, const PageRun& r) { return a < r.address; });
  if (g != guards.begin()) --g;
  for (; g != guards.end() && g->address < end && start < end; ++g) {
    const uint64_t g_end = g->address + g->pages * page_;
    if (g_end <= start) continue;
    if (g->address > start) CRLIB_RETURN_IF_ERROR(ReadRun(pages, start, g->address));
    start = std::min(end, g_end);
  }
  return start < end ? ReadRun(pages, start, end) : absl::OkStatus();
}

namespace {

absl::Status WritePages(Context* ctx, pid_t pid, const std::vector<VmaInfo>& vmas,
                        const WrittenMemoryMap& map, PageArray& pages) {
  CRLIB_RETURN_IF_ERROR(pages.SetParent(map.mm_ref));
  CRLIB_ASSIGN_OR_RETURN(PageCopier copier, PageCopier::Open(pid, ctx->writer()->info().page_size));
  auto copy = [&](uint64_t start, uint64_t end) { return copier.Copy(pages, start, end, map.guards); };
  for (size_t i = 0; i < vmas.size(); ++i) {
    const VmaInfo& v = vmas[i];
    // An inherited VMA: only the pages that differ from the parent's,
    // zero pages too (the parent's copy would not be zero).
    if (!map.inherited.empty() && map.inherited[i]) {
      pages.set_keep_zero(true);
      absl::Status st;
      for (const PageRun& run : map.own_pages[i]) {
        st = copy(run.address, run.address + run.pages * copier.page_size());
        if (!st.ok()) break;
      }
      pages.set_keep_zero(false);
      CRLIB_RETURN_IF_ERROR(st);
      continue;
    }
    // Memory a mapped restore gave the process: its pages not touched
    // since are in the image file only, and not present here.
    if (v.from_image) {
      CRLIB_RETURN_IF_ERROR(copy(v.map.start, v.map.end));
      continue;
    }
    // Only VMAs that can hold pages the image needs are looked at; the
    // special mappings ([vsyscall] lies outside the address space that
    // pagemap covers) and shared file mappings never do.
    if (!MayHoldPages(v.kind, v.map.shared)) continue;
    CRLIB_RETURN_IF_ERROR(copier.ForEachNeeded(v, copy));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WrittenMemoryMap> WriteMemoryMap(Context* ctx, Tracee* tracee,
                                               const std::vector<VmaInfo>& vmas, uint64_t brk,
                                               ObjectRef process, const ParentMemory* parent,
                                               const LiveMemory* live) {
  WrittenMemoryMap written;
  const pid_t pid = tracee->tid();
  ImageWriter* w = ctx->writer();
  CRLIB_ASSIGN_OR_RETURN(std::vector<std::string> stat_fields, sys::ReadStatFields(pid));
  // proc(5) field N is stat[N - 3].
  auto field = [&](int n) -> uint64_t {
    uint64_t v = 0;
    if (n - 3 < static_cast<int>(stat_fields.size())) (void)absl::SimpleAtoi(stat_fields[n - 3], &v);
    return v;
  };
  MemoryMapRecord mm;
  mm.start_code = field(26);
  mm.end_code = field(27);
  mm.start_stack = field(28);
  mm.start_data = field(45);
  mm.end_data = field(46);
  mm.start_brk = field(47);
  mm.arg_start = field(48);
  mm.arg_end = field(49);
  mm.env_start = field(50);
  mm.env_end = field(51);
  mm.brk = brk;
  CRLIB_ASSIGN_OR_RETURN(std::string auxv, sys::ReadFile(absl::StrCat("/proc/", pid, "/auxv")));
  mm.auxv.resize(auxv.size() / 8);
  memcpy(mm.auxv.data(), auxv.data(), mm.auxv.size() * 8);
  CRLIB_ASSIGN_OR_RETURN(mm.exe_path, sys::ReadLink(absl::StrCat("/proc/", pid, "/exe")));
  const ObjectRef mm_ref = live && live->mm_ref ? live->mm_ref : ctx->registry().NewRef();
  // The executable's record comes first so the memory map can name it; it
  // is parented to the process, like the map itself.
  struct stat exe_st{};
  if (stat(absl::StrCat("/proc/", pid, "/exe").c_str(), &exe_st) != 0) {
    return Errno("stat /proc/%d/exe", pid);
  }
  CRLIB_ASSIGN_OR_RETURN(mm.exe_file,
                         ctx->objects()->InternFile(ctx, mm.exe_path, exe_st.st_dev, exe_st.st_ino, process));
  CRLIB_RETURN_IF_ERROR(w->Write(mm, mm_ref, process));

  if (parent != nullptr) {
    CRLIB_RETURN_IF_ERROR(CompareWithParent(pid, vmas, *parent, w->info().page_size, &written));
  }
  for (size_t i = 0; i < vmas.size(); ++i) {
    const VmaInfo& v = vmas[i];
    VmaRecord rec;
    rec.start = v.map.start;
    rec.end = v.map.end;
    rec.pgoff = v.map.offset;
    rec.prot = (v.map.read ? PROT_READ : 0) | (v.map.write ? PROT_WRITE : 0) |
               (v.map.exec ? PROT_EXEC : 0);
    rec.flags = v.map.shared ? MAP_SHARED : MAP_PRIVATE;
    if (v.kind == VmaKind::kStack) rec.flags |= MAP_GROWSDOWN;
    rec.kind = static_cast<uint32_t>(v.kind);
    rec.name = v.map.path;
    rec.vm_flags = v.vm_flags;
    if (!written.inherited.empty() && written.inherited[i]) rec.vm_flags |= kVmaInherited;
    if (live && std::binary_search(live->from_parent.begin(), live->from_parent.end(),
                                   std::make_pair(v.map.start, v.map.end))) {
      rec.vm_flags |= kVmaFromParent;
    }
    if (v.kind == VmaKind::kFile) {
      rec.dev = makedev(v.map.dev_major, v.map.dev_minor);
      rec.inode = v.map.inode;
      CRLIB_ASSIGN_OR_RETURN(rec.file, ctx->objects()->InternFile(ctx, v.map.path, rec.dev, rec.inode, mm_ref));
    }
    if (std::optional<CarriedInodeSource> carried = CarriedInodeOfVma(pid, v)) {
      rec.dev = carried->dev;
      rec.inode = carried->inode;
      CRLIB_ASSIGN_OR_RETURN(rec.object, ctx->objects()->InternCarriedInode(ctx, *carried, mm_ref));
    }
    CRLIB_RETURN_IF_ERROR(w->Write(rec, ctx->registry().NewRef(), mm_ref));
  }
  const uint64_t page = w->info().page_size;
  std::string path = absl::StrCat("/proc/", pid, "/pagemap");
  int pagemap = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) return Errno("open %s", path);
  absl::StatusOr<std::vector<PageRun>> guards = ScanGuardRegions(pagemap, path, vmas, page);
  close(pagemap);
  CRLIB_RETURN_IF_ERROR(guards.status());
  if (!guards->empty()) {
    CRLIB_RETURN_IF_ERROR(w->Write(GuardRegionsRecord{.runs = *guards}, 0, mm_ref));
  }
  if (!written.drops.empty()) {
    CRLIB_RETURN_IF_ERROR(w->Write(PageDropsRecord{.runs = written.drops}, 0, mm_ref));
  }
  if (live && !live->stale.empty()) {
    CRLIB_RETURN_IF_ERROR(w->Write(StalePagesRecord{.runs = live->stale}, 0, mm_ref));
  }
  if (live && live->chain) CRLIB_RETURN_IF_ERROR(w->Write(*live->chain, 0, mm_ref));
  written.mm_ref = mm_ref;
  written.guards = std::move(*guards);
  return written;
}

absl::Status WriteMemoryPages(Context* ctx, Tracee* tracee, const std::vector<VmaInfo>& vmas,
                              const WrittenMemoryMap& map, PageArray* pages) {
  return WritePages(ctx, tracee->tid(), vmas, map, *pages);
}

}  // namespace crlib
