#include "image/staged_inode.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_format.h"
#include "core/status.h"
#include "sys/kernel.h"
#include "sys/unique_fd.h"

namespace crlib {

absl::StatusOr<InodeImage> StageCarriedInode(ImageReader* reader, const Record& rec) {
  InodeImage image;
  image.ref = rec.header.self;
  CRLIB_ASSIGN_OR_RETURN(image.record, reader->Decode<InodeRecord>(rec));
  const InodeRecord& r = image.record;
  uint64_t expected = 0;
  for (const DataRun& run : r.runs) {
    if (run.offset > r.size || run.length > r.size - run.offset) {
      return absl::DataLossError(absl::StrFormat(
          "inode record %d (%s): run %d+%d is past its size %d", rec.index, r.name, run.offset,
          run.length, r.size));
    }
    expected += run.length;
  }
  // A dump's copy of its own records (kRecordBulkElided) has no contents:
  // the inode is checked and made, empty.
  if (!(rec.header.flags & kRecordBulkElided) && expected != rec.header.bulk_length) {
    return absl::DataLossError(absl::StrFormat(
        "inode record %d (%s): %d bytes of contents for runs of %d", rec.index, r.name,
        rec.header.bulk_length, expected));
  }
  sys::UniqueFd fd;
  switch (static_cast<InodeKind>(r.kind)) {
    case InodeKind::kSharedAnonymous: {
      // The inode MAP_SHARED|MAP_ANONYMOUS creates (it shows as
      // "/dev/zero (deleted)"), reached through map_files.
      if (r.size == 0 || r.size % static_cast<uint64_t>(sysconf(_SC_PAGESIZE))) {
        return absl::DataLossError(
            absl::StrFormat("inode record %d: shared memory of size %d", rec.index, r.size));
      }
      void* p = mmap(nullptr, r.size, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) return Errno("mmap of %d bytes of shared memory", r.size);
      const uint64_t a = reinterpret_cast<uint64_t>(p);
      const std::string path = absl::StrFormat("/proc/self/map_files/%x-%x", a, a + r.size);
      fd.fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
      absl::Status st = fd.fd < 0 ? Errno("open %s (needs CAP_SYS_ADMIN or "
                                          "CAP_CHECKPOINT_RESTORE)",
                                          path)
                                  : absl::OkStatus();
      munmap(p, r.size);
      CRLIB_RETURN_IF_ERROR(st);
      break;
    }
    case InodeKind::kMemfd: {
      unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
      fd.fd = memfd_create(r.name.c_str(), flags | sys::kMfdExec);
      if (fd.fd < 0 && errno == EINVAL) fd.fd = memfd_create(r.name.c_str(), flags);
      if (fd.fd < 0) return Errno("memfd_create(%s)", r.name);
      break;
    }
    case InodeKind::kDeletedFile:
    case InodeKind::kSysvShm:
      fd.fd = memfd_create("crlib-staging", MFD_CLOEXEC);
      if (fd.fd < 0) return Errno("memfd_create(crlib-staging) for %s", r.name);
      break;
    default:
      return absl::DataLossError(
          absl::StrFormat("inode record %d (%s) has unknown kind %d", rec.index, r.name, r.kind));
  }
  if (static_cast<InodeKind>(r.kind) != InodeKind::kSharedAnonymous &&
      ftruncate(fd.fd, static_cast<off_t>(r.size)) != 0) {
    return Errno("ftruncate of the restored %s to %d bytes", r.name, r.size);
  }
  // The bulk arrives in chunks; each goes where its run says.
  size_t run = 0;
  uint64_t in_run = 0;
  CRLIB_RETURN_IF_ERROR(reader->ReadBulkChunks(1 << 20, [&](absl::Span<const uint8_t> chunk) {
    while (!chunk.empty()) {
      while (run < r.runs.size() && in_run == r.runs[run].length) {
        ++run;
        in_run = 0;
      }
      if (run == r.runs.size()) return absl::DataLossError("inode contents past their runs");
      const uint64_t n = std::min<uint64_t>(chunk.size(), r.runs[run].length - in_run);
      ssize_t w = pwrite(fd.fd, chunk.data(), n, static_cast<off_t>(r.runs[run].offset + in_run));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Errno("write of the restored %s at %d", r.name, r.runs[run].offset + in_run);
      in_run += static_cast<uint64_t>(w);
      chunk.remove_prefix(static_cast<size_t>(w));
    }
    return absl::OkStatus();
  }));
  image.staged = std::shared_ptr<const int>(new int(fd.release()), [](const int* p) {
    close(*p);
    delete p;
  });
  return image;
}

}  // namespace crlib
