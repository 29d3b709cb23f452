// Checkpoint of a running process into an image.
#ifndef CRLIB_CR_CHECKPOINT_H_
#define CRLIB_CR_CHECKPOINT_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/context.h"
#include "files/carried_inode.h"

namespace crlib {

struct CheckpointOptions {
  // Resume the process after the image is complete; otherwise kill it.
  bool leave_running = false;
  // Copy the root process's memory while it runs, stopping it only for
  // what is left (docs/CHECKPOINT.md, "Live dumps"); needs an image file.
  // False: stopped for the whole dump (`crlib dump --stopped`).
  bool live = true;
  // Keep tracking the process's writes after a dump that leaves it
  // running, for a later dump with `parent_image` (`crlib dump --track`;
  // docs/CHECKPOINT.md, "Incremental dumps"). Needs a live dump.
  bool track = false;
  // Carry established TCP connections (`crlib dump --tcp-established`):
  // held still from the dump to the restore (files/tcp_connection.h).
  // Without it they are refused.
  bool tcp_established = false;
  // An image of this process from a dump that kept tracking: only the
  // pages written since go into this image, which names it as its parent
  // (`crlib dump --parent`). Left running, the process stays tracked.
  std::string parent_image;
  // Descriptors left out of the image (and not checked for support): the
  // self-checkpoint's rendezvous pipe. Restore leaves those numbers closed.
  std::vector<int> skip_fds;
  // Children of the process that are not part of the image: the
  // self-checkpoint's helper, which does the dump.
  std::vector<pid_t> skip_children;
  // Threads (by TID) stopped inside a system call that the image records
  // as if that call had just returned the value, with no restart: the
  // self-checkpoint's calling thread, blocked in read() on its rendezvous
  // pipe, learns it was restored from the value.
  std::map<pid_t, int64_t> syscall_results;
  // Write the image to this borrowed fd (a pipe, socket or file) instead
  // of creating `image_path`, which then only names it in messages.
  int image_fd = -1;
  // Bytes of data (holes not counted) a deleted file may hold for the
  // image to carry it; above, the dump is refused. `crlib dump
  // --deleted-file-limit`.
  uint64_t deleted_file_limit = kDefaultDeletedFileLimit;
};

// InvalidArgument unless `options` describe an image that can be written.
absl::Status CheckOptions(const Options& options);

// Seizes `pid`, writes its image to `image_path` (visible only once
// complete; an existing FIFO or device there is written to as a stream),
// then kills or resumes it. On any failure the process is resumed
// untouched and no file appears under `image_path`. Zombies, processes
// traced by another tracer and processes in another PID namespace are
// refused before anything touches them. A process stopped by a signal is
// dumped stopped, and stays stopped with --leave-running. Statistics go to
// ctx->stats().
absl::Status CheckpointProcess(Context* ctx, pid_t pid, const std::string& image_path,
                               const CheckpointOptions& options);

}  // namespace crlib

#endif  // CRLIB_CR_CHECKPOINT_H_
