// Checkpoint of terminals: pseudo-terminal pairs whose master is the
// process's (/dev/ptmx and /dev/pts/N), /dev/tty when the controlling
// terminal is such a pair, and the refusal of terminals that lead outside
// on fds above 2 (fds 0-2 are reconnected to the restorer's own).
#ifndef CRLIB_FILES_TTY_CAPTURE_H_
#define CRLIB_FILES_TTY_CAPTURE_H_

#include <sys/types.h>

#include <vector>

#include "absl/status/statusor.h"
#include "core/context.h"
#include "core/records.h"
#include "files/file_capture.h"

namespace crlib {

// Gives the terminal fds of `fds` (all of stopped process `pid`) their
// FileKind and tty index, without changing anything in the process. Fails
// with Unimplemented naming the fd for a terminal on fd > 2 that leads
// outside the process, and with FailedPrecondition for bytes queued in a
// pair (they cannot be read without consuming them).
absl::Status ClassifyTerminals(pid_t pid, std::vector<FdInfo>* fds);

// The ref of the tty record for terminal fd `info` (kPtyMaster,
// kPtySlave or kDevTty), writing it under `table` the first time: termios,
// window size, lock, packet mode, controlling terminal and foreground group.
absl::StatusOr<ObjectRef> InternTty(Context* ctx, pid_t pid, const std::vector<FdInfo>& fds,
                                    const FdInfo& info, ObjectRef table);

}  // namespace crlib

#endif  // CRLIB_FILES_TTY_CAPTURE_H_
