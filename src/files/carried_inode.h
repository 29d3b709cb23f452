// Inodes whose contents the image carries (InodeRecord): the shmem inode
// of shared anonymous memory, memfds, SysV segments and deleted files.
// Every fd and mapping of one such inode refers to one record, found in
// the registry by (dev, inode); the contents are saved once, holes left
// out, and restored into one inode that every fd and mapping shares.
#ifndef CRLIB_FILES_CARRIED_INODE_H_
#define CRLIB_FILES_CARRIED_INODE_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/context.h"
#include "core/shared_objects.h"
#include "core/image_reader.h"
#include "core/records.h"
#include "image/staged_inode.h"

namespace crlib {

// Default of CheckpointOptions::deleted_file_limit: data bytes (holes do
// not count) a deleted file may hold for the dump to carry it.
inline constexpr uint64_t kDefaultDeletedFileLimit = uint64_t{1} << 30;

// What the dump checks before it writes anything.
struct CarriedInodeFacts {
  struct stat st{};
  uint32_t seals = 0;       // memfd
  uint64_t data_bytes = 0;  // bytes outside holes
  bool hugetlb = false;
};

// Looks at the inode without reading its contents.
absl::StatusOr<CarriedInodeFacts> InspectCarriedInode(const CarriedInodeSource& source);

// Refuses (Unimplemented, naming `source.what`) what the image cannot
// carry: a deleted file with more than `deleted_file_limit` data bytes, a
// hugetlbfs inode, a deleted inode that is not a regular file.
absl::Status CheckCarriedInode(const CarriedInodeSource& source, const CarriedInodeFacts& facts,
                               uint64_t deleted_file_limit);

// The ref of the inode record for `source`, writing it with the contents
// under `parent` the first time. `sysv` fills the SysV fields.
absl::StatusOr<ObjectRef> InternCarriedInode(Context* ctx, const CarriedInodeSource& source,
                                             ObjectRef parent);

// Gives a staged shmem or memfd inode its recorded owner, refusing
// (PermissionDenied, before the point of no return) an owner the image's
// credentials could not give. Runs with the restorer's own rights, before
// OpenCarriedInode.
absl::Status ChownStagedInode(const InodeImage& inode, const ProcessRecord& p);

// The restored inode, open read-write, for fds to reopen and mappings to
// map, with its contents and owner. Runs with the image's credentials
// (`fsuid`, for messages); SysV segments are not opened here (-1).
absl::StatusOr<int> OpenCarriedInode(const InodeImage& inode, uint32_t fsuid);

// The recorded mode, times and seals, on `fd` from OpenCarriedInode, once
// every fd of the inode is reopened: the process opened them before a
// chmod that now forbids it, say.
absl::Status FinishCarriedInode(const InodeImage& inode, int fd, uint32_t fsuid);

}  // namespace crlib

#endif  // CRLIB_FILES_CARRIED_INODE_H_
