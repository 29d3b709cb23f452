// Restore of what each thread holds for itself (signal stack, rseq area,
// clear_child_tid, robust futex list, name, private signal queue,
// credentials, signal mask, CPU state), and creation of a process's other
// threads with their recorded TIDs. Everything here runs in a restored
// process that is traced and stopped; errors name the step and the thread.
#ifndef CRLIB_TASK_THREAD_RESTORE_H_
#define CRLIB_TASK_THREAD_RESTORE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/records.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

// What a thread already has before RestoreThreadAttributes, so that calls
// that would change nothing are skipped.
struct ThreadStart {
  std::string comm;  // empty: unknown, always set
  uint64_t clear_child_tid = 0;
  bool no_sigaltstack = false;  // true for a thread clone() created
};

// Loads, with remote calls in `t`, the attributes of `thread` that only a
// thread can set for itself. `scratch` is writable memory of the process
// for the calls' arguments. The private signal queue is filled here too.
absl::Status RestoreThreadAttributes(Tracee* t, pid_t pid, const ThreadImage& thread,
                                     const ThreadStart& start, uint64_t scratch);

// Creates every thread of `image` but the main one, `main`, and loads its
// attributes. Each is a remote clone3 in `main` with set_tid = its recorded
// TID and CLONE_THREAD and friends; it starts traced and stopped before any
// user code (PTRACE_O_TRACECLONE), with `main`'s signal mask, and is
// appended to `threads` before anything else can fail, so that the caller
// can kill them all.
absl::Status CreateThreads(Tracee* main, const ProcessImage& image, uint64_t scratch,
                           std::vector<std::unique_ptr<Tracee>>* threads);

// Queues the signals of `rec` from inside `t`, which lets them keep their
// siginfo: into t's own queue, or the process's for a shared record.
absl::Status QueueSignals(Tracee* t, pid_t pid, const PendingSignalsRecord& rec, uint64_t scratch);

// The process's credentials (IDs, groups, capabilities, securebits), set
// in `t` with remote calls whose arguments go to `scratch`: the kernel
// keeps credentials per thread. After this the thread may lack rights
// that the other steps need.
absl::Status RestoreCredentials(Tracee* t, const ProcessRecord& p, uint64_t scratch);

// xstate, signal mask, then registers: the thread's last step before it
// may run.
absl::Status RestoreCpuState(Tracee* t, const ThreadImage& thread);

// The process's resource limits, set from outside with prlimit.
absl::Status RestoreRlimits(pid_t pid, const ProcessImage& image);

// The interval timers (setitimer in `t`; arguments at `scratch`).
absl::Status RestoreItimers(Tracee* t, const ProcessImage& image, uint64_t scratch);

// The image's signal handlers, and SIG_DFL for any other `t` has (it is a
// copy of its creator): rt_sigaction in `t`, arguments at `scratch`.
absl::Status RestoreSignalHandlers(Tracee* t, const ProcessImage& image, uint64_t scratch);

// "restore step 'NAME' of thread TID: <message>", or OK.
absl::Status ThreadStep(const char* name, pid_t tid, absl::Status status);

}  // namespace crlib

#endif  // CRLIB_TASK_THREAD_RESTORE_H_
