// Restore of a process from an image.
#ifndef CRLIB_TASK_RESTORE_H_
#define CRLIB_TASK_RESTORE_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "core/context.h"

namespace crlib {

// Restores the process in `image_path` with its recorded PID, as a child of
// the calling process, and lets it run. Every check (format, CPU, vDSO,
// PID, files) runs before anything is created; a failure after that kills
// the half-built process. Returns its PID.
absl::StatusOr<pid_t> RestoreProcess(Context* ctx, const std::string& image_path);

}  // namespace crlib

#endif  // CRLIB_TASK_RESTORE_H_
