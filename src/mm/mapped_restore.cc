#include "mm/mapped_restore.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "core/crc32c.h"
#include "core/image_format.h"
#include "core/status.h"
#include "mm/memory_restore.h"
#include "mm/page_array.h"
#include "sys/unique_fd.h"

namespace crlib {
namespace {

// Runs shorter than this are copied: an mmap and the VMA it costs are
// worth more than copying 64 KiB.
constexpr uint64_t kMinMappedBytes = 64 << 10;

// VMA flags a mapping of the image cannot carry: mlock would copy every
// page at once, MADV_WIPEONFORK and KSM take anonymous memory only, and
// memory shared with the parent must stay shared.
constexpr uint32_t kCopiedVmFlags =
    kVmaLocked | kVmaLockOnFault | kVmaWipeOnFork | kVmaMergeable | kVmaInherited;

// The maps a process may get from a mapped restore: half of
// vm.max_map_count, less two per VMA of the image (each map may split one
// VMA into three), the other half left for the process to grow.
uint64_t PieceBudget(size_t vmas) {
  uint64_t max_maps = 65530;
  absl::StatusOr<std::string> text = sys::ReadFile("/proc/sys/vm/max_map_count");
  if (text.ok()) (void)absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(*text), &max_maps);
  const uint64_t half = max_maps / 2;
  return half > vmas ? (half - vmas) / 2 : 0;
}

}  // namespace

absl::Status CheckMappedRestore(const ImageReader& reader, int fd, const struct stat& file) {
  if (!(reader.info().flags & kImageMappable)) {
    return absl::FailedPreconditionError("the image was not dumped --mappable");
  }
  if (reader.source()->MappableFd() < 0) {
    return absl::FailedPreconditionError("the image is not read from the start of a regular file");
  }
  if (file.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the image file is writable (mode 0%o): a write to it would change the memory of every "
        "process restored from it by mapping (chmod a-w to map it)",
        file.st_mode & 07777));
  }
  // A read lease is refused while any process has the file open for
  // writing (a copy still in progress, an editor): the one test of that
  // the kernel offers. Taken and given back at once; where leases are
  // not available, the mode above stands alone.
  if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
    (void)fcntl(fd, F_SETLEASE, F_UNLCK);
  } else if (errno == EAGAIN) {
    return absl::FailedPreconditionError(
        "the image file is open for writing by some process, which could change the memory of "
        "a process restored from it by mapping");
  }
  return absl::OkStatus();
}

std::vector<AddressRange> ForkedRanges(const TreeImage& tree) {
  std::vector<AddressRange> out;
  for (const ProcessImage& p : tree.processes) {
    for (const VmaRecord& v : p.vmas) {
      if (v.vm_flags & kVmaInherited) out.push_back({v.start, v.end});
    }
  }
  return out;
}

PageMapper::PageMapper(const ProcessImage& image, int fd, uint64_t page_size, AddressRange scratch,
                       const std::vector<AddressRange>& forked)
    : image_(image),
      forked_(forked),
      fd_(fd),
      page_size_(page_size),
      scratch_(scratch),
      pieces_left_(PieceBudget(image.vmas.size())) {}

bool PageMapper::Mappable(const VmaRecord& v) const {
  const auto kind = static_cast<VmaKind>(v.kind);
  const bool anonymous = kind == VmaKind::kAnonymous || kind == VmaKind::kHeap;
  if (!anonymous || !(v.flags & MAP_PRIVATE) || v.file || v.object ||
      (v.vm_flags & kCopiedVmFlags)) {
    return false;
  }
  return std::none_of(forked_.begin(), forked_.end(), [&](const AddressRange& r) {
    return r.first < v.end && v.start < r.second;
  });
}

absl::StatusOr<bool> PageMapper::Load(Tracee* t, const Record& record, const PagesRecord& pages) {
  // Split the runs at VMA boundaries (a run may cross from one VMA into
  // the next) and choose, piece by piece, to map or to copy.
  std::vector<Piece> pieces;
  bool any_mapped = false;
  const bool raw = static_cast<PageEncoding>(pages.encoding) == PageEncoding::kRaw &&
                   record.bulk_offset % page_size_ == 0;
  uint64_t offset = record.bulk_offset;
  for (const PageRun& run : pages.runs) {
    const uint64_t run_end = run.address + run.pages * page_size_;
    for (uint64_t at = run.address; at < run_end;) {
      // The VMA that holds `at`, or the next one (VMAs come in address
      // order); a piece ends where its VMA does.
      auto in = std::upper_bound(image_.vmas.begin(), image_.vmas.end(), at,
                                 [](uint64_t a, const VmaRecord& r) { return a < r.end; });
      const VmaRecord* v = nullptr;
      uint64_t end = run_end;
      if (in != image_.vmas.end() && in->start <= at) {
        end = std::min(end, in->end);
        if (raw && Mappable(*in)) v = &*in;
      } else if (in != image_.vmas.end()) {
        end = std::min(end, in->start);  // outside every VMA: the copy fails
      }
      const uint64_t n = (end - at) / page_size_;
      if (v != nullptr && (end - at < kMinMappedBytes || pieces_left_ == 0)) v = nullptr;
      if (v != nullptr) {
        --pieces_left_;
        any_mapped = true;
      }
      pieces.push_back({at, n, offset + (at - run.address), v});
      at = end;
    }
    offset += run.pages * page_size_;
  }
  if (!any_mapped) {
    // The caller copies it: whatever pending map it overlaps goes first.
    for (const PageRun& run : pages.runs) {
      CRLIB_RETURN_IF_ERROR(
          FlushIfOverlapping(t, run.address, run.address + run.pages * page_size_));
    }
    return false;
  }
  for (const Piece& p : pieces) {
    const uint64_t bytes = p.pages * page_size_;
    if (p.vma == nullptr) {
      CRLIB_RETURN_IF_ERROR(FlushIfOverlapping(t, p.address, p.address + bytes));
      CRLIB_RETURN_IF_ERROR(Copy(t, p));
      continue;
    }
    const VmaRecord& v = *p.vma;
    uint64_t flags = MAP_PRIVATE | MAP_FIXED;
    if (v.vm_flags & kVmaNoReserve) flags |= MAP_NORESERVE;
    pending_.push_back({SYS_mmap, {p.address, bytes, v.prot, flags, static_cast<uint64_t>(fd_),
                                   p.offset}});
    pending_vma_.push_back(&v);
    if (touched_.empty() || touched_.back() != &v) touched_.push_back(&v);
    // Merged into the ranges pending, for FlushIfOverlapping.
    uint64_t start = p.address, end = p.address + bytes;
    auto it = pending_ranges_.upper_bound(start);
    if (it != pending_ranges_.begin() && std::prev(it)->second >= start) --it;
    while (it != pending_ranges_.end() && it->first <= end) {
      start = std::min(start, it->first);
      end = std::max(end, it->second);
      it = pending_ranges_.erase(it);
    }
    pending_ranges_[start] = end;
    pages_mapped_ += p.pages;
  }
  return true;
}

absl::Status PageMapper::FlushIfOverlapping(Tracee* t, uint64_t start, uint64_t end) {
  auto it = pending_ranges_.lower_bound(end);
  if (it == pending_ranges_.begin() || std::prev(it)->second <= start) return absl::OkStatus();
  return Flush(t);
}

absl::Status PageMapper::Copy(Tracee* t, const Piece& piece) {
  const uint64_t bytes = piece.pages * page_size_;
  buffer_.resize(bytes);
  for (uint64_t done = 0; done < bytes;) {
    ssize_t n = pread(fd_, buffer_.data() + done, bytes - done,
                      static_cast<off_t>(piece.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read of %d page bytes at image offset %d", bytes, piece.offset);
    if (n == 0) {
      return absl::DataLossError(absl::StrFormat(
          "image truncated: %d page bytes at offset %d", bytes, piece.offset));
    }
    done += static_cast<uint64_t>(n);
  }
  return t->WriteMemory(piece.address, buffer_.data(), bytes);
}

absl::Status PageMapper::Flush(Tracee* t) {
  if (pending_.empty()) return absl::OkStatus();
  absl::Status st = t->RunBatch(
      scratch_.first, scratch_.second - scratch_.first, absl::MakeSpan(pending_), [&](size_t i) {
        return absl::StrFormat("mmap of image pages at 0x%x (%d bytes, image offset %d) in "
                               "mapping 0x%x-0x%x %s",
                               pending_[i].args[0], pending_[i].args[1], pending_[i].args[5],
                               pending_vma_[i]->start, pending_vma_[i]->end,
                               pending_vma_[i]->name);
      });
  pending_.clear();
  pending_vma_.clear();
  pending_ranges_.clear();
  return st;
}

absl::Status PageMapper::Finish(Tracee* t) {
  CRLIB_RETURN_IF_ERROR(Flush(t));
  std::vector<Tracee::RemoteCall> calls;
  std::vector<VmFlagCall> why;
  for (const VmaRecord* v : touched_) {
    for (VmFlagCall& c : VmFlagCalls(*v)) {
      calls.push_back(c.call);
      why.push_back(std::move(c));
    }
  }
  touched_.clear();
  return t->RunBatch(scratch_.first, scratch_.second - scratch_.first, absl::MakeSpan(calls),
                     [&](size_t i) {
                       return absl::StrFormat("%s again after mapping image pages: mapping "
                                              "0x%x-0x%x %s",
                                              why[i].name, why[i].vma->start, why[i].vma->end,
                                              why[i].vma->name);
                     });
}

bool MapsCrlibImage(pid_t pid, const sys::MapsEntry& m, ImageFileCache* cache) {
  if (m.shared || m.inode == 0 || m.path.empty() || m.path[0] == '[') return false;
  const auto key = std::make_pair(static_cast<uint64_t>(makedev(m.dev_major, m.dev_minor)), m.inode);
  if (auto it = cache->find(key); it != cache->end()) return it->second;
  // The mapping's own file, whatever its path says now (it may be
  // removed, or another file may have its name).
  const std::string path = absl::StrFormat("/proc/%d/map_files/%x-%x", pid, m.start, m.end);
  sys::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0 && (errno == EPERM || errno == EACCES)) {
    // map_files needs CAP_CHECKPOINT_RESTORE: an unprivileged dump (a
    // self-checkpoint) opens the path, if it still names that file.
    fd.fd = open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd.fd >= 0 && (fstat(fd.fd, &st) != 0 || st.st_ino != m.inode ||
                       st.st_dev != makedev(m.dev_major, m.dev_minor))) {
      close(fd.release());
    }
  }
  if (fd.fd < 0) {
    // Unreadable here: not an image we can tell, recorded as the file
    // mapping it shows.
    (*cache)[key] = false;
    return false;
  }
  FileHeader h{};
  bool image = pread(fd.fd, &h, sizeof(h), 0) == static_cast<ssize_t>(sizeof(h)) &&
               memcmp(h.magic, kImageMagic, sizeof(h.magic)) == 0 &&
               h.header_length >= sizeof(h) && h.header_length <= kMaxHeaderLength;
  if (image) {
    // The magic and a header whose checksum holds: a crlib image.
    std::vector<uint8_t> header(h.header_length);
    image = pread(fd.fd, header.data(), header.size(), 0) == static_cast<ssize_t>(header.size());
    if (image) {
      memset(header.data() + offsetof(FileHeader, header_crc), 0, sizeof(uint32_t));
      image = Crc32c(0, header.data(), header.size()) == h.header_crc;
    }
  }
  (*cache)[key] = image;
  return image;
}

}  // namespace crlib
