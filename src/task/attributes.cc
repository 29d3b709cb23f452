#include "task/attributes.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "sys/credentials.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "task/thread_restore.h"
#include "task/xfeatures.h"

namespace crlib {
namespace {

constexpr uint32_t kUnsetLoginuid = 0xffffffff;
// The MEMBARRIER_CMD_REGISTER_* commands GET_REGISTRATIONS reports.
constexpr uint32_t kMembarrierRegistrations[] = {
    MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ};

// The kernel's sigevent (64 bytes): the thread ID of SIGEV_THREAD_ID at 16.
struct KernelSigevent {
  uint64_t value;
  int32_t signo;
  int32_t notify;
  int32_t tid;
  int32_t pad[11];
};
static_assert(sizeof(KernelSigevent) == 64);

// A /proc file holding one number, as an integer.
absl::StatusOr<int64_t> ReadNumber(const std::string& path) {
  CRLIB_ASSIGN_OR_RETURN(std::string text, sys::ReadFile(path));
  int64_t n;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &n)) {
    return absl::DataLossError(absl::StrFormat("unparsable %s: %s", path, text));
  }
  return n;
}

// The loginuid of process `pid` ("self" for ours), kUnsetLoginuid when
// the kernel has no audit support.
absl::StatusOr<uint32_t> Loginuid(const std::string& pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/loginuid");
  if (access(path.c_str(), F_OK) != 0) return kUnsetLoginuid;
  CRLIB_ASSIGN_OR_RETURN(int64_t v, ReadNumber(path));
  return static_cast<uint32_t>(v);
}

// An int the remote call at `buf` left there.
absl::StatusOr<int32_t> RemoteInt(Tracee* t, uint64_t buf) {
  int32_t v = 0;
  CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &v, sizeof(v)));
  return v;
}

// The PID or TID a CPU-time clock ID names (clock_getcpuclockid,
// pthread_getcpuclockid: negative IDs), 0 for the caller's own or for a
// clock that is not a CPU clock.
pid_t CpuClockPid(int32_t clock) {
  return clock < 0 ? static_cast<pid_t>(~(clock >> 3)) : 0;
}

int64_t Nanoseconds(const timespec& ts) { return ts.tv_sec * 1000000000 + ts.tv_nsec; }
timespec Timespec(int64_t ns) { return {ns / 1000000000, ns % 1000000000}; }

// The seccomp filters of thread `tid`, the first installed first.
absl::StatusOr<std::vector<SeccompFilter>> ThreadFilters(pid_t tid) {
  std::vector<SeccompFilter> filters;  // most recent first, as ptrace numbers them
  for (long index = 0;; ++index) {
    long n = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, reinterpret_cast<void*>(index), nullptr);
    if (n < 0 && errno == ENOENT) break;
    if (n < 0) return Errno("ptrace(SECCOMP_GET_FILTER, %d) on tid %d", index, tid);
    SeccompFilter f;
    f.program.resize(static_cast<size_t>(n) * sizeof(sock_filter));
    if (ptrace(PTRACE_SECCOMP_GET_FILTER, tid, reinterpret_cast<void*>(index), f.program.data()) != n) {
      return Errno("ptrace(SECCOMP_GET_FILTER, %d) on tid %d", index, tid);
    }
    struct {  // struct seccomp_metadata (linux/ptrace.h)
      uint64_t filter_off;
      uint64_t flags;
    } meta{static_cast<uint64_t>(index), 0};
    if (ptrace(PTRACE_SECCOMP_GET_METADATA, tid, reinterpret_cast<void*>(sizeof(meta)), &meta) < 0) {
      return Errno("ptrace(SECCOMP_GET_METADATA, %d) on tid %d", index, tid);
    }
    f.flags = static_cast<uint32_t>(meta.flags);
    filters.push_back(std::move(f));
  }
  std::reverse(filters.begin(), filters.end());
  return filters;
}

// Whether `program` can return SECCOMP_RET_USER_NOTIF (a constant return).
bool NotifiesUserSpace(const Bytes& program) {
  for (size_t at = 0; at + sizeof(sock_filter) <= program.size(); at += sizeof(sock_filter)) {
    sock_filter insn;
    memcpy(&insn, program.data() + at, sizeof(insn));
    if (insn.code == (BPF_RET | BPF_K) &&
        (insn.k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF) {
      return true;
    }
  }
  return false;
}

// A private anonymous writable mapping of the image at least `size` bytes
// long, where seccomp's arguments are staged for a moment.
absl::StatusOr<uint64_t> StagingArea(const ProcessImage& image, uint64_t size) {
  // The stack first: every process has one.
  for (VmaKind want : {VmaKind::kStack, VmaKind::kHeap, VmaKind::kAnonymous}) {
    for (const VmaRecord& v : image.vmas) {
      if (static_cast<VmaKind>(v.kind) == want && (v.flags & MAP_PRIVATE) &&
          (v.prot & PROT_WRITE) && v.end - v.start >= size) {
        return v.start;
      }
    }
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "the image has no private writable mapping of %d bytes to stage its seccomp filters", size));
}

uint64_t LargestFilterBytes(const SeccompRecord& s) {
  uint64_t largest = 0;
  for (const SeccompFilter& f : s.filters) largest = std::max<uint64_t>(largest, f.program.size());
  return 16 + largest;  // struct sock_fprog, then the program
}

}  // namespace

absl::StatusOr<ProcessAttributesRecord> CaptureProcessAttributes(Tracee* t, uint64_t buf) {
  const std::string pid = std::to_string(t->tid());
  ProcessAttributesRecord a;
  CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("prctl(PR_GET_CHILD_SUBREAPER)", SYS_prctl,
                                          {PR_GET_CHILD_SUBREAPER, buf})
                            .status());
  CRLIB_ASSIGN_OR_RETURN(int32_t subreaper, RemoteInt(t, buf));
  a.child_subreaper = subreaper != 0;
  CRLIB_ASSIGN_OR_RETURN(int64_t oom, ReadNumber(absl::StrCat("/proc/", pid, "/oom_score_adj")));
  a.oom_score_adj = static_cast<int32_t>(oom);
  CRLIB_ASSIGN_OR_RETURN(int64_t thp, t->CheckedSyscall("prctl(PR_GET_THP_DISABLE)", SYS_prctl,
                                                        {PR_GET_THP_DISABLE, 0, 0, 0, 0}));
  a.thp_disable = static_cast<uint32_t>(thp);
  CRLIB_ASSIGN_OR_RETURN(int64_t registered,
                         t->CheckedSyscall("membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)",
                                           SYS_membarrier,
                                           {sys::kMembarrierCmdGetRegistrations, 0, 0}));
  a.membarrier = static_cast<uint32_t>(registered);
  CRLIB_ASSIGN_OR_RETURN(a.loginuid, Loginuid(pid));
  CRLIB_ASSIGN_OR_RETURN(int64_t dumpable,
                         t->CheckedSyscall("prctl(PR_GET_DUMPABLE)", SYS_prctl, {PR_GET_DUMPABLE}));
  if (dumpable != 0 && dumpable != 1) {
    return absl::UnimplementedError(absl::StrFormat(
        "pid %s has dumpable %d (suid_dumpable, set by the kernel at a set-user-ID exec); "
        "prctl(PR_SET_DUMPABLE) can only restore 0 or 1",
        pid, dumpable));
  }
  a.dumpable = static_cast<uint32_t>(dumpable);
  CRLIB_ASSIGN_OR_RETURN(a.xfeatures_permitted, CapturePermittedFeatures(t, buf));
  return a;
}

absl::StatusOr<PosixTimersRecord> CapturePosixTimers(Tracee* t, uint64_t buf,
                                                     absl::Span<const pid_t> tids) {
  const pid_t pid = t->tid();
  CRLIB_ASSIGN_OR_RETURN(std::string text, sys::ReadFile(absl::StrCat("/proc/", pid, "/timers")));
  PosixTimersRecord rec;
  PosixTimer* cur = nullptr;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::string l(line);
    auto bad = [&] { return absl::DataLossError("unparsable /proc/" + std::to_string(pid) + "/timers: " + l); };
    int id, signo, clock, target;
    unsigned long long value;
    char how[16], whom[8];
    if (sscanf(l.c_str(), "ID: %d", &id) == 1) {
      cur = &rec.timers.emplace_back();
      cur->id = id;
    } else if (cur == nullptr) {
      return bad();
    } else if (sscanf(l.c_str(), "signal: %d/%llx", &signo, &value) == 2) {
      cur->signo = static_cast<uint32_t>(signo);
      cur->value = value;
    } else if (sscanf(l.c_str(), "notify: %15[a-z]/%7[a-z].%d", how, whom, &target) == 3) {
      const std::string h = how;
      if (h == "signal") {
        cur->notify = SIGEV_SIGNAL;
      } else if (h == "none") {
        cur->notify = SIGEV_NONE;
      } else if (h == "thread") {
        cur->notify = SIGEV_THREAD;
      } else {
        return bad();
      }
      if (std::string(whom) == "tid") {
        cur->notify |= SIGEV_THREAD_ID;
        cur->target_tid = static_cast<uint32_t>(target);
      }
    } else if (sscanf(l.c_str(), "ClockID: %d", &clock) == 1) {
      cur->clock = clock;
    } else {
      return bad();
    }
  }
  // Created in this order at restore: the kernel's next ID then follows
  // the highest, as it most likely did in the original.
  std::sort(rec.timers.begin(), rec.timers.end(),
            [](const PosixTimer& a, const PosixTimer& b) { return a.id < b.id; });
  auto ours = [&](pid_t tid) { return std::find(tids.begin(), tids.end(), tid) != tids.end(); };
  for (PosixTimer& timer : rec.timers) {
    if ((timer.notify & SIGEV_THREAD_ID) && !ours(static_cast<pid_t>(timer.target_tid))) {
      return absl::UnimplementedError(absl::StrFormat(
          "POSIX timer %d of pid %d signals thread %d, which is not one of its threads (it "
          "exited?); restore could not target it",
          timer.id, pid, timer.target_tid));
    }
    if (CpuClockPid(timer.clock) != 0 && !ours(CpuClockPid(timer.clock))) {
      return absl::UnimplementedError(absl::StrFormat(
          "POSIX timer %d of pid %d runs on the CPU clock of pid %d, outside the process; crlib "
          "does not restore it",
          timer.id, pid, CpuClockPid(timer.clock)));
    }
  }
  for (PosixTimer& timer : rec.timers) {
    const auto id = static_cast<uint64_t>(timer.id);
    CRLIB_RETURN_IF_ERROR(t->CheckedSyscall(absl::StrFormat("timer_gettime(%d)", timer.id).c_str(),
                                            SYS_timer_gettime, {id, buf})
                              .status());
    itimerspec its;
    CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &its, sizeof(its)));
    timer.interval_ns = Nanoseconds(its.it_interval);
    timer.value_ns = Nanoseconds(its.it_value);
    CRLIB_ASSIGN_OR_RETURN(int64_t overrun,
                           t->CheckedSyscall(absl::StrFormat("timer_getoverrun(%d)", timer.id).c_str(),
                                             SYS_timer_getoverrun, {id}));
    timer.overrun = static_cast<int32_t>(overrun);
  }
  return rec;
}

absl::StatusOr<ThreadAttributesRecord> CaptureThreadAttributes(Tracee* t, pid_t pid, uint64_t buf) {
  const pid_t tid = t->tid();
  ThreadAttributesRecord a;
  CRLIB_RETURN_IF_ERROR(
      t->CheckedSyscall("prctl(PR_GET_PDEATHSIG)", SYS_prctl, {PR_GET_PDEATHSIG, buf}).status());
  CRLIB_ASSIGN_OR_RETURN(int32_t pdeathsig, RemoteInt(t, buf));
  a.pdeathsig = static_cast<uint32_t>(pdeathsig);
  CRLIB_ASSIGN_OR_RETURN(int64_t slack,
                         t->CheckedSyscall("prctl(PR_GET_TIMERSLACK)", SYS_prctl, {PR_GET_TIMERSLACK}));
  a.timer_slack_ns = static_cast<uint64_t>(slack);
  CRLIB_ASSIGN_OR_RETURN(std::string status,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/status")));
  CRLIB_ASSIGN_OR_RETURN(std::string nnp, sys::StatusField(status, "NoNewPrivs"));
  CRLIB_ASSIGN_OR_RETURN(std::string seccomp, sys::StatusField(status, "Seccomp"));
  a.no_new_privs = nnp == "1";
  if (!absl::SimpleAtoi(seccomp, &a.seccomp_mode) || a.seccomp_mode > 2) {
    return absl::DataLossError(absl::StrFormat("thread %d: unparsable Seccomp: %s", tid, seccomp));
  }
  return a;
}

absl::Status SuspendSeccomp(absl::Span<const std::unique_ptr<Tracee>> threads) {
  const pid_t pid = threads.front()->tid();
  for (const std::unique_ptr<Tracee>& t : threads) {
    CRLIB_ASSIGN_OR_RETURN(std::string status,
                           sys::ReadFile(absl::StrCat("/proc/", pid, "/task/", t->tid(), "/status")));
    CRLIB_ASSIGN_OR_RETURN(std::string mode, sys::StatusField(status, "Seccomp"));
    if (mode == "0") continue;
    absl::Status st = t->SuspendSeccomp();
    if (StatusErrno(st) == EPERM) {
      return Annotate(st, absl::StrFormat(
                              "thread %d runs under seccomp, and crlib needs CAP_SYS_ADMIN to keep "
                              "its filters from blocking crlib's own calls in it",
                              t->tid()));
    }
    CRLIB_RETURN_IF_ERROR(st);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<SeccompRecord>> CaptureSeccomp(
    absl::Span<const pid_t> tids, absl::Span<const ThreadAttributesRecord> attributes,
    uint64_t cap_effective) {
  for (pid_t tid : tids) {
    sys::PtraceSudConfig sud{};
    if (ptrace(static_cast<__ptrace_request>(sys::kPtraceGetSyscallUserDispatchConfig), tid,
               reinterpret_cast<void*>(sizeof(sud)), &sud) == 0 &&
        sud.mode != 0) {
      return absl::UnimplementedError(absl::StrFormat(
          "thread %d uses syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH), which crlib "
          "cannot restore yet",
          tid));
    }
  }
  std::optional<SeccompRecord> rec;
  pid_t first = 0, strict = 0;
  for (size_t i = 0; i < tids.size(); ++i) {
    const ThreadAttributesRecord& a = attributes[i];
    if (a.seccomp_mode == SECCOMP_MODE_STRICT) strict = tids[i];
    if (a.seccomp_mode != SECCOMP_MODE_FILTER) continue;
    CRLIB_ASSIGN_OR_RETURN(std::vector<SeccompFilter> filters, ThreadFilters(tids[i]));
    if (!rec) {
      rec.emplace();
      rec->filters = std::move(filters);
      first = tids[i];
      for (const SeccompFilter& f : rec->filters) {
        if (NotifiesUserSpace(f.program)) {
          return absl::UnimplementedError(absl::StrFormat(
              "thread %d has a seccomp filter that returns SECCOMP_RET_USER_NOTIF; its listener "
              "cannot be restored",
              first));
        }
      }
      if (!a.no_new_privs && !(cap_effective & (uint64_t{1} << CAP_SYS_ADMIN))) {
        return absl::UnimplementedError(absl::StrFormat(
            "thread %d has seccomp filters but neither no_new_privs nor CAP_SYS_ADMIN, so restore "
            "could not install them after its credentials",
            first));
      }
      continue;
    }
    bool same = filters.size() == rec->filters.size();
    for (size_t f = 0; same && f < filters.size(); ++f) {
      same = filters[f].flags == rec->filters[f].flags && filters[f].program == rec->filters[f].program;
    }
    if (!same) {
      return absl::UnimplementedError(absl::StrFormat(
          "threads %d and %d have different seccomp filters; crlib restores only filters every "
          "thread shares",
          first, tids[i]));
    }
  }
  if (rec) {
    for (size_t i = 0; i < tids.size(); ++i) {
      if (attributes[i].seccomp_mode != SECCOMP_MODE_FILTER) {
        return absl::UnimplementedError(absl::StrFormat(
            "thread %d has seccomp filters and thread %d %s; crlib restores only filters every "
            "thread shares",
            first, tids[i], strict ? "is in strict mode" : "has none"));
      }
      if (attributes[i].no_new_privs != attributes.front().no_new_privs) {
        return absl::UnimplementedError(absl::StrFormat(
            "threads %d and %d share seccomp filters but differ in no_new_privs", tids[0], tids[i]));
      }
    }
  }
  return rec;
}

absl::Status CheckAttributes(const ProcessImage& image) {
  // The restored process is forked from us and inherits our seccomp
  // filters and no_new_privs, which nothing can take away again.
  CRLIB_ASSIGN_OR_RETURN(std::string status, sys::ReadFile("/proc/thread-self/status"));
  CRLIB_ASSIGN_OR_RETURN(std::string our_seccomp, sys::StatusField(status, "Seccomp"));
  if (our_seccomp != "0") {
    return absl::FailedPreconditionError(absl::StrFormat(
        "crlib runs under seccomp (mode %s), which the restored process would inherit; restore "
        "from a process without seccomp filters",
        our_seccomp));
  }
  CRLIB_ASSIGN_OR_RETURN(std::string our_nnp, sys::StatusField(status, "NoNewPrivs"));
  for (const ThreadImage& t : image.threads) {
    if (our_nnp == "1" && t.attributes && !t.attributes->no_new_privs) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "crlib runs with no_new_privs, which thread %d would inherit though it had not set it; "
          "restore from a process without no_new_privs",
          t.record.tid));
    }
  }
  if (image.attributes) {
    const ProcessAttributesRecord& a = *image.attributes;
    CRLIB_ASSIGN_OR_RETURN(uint32_t ours, Loginuid("self"));
    if (a.loginuid != ours) {
      if (access("/proc/self/loginuid", F_OK) != 0) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "the image's loginuid is %u, but this kernel has no audit loginuid to set", a.loginuid));
      }
      CRLIB_ASSIGN_OR_RETURN(bool audit_control, sys::WeHoldCapability(CAP_AUDIT_CONTROL));
      if (!audit_control) {
        return absl::PermissionDeniedError(absl::StrFormat(
            "setting the image's loginuid %u (ours is %u) needs CAP_AUDIT_CONTROL, which crlib lacks",
            a.loginuid, ours));
      }
    }
    CRLIB_ASSIGN_OR_RETURN(int64_t oom, ReadNumber("/proc/self/oom_score_adj"));
    CRLIB_ASSIGN_OR_RETURN(bool sys_resource, sys::WeHoldCapability(CAP_SYS_RESOURCE));
    if (a.oom_score_adj < oom && !sys_resource) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "lowering oom_score_adj to the image's %d (ours is %d) needs CAP_SYS_RESOURCE, which "
          "crlib lacks",
          a.oom_score_adj, oom));
    }
    if (a.membarrier) {
      const long supported = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
      if (supported < 0 || (a.membarrier & ~static_cast<uint32_t>(supported))) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "the image has membarrier registrations 0x%x, but this kernel supports only 0x%x",
            a.membarrier, supported < 0 ? 0 : supported));
      }
    }
  }
  if (!image.posix_timers.timers.empty()) {
    if (prctl(sys::kPrTimerCreateRestoreIds, sys::kPrTimerCreateRestoreIdsGet, 0, 0, 0) < 0) {
      return Errno("the image has POSIX timers, and restoring their IDs needs "
                   "prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.15)");
    }
    auto in_image = [&](uint32_t tid) {
      return std::any_of(image.threads.begin(), image.threads.end(),
                         [&](const ThreadImage& t) { return t.record.tid == tid; });
    };
    for (const PosixTimer& timer : image.posix_timers.timers) {
      if ((timer.notify & SIGEV_THREAD_ID) && !in_image(timer.target_tid)) {
        return absl::DataLossError(absl::StrFormat(
            "POSIX timer %d signals thread %d, which the image lacks", timer.id, timer.target_tid));
      }
      const pid_t clock_pid = CpuClockPid(timer.clock);
      if (clock_pid != 0 && !in_image(static_cast<uint32_t>(clock_pid))) {
        return absl::DataLossError(absl::StrFormat(
            "POSIX timer %d runs on the CPU clock of task %d, which the image lacks", timer.id,
            clock_pid));
      }
    }
  }
  if (image.seccomp) {
    CRLIB_RETURN_IF_ERROR(StagingArea(image, LargestFilterBytes(*image.seccomp)).status());
  }
  return absl::OkStatus();
}

absl::Status RestoreProcessAttributes(Tracee* main, const ProcessImage& image, uint64_t scratch) {
  const pid_t pid = main->tid();
  auto step = [&](const char* name, absl::Status st) { return ThreadStep(name, pid, st); };
  if (image.attributes) {
    const ProcessAttributesRecord& a = *image.attributes;
    // The child inherited our loginuid; only the process itself may write
    // its own /proc/PID/loginuid.
    CRLIB_ASSIGN_OR_RETURN(uint32_t ours, Loginuid("self"));
    if (a.loginuid != ours) {
      const std::string path = "/proc/self/loginuid";
      const std::string value = std::to_string(a.loginuid);
      CRLIB_RETURN_IF_ERROR(main->WriteMemory(scratch, path.c_str(), path.size() + 1));
      CRLIB_RETURN_IF_ERROR(main->WriteMemory(scratch + 64, value.data(), value.size()));
      CRLIB_ASSIGN_OR_RETURN(
          int64_t fd, main->CheckedSyscall("open /proc/self/loginuid", SYS_openat,
                                           {static_cast<uint64_t>(AT_FDCWD), scratch,
                                            O_WRONLY | O_CLOEXEC}));
      absl::StatusOr<int64_t> written = main->CheckedSyscall(
          absl::StrFormat("write of loginuid %u", a.loginuid).c_str(), SYS_write,
          {static_cast<uint64_t>(fd), scratch + 64, value.size()});
      CRLIB_RETURN_IF_ERROR(
          main->CheckedSyscall("close", SYS_close, {static_cast<uint64_t>(fd)}).status());
      CRLIB_RETURN_IF_ERROR(step("loginuid", written.status()));
    }
    const std::string oom_path = absl::StrCat("/proc/", pid, "/oom_score_adj");
    CRLIB_ASSIGN_OR_RETURN(int64_t oom, ReadNumber(oom_path));
    if (oom != a.oom_score_adj) {
      const int fd = open(oom_path.c_str(), O_WRONLY | O_CLOEXEC);
      const std::string value = std::to_string(a.oom_score_adj);
      const bool ok = fd >= 0 && write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
      absl::Status st = ok ? absl::OkStatus() : Errno("write %s to %s", value, oom_path);
      if (fd >= 0) close(fd);
      CRLIB_RETURN_IF_ERROR(step("oom_score_adj", st));
    }
    if (a.child_subreaper) {
      CRLIB_RETURN_IF_ERROR(step("child subreaper",
                                 main->CheckedSyscall("prctl(PR_SET_CHILD_SUBREAPER)", SYS_prctl,
                                                      {PR_SET_CHILD_SUBREAPER, 1})
                                     .status()));
    }
    CRLIB_RETURN_IF_ERROR(step("THP disable",
                               main->CheckedSyscall("prctl(PR_SET_THP_DISABLE)", SYS_prctl,
                                                    {PR_SET_THP_DISABLE, a.thp_disable & 1u,
                                                     a.thp_disable & ~1u, 0, 0})
                                   .status()));
    for (uint32_t cmd : kMembarrierRegistrations) {
      if (!(a.membarrier & cmd)) continue;
      CRLIB_RETURN_IF_ERROR(step(
          "membarrier",
          main->CheckedSyscall(absl::StrFormat("membarrier(0x%x)", cmd).c_str(), SYS_membarrier,
                               {cmd, 0, 0})
              .status()));
    }
  }
  if (!image.posix_timers.timers.empty()) {
    // The threads exist (SIGEV_THREAD_ID names one); while the prctl is on,
    // timer_create takes the ID from its timer_t argument.
    CRLIB_RETURN_IF_ERROR(step("POSIX timers",
                               main->CheckedSyscall("prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)",
                                                    SYS_prctl,
                                                    {sys::kPrTimerCreateRestoreIds,
                                                     sys::kPrTimerCreateRestoreIdsOn})
                                   .status()));
    for (const PosixTimer& timer : image.posix_timers.timers) {
      struct {
        KernelSigevent sev;
        int32_t id;
        int32_t pad;
        itimerspec its;
      } args{};
      args.sev.value = timer.value;
      args.sev.signo = static_cast<int32_t>(timer.signo);
      args.sev.notify = static_cast<int32_t>(timer.notify);
      args.sev.tid = static_cast<int32_t>(timer.target_tid);
      args.id = timer.id;
      args.its.it_interval = Timespec(timer.interval_ns);
      args.its.it_value = Timespec(timer.value_ns);
      CRLIB_RETURN_IF_ERROR(main->WriteMemory(scratch, &args, sizeof(args)));
      CRLIB_RETURN_IF_ERROR(step(
          "POSIX timers",
          main->CheckedSyscall(absl::StrFormat("timer_create of timer %d", timer.id).c_str(),
                               SYS_timer_create,
                               {static_cast<uint64_t>(static_cast<int64_t>(timer.clock)), scratch,
                                scratch + offsetof(decltype(args), id)})
              .status()));
      if (timer.value_ns == 0) continue;  // disarmed
      CRLIB_RETURN_IF_ERROR(step(
          "POSIX timers",
          main->CheckedSyscall(absl::StrFormat("timer_settime of timer %d", timer.id).c_str(),
                               SYS_timer_settime,
                               {static_cast<uint64_t>(timer.id), 0,
                                scratch + offsetof(decltype(args), its), 0})
              .status()));
    }
    CRLIB_RETURN_IF_ERROR(step("POSIX timers",
                               main->CheckedSyscall("prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)",
                                                    SYS_prctl,
                                                    {sys::kPrTimerCreateRestoreIds,
                                                     sys::kPrTimerCreateRestoreIdsOff})
                                   .status()));
  }
  return absl::OkStatus();
}

absl::Status RestoreAttributesAfterCredentials(absl::Span<const std::unique_ptr<Tracee>> threads,
                                               const ProcessImage& image) {
  for (size_t i = 0; i < threads.size(); ++i) {
    const std::optional<ThreadAttributesRecord>& a = image.threads[i].attributes;
    if (!a) continue;
    Tracee* t = threads[i].get();
    CRLIB_RETURN_IF_ERROR(ThreadStep(
        "parent-death signal", t->tid(),
        t->CheckedSyscall("prctl(PR_SET_PDEATHSIG)", SYS_prctl, {PR_SET_PDEATHSIG, a->pdeathsig})
            .status()));
    if (a->timer_slack_ns) {
      CRLIB_RETURN_IF_ERROR(ThreadStep("timer slack", t->tid(),
                                       t->CheckedSyscall("prctl(PR_SET_TIMERSLACK)", SYS_prctl,
                                                         {PR_SET_TIMERSLACK, a->timer_slack_ns})
                                           .status()));
    }
    if (a->no_new_privs) {
      CRLIB_RETURN_IF_ERROR(ThreadStep("no_new_privs", t->tid(),
                                       t->CheckedSyscall("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl,
                                                         {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0})
                                           .status()));
    }
  }
  if (image.attributes) {
    // A credential change reset it to the suid_dumpable sysctl.
    Tracee* t = threads.front().get();
    CRLIB_RETURN_IF_ERROR(ThreadStep("dumpable", t->tid(),
                                     t->CheckedSyscall("prctl(PR_SET_DUMPABLE)", SYS_prctl,
                                                       {PR_SET_DUMPABLE, image.attributes->dumpable})
                                         .status()));
  }
  return absl::OkStatus();
}

absl::Status RestoreSeccomp(absl::Span<const std::unique_ptr<Tracee>> threads,
                            const ProcessImage& image) {
  if (image.seccomp) {
    Tracee* t = threads.front().get();
    const uint64_t size = LargestFilterBytes(*image.seccomp);
    CRLIB_ASSIGN_OR_RETURN(uint64_t at, StagingArea(image, size));
    std::vector<uint8_t> saved(size);
    CRLIB_RETURN_IF_ERROR(t->ReadMemory(at, saved.data(), saved.size()));
    // TSYNC: every other thread, still without a filter, gets each one too,
    // shared as in the original.
    const uint64_t tsync = threads.size() > 1 ? SECCOMP_FILTER_FLAG_TSYNC : 0;
    absl::Status st;
    for (const SeccompFilter& f : image.seccomp->filters) {
      struct {
        uint16_t len;
        uint16_t pad[3];
        uint64_t filter;
      } prog{static_cast<uint16_t>(f.program.size() / sizeof(sock_filter)), {}, at + 16};
      st = t->WriteMemory(at, &prog, sizeof(prog));
      if (st.ok()) st = t->WriteMemory(at + 16, f.program.data(), f.program.size());
      if (!st.ok()) break;
      absl::StatusOr<int64_t> r = t->CheckedSyscall("seccomp(SECCOMP_SET_MODE_FILTER)", SYS_seccomp,
                                                    {SECCOMP_SET_MODE_FILTER, f.flags | tsync, at});
      if (r.ok() && *r > 0) {
        st = absl::FailedPreconditionError(
            absl::StrFormat("seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): thread %d cannot share it", *r));
      } else {
        st = r.status();
      }
      if (!st.ok()) break;
    }
    absl::Status put_back = t->WriteMemory(at, saved.data(), saved.size());
    CRLIB_RETURN_IF_ERROR(ThreadStep("seccomp", t->tid(), st));
    CRLIB_RETURN_IF_ERROR(ThreadStep("seccomp", t->tid(), put_back));
  }
  for (size_t i = 0; i < threads.size(); ++i) {
    const std::optional<ThreadAttributesRecord>& a = image.threads[i].attributes;
    if (!a || a->seccomp_mode != SECCOMP_MODE_STRICT) continue;
    Tracee* t = threads[i].get();
    CRLIB_RETURN_IF_ERROR(ThreadStep("seccomp", t->tid(),
                                     t->CheckedSyscall("prctl(PR_SET_SECCOMP, STRICT)", SYS_prctl,
                                                       {PR_SET_SECCOMP, SECCOMP_MODE_STRICT})
                                         .status()));
  }
  return absl::OkStatus();
}

}  // namespace crlib
