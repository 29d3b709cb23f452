// Checkpoint of what the task family owns in a stopped process: each
// thread's own state (signal stack, rseq, robust list, clear_child_tid,
// name, private signal queue) and the process's credentials and IDs as
// /proc shows them.
#ifndef CRLIB_TASK_THREAD_CAPTURE_H_
#define CRLIB_TASK_THREAD_CAPTURE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/records.h"
#include "remote/tracee.h"

namespace crlib {

// A thread's name. An error, not "": an empty name in the image would
// silently rename the restored thread.
absl::StatusOr<std::string> ThreadComm(pid_t pid, pid_t tid);

// What the process shows in /proc/PID/status (`status`, its text): IDs,
// groups, umask, parent, capabilities.
absl::Status ParseStatus(absl::string_view status, ProcessRecord* p);

// The signals queued for thread `tid` (`shared`: for its process), read
// with PTRACE_PEEKSIGINFO without dequeuing them.
absl::StatusOr<PendingSignalsRecord> PeekSignals(pid_t tid, bool shared);

// A thread's own state that only the thread itself can report
// (sigaltstack, clear_child_tid), read with remote calls that leave their
// results at `buf` (a scratch page), plus what ptrace and /proc show.
absl::StatusOr<ThreadRecord> CaptureThread(Tracee* t, pid_t pid, uint64_t buf);

}  // namespace crlib

#endif  // CRLIB_TASK_THREAD_CAPTURE_H_
