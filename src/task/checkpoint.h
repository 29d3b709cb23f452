// Checkpoint of a running process into an image.
#ifndef CRLIB_TASK_CHECKPOINT_H_
#define CRLIB_TASK_CHECKPOINT_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "core/context.h"

namespace crlib {

struct CheckpointOptions {
  // Resume the process after the image is complete; otherwise kill it.
  bool leave_running = false;
};

// Seizes `pid`, writes its image to `image_path` (visible only once
// complete), then kills or resumes it. On any failure the process is
// resumed untouched and no file appears under `image_path`. Statistics go
// to ctx->stats().
absl::Status CheckpointProcess(Context* ctx, pid_t pid, const std::string& image_path,
                               const CheckpointOptions& options);

}  // namespace crlib

#endif  // CRLIB_TASK_CHECKPOINT_H_
