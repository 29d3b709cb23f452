#include "files/event_restore.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "sys/kernel.h"
#include "sys/proc.h"

namespace crlib {
namespace {

constexpr int64_t kNsPerSec = 1000000000;

// Our new descriptor `fd` for `what`, with the file's recorded status
// flags (O_NONBLOCK); closed on error.
absl::StatusOr<int> WithFlags(int fd, const FileRecord& f, const std::string& what) {
  if (fcntl(fd, F_SETFL, static_cast<int>(f.flags) & ~O_ACCMODE) != 0) {
    absl::Status st = Errno("fcntl(F_SETFL) on the new %s", what);
    close(fd);
    return st;
  }
  return fd;
}

// Closes `fd` when `st` is an error, and passes `st` on.
absl::Status CloseOnError(int fd, absl::Status st) {
  if (!st.ok()) close(fd);
  return st;
}

absl::StatusOr<int> OpenEventfd(const EventfdRecord& r) {
  // Made at 0 and written to: eventfd2 takes only 32 bits of count.
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | (r.semaphore ? EFD_SEMAPHORE : 0));
  if (fd < 0) return Errno("eventfd2");
  if (r.count > 0 && write(fd, &r.count, sizeof(r.count)) != sizeof(r.count)) {
    return CloseOnError(fd, Errno("write of count %d to a new eventfd", r.count));
  }
  return fd;
}

const char* ClockName(int32_t clock) {
  switch (clock) {
    case CLOCK_REALTIME: return "CLOCK_REALTIME";
    case CLOCK_MONOTONIC: return "CLOCK_MONOTONIC";
    case CLOCK_BOOTTIME: return "CLOCK_BOOTTIME";
    case CLOCK_REALTIME_ALARM: return "CLOCK_REALTIME_ALARM";
    case CLOCK_BOOTTIME_ALARM: return "CLOCK_BOOTTIME_ALARM";
  }
  return "an unknown clock";
}

struct timespec Timespec(int64_t ns) {
  return {.tv_sec = ns / kNsPerSec, .tv_nsec = ns % kNsPerSec};
}

absl::StatusOr<int> OpenTimerfd(const TimerfdRecord& r, uint32_t uid) {
  int fd = timerfd_create(r.clock, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) {
    const bool alarm = r.clock == CLOCK_REALTIME_ALARM || r.clock == CLOCK_BOOTTIME_ALARM;
    return Errno("timerfd_create(%s) as uid %d%s", ClockName(r.clock), uid,
                 alarm && errno == EPERM ? " (an alarm clock needs CAP_WAKE_ALARM)" : "");
  }
  // The schedule goes on from the dump: the expiries that fell between
  // dump and now count as ticks, the next one is where the period puts it.
  uint64_t ticks = r.ticks;
  int64_t deadline = r.deadline_ns;
  const int64_t now = ClockNs(TimerfdReferenceClock(r.clock, r.settime_flags));
  if (deadline != 0 && deadline <= now) {
    if (r.interval_ns <= 0) {
      ticks += 1;
      deadline = 0;
    } else {
      const int64_t missed = (now - deadline) / r.interval_ns + 1;
      ticks += static_cast<uint64_t>(missed);
      deadline += missed * r.interval_ns;
    }
  }
  if (deadline != 0) {
    const bool absolute = r.settime_flags & TFD_TIMER_ABSTIME;
    struct itimerspec its{.it_interval = Timespec(r.interval_ns),
                          .it_value = Timespec(absolute ? deadline : std::max<int64_t>(deadline - now, 1))};
    if (timerfd_settime(fd, static_cast<int>(r.settime_flags), &its, nullptr) != 0) {
      return CloseOnError(fd, Errno("timerfd_settime(flags 0%o) of a %s timer", r.settime_flags,
                                    ClockName(r.clock)));
    }
  }
  // Expirations not read yet (CONFIG_CHECKPOINT_RESTORE's ioctl; 0 is not
  // a count it takes).
  if (ticks > 0 && ioctl(fd, sys::kTfdIocSetTicks, &ticks) != 0) {
    return CloseOnError(fd, Errno("ioctl(TFD_IOC_SET_TICKS, %d) on a new timerfd", ticks));
  }
  return fd;
}

absl::StatusOr<int> OpenSignalfd(const SignalfdRecord& r) {
  // The kernel's sigset_t is one 64-bit word here, as signalfd4 takes it.
  uint64_t mask = r.mask;
  int fd = static_cast<int>(syscall(SYS_signalfd4, -1, &mask, sizeof(mask), SFD_CLOEXEC));
  if (fd < 0) return Errno("signalfd4(mask 0x%x)", r.mask);
  return fd;
}

// Reads and drops everything queued on inotify instance `fd` (nonblocking).
void DrainInotify(int fd) {
  alignas(struct inotify_event) char buf[4096];
  while (read(fd, buf, sizeof(buf)) > 0) {
  }
}

// Adds `w` to instance `fd` under its recorded number. The kernel hands
// out watch descriptors cyclically from 1 (idr_alloc_cyclic), and only an
// allocation moves its cursor on: each number below `w.wd` that no watch
// holds is allocated by a watch of the same path and removed again. The
// IN_IGNORED events those removals queue are drained (queued events are
// not carried anyway).
absl::Status AddWatch(int fd, const InotifyWatch& w, uint32_t uid) {
  struct stat st;
  if (lstat(w.path.c_str(), &st) != 0) {
    return Errno("lstat of %s, watched by inotify watch %d, as uid %d", w.path, w.wd, uid);
  }
  if (st.st_ino != w.inode || st.st_dev != w.dev) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s, watched by inotify watch %d, is not the file the image was taken with (inode %d, "
        "was %d)",
        w.path, w.wd, st.st_ino, w.inode));
  }
  const uint32_t mask =
      (w.mask & (IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK)) | IN_DONT_FOLLOW;
  for (;;) {
    const int wd = inotify_add_watch(fd, w.path.c_str(), mask);
    if (wd < 0) return Errno("inotify_add_watch(%s) as uid %d", w.path, uid);
    if (static_cast<uint32_t>(wd) == w.wd) return absl::OkStatus();
    if (static_cast<uint32_t>(wd) > w.wd) {
      return absl::InternalError(absl::StrFormat(
          "inotify_add_watch(%s) gave watch %d, past the recorded %d", w.path, wd, w.wd));
    }
    if (inotify_rm_watch(fd, wd) != 0) return Errno("inotify_rm_watch(%d)", wd);
    DrainInotify(fd);
  }
}

absl::StatusOr<int> OpenInotify(const InotifyRecord& r, uint32_t uid) {
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return Errno("inotify_init1");
  for (const InotifyWatch& w : r.watches) CRLIB_RETURN_IF_ERROR(CloseOnError(fd, AddWatch(fd, w, uid)));
  DrainInotify(fd);
  return fd;
}

template <typename R>
absl::StatusOr<const R*> RecordOf(const std::map<ObjectRef, R>& records, ObjectRef file) {
  auto it = records.find(file);
  if (it == records.end()) {
    return absl::DataLossError(absl::StrFormat("file %d has no %s record", file, R::kName));
  }
  return &it->second;
}

// The bits an entry keeps once its EPOLLONESHOT fired (the kernel's
// EP_PRIVATE_BITS).
constexpr uint32_t kEpollPrivateBits = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE;
// Every event a file can report: an entry listening for all of them fires
// on any target that is ready in any way.
constexpr uint32_t kEpollAllEvents = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP |
                                     EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM | EPOLLWRBAND |
                                     EPOLLMSG | EPOLLRDHUP;

bool FiredOneshot(const EpollEntry& e) {
  return (e.events & EPOLLONESHOT) && (e.events & ~kEpollPrivateBits) == 0;
}

// epoll_ctl(op) in `t` of entry `e` with `events`, on epoll fd `epfd`.
absl::Status RemoteEpollCtl(Tracee* t, uint64_t scratch, int epfd, int op, const EpollEntry& e,
                            uint32_t events) {
  struct epoll_event ev{.events = events, .data = {.u64 = e.data}};
  CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, &ev, sizeof(ev)));
  return Annotate(t->CheckedSyscall(op == EPOLL_CTL_ADD ? "epoll_ctl(EPOLL_CTL_ADD)"
                                                        : "epoll_ctl(EPOLL_CTL_MOD)",
                                    SYS_epoll_ctl,
                                    {static_cast<uint64_t>(epfd), static_cast<uint64_t>(op), e.fd,
                                     scratch})
                      .status(),
                  absl::StrFormat("fd %d of epoll fd %d (events 0x%x)", e.fd, epfd, events));
}

// Disarms, in epoll `epfd` of `t`, its fired EPOLLONESHOT entries
// `fired`, none of which it holds yet. The kernel disarms an entry only by
// delivering it: each is added listening for every event, and whatever is
// ready is collected with epoll_wait. One whose target is ready in no way
// cannot fire: it is given its flags alone, which the kernel completes
// with EPOLLERR and EPOLLHUP (docs/CHECKPOINT.md).
absl::Status DisarmFiredOneshots(Tracee* t, uint64_t scratch, int epfd,
                                 const std::vector<const EpollEntry*>& fired) {
  for (const EpollEntry* e : fired) {
    CRLIB_RETURN_IF_ERROR(RemoteEpollCtl(t, scratch, epfd, EPOLL_CTL_ADD, *e, e->events | kEpollAllEvents));
  }
  // Delivered entries are disarmed, not queued again: collect until fewer
  // than a scratch-full come.
  const uint64_t room = kRestoreScratchBytes / sizeof(struct epoll_event);
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(int64_t n, t->CheckedSyscall("epoll_wait", SYS_epoll_wait,
                                                        {static_cast<uint64_t>(epfd), scratch,
                                                         room, 0}));
    if (static_cast<uint64_t>(n) < room) break;
  }
  CRLIB_ASSIGN_OR_RETURN(std::string text,
                         sys::ReadFile(absl::StrCat("/proc/", t->tid(), "/fdinfo/", epfd)));
  CRLIB_ASSIGN_OR_RETURN(std::vector<EpollEntry> now, ParseEpollEntries(text));
  for (const EpollEntry& n : now) {
    if (FiredOneshot(n)) continue;
    for (const EpollEntry* e : fired) {
      if (e->fd == n.fd && e->data == n.data) {
        CRLIB_RETURN_IF_ERROR(RemoteEpollCtl(t, scratch, epfd, EPOLL_CTL_MOD, *e, e->events));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<EpollEntry>> ParseEpollEntries(absl::string_view fdinfo) {
  std::vector<EpollEntry> out;
  for (absl::string_view line : absl::StrSplit(fdinfo, '\n', absl::SkipEmpty())) {
    if (!absl::ConsumePrefix(&line, "tfd:")) continue;
    // "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x"
    std::vector<absl::string_view> w = absl::StrSplit(line, absl::ByAnyChar(" :"), absl::SkipEmpty());
    EpollEntry e;
    if (w.size() < 5 || w[1] != "events" || w[3] != "data" || !absl::SimpleAtoi(w[0], &e.fd) ||
        !absl::SimpleHexAtoi(w[2], &e.events) || !absl::SimpleHexAtoi(w[4], &e.data)) {
      return absl::DataLossError(absl::StrCat("unparsable epoll entry: tfd:", line));
    }
    out.push_back(e);
  }
  return out;
}

int64_t ClockNs(clockid_t clock) {
  struct timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

clockid_t TimerfdReferenceClock(int32_t clock, uint32_t settime_flags) {
  if (settime_flags & TFD_TIMER_ABSTIME) return clock;
  return clock == CLOCK_BOOTTIME || clock == CLOCK_BOOTTIME_ALARM ? CLOCK_BOOTTIME : CLOCK_MONOTONIC;
}

absl::StatusOr<int> OpenEventFile(const ProcessImage& image, const FileImage& file, uint32_t uid) {
  const FileRecord& f = file.record;
  const EventObjects& ev = image.events;
  // The object made from its record, then given the file's status flags.
  auto make = [&](const auto& records, auto open, const char* what) -> absl::StatusOr<int> {
    CRLIB_ASSIGN_OR_RETURN(const auto* record, RecordOf(records, file.ref));
    CRLIB_ASSIGN_OR_RETURN(int fd, open(*record));
    return WithFlags(fd, f, what);
  };
  switch (static_cast<FileKind>(f.kind)) {
    case FileKind::kEventfd:
      return make(ev.eventfds, OpenEventfd, "eventfd");
    case FileKind::kTimerfd:
      return make(ev.timerfds, [&](const TimerfdRecord& r) { return OpenTimerfd(r, uid); }, "timerfd");
    case FileKind::kSignalfd:
      return make(ev.signalfds, OpenSignalfd, "signalfd");
    case FileKind::kInotify:
      return make(ev.inotifies, [&](const InotifyRecord& r) { return OpenInotify(r, uid); },
                  "inotify instance");
    case FileKind::kEpoll:
      // Empty: its holder fills it (RestoreEpollEntries).
      return make(ev.epolls, [](const EpollRecord&) -> absl::StatusOr<int> {
        int fd = epoll_create1(EPOLL_CLOEXEC);
        if (fd < 0) return Errno("epoll_create1");
        return fd;
      }, "epoll instance");
    default:
      return absl::InternalError(absl::StrFormat("file %d (kind %d) is not an event object",
                                                 file.ref, f.kind));
  }
}

absl::Status RestoreEpollEntries(Tracee* t, const ProcessImage& image, uint64_t scratch) {
  // Inner epolls first: an epoll's readiness as a target is its own
  // entries' (and EPOLL_CTL_ADD checks nesting against what exists).
  std::map<ObjectRef, int> depth;
  std::function<int(ObjectRef)> depth_of = [&](ObjectRef ref) -> int {
    auto it = depth.find(ref);
    if (it != depth.end()) return it->second;
    depth[ref] = 0;  // a cycle (which the kernel forbids) ends here
    int d = 0;
    auto rec = image.events.epolls.find(ref);
    if (rec != image.events.epolls.end()) {
      for (const EpollEntry& e : rec->second.entries) {
        if (image.events.epolls.contains(e.target)) d = std::max(d, depth_of(e.target) + 1);
      }
    }
    return depth[ref] = d;
  };
  std::vector<ObjectRef> order = image.epolls_to_fill;
  std::stable_sort(order.begin(), order.end(),
                   [&](ObjectRef a, ObjectRef b) { return depth_of(a) < depth_of(b); });
  for (ObjectRef ref : order) {
    const EpollRecord& rec = image.events.epolls.at(ref);
    int epfd = -1;
    for (const FdRecord& fd : image.fds) {
      if (fd.file == ref) epfd = static_cast<int>(fd.fd);
    }
    // Fired one-shot entries first, while nothing else can be collected.
    std::vector<const EpollEntry*> fired;
    for (const EpollEntry& e : rec.entries) {
      if (FiredOneshot(e)) fired.push_back(&e);
    }
    if (!fired.empty()) CRLIB_RETURN_IF_ERROR(DisarmFiredOneshots(t, scratch, epfd, fired));
    for (const EpollEntry& e : rec.entries) {
      if (!FiredOneshot(e)) CRLIB_RETURN_IF_ERROR(RemoteEpollCtl(t, scratch, epfd, EPOLL_CTL_ADD, e, e.events));
    }
  }
  return absl::OkStatus();
}

}  // namespace crlib
