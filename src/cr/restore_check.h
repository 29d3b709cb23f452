// Everything a restore checks before it creates anything: shared by
// RestoreProcess, `crlib restore --check` (CheckRestore) and a dump, which
// checks the image it is writing before it may kill the process.
#ifndef CRLIB_CR_RESTORE_CHECK_H_
#define CRLIB_CR_RESTORE_CHECK_H_

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "files/file_restore.h"
#include "image/process_image.h"

namespace crlib {


struct PreflightOptions {
  // Restore whatever credentials the image claims (CheckImageTrust).
  bool trust_image = false;
  // The process the image was taken from still runs and holds the image's
  // PID and TIDs; they count as free. A dump checks its own image so,
  // before it kills that process.
  bool original_alive = false;
  // The restore creates a new PID namespace: the recorded PIDs are free.
  bool pid_namespace = false;
  // The caller's fds for the image's external files, by key (--inherit-fd).
  std::map<std::string, int> inherit_fds;
  // External files need no fd from the caller: a dump checks its own image
  // so, and nobody could give one there.
  bool accept_unmapped_externals = false;
  // Only a check (`crlib restore --check`, a dump's check of its own
  // image): nothing outside is changed, so sockets are made but not bound,
  // connected or filled (files/socket_restore.h).
  bool check_only = false;
};

// What the checks leave for the restore to use.
struct RestorePreparation {
  OpenedFiles files;         // every file the process needs, already open
  uint64_t scratch = 0;      // a free range of kRestoreScratchBytes in the child
};

// Runs every check that needs nothing created, in order: CPU family,
// xsave features and each thread's CPU records, page size, credentials
// against `image_file`'s owner, PID and TIDs free, vDSO layout, locked
// memory, guard regions, SysV segments, rlimits; then opens every file with the credentials of
// the first process holding it (OpenedFiles::OpenTree) and picks the scratch range. The first failure is returned, one line naming
// the problem; nothing outside this process is changed.
absl::StatusOr<RestorePreparation> PrepareRestore(const TreeImage& tree,
                                                  const struct stat& image_file,
                                                  const PreflightOptions& options);

// The check of a dump: `records` is the image as written so far, every
// record up to the page data (ImageWriter::CopyPrefix), which is checked
// as a restore on this machine would, while the dumped processes still
// hold their PIDs. The image file will be owned by the caller.
absl::Status CheckDumpedImage(absl::Span<const uint8_t> records);

}  // namespace crlib

#endif  // CRLIB_CR_RESTORE_CHECK_H_
