// Process and thread attributes beyond credentials and signals: POSIX
// timers, child-subreaper, oom_score_adj, THP-disable, membarrier
// registrations, loginuid, dumpable, and per thread the parent-death
// signal, timer slack, no_new_privs and seccomp.
//
// Capture runs remote calls in a seized thread at its recovering site
// (the dump's AskProcess), with `buf` a scratch page of the target's for
// results; it refuses, before anything is written, what restore could not
// bring back exactly. Restore comes in four steps whose order matters:
// CheckAttributes before the point of no return, RestoreProcessAttributes
// once every thread exists (before the credentials: loginuid needs
// CAP_AUDIT_CONTROL), RestoreAttributesAfterCredentials (a credential
// change resets dumpable and the parent-death signal; no_new_privs is
// one-way), and RestoreSeccomp as the very last system calls of each
// thread (a filter may block any later call).
#ifndef CRLIB_TASK_ATTRIBUTES_H_
#define CRLIB_TASK_ATTRIBUTES_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/records.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

// Process-wide attributes of stopped process `pid`, whose main thread `t`
// is borrowed at its site: remote prctl/membarrier calls, /proc files.
absl::StatusOr<ProcessAttributesRecord> CaptureProcessAttributes(Tracee* t, uint64_t buf);

// The process's timer_create timers (/proc/PID/timers), with remote
// timer_gettime/timer_getoverrun calls in `t`. `tids` are the process's
// threads: a timer that names another task (an exited thread as its
// SIGEV_THREAD_ID target, another process's CPU clock) is refused.
absl::StatusOr<PosixTimersRecord> CapturePosixTimers(Tracee* t, uint64_t buf,
                                                     absl::Span<const pid_t> tids);

// What thread `t` (borrowed at its site) keeps for itself.
absl::StatusOr<ThreadAttributesRecord> CaptureThreadAttributes(Tracee* t, pid_t pid, uint64_t buf);

// The seccomp filters of the threads `tids` (ptrace requests only), given
// their attributes and the process's effective capabilities. nullopt when
// no thread is in filter mode. Refuses what restore could not install
// exactly: filters that differ between threads, a SECCOMP_RET_USER_NOTIF
// filter (its listener would be lost), strict and filter mode mixed, a
// filter without no_new_privs nor CAP_SYS_ADMIN, syscall user dispatch.
absl::StatusOr<std::optional<SeccompRecord>> CaptureSeccomp(
    absl::Span<const pid_t> tids, absl::Span<const ThreadAttributesRecord> attributes,
    uint64_t cap_effective);

// Lets crlib's remote calls in the threads of `threads` that run under
// seccomp (strict or filter) pass unfiltered until they are detached: a
// filter could fail them, or kill the process. Refuses, naming
// CAP_SYS_ADMIN, when crlib cannot.
absl::Status SuspendSeccomp(absl::Span<const std::unique_ptr<Tracee>> threads);

// Checks, before anything is created, that this restorer can set every
// attribute of `image`, naming the capability or kernel feature missing.
absl::Status CheckAttributes(const ProcessImage& image);

// After every thread exists, before the credentials, in the main thread
// `main`: loginuid, oom_score_adj, child-subreaper, THP-disable,
// membarrier registrations and the POSIX timers with their IDs.
absl::Status RestoreProcessAttributes(Tracee* main, const ProcessImage& image, uint64_t scratch);

// After the credentials: per thread parent-death signal, timer slack and
// no_new_privs, then the process's dumpable flag.
absl::Status RestoreAttributesAfterCredentials(absl::Span<const std::unique_ptr<Tracee>> threads,
                                               const ProcessImage& image);

// The last system calls of every thread: seccomp filters (installed in the
// main thread with TSYNC, so every thread shares them as before) or strict
// mode. Arguments are staged in the process's own memory through
// /proc/PID/mem and put back after, so it needs no scratch area.
absl::Status RestoreSeccomp(absl::Span<const std::unique_ptr<Tracee>> threads,
                            const ProcessImage& image);

}  // namespace crlib

#endif  // CRLIB_TASK_ATTRIBUTES_H_
