#include "remote/tracee.h"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <chrono>
#include <cstring>
#include <iterator>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "sys/proc.h"

namespace crlib {
namespace {

// False once thread `tid` of `pid` has exited, even if not yet reaped.
bool ThreadAlive(pid_t pid, pid_t tid) {
  absl::StatusOr<std::string> stat =
      sys::ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/stat"));
  if (!stat.ok()) return false;
  size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] != 'Z' &&
         (*stat)[paren + 2] != 'X';
}

// The options of a seized thread.
constexpr int kSeizeOptions = PTRACE_O_TRACESYSGOOD;

// System calls that run under a temporary signal mask and, interrupted,
// return with it still in place (TIF_RESTORE_SIGMASK), the real mask
// waiting in saved_sigmask for a handler's frame to save it: and the
// result they return then (fs/select.c, fs/eventpoll.c, kernel/signal.c,
// fs/aio.c; restore_saved_sigmask_unless()).
struct TemporaryMaskCall {
  long nr;
  int64_t interrupted;
};
constexpr TemporaryMaskCall kTemporaryMaskCalls[] = {
    {SYS_rt_sigsuspend, sys::kErestartNoHand}, {SYS_ppoll, sys::kErestartNoHand},
    {SYS_pselect6, sys::kErestartNoHand},      {SYS_epoll_pwait, -EINTR},
    {SYS_epoll_pwait2, -EINTR},                {SYS_io_pgetevents, -EINTR},
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tracee>> Tracee::Seize(pid_t tid) {
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<Tracee> t, StartSeize(tid));
  CRLIB_RETURN_IF_ERROR(t->FinishSeize());
  return t;
}

absl::StatusOr<std::unique_ptr<Tracee>> Tracee::StartSeize(pid_t tid) {
  std::unique_ptr<Tracee> t(new Tracee(tid, HostArchBackend()));
  if (ptrace(PTRACE_SEIZE, tid, 0, kSeizeOptions) != 0) {
    t->attached_ = false;
    if (errno == ESRCH) return absl::NotFoundError(absl::StrFormat("no process with pid %d", tid));
    return Errno("ptrace(SEIZE) of pid %d", tid);
  }
  if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) return Errno("ptrace(INTERRUPT) of pid %d", tid);
  return t;
}

absl::Status Tracee::FinishSeize() {
  // A signal may be reported before the interrupt: let it be delivered as
  // it would have been a moment earlier, and wait for the interrupt stop.
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(int status, WaitStop());
    // The interrupt reports SIGTRAP; a group stop, its stop signal.
    group_stop_ = WSTOPSIG(status) != SIGTRAP;
    if ((status >> 16) == PTRACE_EVENT_STOP) break;
    int sig = WSTOPSIG(status);
    if (ptrace(PTRACE_CONT, tid_, 0, sig == (SIGTRAP | 0x80) ? 0 : sig) != 0) {
      return Errno("ptrace(CONT) of pid %d", tid_);
    }
  }
  return Init();
}

absl::StatusOr<std::vector<std::unique_ptr<Tracee>>> Tracee::SeizeProcess(pid_t pid) {
  // A main thread that has exited (pthread_exit) never stops again: the
  // interrupt would wait forever.
  CRLIB_ASSIGN_OR_RETURN(std::vector<std::string> stat, sys::ReadStatFields(pid));
  if (!stat.empty() && stat[0] == "Z") {
    return absl::UnimplementedError(absl::StrFormat(
        "pid %d: its main thread has exited; such processes are not supported", pid));
  }
  std::vector<std::unique_ptr<Tracee>> threads;
  // A failure, unless the thread exited meanwhile (ESRCH, EPERM on an
  // exiting one, or its exit seen while waiting for the stop): no loss.
  absl::Status failed;
  auto fail = [&](pid_t tid, const absl::Status& st) {
    if (!failed.ok() || (tid != pid && !ThreadAlive(pid, tid))) return;
    failed = tid == pid ? st : Annotate(st, absl::StrFormat("thread %d of pid %d", tid, pid));
  };
  // Each pass interrupts every thread it finds first and collects their
  // stops after, so that they stop in parallel. A thread not yet stopped
  // may create another; once a pass finds nothing new, all are stopped and
  // none can.
  std::set<pid_t> seen;
  for (bool found = true; found && failed.ok();) {
    found = false;
    CRLIB_ASSIGN_OR_RETURN(std::vector<pid_t> tids, sys::ListThreads(pid));
    std::vector<std::unique_ptr<Tracee>> started;
    for (pid_t tid : tids) {
      if (!seen.insert(tid).second) continue;
      found = true;
      absl::StatusOr<std::unique_ptr<Tracee>> t = StartSeize(tid);
      if (t.ok()) {
        started.push_back(std::move(*t));
      } else {
        fail(tid, t.status());
        if (!failed.ok()) break;
      }
    }
    // Even after a failure: a thread must be stopped to be detached.
    for (std::unique_ptr<Tracee>& t : started) {
      absl::Status st = t->FinishSeize();
      if (st.ok()) {
        threads.push_back(std::move(t));
      } else {
        fail(t->tid_, st);
      }
    }
  }
  CRLIB_RETURN_IF_ERROR(failed);
  std::stable_partition(threads.begin(), threads.end(),
                        [&](const std::unique_ptr<Tracee>& t) { return t->tid_ == pid; });
  if (threads.empty() || threads.front()->tid_ != pid) {
    return absl::NotFoundError(absl::StrFormat("no process with pid %d", pid));
  }
  return threads;
}

absl::Status Tracee::SuspendSeccomp() {
  if (ptrace(PTRACE_SETOPTIONS, tid_, 0, kSeizeOptions | PTRACE_O_SUSPEND_SECCOMP) != 0) {
    return Errno("ptrace(SETOPTIONS, PTRACE_O_SUSPEND_SECCOMP) on tid %d", tid_);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tracee>> Tracee::AdoptStoppedChild(pid_t pid) {
  std::unique_ptr<Tracee> t(new Tracee(pid, HostArchBackend()));
  t->our_child_ = true;
  CRLIB_ASSIGN_OR_RETURN(int status, t->WaitStop());
  if (WSTOPSIG(status) != SIGSTOP) {
    return absl::InternalError(absl::StrFormat("child %d stopped with signal %d, not SIGSTOP", pid,
                                               WSTOPSIG(status)));
  }
  if (ptrace(PTRACE_SETOPTIONS, pid, 0,
             PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE |
                 PTRACE_O_TRACEFORK) != 0) {
    return Errno("ptrace(SETOPTIONS) on pid %d", pid);
  }
  CRLIB_RETURN_IF_ERROR(t->Init());
  return t;
}

absl::StatusOr<std::unique_ptr<Tracee>> Tracee::AdoptNewThread(pid_t tid, const Tracee& creator) {
  std::unique_ptr<Tracee> t(new Tracee(tid, creator.arch_));
  t->syscall_site_ = creator.syscall_site_;
  CRLIB_ASSIGN_OR_RETURN(int status, t->WaitStop());
  // Auto-attached threads start with a SIGSTOP (creator traced through
  // TRACEME) or a PTRACE_EVENT_STOP (creator seized); our first resume
  // passes no signal, so the SIGSTOP is dropped.
  if (WSTOPSIG(status) != SIGSTOP && (status >> 16) != PTRACE_EVENT_STOP) {
    return absl::InternalError(absl::StrFormat(
        "new thread %d stopped with signal %d (event %d), not at its start", tid,
        WSTOPSIG(status), status >> 16));
  }
  CRLIB_RETURN_IF_ERROR(t->Init());
  return t;
}

void Tracee::KillProcess(absl::Span<const std::unique_ptr<Tracee>> threads) {
  if (threads.empty()) return;
  Tracee& main = *threads.front();
  const pid_t pid = main.tid_;
  absl::StatusOr<std::vector<std::string>> stat = sys::ReadStatFields(pid);
  const bool parent_is_us = stat.ok() && stat->size() > 1 && (*stat)[1] == absl::StrCat(getpid());
  // Threads the process still lists may include one we never adopted
  // (created, then a failure): wait for those too.
  std::set<pid_t> tids;
  for (const auto& t : threads) tids.insert(t->tid_);
  if (absl::StatusOr<std::vector<pid_t>> listed = sys::ListThreads(pid); listed.ok()) {
    tids.insert(listed->begin(), listed->end());
  }
  // Waiting for threads nobody killed would block forever (they are
  // stopped and traced by us): SIGKILL to any one thread kills them all,
  // so each is tried before giving up.
  bool killed = kill(pid, SIGKILL) == 0;
  for (auto it = tids.begin(); !killed && it != tids.end(); ++it) {
    killed = syscall(SYS_tgkill, pid, *it, SIGKILL) == 0;
  }
  if (!killed) return;
  // A thread left unreaped keeps its group from emptying, and the wait
  // for the main thread would then block forever: a failed wait is tried
  // again (a few times) unless there is nothing to wait for.
  auto reap = [](pid_t tid) {
    int status;
    for (int failures = 0; failures < 3;) {
      if (waitpid(tid, &status, __WALL) >= 0 || errno == ECHILD) return;
      if (errno != EINTR) ++failures;
    }
  };
  for (pid_t tid : tids) {
    if (tid != pid) reap(tid);
  }
  if (main.our_child_ || !parent_is_us) reap(pid);
  for (const auto& t : threads) t->attached_ = false;
}

absl::Status Tracee::Init() {
  CRLIB_ASSIGN_OR_RETURN(initial_regs_, GetRegs());
  CRLIB_RETURN_IF_ERROR(FinishRecoveringSite());
  if (ptrace(PTRACE_GETSIGMASK, tid_, sizeof(initial_sigmask_), &initial_sigmask_) != 0) {
    return Errno("ptrace(GETSIGMASK) on tid %d", tid_);
  }
  return SettleTemporaryMask();
}

// A thread stopped inside sigsuspend, ppoll, pselect6 or epoll_pwait
// shows the call's temporary mask as its blocked signals; its real mask
// is in saved_sigmask, which nothing exposes, and which the kernel puts
// back on the thread's way out of the stop when no handler runs. So the
// thread is let go that way, with registers that make it call again (the
// kernel's own restart), and taken at that call's entry: blocked signals
// there are the real mask. Nothing of its own runs: the call is skipped,
// and the thread, at a syscall-exit stop, keeps registers that call it
// again if it is ever released. Its registers are kept as those of a
// thread inside the call, interrupted (restarted by whatever resumes it),
// so a dump or restore sees the same thread, with its real mask.
//
// Its signals cannot be blocked meanwhile: PTRACE_SETSIGMASK drops the
// saved mask (clear_tsk_restore_sigmask). So the kernel may deliver a
// pending signal on that way out: one the temporary mask lets through,
// or, once the real mask is back, one only the temporary mask held back.
// Each such delivery is stopped and its signal queued again, from the
// thread itself so that it keeps its siginfo: never lost, never run here.
// It runs when the thread is released: one the real mask blocks ends the
// call again with EINTR, as it would have; one it lets through runs just
// before the call is made again (the kernel would have run it just after
// the call returned).
absl::Status Tracee::SettleTemporaryMask() {
  const int64_t nr = arch_.InterruptedSyscall(initial_regs_);
  const int64_t result = arch_.SyscallResult(initial_regs_);
  if (group_stop_ || nr < 0 ||
      std::none_of(std::begin(kTemporaryMaskCalls), std::end(kTemporaryMaskCalls),
                   [&](const TemporaryMaskCall& c) { return c.nr == nr && c.interrupted == result; })) {
    return absl::OkStatus();
  }
  CRLIB_RETURN_IF_ERROR(SetRegs(arch_.CallAgain(initial_regs_)));
  std::vector<siginfo_t> taken;
  // To the call's entry; `exit`: to the exit of the call the thread is
  // stopped at the entry of.
  auto run_to = [&](bool exit) -> absl::Status {
    for (int stops = 0; stops < 256; ++stops) {
      if (ptrace(PTRACE_SYSCALL, tid_, 0, 0) != 0) return Errno("ptrace(SYSCALL) of tid %d", tid_);
      CRLIB_ASSIGN_OR_RETURN(int status, WaitStop());
      if ((status >> 16) == PTRACE_EVENT_STOP) continue;
      if (WSTOPSIG(status) != (SIGTRAP | 0x80)) {
        siginfo_t info;
        if (ptrace(PTRACE_GETSIGINFO, tid_, 0, &info) != 0) {
          return Errno("ptrace(GETSIGINFO) of tid %d", tid_);
        }
        taken.push_back(info);
        continue;
      }
      __ptrace_syscall_info call{};
      if (ptrace(PTRACE_GET_SYSCALL_INFO, tid_, sizeof(call), &call) <= 0) {
        return Errno("ptrace(GET_SYSCALL_INFO) of tid %d", tid_);
      }
      if (call.op == (exit ? PTRACE_SYSCALL_INFO_EXIT : PTRACE_SYSCALL_INFO_ENTRY)) {
        if (exit || static_cast<int64_t>(call.entry.nr) == nr) return absl::OkStatus();
        return absl::InternalError(absl::StrFormat(
            "tid %d made system call %d, not %d again", tid_, call.entry.nr, nr));
      }
    }
    return absl::InternalError(absl::StrFormat("tid %d does not reach system call %d", tid_, nr));
  };
  CRLIB_RETURN_IF_ERROR(run_to(false));
  uint64_t real = 0;
  if (ptrace(PTRACE_GETSIGMASK, tid_, sizeof(real), &real) != 0) {
    return Errno("ptrace(GETSIGMASK) on tid %d", tid_);
  }
  // Blocked from here, so that the signals queued again stay queued.
  CRLIB_RETURN_IF_ERROR(SetSigmask(~uint64_t{0}));
  const ArchRegs again = arch_.CallAgain(initial_regs_);
  CRLIB_RETURN_IF_ERROR(SetRegs(again));  // orig -1: the call is skipped
  CRLIB_RETURN_IF_ERROR(run_to(true));
  initial_regs_ = arch_.Interrupted(initial_regs_);
  initial_sigmask_ = real;
  if (!taken.empty()) {
    // Below the red zone of the thread's stack, as a signal frame would go.
    const uint64_t at = (arch_.StackPointer(initial_regs_) - 128 - sizeof(siginfo_t)) & ~uint64_t{15};
    CRLIB_ASSIGN_OR_RETURN(int64_t tgid, CheckedSyscall("getpid", SYS_getpid));
    for (const siginfo_t& info : taken) {
      CRLIB_RETURN_IF_ERROR(WriteMemory(at, &info, sizeof(info)));
      CRLIB_RETURN_IF_ERROR(CheckedSyscall("rt_tgsigqueueinfo of a signal held back",
                                           SYS_rt_tgsigqueueinfo,
                                           {static_cast<uint64_t>(tgid), static_cast<uint64_t>(tid_),
                                            static_cast<uint64_t>(info.si_signo), at})
                                .status());
    }
  }
  CRLIB_RETURN_IF_ERROR(SetRegs(again));
  return SetSigmask(real);
}

// A dump killed while this thread was borrowed left it to run the
// recovering call site in the vDSO's tail alone (VdsoCallSite). Seized in
// the middle of it, the thread would give the site's borrowed state as its
// own: its rip inside the site, every signal blocked. A dump that then
// wrote its own site there, or cleared it, would resume the thread into
// other code (seen: a write through rax = SYS_userfaultfd at the site's
// first byte, cleared). So it finishes the site first: to the exit of the
// site's last system call (syscall stops, which a dying tracer leaves
// nothing of; single steps would leave the trap flag set), then the
// registers the rest of the site's code would load.
absl::Status Tracee::FinishRecoveringSite() {
  const uint64_t ip = arch_.InstructionPointer(initial_regs_);
  // Cheap test first: only a rip in the vDSO's first MiB reads the maps.
  CRLIB_ASSIGN_OR_RETURN(std::string auxv, sys::ReadFile(absl::StrCat("/proc/", tid_, "/auxv")));
  uint64_t vdso = 0;
  for (size_t at = 0; at + 16 <= auxv.size(); at += 16) {
    uint64_t type, value;
    memcpy(&type, auxv.data() + at, 8);
    memcpy(&value, auxv.data() + at + 8, 8);
    if (type == AT_SYSINFO_EHDR) vdso = value;
  }
  if (vdso == 0 || ip < vdso || ip >= vdso + (1 << 20)) return absl::OkStatus();
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> maps, sys::ReadMaps(tid_));
  auto m = std::find_if(maps.begin(), maps.end(), [&](const sys::MapsEntry& e) {
    return e.path == "[vdso]" && e.start <= ip && ip < e.end;
  });
  if (m == maps.end() || m->end - m->start < ArchBackend::kRecoveringSiteBytes) {
    return absl::OkStatus();
  }
  const uint64_t site = m->end - ArchBackend::kRecoveringSiteBytes;
  if (ip < site) return absl::OkStatus();
  std::vector<uint8_t> code(ArchBackend::kRecoveringSiteBytes);
  CRLIB_RETURN_IF_ERROR(ReadMemory(site, code.data(), code.size()));
  if (!arch_.IsRecoveringSite(code)) return absl::OkStatus();
  int signal = 0;  // one that arrived meanwhile, delivered as it goes on
  for (int stop = 0; stop < 16; ++stop) {
    if (std::optional<ArchRegs> end = arch_.RecoveringSiteEnd(code, site, initial_regs_)) {
      CRLIB_RETURN_IF_ERROR(SetRegs(*end));
      initial_regs_ = *end;
      if (signal != 0 && kill(tid_, signal) != 0) return Errno("kill(%d, %d)", tid_, signal);
      return absl::OkStatus();
    }
    // To the next system call's exit (through its entry).
    for (bool exit = false; !exit;) {
      if (ptrace(PTRACE_SYSCALL, tid_, 0, signal) != 0) {
        return Errno("ptrace(SYSCALL) of tid %d out of a recovering call site", tid_);
      }
      signal = 0;
      CRLIB_ASSIGN_OR_RETURN(int status, WaitStop());
      if (WSTOPSIG(status) != (SIGTRAP | 0x80)) {
        signal = WSTOPSIG(status);
        continue;
      }
      __ptrace_syscall_info info{};
      if (ptrace(PTRACE_GET_SYSCALL_INFO, tid_, sizeof(info), &info) <= 0) {
        return Errno("ptrace(GET_SYSCALL_INFO) of tid %d", tid_);
      }
      exit = info.op == PTRACE_SYSCALL_INFO_EXIT;
    }
    CRLIB_ASSIGN_OR_RETURN(initial_regs_, GetRegs());
  }
  return absl::InternalError(absl::StrFormat(
      "tid %d does not leave the recovering call site at 0x%x", tid_, site));
}

Tracee::~Tracee() {
  if (mem_fd_ >= 0) close(mem_fd_);
  if (attached_) ptrace(PTRACE_DETACH, tid_, 0, 0);
}

absl::StatusOr<int> Tracee::WaitStop() {
  int status;
  for (;;) {
    pid_t r = waitpid(tid_, &status, __WALL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Errno("waitpid(%d)", tid_);
    break;
  }
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    attached_ = false;
    return absl::AbortedError(absl::StrFormat(
        "pid %d %s while traced", tid_,
        WIFEXITED(status) ? absl::StrCat("exited with status ", WEXITSTATUS(status))
                          : absl::StrCat("was killed by signal ", WTERMSIG(status))));
  }
  return status;
}

absl::StatusOr<int> Tracee::WaitStopInCall() {
  absl::StatusOr<int> status = WaitStop();
  if (!status.ok() && attached_) SettleLostCall();
  return status;
}

void Tracee::SettleLostCall() {
  // Best effort: the caller reports the first error, and a tracee that
  // cannot be waited for at all is gone or not ours.
  for (int stops = 0; stops < 2; ++stops) {
    int status;
    pid_t r;
    while ((r = waitpid(tid_, &status, __WALL)) < 0 && errno == EINTR) {
    }
    if (r != tid_ || !WIFSTOPPED(status)) return;
    __ptrace_syscall_info info;
    if (ptrace(PTRACE_GET_SYSCALL_INFO, tid_, sizeof(info), &info) <= 0 ||
        info.op != PTRACE_SYSCALL_INFO_ENTRY) {
      return;
    }
    absl::StatusOr<ArchRegs> regs = GetRegs();
    if (!regs.ok()) return;
    arch_.SetSyscall(&*regs, info.instruction_pointer, -1, {});  // -1: no call
    if (!SetRegs(*regs).ok() || ptrace(PTRACE_SYSCALL, tid_, 0, 0) != 0) return;
  }
}

absl::StatusOr<ArchRegs> Tracee::GetRegs() {
  ArchRegs regs;
  iovec iov{regs.words.data(), sizeof(regs.words)};
  if (ptrace(PTRACE_GETREGSET, tid_, NT_PRSTATUS, &iov) != 0) {
    return Errno("ptrace(GETREGSET, NT_PRSTATUS) on tid %d", tid_);
  }
  regs.size = iov.iov_len;
  return regs;
}

absl::Status Tracee::SetRegs(const ArchRegs& regs) {
  ArchRegs copy = regs;
  iovec iov{copy.words.data(), regs.size ? regs.size : initial_regs_.size};
  if (ptrace(PTRACE_SETREGSET, tid_, NT_PRSTATUS, &iov) != 0) {
    return Errno("ptrace(SETREGSET, NT_PRSTATUS) on tid %d", tid_);
  }
  return absl::OkStatus();
}

absl::Status Tracee::SetSigmask(uint64_t mask) {
  if (ptrace(PTRACE_SETSIGMASK, tid_, sizeof(mask), &mask) != 0) {
    return Errno("ptrace(SETSIGMASK, 0x%x) on tid %d", mask, tid_);
  }
  return absl::OkStatus();
}

absl::Status Tracee::RestoreInitialState() {
  // The mask first: until the registers are back, a thread released by a
  // dead tracer still runs its recovering site, which puts both back; the
  // other way round it would run on with every signal blocked.
  absl::Status mask = SetSigmask(initial_sigmask_);
  absl::Status regs = SetRegs(initial_regs_);
  return mask.ok() ? regs : mask;
}

absl::Status Tracee::OpenMemory() {
  if (mem_fd_ >= 0) return absl::OkStatus();
  std::string mem = absl::StrCat("/proc/", tid_, "/mem");
  mem_fd_ = open(mem.c_str(), O_RDWR | O_CLOEXEC);
  if (mem_fd_ < 0) return Errno("open %s", mem);
  return absl::OkStatus();
}

absl::Status Tracee::ReadMemory(uint64_t address, void* buffer, size_t size) {
  CRLIB_RETURN_IF_ERROR(OpenMemory());
  return sys::ReadProcessMemory(mem_fd_, tid_, address, buffer, size);
}

absl::Status Tracee::WriteMemory(uint64_t address, const void* buffer, size_t size) {
  CRLIB_RETURN_IF_ERROR(OpenMemory());
  const auto* p = static_cast<const char*>(buffer);
  while (size > 0) {
    ssize_t n = pwrite(mem_fd_, p, size, static_cast<off_t>(address));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("write of %d bytes at 0x%x in pid %d", size, address, tid_);
    p += n;
    address += n;
    size -= n;
  }
  return absl::OkStatus();
}

absl::Status Tracee::FindSyscallSite() {
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> maps, sys::ReadMaps(tid_));
  absl::Span<const uint8_t> insn = arch_.SyscallInstruction();
  for (const sys::MapsEntry& m : maps) {
    if (m.path != "[vdso]") continue;
    std::vector<uint8_t> code(m.end - m.start);
    CRLIB_RETURN_IF_ERROR(ReadMemory(m.start, code.data(), code.size()));
    auto it = std::search(code.begin(), code.end(), insn.begin(), insn.end());
    if (it == code.end()) break;
    syscall_site_ = m.start + (it - code.begin());
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "pid %d: no system call instruction in a [vdso] mapping to run remote calls at", tid_));
}

absl::Status Tracee::BorrowAt(uint64_t site) {
  syscall_site_ = site;
  ArchRegs regs = initial_regs_;
  // Harmless if it ever runs alone, even at a site that closes the
  // call's result (getpid's could be a descriptor number): -EBADF.
  arch_.SetSyscall(&regs, site, SYS_close, {static_cast<uint64_t>(-1)});
  CRLIB_RETURN_IF_ERROR(SetRegs(regs));
  return SetSigmask(~uint64_t{0});
}

absl::StatusOr<uint64_t> Tracee::FindVdsoSlack(size_t size) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> maps, sys::ReadMaps(tid_));
  for (const sys::MapsEntry& m : maps) {
    if (m.path != "[vdso]" || m.end - m.start < 2 * size) continue;
    std::vector<uint8_t> tail(size);
    CRLIB_RETURN_IF_ERROR(ReadMemory(m.end - size, tail.data(), size));
    if (std::all_of(tail.begin(), tail.end(), [](uint8_t b) { return b == 0; }) ||
        arch_.IsRecoveringSite(tail)) {
      return m.end - size;
    }
  }
  return 0;
}

absl::StatusOr<int64_t> Tracee::Syscall(long nr, std::array<uint64_t, 6> args) {
  if (syscall_site_ == 0) CRLIB_RETURN_IF_ERROR(FindSyscallSite());
  ArchRegs regs = initial_regs_;
  arch_.SetSyscall(&regs, syscall_site_, nr, args);
  CRLIB_RETURN_IF_ERROR(SetRegs(regs));
  return RunToSyscallExit(nr);
}

absl::StatusOr<int64_t> Tracee::RunToSyscallExit(long nr) {
  // Entry stop, then exit stop.
  for (int stop = 0; stop < 2;) {
    if (ptrace(PTRACE_SYSCALL, tid_, 0, 0) != 0) return Errno("ptrace(SYSCALL) on tid %d", tid_);
    CRLIB_ASSIGN_OR_RETURN(int status, WaitStopInCall());
    if (WSTOPSIG(status) == (SIGTRAP | 0x80)) {
      ++stop;
      continue;
    }
    // A thread or process the call created (clone3 in a restore): the
    // caller adopts it by the TID this reports (ours, whatever PID
    // namespace it was created in).
    if ((status >> 16) == PTRACE_EVENT_CLONE || (status >> 16) == PTRACE_EVENT_FORK) {
      unsigned long created = 0;
      if (ptrace(PTRACE_GETEVENTMSG, tid_, 0, &created) != 0) {
        return Errno("ptrace(GETEVENTMSG) on tid %d", tid_);
      }
      last_created_ = static_cast<pid_t>(created);
      continue;
    }
    // A stop trap that was pending when we resumed it: the interrupt of
    // a seize that found the process in a group stop (SIGSTOP), which
    // re-trapped at the seize already. It runs nothing; resume again.
    if ((status >> 16) == PTRACE_EVENT_STOP) continue;
    // Any other stop means the tracee did not run our call as planned
    // (all signals are blocked while we work).
    return absl::InternalError(absl::StrFormat(
        "remote system call %d in pid %d: unexpected stop (signal %d, event %d)", nr, tid_,
        WSTOPSIG(status), status >> 16));
  }
  CRLIB_ASSIGN_OR_RETURN(ArchRegs after, GetRegs());
  return arch_.SyscallResult(after);
}

absl::StatusOr<int64_t> Tracee::CheckedSyscall(const char* what, long nr,
                                               std::array<uint64_t, 6> args) {
  CRLIB_ASSIGN_OR_RETURN(int64_t r, Syscall(nr, args));
  if (r < 0 && r > -4096) {
    return ErrnoError(static_cast<int>(-r), absl::StrFormat("%s in pid %d", what, tid_));
  }
  return r;
}

absl::StatusOr<size_t> Tracee::SyscallBatch(uint64_t code, uint64_t table,
                                            absl::Span<RemoteCall> calls) {
  // A result slot nothing can return, to tell which calls ran.
  constexpr uint64_t kNotRun = uint64_t{1} << 63;
  absl::Span<const uint8_t> bytes = arch_.BatchSyscallCode();
  CRLIB_RETURN_IF_ERROR(WriteMemory(code, bytes.data(), bytes.size()));
  std::vector<uint64_t> words;
  words.reserve((calls.size() + 1) * 8);
  for (const RemoteCall& c : calls) {
    words.push_back(static_cast<uint64_t>(c.nr));
    words.insert(words.end(), c.args.begin(), c.args.end());
    words.push_back(kNotRun);
  }
  words.push_back(static_cast<uint64_t>(-1));
  words.resize(words.size() + 7);
  CRLIB_RETURN_IF_ERROR(WriteMemory(table, words.data(), words.size() * 8));
  CRLIB_RETURN_IF_ERROR(RunCode(code, table, "remote system call batch"));
  CRLIB_RETURN_IF_ERROR(ReadMemory(table, words.data(), calls.size() * 64));
  size_t ran = 0;
  for (; ran < calls.size() && words[ran * 8 + 7] != kNotRun; ++ran) {
    calls[ran].result = static_cast<int64_t>(words[ran * 8 + 7]);
  }
  return ran;
}

absl::Status Tracee::RunCode(uint64_t code, uint64_t table, const char* what) {
  ArchRegs regs = initial_regs_;
  arch_.SetBatchCall(&regs, code, table);
  CRLIB_RETURN_IF_ERROR(SetRegs(regs));
  for (;;) {
    if (ptrace(PTRACE_CONT, tid_, 0, 0) != 0) return Errno("ptrace(CONT) on tid %d", tid_);
    CRLIB_ASSIGN_OR_RETURN(int status, WaitStopInCall());
    if ((status >> 16) == PTRACE_EVENT_CLONE || (status >> 16) == PTRACE_EVENT_FORK ||
        (status >> 16) == PTRACE_EVENT_STOP) continue;
    if ((status >> 16) == 0 && WSTOPSIG(status) == SIGTRAP) return absl::OkStatus();
    return absl::InternalError(absl::StrFormat("%s in tid %d: unexpected stop (signal %d, event %d)",
                                               what, tid_, WSTOPSIG(status), status >> 16));
  }
}

absl::Status Tracee::Detach(int signal) {
  if (!attached_) return absl::OkStatus();
  if (ptrace(PTRACE_DETACH, tid_, 0, signal) != 0) return Errno("ptrace(DETACH) of %d", tid_);
  attached_ = false;
  return absl::OkStatus();
}

absl::Status Tracee::RunBatch(uint64_t scratch, uint64_t size, absl::Span<RemoteCall> calls,
                              const std::function<std::string(size_t)>& what) {
  const uint64_t code = scratch + kBatchCodeOffset;
  const uint64_t table = code + 256;
  if (size < kBatchCodeOffset + 256 + 2 * 64) {
    return absl::InternalError("remote call batch: scratch area too small");
  }
  const size_t per_batch = (scratch + size - table) / 64 - 1;
  for (size_t at = 0; at < calls.size(); at += per_batch) {
    absl::Span<RemoteCall> batch = calls.subspan(at, std::min(per_batch, calls.size() - at));
    CRLIB_ASSIGN_OR_RETURN(size_t ran, SyscallBatch(code, table, batch));
    const bool failed = ran > 0 && batch[ran - 1].result < 0 && batch[ran - 1].result > -4096;
    if (failed || ran < batch.size()) {
      const size_t index = at + (ran > 0 ? ran - 1 : 0);
      return ErrnoError(failed ? static_cast<int>(-batch[ran - 1].result) : 0,
                        absl::StrFormat("%s in pid %d", what(index), tid_));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tracee>> Tracee::CloneWithTid(sys::CloneArgs args, pid_t tid,
                                                              uint64_t scratch,
                                                              const char* kind) {
  // clone3's arguments and its one-entry set_tid array.
  struct {
    sys::CloneArgs args;
    uint64_t tid;
  } clone{};
  clone.args = args;
  clone.args.set_tid = scratch + offsetof(decltype(clone), tid);
  clone.args.set_tid_size = 1;
  clone.tid = static_cast<uint64_t>(tid);
  CRLIB_RETURN_IF_ERROR(WriteMemory(scratch, &clone, sizeof(clone)));
  // The original's task with this TID may be dead and reaped and its
  // number still not free (see AwaitTidRelease): wait for it, not fail.
  const auto deadline = std::chrono::steady_clock::now() + sys::kTidReleaseWait;
  absl::StatusOr<int64_t> created;
  do {
    created = Syscall(SYS_clone3, {scratch, sizeof(clone.args)});
  } while (created.ok() && *created == -EEXIST && sys::AwaitTidRelease(tid, deadline));
  CRLIB_RETURN_IF_ERROR(created.status());
  if (*created == -EEXIST) {
    return absl::AlreadyExistsError(
        absl::StrFormat("%s %d is in use by another process", kind, tid));
  }
  if (*created < 0) {
    return ErrnoError(static_cast<int>(-*created),
                      absl::StrFormat("clone3 with set_tid %d in pid %d", tid, tid_));
  }
  if (*created != tid) {
    // Cannot happen with set_tid; if it does, the image's TID is wrong,
    // and the new task must still be killed with the rest.
    return absl::InternalError(absl::StrFormat("clone3 created %s %d, not %d", kind, *created, tid));
  }
  return AdoptNewThread(last_created_, *this);
}

}  // namespace crlib
