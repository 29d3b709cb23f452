// Mapped restore: the pages of a mappable image read from a regular file
// are mapped MAP_PRIVATE|MAP_FIXED from the image file at their addresses
// instead of being copied, so that a restore takes time in proportion to
// the runs of pages, not to their bytes, and every process restored from
// one image shares its pages in the page cache until it writes them.
//
// The other side of it, at a dump: memory a mapped restore gave a process
// shows as a private mapping of the image file; it is recognized and
// stored as the anonymous memory it was, every page of it, so that one
// image never depends on another (docs/CHECKPOINT.md, "Mapped restore").
#ifndef CRLIB_MM_MAPPED_RESTORE_H_
#define CRLIB_MM_MAPPED_RESTORE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/image_reader.h"
#include "image/process_image.h"
#include "remote/tracee.h"
#include "mm/memory_restore.h"
#include "sys/proc.h"

namespace crlib {

// OK when pages of the image that `reader` reads from `fd` (whose fstat is
// `file`) may be mapped: a mappable image, from a regular file read from
// its start, that nobody is allowed to write (no write bit in its mode)
// and that no process has open for writing now. Otherwise
// FailedPrecondition saying why, for the caller to copy the pages instead:
// a write to a mapped image would change the memory of every process
// restored from it, and a truncation would kill them with SIGBUS.
absl::Status CheckMappedRestore(const ImageReader& reader, int fd, const struct stat& file);

// Maps the page records of one process into its tracee. The image file
// is `fd` in the restorer and, inherited, in the tracee. Records are taken
// in image order (a page stored twice is the later record's): a run that
// lies in private anonymous memory is mapped when it is large enough and
// the process's VMA budget allows; any other run (in a private file
// mapping, the stack, locked, KSM or wipe-on-fork memory, memory shared
// with the parent or with a child, or a small one) is copied. Not
// thread-safe.
class PageMapper {
 public:
  // `forked` (ForkedRanges of the tree) is borrowed.
  PageMapper(const ProcessImage& image, int fd, uint64_t page_size, AddressRange scratch,
             const std::vector<AddressRange>& forked);

  // Maps or copies the pages of `record` (decoded as `pages`, runs
  // validated) and returns true; or returns false, with nothing of it
  // mapped, for the caller to copy the whole record through its checksummed
  // read (the pending maps that the record's pages overlap are made first,
  // so the copy lands over them). Pages that are mapped are not checksummed
  // (docs/FORMAT.md allows it), and neither are those copied beside them.
  absl::StatusOr<bool> Load(Tracee* t, const Record& record, const PagesRecord& pages);

  // Makes the pending maps, then gives the VMAs that were mapped into their
  // madvise flags again (a new mapping starts without them).
  absl::Status Finish(Tracee* t);

  uint64_t pages_mapped() const { return pages_mapped_; }

 private:
  struct Piece {
    uint64_t address, pages, offset;  // offset: in the image file
    const VmaRecord* vma;             // nullptr: copy it
  };
  // Whether pages of `v` may be mapped from the image: private anonymous
  // memory without flags a file mapping cannot carry, that no child keeps.
  bool Mappable(const VmaRecord& v) const;
  absl::Status Flush(Tracee* t);
  absl::Status FlushIfOverlapping(Tracee* t, uint64_t start, uint64_t end);
  absl::Status Copy(Tracee* t, const Piece& piece);

  const ProcessImage& image_;
  const std::vector<AddressRange>& forked_;
  int fd_;
  uint64_t page_size_;
  AddressRange scratch_;
  uint64_t pieces_left_;  // maps this process may still get (vm.max_map_count)
  std::vector<Tracee::RemoteCall> pending_;
  std::vector<const VmaRecord*> pending_vma_;
  std::map<uint64_t, uint64_t> pending_ranges_;  // start -> end, merged
  std::vector<const VmaRecord*> touched_;        // VMAs mapped into, to advise again
  std::vector<uint8_t> buffer_;
  uint64_t pages_mapped_ = 0;
};

// The address ranges of the tree's VMAs that a child keeps from its parent
// at fork (kVmaInherited), in any process. They are never mapped from the
// image: the child's MADV_DONTNEED of a page it lacks must leave it zero,
// where a mapping of the image would show the parent's page again.
std::vector<AddressRange> ForkedRanges(const TreeImage& tree);

// Whether mapping `m` of stopped process `pid` is memory a mapped restore
// gave it: a private mapping of a file that begins with a valid crlib
// image header (read through /proc/PID/map_files, or by its path, checked
// to be the same inode, without the right to map_files). A file that
// cannot be read either way is taken as no image. `cache` remembers the
// answer per file (device, inode) for one dump.
using ImageFileCache = std::map<std::pair<uint64_t, uint64_t>, bool>;
bool MapsCrlibImage(pid_t pid, const sys::MapsEntry& m, ImageFileCache* cache);

}  // namespace crlib

#endif  // CRLIB_MM_MAPPED_RESTORE_H_
