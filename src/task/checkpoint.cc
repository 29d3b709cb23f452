#include "task/checkpoint.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/types/span.h"
#include "core/byte_stream.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "files/file_capture.h"
#include "mm/memory_capture.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "task/tracee.h"

namespace crlib {
namespace {

// The kernel's struct sigaction for rt_sigaction(2).
struct KernelSigaction {
  uint64_t handler, flags, restorer, mask;
};

// A page of the tracee's memory for the arguments of remote calls, mapped
// by the tracee itself and unmapped before its memory is read.
class RemoteScratch {
 public:
  static absl::StatusOr<RemoteScratch> Map(Tracee* t) {
    CRLIB_ASSIGN_OR_RETURN(int64_t addr,
                           t->CheckedSyscall("mmap of a scratch page", SYS_mmap,
                                             {0, 4096, PROT_READ | PROT_WRITE,
                                              MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0}));
    return RemoteScratch(t, static_cast<uint64_t>(addr));
  }
  uint64_t address() const { return address_; }
  absl::Status Unmap() {
    return tracee_->CheckedSyscall("munmap of the scratch page", SYS_munmap, {address_, 4096})
        .status();
  }

 private:
  RemoteScratch(Tracee* t, uint64_t a) : tracee_(t), address_(a) {}
  Tracee* tracee_;
  uint64_t address_;
};

// A thread's name. An error, not "": an empty name in the image would
// silently rename the restored thread.
absl::StatusOr<std::string> ThreadComm(pid_t pid, pid_t tid) {
  CRLIB_ASSIGN_OR_RETURN(std::string comm,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/comm")));
  return std::string(absl::StripSuffix(comm, "\n"));
}

// What the process shows in /proc/PID/status (`status`, its text).
absl::Status ParseStatus(absl::string_view status, ProcessRecord* p) {
  auto ids = [&](const char* key, uint32_t* a, uint32_t* b, uint32_t* c, uint32_t* d) -> absl::Status {
    CRLIB_ASSIGN_OR_RETURN(std::string v, sys::StatusField(status, key));
    if (sscanf(v.c_str(), "%u %u %u %u", a, b, c, d) != 4) {
      return absl::DataLossError(absl::StrCat("unparsable ", key, ": ", v));
    }
    return absl::OkStatus();
  };
  CRLIB_RETURN_IF_ERROR(ids("Uid", &p->uid, &p->euid, &p->suid, &p->fsuid));
  CRLIB_RETURN_IF_ERROR(ids("Gid", &p->gid, &p->egid, &p->sgid, &p->fsgid));
  CRLIB_ASSIGN_OR_RETURN(std::string umask, sys::StatusField(status, "Umask"));
  p->umask = static_cast<uint32_t>(strtoul(umask.c_str(), nullptr, 8));
  CRLIB_ASSIGN_OR_RETURN(std::string ppid, sys::StatusField(status, "PPid"));
  (void)absl::SimpleAtoi(ppid, &p->ppid);
  return absl::OkStatus();
}

absl::StatusOr<PendingSignalsRecord> PeekSignals(pid_t tid, bool shared) {
  PendingSignalsRecord rec;
  rec.shared = shared;
  for (uint64_t off = 0;; ++off) {
    struct {
      uint64_t off;
      uint32_t flags;
      int32_t nr;
    } args{off, shared ? 1u : 0u, 1};
    siginfo_t info;
    long n = ptrace(PTRACE_PEEKSIGINFO, tid, &args, &info);
    if (n < 0) return Errno("ptrace(PEEKSIGINFO) on tid %d", tid);
    if (n == 0) break;
    PendingSignal s;
    s.signo = static_cast<uint32_t>(info.si_signo);
    s.siginfo.assign(reinterpret_cast<uint8_t*>(&info), reinterpret_cast<uint8_t*>(&info) + sizeof(info));
    rec.signals.push_back(std::move(s));
  }
  return rec;
}

// A thread's own state that only the thread itself can report
// (sigaltstack, clear_child_tid), read with remote calls that leave their
// results at `buf` (a scratch page), plus what ptrace and /proc show.
absl::StatusOr<ThreadRecord> CaptureThread(Tracee* t, pid_t pid, uint64_t buf) {
  const pid_t tid = t->tid();
  ThreadRecord thread;
  thread.tid = static_cast<uint32_t>(tid);
  thread.sigmask = t->initial_sigmask();
  struct {
    stack_t ss;
    uint64_t clear_child_tid;
  } out;
  const uint64_t tid_address_at = buf + offsetof(decltype(out), clear_child_tid);
  CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("sigaltstack", SYS_sigaltstack, {0, buf}).status());
  CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("prctl(PR_GET_TID_ADDRESS)", SYS_prctl,
                                          {PR_GET_TID_ADDRESS, tid_address_at})
                            .status());
  CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &out, sizeof(out)));
  thread.sigaltstack_sp = reinterpret_cast<uint64_t>(out.ss.ss_sp);
  thread.sigaltstack_size = out.ss.ss_size;
  thread.sigaltstack_flags = static_cast<uint32_t>(out.ss.ss_flags);
  thread.clear_child_tid = out.clear_child_tid;
  // Readable from here: no remote call needed.
  uint64_t robust_head = 0;
  size_t robust_length = 0;
  if (syscall(SYS_get_robust_list, tid, &robust_head, &robust_length) != 0) {
    return Errno("get_robust_list(%d)", tid);
  }
  thread.robust_list = robust_head;
  thread.robust_list_length = robust_length;
  sys::PtraceRseqConfiguration rseq{};
  if (ptrace(static_cast<__ptrace_request>(sys::kPtraceGetRseqConfiguration), tid, sizeof(rseq),
             &rseq) < 0) {
    return Errno("ptrace(GET_RSEQ_CONFIGURATION) on tid %d", tid);
  }
  thread.rseq_address = rseq.rseq_abi_pointer;
  thread.rseq_length = rseq.rseq_abi_size;
  thread.rseq_signature = rseq.signature;
  thread.rseq_flags = rseq.flags;
  thread.syscall_nr = t->arch().InterruptedSyscall(t->initial_regs());
  CRLIB_ASSIGN_OR_RETURN(thread.comm, ThreadComm(pid, tid));
  return thread;
}

// Refuses `results` (CheckpointOptions::syscall_results) before anything
// is written unless each names a thread stopped inside a system call that
// has not completed.
absl::Status CheckSyscallResults(absl::Span<const std::unique_ptr<Tracee>> threads,
                                 const std::map<pid_t, int64_t>& results) {
  for (const auto& [tid, value] : results) {
    auto it = std::find_if(threads.begin(), threads.end(),
                           [&](const auto& t) { return t->tid() == tid; });
    if (it == threads.end()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "syscall_results names thread %d, which is not a thread of pid %d", tid,
          threads.front()->tid()));
    }
    ArchRegs regs = (*it)->initial_regs();
    CRLIB_RETURN_IF_ERROR(Annotate((*it)->arch().SetSyscallResult(&regs, value),
                                   absl::StrFormat("syscall_results names thread %d of pid %d",
                                                   tid, threads.front()->tid())));
  }
  return absl::OkStatus();
}

// Everything the dump reads while the process is stopped, written in the
// order restore consumes it. Every thread has all signals blocked.
absl::Status CaptureProcess(Context* ctx, absl::Span<const std::unique_ptr<Tracee>> threads,
                            const CheckpointOptions& options, const std::vector<FdInfo>& fds,
                            const std::vector<VmaInfo>& vmas) {
  Tracee* t = threads.front().get();
  const pid_t pid = t->tid();
  ImageWriter* w = ctx->writer();
  ObjectRegistry& reg = ctx->registry();

  ProcessRecord proc;
  proc.pid = static_cast<uint32_t>(pid);
  CRLIB_ASSIGN_OR_RETURN(std::string status,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/status")));
  CRLIB_RETURN_IF_ERROR(ParseStatus(status, &proc));
  // -1 recorded as an ID would make restore skip setsid/setpgid quietly.
  const pid_t pgid = getpgid(pid);
  if (pgid < 0) return Errno("getpgid(%d)", pid);
  const pid_t sid = getsid(pid);
  if (sid < 0) return Errno("getsid(%d)", pid);
  proc.pgid = static_cast<uint32_t>(pgid);
  proc.sid = static_cast<uint32_t>(sid);
  proc.exit_signal = SIGCHLD;
  CRLIB_ASSIGN_OR_RETURN(std::string personality,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/personality")));
  proc.personality = static_cast<uint32_t>(strtoul(personality.c_str(), nullptr, 16));
  CRLIB_ASSIGN_OR_RETURN(proc.comm, ThreadComm(pid, pid));
  CRLIB_ASSIGN_OR_RETURN(proc.cwd, sys::ReadLink(absl::StrCat("/proc/", pid, "/cwd")));
  CRLIB_ASSIGN_OR_RETURN(proc.root, sys::ReadLink(absl::StrCat("/proc/", pid, "/root")));

  // State only the process itself can report: handlers, timers, the
  // program break, and each thread's own (CaptureThread).
  CRLIB_ASSIGN_OR_RETURN(RemoteScratch scratch, RemoteScratch::Map(t));
  const uint64_t buf = scratch.address();
  SignalHandlersRecord handlers;
  // Only handlers /proc reports as ignored or caught need a remote call
  // (one each, ~50 us); SIGCHLD always, since SIG_DFL with SA_NOCLDWAIT
  // shows in neither mask.
  CRLIB_ASSIGN_OR_RETURN(uint64_t non_default, sys::NonDefaultSignals(status));
  non_default |= uint64_t{1} << (SIGCHLD - 1);
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP || !(non_default & (uint64_t{1} << (sig - 1)))) continue;
    CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("rt_sigaction", SYS_rt_sigaction,
                                            {static_cast<uint64_t>(sig), 0, buf, 8})
                              .status());
    KernelSigaction sa;
    CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &sa, sizeof(sa)));
    if (sa.handler == reinterpret_cast<uint64_t>(SIG_DFL) &&
        !(sig == SIGCHLD && (sa.flags & (SA_NOCLDWAIT | SA_NOCLDSTOP)))) {
      continue;
    }
    handlers.handlers.push_back({.signo = static_cast<uint32_t>(sig), .handler = sa.handler,
                                 .flags = sa.flags, .restorer = sa.restorer, .mask = sa.mask});
  }
  ItimersRecord timers;
  for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF}) {
    CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("getitimer", SYS_getitimer,
                                            {static_cast<uint64_t>(which), buf})
                              .status());
    itimerval tv;
    CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &tv, sizeof(tv)));
    if (tv.it_value.tv_sec == 0 && tv.it_value.tv_usec == 0) continue;
    timers.timers.push_back(
        {.which = static_cast<uint32_t>(which),
         .interval_usec = tv.it_interval.tv_sec * 1000000 + tv.it_interval.tv_usec,
         .value_usec = tv.it_value.tv_sec * 1000000 + tv.it_value.tv_usec});
  }
  CRLIB_ASSIGN_OR_RETURN(int64_t brk, t->CheckedSyscall("brk", SYS_brk, {0}));
  std::vector<ThreadRecord> records;
  for (const std::unique_ptr<Tracee>& thread : threads) {
    thread->ShareSyscallSite(*t);
    absl::StatusOr<ThreadRecord> rec = CaptureThread(thread.get(), pid, buf);
    if (!rec.ok()) return Annotate(rec.status(), absl::StrFormat("thread %d", thread->tid()));
    records.push_back(std::move(*rec));
  }
  CRLIB_RETURN_IF_ERROR(scratch.Unmap());

  ObjectRef process_ref = reg.NewRef();
  CRLIB_RETURN_IF_ERROR(w->Write(proc, process_ref, 0));
  for (size_t i = 0; i < threads.size(); ++i) {
    const Tracee& thread = *threads[i];
    ArchRegs regs = thread.initial_regs();
    if (auto it = options.syscall_results.find(thread.tid()); it != options.syscall_results.end()) {
      // The image holds the call as returned: no longer inside it.
      CRLIB_RETURN_IF_ERROR(thread.arch().SetSyscallResult(&regs, it->second));
      records[i].syscall_nr = -1;
    }
    ObjectRef thread_ref = reg.NewRef();
    CRLIB_RETURN_IF_ERROR(w->Write(records[i], thread_ref, process_ref));
    CRLIB_RETURN_IF_ERROR(thread.arch().CaptureCpu(thread.tid(), regs, w, thread_ref));
    CRLIB_ASSIGN_OR_RETURN(PendingSignalsRecord own, PeekSignals(thread.tid(), false));
    if (!own.signals.empty()) CRLIB_RETURN_IF_ERROR(w->Write(own, 0, thread_ref));
  }

  CRLIB_RETURN_IF_ERROR(w->Write(handlers, 0, process_ref));
  CRLIB_ASSIGN_OR_RETURN(PendingSignalsRecord shared, PeekSignals(pid, true));
  if (!shared.signals.empty()) CRLIB_RETURN_IF_ERROR(w->Write(shared, 0, process_ref));
  RlimitsRecord limits;
  for (int r = 0; r < RLIM_NLIMITS; ++r) {
    rlimit64 lim;
    if (prlimit64(pid, static_cast<__rlimit_resource>(r), nullptr, &lim) != 0) {
      return Errno("prlimit(%d) of pid %d", r, pid);
    }
    limits.limits.push_back({.resource = static_cast<uint32_t>(r), .cur = lim.rlim_cur, .max = lim.rlim_max});
  }
  CRLIB_RETURN_IF_ERROR(w->Write(limits, 0, process_ref));
  CRLIB_RETURN_IF_ERROR(w->Write(timers, 0, process_ref));

  CRLIB_RETURN_IF_ERROR(WriteFileTable(ctx, pid, fds, process_ref));
  return WriteMemoryMap(ctx, t, vmas, static_cast<uint64_t>(brk), process_ref);
}

}  // namespace

absl::Status CheckpointProcess(Context* ctx, pid_t pid, const std::string& image_path,
                               const CheckpointOptions& options) {
  const int64_t start = NowNs();
  if (pid <= 0 || !sys::ProcessExists(pid)) {
    return absl::NotFoundError(absl::StrFormat("no process with pid %d", pid));
  }
  if (pid == getpid()) {
    return absl::InvalidArgumentError("a process cannot dump itself directly");
  }
  CRLIB_RETURN_IF_ERROR(ctx->Progress(Phase::kFreeze));
  CRLIB_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Tracee>> threads, Tracee::SeizeProcess(pid));
  const int64_t frozen_at = NowNs();
  Tracee* t = threads.front().get();
  // From here on every failure resumes every thread as it was: registers
  // and signal mask restored, then detached.
  auto resume = [&]() -> absl::Status {
    absl::Status first;
    for (const std::unique_ptr<Tracee>& thread : threads) {
      // A thread that ran remote calls must not go on with their registers
      // or with every signal blocked: it would crash or never see a
      // signal again. One more try (a failed ptrace changed nothing), then
      // the process is killed rather than left to run corrupted.
      absl::Status st = thread->RestoreInitialState();
      if (!st.ok()) st = thread->RestoreInitialState();
      if (!st.ok()) {
        Tracee::KillProcess(threads);
        return Annotate(st, absl::StrFormat("pid %d killed: thread %d could not be resumed as it was",
                                            pid, thread->tid()));
      }
      // If the detach fails the thread stays stopped, registers restored,
      // until we exit and the kernel detaches it.
      st = thread->Detach();
      if (first.ok()) first = st;
    }
    return first;
  };
  absl::Status st = [&]() -> absl::Status {
    // Refuse unsupported resources before anything is written; a nocr
    // mark (seen among the descriptors) comes first.
    CRLIB_ASSIGN_OR_RETURN(std::vector<FdInfo> fds, ScanFds(pid, options.skip_fds));
    CRLIB_RETURN_IF_ERROR(CheckSyscallResults(threads, options.syscall_results));
    CRLIB_ASSIGN_OR_RETURN(std::vector<pid_t> children, sys::ListChildren(pid));
    std::erase_if(children, [&](pid_t c) {
      return std::find(options.skip_children.begin(), options.skip_children.end(), c) !=
             options.skip_children.end();
    });
    if (!children.empty()) {
      return absl::UnimplementedError(absl::StrFormat(
          "pid %d has child processes (%d); process trees are not supported yet", pid,
          children.front()));
    }
    CRLIB_ASSIGN_OR_RETURN(std::vector<VmaInfo> vmas, ScanVmas(pid));

    // Remote calls run in every thread: no signal handler may run instead.
    for (const std::unique_ptr<Tracee>& thread : threads) {
      CRLIB_RETURN_IF_ERROR(thread->SetSigmask(~uint64_t{0}));
    }
    CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileSink> sink, AtomicFileSink::Create(image_path));
    const ArchBackend& arch = t->arch();
    utsname uts;
    // The kernel release goes into the image header: never uninitialized.
    if (uname(&uts) != 0) return Errno("uname");
    ImageInfo info;
    info.cpu_family = arch.family();
    info.page_size = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));
    info.xsave_features = arch.HostXsaveFeatures();
    info.xsave_size = arch.HostXsaveSize();
    info.kernel_release = uts.release;
    if (ctx->options().compression_level > 0) info.flags |= kImageCompressed;
    else if (ctx->options().mappable) info.flags |= kImageMappable;
    ImageWriter writer(sink.get(), info);
    ctx->set_writer(&writer);
    CRLIB_RETURN_IF_ERROR(writer.Begin());
    CRLIB_RETURN_IF_ERROR(ctx->Progress(Phase::kState));
    CRLIB_RETURN_IF_ERROR(CaptureProcess(ctx, threads, options, fds, vmas));
    CRLIB_RETURN_IF_ERROR(writer.Finish());
    ctx->stats().records = writer.record_count();
    ctx->stats().bytes = writer.bytes_written();
    return sink->Commit();
  }();
  ctx->set_writer(nullptr);
  if (!st.ok() || options.leave_running) {
    absl::Status resumed = resume();
    // The image is committed and complete: it stays, the error says so.
    if (st.ok() && !resumed.ok()) {
      st = Annotate(resumed, absl::StrFormat("image %s written, but resuming pid %d failed",
                                             image_path, pid));
    }
  } else {
    // The image is complete and durable: the process may go.
    Tracee::KillProcess(threads);
  }
  ctx->stats().frozen_ns = NowNs() - frozen_at;
  ctx->stats().total_ns = NowNs() - start;
  if (st.ok()) (void)ctx->Progress(Phase::kDone);  // too late to cancel
  return st;
}

}  // namespace crlib
