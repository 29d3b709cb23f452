#include "task/checkpoint.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
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

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

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

std::string ThreadComm(pid_t pid, pid_t tid) {
  auto comm = sys::ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/comm"));
  return comm.ok() ? std::string(absl::StripSuffix(*comm, "\n")) : "";
}

// What the process shows in /proc/PID/status.
absl::Status ReadStatus(pid_t pid, ProcessRecord* p) {
  CRLIB_ASSIGN_OR_RETURN(std::string status, sys::ReadFile(absl::StrCat("/proc/", pid, "/status")));
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

// Everything the dump reads while the process is stopped, written in the
// order restore consumes it.
absl::Status CaptureProcess(Context* ctx, Tracee* t, uint64_t original_sigmask,
                            const std::vector<FdInfo>& fds, const std::vector<VmaInfo>& vmas) {
  const pid_t pid = t->tid();
  ImageWriter* w = ctx->writer();
  ObjectRegistry& reg = ctx->registry();

  ProcessRecord proc;
  proc.pid = static_cast<uint32_t>(pid);
  CRLIB_RETURN_IF_ERROR(ReadStatus(pid, &proc));
  proc.pgid = static_cast<uint32_t>(getpgid(pid));
  proc.sid = static_cast<uint32_t>(getsid(pid));
  proc.exit_signal = SIGCHLD;
  CRLIB_ASSIGN_OR_RETURN(std::string personality,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/personality")));
  proc.personality = static_cast<uint32_t>(strtoul(personality.c_str(), nullptr, 16));
  proc.comm = ThreadComm(pid, pid);
  CRLIB_ASSIGN_OR_RETURN(proc.cwd, sys::ReadLink(absl::StrCat("/proc/", pid, "/cwd")));
  CRLIB_ASSIGN_OR_RETURN(proc.root, sys::ReadLink(absl::StrCat("/proc/", pid, "/root")));

  // State only the process itself can report: handlers, sigaltstack,
  // timers, the program break. All signals are blocked meanwhile.
  CRLIB_ASSIGN_OR_RETURN(RemoteScratch scratch, RemoteScratch::Map(t));
  const uint64_t buf = scratch.address();
  SignalHandlersRecord handlers;
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("rt_sigaction", SYS_rt_sigaction,
                                            {static_cast<uint64_t>(sig), 0, buf, 8})
                              .status());
    KernelSigaction sa;
    CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &sa, sizeof(sa)));
    if (sa.handler == reinterpret_cast<uint64_t>(SIG_DFL)) continue;
    handlers.handlers.push_back({.signo = static_cast<uint32_t>(sig), .handler = sa.handler,
                                 .flags = sa.flags, .restorer = sa.restorer, .mask = sa.mask});
  }
  CRLIB_RETURN_IF_ERROR(
      t->CheckedSyscall("sigaltstack", SYS_sigaltstack, {0, buf}).status());
  stack_t ss;
  CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &ss, sizeof(ss)));
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
  CRLIB_RETURN_IF_ERROR(scratch.Unmap());

  ObjectRef process_ref = reg.NewRef();
  CRLIB_RETURN_IF_ERROR(w->Write(proc, process_ref, 0));

  ThreadRecord thread;
  thread.tid = static_cast<uint32_t>(pid);
  thread.sigmask = original_sigmask;
  thread.sigaltstack_sp = reinterpret_cast<uint64_t>(ss.ss_sp);
  thread.sigaltstack_size = ss.ss_size;
  thread.sigaltstack_flags = static_cast<uint32_t>(ss.ss_flags);
  sys::PtraceRseqConfiguration rseq{};
  if (ptrace(static_cast<__ptrace_request>(sys::kPtraceGetRseqConfiguration), pid, sizeof(rseq),
             &rseq) < 0) {
    return Errno("ptrace(GET_RSEQ_CONFIGURATION) on tid %d", pid);
  }
  thread.rseq_address = rseq.rseq_abi_pointer;
  thread.rseq_length = rseq.rseq_abi_size;
  thread.rseq_signature = rseq.signature;
  thread.rseq_flags = rseq.flags;
  thread.syscall_nr = t->arch().InterruptedSyscall(t->initial_regs());
  thread.comm = ThreadComm(pid, pid);
  ObjectRef thread_ref = reg.NewRef();
  CRLIB_RETURN_IF_ERROR(w->Write(thread, thread_ref, process_ref));
  CRLIB_RETURN_IF_ERROR(t->arch().CaptureCpu(pid, t->initial_regs(), w, thread_ref));
  CRLIB_ASSIGN_OR_RETURN(PendingSignalsRecord own, PeekSignals(pid, false));
  if (!own.signals.empty()) CRLIB_RETURN_IF_ERROR(w->Write(own, 0, thread_ref));

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
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<Tracee> t, Tracee::Seize(pid));
  const int64_t frozen_at = NowNs();
  // From here on every failure resumes the process as it was: registers
  // and signal mask restored, then detached (by ~Tracee).
  uint64_t sigmask = 0;
  if (ptrace(PTRACE_GETSIGMASK, pid, sizeof(sigmask), &sigmask) != 0) {
    return Errno("ptrace(GETSIGMASK) on pid %d", pid);
  }
  auto resume = [&]() {
    (void)t->SetRegs(t->initial_regs());
    ptrace(PTRACE_SETSIGMASK, pid, sizeof(sigmask), &sigmask);
  };
  absl::Status st = [&]() -> absl::Status {
    CRLIB_ASSIGN_OR_RETURN(std::vector<pid_t> threads, sys::ListThreads(pid));
    if (threads.size() > 1) {
      return absl::UnimplementedError(absl::StrFormat(
          "pid %d has %d threads; multi-threaded processes are not supported yet", pid,
          threads.size()));
    }
    CRLIB_ASSIGN_OR_RETURN(std::vector<pid_t> children, sys::ListChildren(pid));
    if (!children.empty()) {
      return absl::UnimplementedError(absl::StrFormat(
          "pid %d has child processes (%d); process trees are not supported yet", pid,
          children.front()));
    }
    // Refuse unsupported resources before anything is written.
    CRLIB_ASSIGN_OR_RETURN(std::vector<FdInfo> fds, ScanFds(pid));
    CRLIB_ASSIGN_OR_RETURN(std::vector<VmaInfo> vmas, ScanVmas(pid));

    uint64_t all = ~uint64_t{0};
    if (ptrace(PTRACE_SETSIGMASK, pid, sizeof(all), &all) != 0) {
      return Errno("ptrace(SETSIGMASK) on pid %d", pid);
    }
    CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileSink> sink, AtomicFileSink::Create(image_path));
    const ArchBackend& arch = t->arch();
    utsname uts;
    uname(&uts);
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
    CRLIB_RETURN_IF_ERROR(CaptureProcess(ctx, t.get(), sigmask, fds, vmas));
    CRLIB_RETURN_IF_ERROR(writer.Finish());
    ctx->stats().records = writer.record_count();
    ctx->stats().bytes = writer.bytes_written();
    ctx->set_writer(nullptr);
    return sink->Commit();
  }();
  ctx->set_writer(nullptr);
  if (!st.ok() || options.leave_running) {
    resume();
    absl::Status detach = t->Detach();
    ctx->stats().frozen_ns = NowNs() - frozen_at;
    ctx->stats().total_ns = NowNs() - start;
    return st.ok() ? detach : st;
  }
  // The image is complete and durable: the process may go.
  kill(pid, SIGKILL);
  ctx->stats().frozen_ns = NowNs() - frozen_at;
  ctx->stats().total_ns = NowNs() - start;
  return absl::OkStatus();
}

}  // namespace crlib
