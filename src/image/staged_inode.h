// The inodes an image carries (InodeRecord), as restore needs them: their
// contents are staged while the image is read, in memfds and shmem inodes
// of the restoring process, never in its heap. The files family turns a
// staged inode into the restored one (files/carried_inode.h).
#ifndef CRLIB_IMAGE_STAGED_INODE_H_
#define CRLIB_IMAGE_STAGED_INODE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/image_reader.h"
#include "core/records.h"

namespace crlib {

// A carried inode as restore needs it.
struct InodeImage {
  ObjectRef ref = 0;
  InodeRecord record;
  // The contents, staged in this process while the image was read (fd;
  // closed with the last copy): for shared anonymous memory and memfds the
  // restored inode itself, else a memfd the restore copies from.
  std::shared_ptr<const int> staged;
};

// Reads the record's bulk from `reader` (the current record) into a new
// staged inode; only the runs are written, so holes stay holes.
absl::StatusOr<InodeImage> StageCarriedInode(ImageReader* reader, const Record& rec);

}  // namespace crlib

#endif  // CRLIB_IMAGE_STAGED_INODE_H_
