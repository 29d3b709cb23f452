#include "task/thread_restore.h"

#include <linux/prctl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "sys/credentials.h"
#include "sys/kernel.h"
#include "sys/proc.h"

namespace crlib {

absl::Status ThreadStep(const char* name, pid_t tid, absl::Status status) {
  if (status.ok()) return status;
  return Annotate(status, absl::StrFormat("restore step '%s' of thread %d", name, tid));
}

absl::Status RestoreThreadAttributes(Tracee* t, pid_t pid, const ThreadImage& thread,
                                     const ThreadStart& start, uint64_t scratch) {
  const ThreadRecord& r = thread.record;
  const pid_t tid = t->tid();
  // A thread created with CLONE_VM has no signal stack, rseq area or
  // robust list; the main thread, forked from the restorer, may have the
  // restorer's signal stack (rseq is unregistered and the robust list
  // cleared by then).
  if (!(r.sigaltstack_flags & SS_DISABLE) || !start.no_sigaltstack) {
    stack_t ss{};
    ss.ss_sp = reinterpret_cast<void*>(r.sigaltstack_sp);
    ss.ss_size = r.sigaltstack_size;
    // SS_ONSTACK is a state, not a flag sigaltstack() takes.
    ss.ss_flags = static_cast<int>(r.sigaltstack_flags) & ~SS_ONSTACK;
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, &ss, sizeof(ss)));
    CRLIB_RETURN_IF_ERROR(
        ThreadStep("sigaltstack", tid,
                   t->CheckedSyscall("sigaltstack", SYS_sigaltstack, {scratch, 0}).status()));
  }
  if (r.rseq_length) {
    CRLIB_RETURN_IF_ERROR(ThreadStep(
        "rseq", tid,
        t->CheckedSyscall("rseq", SYS_rseq, {r.rseq_address, r.rseq_length, 0, r.rseq_signature})
            .status()));
  }
  if (r.clear_child_tid != start.clear_child_tid) {
    CRLIB_RETURN_IF_ERROR(ThreadStep(
        "clear_child_tid", tid,
        t->CheckedSyscall("set_tid_address", SYS_set_tid_address, {r.clear_child_tid}).status()));
  }
  if (r.robust_list) {
    CRLIB_RETURN_IF_ERROR(ThreadStep("robust list", tid,
                                     t->CheckedSyscall("set_robust_list", SYS_set_robust_list,
                                                       {r.robust_list, r.robust_list_length})
                                         .status()));
  }
  const std::string comm = r.comm.substr(0, 15);  // TASK_COMM_LEN, NUL included
  if (comm != start.comm) {
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, comm.c_str(), comm.size() + 1));
    CRLIB_RETURN_IF_ERROR(ThreadStep(
        "name", tid,
        t->CheckedSyscall("prctl(PR_SET_NAME)", SYS_prctl, {PR_SET_NAME, scratch}).status()));
  }
  if (thread.pending) {
    CRLIB_RETURN_IF_ERROR(
        ThreadStep("pending signals", tid, QueueSignals(t, pid, *thread.pending, scratch)));
  }
  return absl::OkStatus();
}

absl::Status CreateThreads(Tracee* main, const ProcessImage& image, uint64_t scratch,
                           std::vector<std::unique_ptr<Tracee>>* threads) {
  const pid_t pid = main->tid();
  // The main thread's name is set already; threads that share it inherit it.
  const ThreadStart inherited{.comm = image.threads.front().record.comm.substr(0, 15)};
  for (size_t i = 1; i < image.threads.size(); ++i) {
    const ThreadImage& thread = image.threads[i];
    const ThreadRecord& r = thread.record;
    const pid_t want = static_cast<pid_t>(r.tid);
    // No stack: the thread runs no code before its registers are set. Its
    // TLS comes back with fs_base, its clear_child_tid with
    // CLONE_CHILD_CLEARTID (one remote call fewer than set_tid_address).
    sys::CloneArgs args{};
    args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    if (r.clear_child_tid) {
      args.flags |= CLONE_CHILD_CLEARTID;
      args.child_tid = r.clear_child_tid;
    }
    absl::StatusOr<std::unique_ptr<Tracee>> t = main->CloneWithTid(args, want, scratch, "tid");

    CRLIB_RETURN_IF_ERROR(ThreadStep("create thread", want, t.status()));
    threads->push_back(std::move(*t));
    ThreadStart start = inherited;
    start.clear_child_tid = r.clear_child_tid;
    start.no_sigaltstack = true;
    CRLIB_RETURN_IF_ERROR(
        RestoreThreadAttributes(threads->back().get(), pid, thread, start, scratch));
  }
  return absl::OkStatus();
}

absl::Status QueueSignals(Tracee* t, pid_t pid, const PendingSignalsRecord& rec, uint64_t scratch) {
  for (const PendingSignal& s : rec.signals) {
    if (s.siginfo.size() > 128) return absl::DataLossError("siginfo larger than 128 bytes");
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, s.siginfo.data(), s.siginfo.size()));
    // The kernel accepts a siginfo claiming to come from kill() or tkill()
    // only from the receiving thread itself: hence the remote call.
    absl::StatusOr<int64_t> r =
        rec.shared ? t->CheckedSyscall("rt_sigqueueinfo", SYS_rt_sigqueueinfo,
                                       {static_cast<uint64_t>(pid), s.signo, scratch})
                   : t->CheckedSyscall("rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo,
                                       {static_cast<uint64_t>(pid), static_cast<uint64_t>(t->tid()),
                                        s.signo, scratch});
    CRLIB_RETURN_IF_ERROR(r.status());
  }
  return absl::OkStatus();
}

absl::Status RestoreCredentials(Tracee* t, const ProcessRecord& p, uint64_t scratch) {
  // Remote calls in `t`, arguments in the scratch area.
  class RemoteRunner : public sys::SyscallRunner {
   public:
    RemoteRunner(Tracee* t, uint64_t scratch) : t_(t), scratch_(scratch) {}
    absl::StatusOr<uint64_t> Stage(const void* data, size_t size) override {
      CRLIB_RETURN_IF_ERROR(t_->WriteMemory(scratch_, data, size));
      return scratch_;
    }
    absl::StatusOr<int64_t> Call(const std::string& what, long nr,
                                 std::array<uint64_t, 6> args) override {
      return t_->CheckedSyscall(what.c_str(), nr, args);
    }

   private:
    Tracee* t_;
    uint64_t scratch_;
  } runner(t, scratch);
  return ThreadStep("credentials", t->tid(), sys::SetCredentials(runner, ImageCredentials(p)));
}

absl::Status RestoreCpuState(Tracee* t, const ThreadImage& thread) {
  absl::StatusOr<ArchRegs> regs = t->arch().RestoreCpu(t->tid(), thread.cpu);
  CRLIB_RETURN_IF_ERROR(ThreadStep("CPU state", t->tid(), regs.status()));
  CRLIB_RETURN_IF_ERROR(ThreadStep("signal mask", t->tid(), t->SetSigmask(thread.record.sigmask)));
  return ThreadStep("registers", t->tid(), t->SetRegs(*regs));
}

absl::Status RestoreRlimits(pid_t pid, const ProcessImage& image) {
  for (const Rlimit& r : image.rlimits.limits) {
    rlimit64 lim{r.cur, r.max};
    if (prlimit64(pid, static_cast<__rlimit_resource>(r.resource), &lim, nullptr) != 0) {
      return Errno("prlimit(%d) on pid %d", r.resource, pid);
    }
  }
  return absl::OkStatus();
}

absl::Status RestoreItimers(Tracee* t, const ProcessImage& image, uint64_t scratch) {
  for (const Itimer& it : image.itimers.timers) {
    // Value 0: a periodic timer that fired and waited for its SIGALRM to
    // be dequeued (it comes back pending); one more interval, as then.
    const int64_t value = it.value_usec ? it.value_usec : it.interval_usec;
    itimerval tv{{it.interval_usec / 1000000, it.interval_usec % 1000000},
                 {value / 1000000, value % 1000000}};
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, &tv, sizeof(tv)));
    CRLIB_RETURN_IF_ERROR(
        t->CheckedSyscall("setitimer", SYS_setitimer, {it.which, scratch, 0}).status());
  }
  return absl::OkStatus();
}

absl::Status RestoreSignalHandlers(Tracee* t, const ProcessImage& image, uint64_t scratch) {
  CRLIB_ASSIGN_OR_RETURN(std::string status,
                         sys::ReadFile(absl::StrCat("/proc/", t->tid(), "/status")));
  CRLIB_ASSIGN_OR_RETURN(uint64_t non_default, sys::NonDefaultSignals(status));
  std::vector<SignalHandler> handlers = image.handlers.handlers;
  for (int sig = 1; sig <= 64; ++sig) {
    bool listed = std::any_of(handlers.begin(), handlers.end(), [&](const SignalHandler& h) {
      return h.signo == static_cast<uint32_t>(sig);
    });
    if (!listed && (non_default & (uint64_t{1} << (sig - 1)))) {
      handlers.push_back({.signo = static_cast<uint32_t>(sig)});  // SIG_DFL
    }
  }
  // Every struct sigaction at once (64 x 32 bytes, below the batch code),
  // then one batch of rt_sigaction calls: one stop, not two per signal.
  // SIGTRAP's last, on its own: the batch ends in a breakpoint whose
  // forced SIGTRAP (blocked here) would reset that handler to SIG_DFL.
  std::stable_partition(handlers.begin(), handlers.end(),
                        [](const SignalHandler& h) { return h.signo != SIGTRAP; });
  std::vector<uint64_t> sas;
  std::vector<Tracee::RemoteCall> calls;
  for (size_t i = 0; i < handlers.size(); ++i) {
    const SignalHandler& h = handlers[i];
    sas.insert(sas.end(), {h.handler, h.flags, h.restorer, h.mask});
    if (h.signo != SIGTRAP) calls.push_back({SYS_rt_sigaction, {h.signo, scratch + 32 * i, 0, 8}});
  }
  if (handlers.empty()) return absl::OkStatus();
  CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, sas.data(), sas.size() * 8));
  CRLIB_RETURN_IF_ERROR(t->RunBatch(scratch, kRestoreScratchBytes, absl::MakeSpan(calls),
                                    [&](size_t i) {
                                      return absl::StrFormat("rt_sigaction(%d)", handlers[i].signo);
                                    }));
  if (handlers.back().signo != SIGTRAP) return absl::OkStatus();
  const uint64_t trap_at = scratch + 32 * (handlers.size() - 1);
  return t->CheckedSyscall("rt_sigaction(SIGTRAP)", SYS_rt_sigaction, {SIGTRAP, trap_at, 0, 8})
      .status();
}

}  // namespace crlib
