// Restore of pidfds: they refer to processes of the restored tree, so
// they are made by the processes that hold them, once every process
// exists, not opened in the restorer like other files.
#ifndef CRLIB_FILES_PIDFD_RESTORE_H_
#define CRLIB_FILES_PIDFD_RESTORE_H_

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/records.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

// A pidfd: not opened by OpenedFiles (its process does not exist yet, or,
// for a dead one, would be of our PID namespace), but made in its holder
// by RestorePidfds.
inline bool MadeInProcess(const FileRecord& f) {
  return static_cast<FileKind>(f.kind) == FileKind::kPidfd;
}

// Checks that every pidfd of `images` (every process of the restored
// tree) refers to a process of the tree, the dump's promise, before
// anything is created.
absl::Status CheckPidfds(absl::Span<const ProcessImage* const> images);

// In restored process `t`, whose other descriptors are in place, once
// every process of the tree exists (zombies too): its pidfds, each by
// pidfd_open in `t`, whose PID namespace sees the recorded PIDs, with the
// recorded flags. A dead process's is made of a stand-in that we start in
// that namespace and kill and reap once the pidfd is made: it refers to a
// process that has exited and been reaped, of the holder's namespace.
// Descriptors of one description stay one; a description shared with
// another process becomes one per process.
absl::Status RestorePidfds(Tracee* t, const ProcessImage& image);

}  // namespace crlib

#endif  // CRLIB_FILES_PIDFD_RESTORE_H_
