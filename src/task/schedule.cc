#include "task/schedule.h"

#include <linux/capability.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/str_format.h"
#include "core/status.h"
#include "sys/kernel.h"

namespace crlib {
namespace {

absl::StatusOr<sys::SchedAttr> GetAttr(pid_t tid) {
  sys::SchedAttr a{};
  if (syscall(SYS_sched_getattr, tid, &a, sizeof(a), 0) != 0) {
    return Errno("sched_getattr(%d)", tid);
  }
  return a;
}

absl::StatusOr<std::vector<uint64_t>> GetAffinity(pid_t tid) {
  std::vector<uint64_t> mask(16);  // 1024 CPUs; grown below if needed
  for (;;) {
    long n = syscall(SYS_sched_getaffinity, tid, mask.size() * sizeof(uint64_t), mask.data());
    if (n >= 0) {
      mask.resize((static_cast<size_t>(n) + 7) / 8);
      while (!mask.empty() && mask.back() == 0) mask.pop_back();
      return mask;
    }
    if (errno != EINVAL || mask.size() >= 4096) return Errno("sched_getaffinity(%d)", tid);
    mask.resize(mask.size() * 2);
  }
}

absl::StatusOr<uint32_t> GetIoprio(pid_t tid) {
  long r = syscall(SYS_ioprio_get, sys::kIoprioWhoProcess, tid);
  if (r < 0) return Errno("ioprio_get(%d)", tid);
  return static_cast<uint32_t>(r);
}

bool RealTime(uint32_t policy) { return policy == SCHED_FIFO || policy == SCHED_RR; }

const char* PolicyName(uint32_t policy) {
  switch (policy) {
    case SCHED_OTHER: return "SCHED_OTHER";
    case SCHED_FIFO: return "SCHED_FIFO";
    case SCHED_RR: return "SCHED_RR";
    case SCHED_BATCH: return "SCHED_BATCH";
    case SCHED_IDLE: return "SCHED_IDLE";
    case sys::kSchedDeadline: return "SCHED_DEADLINE";
  }
  return "an unknown policy";
}

uint64_t ImageRlimit(const ProcessImage& image, int resource) {
  for (const Rlimit& r : image.rlimits.limits) {
    if (r.resource == static_cast<uint32_t>(resource)) return r.cur;
  }
  return 0;
}

}  // namespace

absl::StatusOr<ScheduleRecord> CaptureSchedule(pid_t tid) {
  CRLIB_ASSIGN_OR_RETURN(sys::SchedAttr a, GetAttr(tid));
  ScheduleRecord r;
  r.policy = a.sched_policy;
  r.priority = a.sched_priority;
  r.nice = a.sched_nice;
  r.flags = a.sched_flags;
  r.runtime = a.sched_runtime;
  r.deadline = a.sched_deadline;
  r.period = a.sched_period;
  r.util_min = a.sched_util_min;
  r.util_max = a.sched_util_max;
  CRLIB_ASSIGN_OR_RETURN(r.affinity, GetAffinity(tid));
  CRLIB_ASSIGN_OR_RETURN(r.ioprio, GetIoprio(tid));
  return r;
}

absl::Status CheckSchedule(const ProcessImage& image, const struct stat& image_file,
                           bool trusted) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<uint64_t> ours, GetAffinity(0));
  const bool vouched = trusted || image_file.st_uid == 0;
  const bool cap_nice = (image.process.cap_effective >> CAP_SYS_NICE) & 1;
  const bool cap_admin = (image.process.cap_effective >> CAP_SYS_ADMIN) & 1;
  const int our_nice = getpriority(PRIO_PROCESS, 0);
  for (const ThreadImage& t : image.threads) {
    if (!t.schedule) continue;
    const ScheduleRecord& s = *t.schedule;
    const uint32_t tid = t.record.tid;
    bool usable = s.affinity.empty();
    for (size_t i = 0; i < s.affinity.size() && i < ours.size(); ++i) usable |= (s.affinity[i] & ours[i]) != 0;
    if (!usable) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "thread %d may run only on CPUs this restore may not use (its affinity mask has %d "
          "words, none shared with ours)",
          tid, s.affinity.size()));
    }
    if (vouched || cap_nice) continue;
    auto refuse = [&](const std::string& what) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "thread %d: %s needs CAP_SYS_NICE, which the image's process lacks and the image's "
          "owner (uid %d) cannot vouch for; restore as root from a root-owned image, or pass "
          "--trust-image",
          tid, what, image_file.st_uid));
    };
    if (s.policy == sys::kSchedDeadline) return refuse("SCHED_DEADLINE");
    if (RealTime(s.policy) && s.priority > ImageRlimit(image, RLIMIT_RTPRIO)) {
      return refuse(absl::StrFormat("%s priority %d above its RLIMIT_RTPRIO", PolicyName(s.policy),
                                    s.priority));
    }
    if (s.nice < our_nice && 20 - s.nice > static_cast<int64_t>(ImageRlimit(image, RLIMIT_NICE))) {
      return refuse(absl::StrFormat("nice %d below its RLIMIT_NICE", s.nice));
    }
    if ((s.ioprio >> sys::kIoprioClassShift) == sys::kIoprioClassRt && !cap_admin) {
      return refuse("the real-time I/O class");
    }
  }
  return absl::OkStatus();
}

absl::Status RestoreSchedule(pid_t tid, const ScheduleRecord& r) {
  CRLIB_ASSIGN_OR_RETURN(ScheduleRecord now, CaptureSchedule(tid));
  // Affinity first: SCHED_DEADLINE wants it settled.
  if (now.affinity != r.affinity && !r.affinity.empty()) {
    if (syscall(SYS_sched_setaffinity, tid, r.affinity.size() * sizeof(uint64_t),
                r.affinity.data()) != 0) {
      return Errno("sched_setaffinity(%d) to the image's CPUs", tid);
    }
  }
  if (now.policy != r.policy || now.priority != r.priority || now.nice != r.nice ||
      now.flags != r.flags || now.runtime != r.runtime || now.deadline != r.deadline ||
      now.period != r.period || now.util_min != r.util_min || now.util_max != r.util_max) {
    sys::SchedAttr a{};
    a.size = sizeof(a);
    a.sched_policy = r.policy;
    a.sched_flags = r.flags;
    a.sched_nice = r.nice;
    a.sched_priority = r.priority;
    a.sched_runtime = r.runtime;
    a.sched_deadline = r.deadline;
    a.sched_period = r.period;
    a.sched_util_min = r.util_min;
    a.sched_util_max = r.util_max;
    // sched_getattr reports the clamps but not the flags that set them;
    // at their defaults (0 and 1024, or 0 and 0 without CONFIG_UCLAMP_TASK)
    // they were never asked for and are left out.
    if (r.util_min != 0 || (r.util_max != 0 && r.util_max != 1024)) {
      a.sched_flags |= sys::kSchedFlagUtilClampMin | sys::kSchedFlagUtilClampMax;
    } else {
      a.size = offsetof(sys::SchedAttr, sched_util_min);
    }
    if (syscall(SYS_sched_setattr, tid, &a, 0) != 0) {
      return Errno("sched_setattr(%d, %s, priority %d, nice %d)", tid, PolicyName(r.policy),
                   r.priority, r.nice);
    }
  }
  if (now.ioprio != r.ioprio && syscall(SYS_ioprio_set, sys::kIoprioWhoProcess, tid, r.ioprio) != 0) {
    return Errno("ioprio_set(%d, 0x%x)", tid, r.ioprio);
  }
  return absl::OkStatus();
}

}  // namespace crlib
