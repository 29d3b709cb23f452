#include "task/thread_capture.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "sys/kernel.h"
#include "sys/proc.h"

namespace crlib {

absl::StatusOr<std::string> ThreadComm(pid_t pid, pid_t tid) {
  CRLIB_ASSIGN_OR_RETURN(std::string comm,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/comm")));
  return std::string(absl::StripSuffix(comm, "\n"));
}

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
  CRLIB_ASSIGN_OR_RETURN(std::string groups, sys::StatusField(status, "Groups"));
  for (absl::string_view g : absl::StrSplit(groups, ' ', absl::SkipWhitespace())) {
    uint32_t id;
    if (!absl::SimpleAtoi(g, &id)) return absl::DataLossError("unparsable Groups: " + groups);
    p->groups.push_back(id);
  }
  for (auto [key, set] : {std::pair{"CapInh", &p->cap_inheritable}, {"CapPrm", &p->cap_permitted},
                          {"CapEff", &p->cap_effective}, {"CapBnd", &p->cap_bounding},
                          {"CapAmb", &p->cap_ambient}}) {
    CRLIB_ASSIGN_OR_RETURN(*set, sys::StatusMask(status, key));
  }
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

}  // namespace crlib
