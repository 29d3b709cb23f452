#include "cr/ask_process.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "arch/arch_backend.h"
#include "core/status.h"
#include "sys/proc.h"
#include "remote/vdso_site.h"
#include "task/attributes.h"
#include "task/thread_capture.h"
#include "task/uncarried_state.h"

namespace crlib {
namespace {

// The kernel's struct sigaction for rt_sigaction(2).
struct KernelSigaction {
  uint64_t handler, flags, restorer, mask;
};

// Memory of the tracee's for remote calls, mapped by the tracee itself
// and unmapped before its memory is read: a page for the calls'
// arguments, 16 bytes of stack per thread and one recovering call site
// (ArchBackend::RecoveringSyscallSite) per thread. A dump killed before
// the unmap leaves it mapped (a few KiB, the sites not writable): the
// process runs on unharmed, with that one mapping more.
class RemoteScratch {
 public:
  // Maps the area with remote calls in `threads`' main thread, at its
  // current site, and writes every thread's recovering site, which then
  // become read-only and executable (never writable and executable).
  static absl::StatusOr<RemoteScratch> Map(absl::Span<const std::unique_ptr<Tracee>> threads) {
    Tracee* t = threads.front().get();
    const uint64_t stacks = AlignUp(16 * threads.size(), 4096);
    const uint64_t sites = AlignUp(ArchBackend::kRecoveringSiteBytes * threads.size(), 4096);
    const uint64_t size = 4096 + stacks + sites;
    CRLIB_ASSIGN_OR_RETURN(int64_t addr,
                           t->CheckedSyscall("mmap of the scratch area", SYS_mmap,
                                             {0, size, PROT_READ | PROT_WRITE,
                                              MAP_PRIVATE | MAP_ANONYMOUS,
                                              static_cast<uint64_t>(-1), 0}));
    RemoteScratch scratch(t, static_cast<uint64_t>(addr), size, stacks);
    for (size_t i = 0; i < threads.size(); ++i) {
      const Tracee& thread = *threads[i];
      std::vector<uint8_t> site = thread.arch().RecoveringSyscallSite(
          thread.initial_regs(), thread.initial_sigmask(), scratch.stack_top(i));
      CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch.site(i), site.data(), site.size()));
    }
    CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("mprotect of the scratch area's call sites",
                                            SYS_mprotect,
                                            {scratch.site(0), sites, PROT_READ | PROT_EXEC})
                              .status());
    return scratch;
  }
  // The arguments page.
  uint64_t address() const { return address_; }
  uint64_t stack_top(size_t thread) const { return address_ + 4096 + 16 * (thread + 1); }
  uint64_t site(size_t thread) const {
    return address_ + 4096 + stacks_ + ArchBackend::kRecoveringSiteBytes * thread;
  }
  // From `site` (the vDSO's, whatever the thread's site was).
  absl::Status Unmap(uint64_t site) {
    tracee_->SetSyscallSite(site);
    return tracee_->CheckedSyscall("munmap of the scratch area", SYS_munmap, {address_, size_})
        .status();
  }

 private:
  RemoteScratch(Tracee* t, uint64_t a, uint64_t size, uint64_t stacks)
      : tracee_(t), address_(a), size_(size), stacks_(stacks) {}
  Tracee* tracee_;
  uint64_t address_, size_, stacks_;
};

// The remote calls proper, each thread at its own recovering site in
// `scratch`, so that a tracer killed at any moment releases every thread
// into its own state.
absl::StatusOr<AskedState> AskThroughScratch(absl::Span<const std::unique_ptr<Tracee>> threads,
                                             absl::string_view status,
                                             const RemoteScratch& scratch) {
  Tracee* t = threads.front().get();
  const pid_t pid = t->tid();
  CRLIB_RETURN_IF_ERROR(t->BorrowAt(scratch.site(0)));
  AskedState asked;
  const uint64_t buf = scratch.address();
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
    asked.handlers.handlers.push_back({.signo = static_cast<uint32_t>(sig), .handler = sa.handler,
                                       .flags = sa.flags, .restorer = sa.restorer,
                                       .mask = sa.mask});
  }
  for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF}) {
    CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("getitimer", SYS_getitimer,
                                            {static_cast<uint64_t>(which), buf})
                              .status());
    itimerval tv;
    CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &tv, sizeof(tv)));
    // A periodic ITIMER_REAL that fired shows value 0 until its SIGALRM
    // (pending now) is dequeued, which rearms it: it is still armed.
    if (tv.it_value.tv_sec == 0 && tv.it_value.tv_usec == 0 && tv.it_interval.tv_sec == 0 &&
        tv.it_interval.tv_usec == 0) {
      continue;
    }
    asked.timers.timers.push_back(
        {.which = static_cast<uint32_t>(which),
         .interval_usec = tv.it_interval.tv_sec * 1000000 + tv.it_interval.tv_usec,
         .value_usec = tv.it_value.tv_sec * 1000000 + tv.it_value.tv_usec});
  }
  CRLIB_ASSIGN_OR_RETURN(int64_t brk, t->CheckedSyscall("brk", SYS_brk, {0}));
  asked.brk = static_cast<uint64_t>(brk);
  // /proc does not show securebits (KEEP_CAPS, NOROOT ...).
  CRLIB_ASSIGN_OR_RETURN(int64_t securebits, t->CheckedSyscall("prctl(PR_GET_SECUREBITS)",
                                                               SYS_prctl, {PR_GET_SECUREBITS}));
  asked.securebits = static_cast<uint32_t>(securebits);
  CRLIB_ASSIGN_OR_RETURN(asked.attributes, CaptureProcessAttributes(t, buf));
  std::vector<pid_t> tids;
  for (const auto& thread : threads) tids.push_back(thread->tid());
  CRLIB_ASSIGN_OR_RETURN(asked.posix_timers, CapturePosixTimers(t, buf, tids));
  for (size_t i = 0; i < threads.size(); ++i) {
    Tracee* thread = threads[i].get();
    if (i > 0) CRLIB_RETURN_IF_ERROR(thread->BorrowAt(scratch.site(i)));
    absl::StatusOr<ThreadRecord> rec = CaptureThread(thread, pid, buf);
    absl::StatusOr<ThreadAttributesRecord> attributes =
        rec.ok() ? CaptureThreadAttributes(thread, pid, buf) : rec.status();
    absl::Status uncarried = attributes.ok() ? RefuseSelfOnlyState(thread, buf) : absl::OkStatus();
    // Its own state back, also before the scratch (its site) goes.
    absl::Status restored = thread->RestoreInitialState();
    if (!attributes.ok()) {
      return Annotate(attributes.status(), absl::StrFormat("thread %d", thread->tid()));
    }
    CRLIB_RETURN_IF_ERROR(restored);
    CRLIB_RETURN_IF_ERROR(uncarried);
    asked.threads.push_back(std::move(*rec));
    asked.thread_attributes.push_back(*attributes);
  }
  // ptrace requests only; refuses filters restore could not install.
  CRLIB_ASSIGN_OR_RETURN(uint64_t cap_effective, sys::StatusMask(status, "CapEff"));
  CRLIB_ASSIGN_OR_RETURN(asked.seccomp, CaptureSeccomp(tids, asked.thread_attributes, cap_effective));
  return asked;
}

}  // namespace

// Runs every remote call of the dump, each at a call site that recovers
// by itself (ArchBackend::RecoveringSyscallSite): the mmap and munmap of
// the scratch area at one written into the unused tail of the main
// thread's vDSO (its stack below the red zone), every other call at the
// thread's own site in the scratch area. Each thread gets its real
// registers and signal mask back as soon as its last call is done, before
// anything else is read. So a tracer killed at any moment releases every
// thread into its own state, and the time a thread spends borrowed does
// not grow with memory size. A vDSO without a free tail (none seen) falls
// back to its own system call instruction for those two calls.
absl::StatusOr<AskedState> AskProcess(absl::Span<const std::unique_ptr<Tracee>> threads,
                                      absl::string_view status) {
  Tracee* t = threads.front().get();
  CRLIB_ASSIGN_OR_RETURN(VdsoCallSite outer, VdsoCallSite::Install(t));
  absl::Status borrowed = t->BorrowAt(outer.address());
  // MDWE first: it would forbid the scratch's executable call sites.
  if (borrowed.ok()) borrowed = RefuseMdwe(t);
  absl::StatusOr<RemoteScratch> scratch =
      borrowed.ok() ? RemoteScratch::Map(threads) : absl::StatusOr<RemoteScratch>(borrowed);
  absl::Status restored = t->RestoreInitialState();
  if (!scratch.ok() || !restored.ok()) {
    (void)outer.Remove();
    return scratch.ok() ? restored : scratch.status();
  }
  absl::StatusOr<AskedState> asked = AskThroughScratch(threads, status, *scratch);
  absl::Status unmapped = t->BorrowAt(outer.address());
  if (unmapped.ok()) unmapped = scratch->Unmap(outer.address());
  restored = t->RestoreInitialState();
  absl::Status cleared = outer.Remove();
  if (!asked.ok()) return asked.status();
  CRLIB_RETURN_IF_ERROR(unmapped);
  CRLIB_RETURN_IF_ERROR(restored);
  CRLIB_RETURN_IF_ERROR(cleared);
  return asked;
}


}  // namespace crlib
