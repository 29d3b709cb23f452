// Process state that restore does not rebuild and that would otherwise be
// lost without a trace: found at dump, before anything is written, and
// refused with an error naming it (docs/CHECKPOINT.md, "Refused at dump").
// What no one can see from outside (SysV semaphore undo lists, the pkey
// allocation bitmap ...) is listed there as not carried instead.
#ifndef CRLIB_TASK_UNCARRIED_STATE_H_
#define CRLIB_TASK_UNCARRIED_STATE_H_

#include <sys/types.h>

#include <cstdint>

#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "remote/tracee.h"

namespace crlib {

// What /proc shows of each thread in `tids` of process `pid`: speculation
// controls set with PR_SET_SPECULATION_CTRL, PR_SET_IO_FLUSHER (a task
// flag in stat), and memory policies (set_mempolicy, mbind) in numa_maps.
// `main_numa_maps`: the main thread's numa_maps read shortly before the
// stop (a live dump, whose maps did not change since): its mappings'
// policies are taken from it and only the task policy is read now (the
// whole file walks every page table: 50 ms per GiB).
absl::Status RefuseUncarriedProcState(pid_t pid, absl::Span<const pid_t> tids,
                                      const std::string* main_numa_maps = nullptr);

// Memory-deny-write-execute (PR_SET_MDWE), asked with a remote prctl of
// thread `t` stopped at a syscall site: before the dump maps its scratch
// (whose call sites it would forbid), and a restore could not apply it
// until its own executable scratch is gone.
absl::Status RefuseMdwe(Tracee* t);

// What only thread `t` itself can report, with remote calls at its site
// and `buf` (scratch memory of the tracee's, 8 bytes): PR_GET_TSC. Called
// for every thread.
absl::Status RefuseSelfOnlyState(Tracee* t, uint64_t buf);

}  // namespace crlib

#endif  // CRLIB_TASK_UNCARRIED_STATE_H_
