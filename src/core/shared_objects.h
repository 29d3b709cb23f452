// Objects one family of kernel objects records and other families refer
// to, reached through the Context instead of through the owner's functions
// (linux-cr's checkpoint_obj / restore_obj): memory's VMAs name files on
// disk and carried inodes, which the files family writes and reopens.
#ifndef CRLIB_CORE_SHARED_OBJECTS_H_
#define CRLIB_CORE_SHARED_OBJECTS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/records.h"

namespace crlib {

class Context;

// Where the dumper finds an inode of a stopped process.
struct CarriedInodeSource {
  InodeKind kind = InodeKind::kDeletedFile;
  std::string open_path;  // /proc/PID/fd/N or /proc/PID/map_files/START-END
  std::string what;       // "fd 5 (/tmp/x (deleted))": for messages
  std::string name;       // the record's name
  uint64_t dev = 0, inode = 0;
};

// At a dump: writes each shared object the first time a family meets it
// (the registry tells), under `parent`, and returns its ref every time.
// The orchestration sets the owner's implementation on the Context.
class SharedObjectWriter {
 public:
  virtual ~SharedObjectWriter() = default;
  // The file record of a file on disk (a mapped file, the executable) at
  // `path`, identified by `dev`/`inode`.
  virtual absl::StatusOr<ObjectRef> InternFile(Context* ctx, const std::string& path,
                                               uint64_t dev, uint64_t inode, ObjectRef parent) = 0;
  // The inode record, with its contents, of an inode the image carries.
  virtual absl::StatusOr<ObjectRef> InternCarriedInode(Context* ctx,
                                                       const CarriedInodeSource& source,
                                                       ObjectRef parent) = 0;
};

// At a restore: the restorer's own descriptor of each file and carried
// inode already recreated, which the restored processes inherit.
class RestoredObjects {
 public:
  virtual ~RestoredObjects() = default;
  // The descriptor of file or inode record `ref`; -1 if there is none.
  virtual int fd(ObjectRef ref) const = 0;
};

}  // namespace crlib

#endif  // CRLIB_CORE_SHARED_OBJECTS_H_
