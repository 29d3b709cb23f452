// How the kernel schedules each thread: policy, real-time priority, nice,
// SCHED_DEADLINE parameters, utilization clamps, CPU affinity and I/O
// priority. All of it is read and set from outside, by TID.
#ifndef CRLIB_TASK_SCHEDULE_H_
#define CRLIB_TASK_SCHEDULE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include "absl/status/statusor.h"
#include "core/records.h"
#include "image/process_image.h"

namespace crlib {

// Thread `tid`'s scheduling, as sched_getattr, sched_getaffinity and
// ioprio_get report it.
absl::StatusOr<ScheduleRecord> CaptureSchedule(pid_t tid);

// Before anything is created: each thread's scheduling must be one the
// image's process could set for itself (its capabilities and its
// RLIMIT_RTPRIO / RLIMIT_NICE), unless the image vouches for more (owned
// by root, or `trusted`: docs/SECURITY.md), and its CPUs must include one
// we may run on.
absl::Status CheckSchedule(const ProcessImage& image, const struct stat& image_file,
                           bool trusted);

// Gives thread `tid` the scheduling of `r`; only what differs from what
// it has is set.
absl::Status RestoreSchedule(pid_t tid, const ScheduleRecord& r);

}  // namespace crlib

#endif  // CRLIB_TASK_SCHEDULE_H_
