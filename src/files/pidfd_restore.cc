#include "files/pidfd_restore.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "sys/kernel.h"
#include "sys/proc.h"

namespace crlib {
namespace {

// The flags pidfd_open takes that a pidfd's recorded file flags hold.
int PidfdOpenFlags(const FileRecord& f) {
  return static_cast<int>(f.flags) & (O_NONBLOCK | sys::kPidfdThread);
}

// A process that stands for a dead one: in the PID namespace of `holder`
// (a pidfd refers to a process of the holder's namespace or one below, or
// the kernel refuses to signal through it), it waits until killed. Made
// from a short-lived thread of ours that enters that namespace for its
// children only (setns); not at all when it is ours. Returns its PID as
// we see it, and `inner`, as the holder sees it.
absl::StatusOr<pid_t> StartStandIn(pid_t holder, pid_t* inner) {
  const std::string theirs = absl::StrCat("/proc/", holder, "/ns/pid");
  struct stat ours_st, theirs_st;
  if (stat("/proc/self/ns/pid", &ours_st) != 0) return Errno("stat /proc/self/ns/pid");
  if (stat(theirs.c_str(), &theirs_st) != 0) return Errno("stat %s", theirs);
  const bool enter = ours_st.st_ino != theirs_st.st_ino || ours_st.st_dev != theirs_st.st_dev;
  absl::StatusOr<pid_t> result;
  std::thread maker([&] {
    if (enter) {
      int ns = open(theirs.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0) {
        result = Errno("open %s", theirs);
        return;
      }
      const int rc = setns(ns, CLONE_NEWPID);
      close(ns);
      if (rc != 0) {
        result = Errno("setns(%s, CLONE_NEWPID)", theirs);
        return;
      }
    }
    sys::CloneArgs args{};  // no exit signal: reaped with __WALL
    const long child = syscall(SYS_clone3, &args, sizeof(args));
    if (child == 0) {
      for (;;) syscall(SYS_pause);  // a copy glibc did not fork: raw calls only
    }
    result = child < 0 ? Errno("clone3 of a process to make a pidfd of a dead one")
                       : absl::StatusOr<pid_t>(static_cast<pid_t>(child));
  });
  maker.join();
  if (!result.ok()) return result;
  *inner = *result;
  if (enter) {
    absl::StatusOr<std::string> status = sys::ReadFile(absl::StrCat("/proc/", *result, "/status"));
    absl::StatusOr<std::string> nspid =
        status.ok() ? sys::StatusField(*status, "NSpid") : status.status();
    const size_t last = nspid.ok() ? nspid->find_last_of(" \t") : std::string::npos;
    if (!nspid.ok() || !absl::SimpleAtoi(nspid->substr(last == std::string::npos ? 0 : last + 1), inner)) {
      kill(*result, SIGKILL);
      while (waitpid(*result, nullptr, __WALL) < 0 && errno == EINTR) {
      }
      return absl::InternalError(absl::StrFormat("no NSpid for stand-in pid %d", *result));
    }
  }
  return result;
}

void KillStandIn(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
  }
}

}  // namespace

absl::Status CheckPidfds(absl::Span<const ProcessImage* const> images) {
  std::set<uint32_t> pids;
  for (const ProcessImage* image : images) pids.insert(image->process.pid);
  for (const ProcessImage* image : images) {
    for (const FdRecord& fd : image->fds) {
      const FileRecord& f = image->files.at(fd.file).record;
      if (MadeInProcess(f) && f.pid != 0 && !pids.contains(f.pid)) {
        return absl::DataLossError(absl::StrFormat(
            "fd %d of pid %d is a pidfd of pid %d, which the image does not hold", fd.fd,
            image->process.pid, f.pid));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RestorePidfds(Tracee* t, const ProcessImage& image) {
  std::map<ObjectRef, int> made;  // file -> the first fd made for it
  for (const FdRecord& fd : image.fds) {
    const FileRecord& f = image.files.at(fd.file).record;
    if (!MadeInProcess(f)) continue;
    const uint64_t cloexec = (fd.fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0;
    if (auto it = made.find(fd.file); it != made.end()) {
      CRLIB_RETURN_IF_ERROR(
          t->CheckedSyscall("dup3 of a pidfd", SYS_dup3,
                            {static_cast<uint64_t>(it->second), fd.fd, cloexec})
              .status());
      continue;
    }
    // A dead process's: of a stand-in, reaped once the pidfd is made.
    pid_t target = static_cast<pid_t>(f.pid), stand_in = 0;
    if (target == 0) {
      CRLIB_ASSIGN_OR_RETURN(stand_in, StartStandIn(t->tid(), &target));
    }
    const std::string what = absl::StrFormat("pidfd_open(%d, 0%o) for fd %d", target,
                                             PidfdOpenFlags(f), fd.fd);
    absl::StatusOr<int64_t> opened = t->CheckedSyscall(
        what.c_str(), SYS_pidfd_open,
        {static_cast<uint64_t>(target), static_cast<uint64_t>(PidfdOpenFlags(f))});
    if (stand_in) KillStandIn(stand_in);
    CRLIB_ASSIGN_OR_RETURN(int64_t made_fd, std::move(opened));
    // pidfd_open gives the lowest free number, which may be this one.
    if (made_fd == fd.fd) {
      CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("fcntl(F_SETFD) of a pidfd", SYS_fcntl,
                                              {fd.fd, F_SETFD, cloexec ? FD_CLOEXEC : 0u})
                                .status());
    } else {
      CRLIB_RETURN_IF_ERROR(
          t->CheckedSyscall("dup3 of a pidfd", SYS_dup3,
                            {static_cast<uint64_t>(made_fd), fd.fd, cloexec})
              .status());
      CRLIB_RETURN_IF_ERROR(
          t->CheckedSyscall("close", SYS_close, {static_cast<uint64_t>(made_fd)}).status());
    }
    made[fd.file] = static_cast<int>(fd.fd);
  }
  return absl::OkStatus();
}

}  // namespace crlib
