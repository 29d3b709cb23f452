// A thread under ptrace, and system calls executed inside it.
//
// Remote system calls run at a system call instruction found in the
// tracee's vDSO, with PTRACE_SYSCALL stops at entry and exit, so nothing in
// the tracee's memory is patched and the site survives any munmap that
// leaves the vDSO in place. Each call costs two ptrace stops.
#ifndef CRLIB_REMOTE_TRACEE_H_
#define CRLIB_REMOTE_TRACEE_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "arch/arch_backend.h"
#include "sys/kernel.h"

namespace crlib {

// Size of the area a restore maps in each process it builds for its
// remote calls (readable, writable and executable).
inline constexpr uint64_t kRestoreScratchBytes = 64 * 1024;
// Where in that area the batch code and its table go; arguments of
// remote calls use the bytes below.
inline constexpr uint64_t kBatchCodeOffset = 16 << 10;

// Not thread-safe; ptrace requests must come from the thread that attached.
class Tracee {
 public:
  // Seizes a running thread and stops it (PTRACE_SEIZE + PTRACE_INTERRUPT).
  // Detaching later leaves it as it was.
  static absl::StatusOr<std::unique_ptr<Tracee>> Seize(pid_t tid);
  // Seizes every thread of process `pid`, the main thread first, and
  // stops them all; a thread created meanwhile is caught too (the task list
  // is read again until a pass finds no new thread). A thread that ends
  // meanwhile is left out. On failure every thread seized so far is
  // detached, untouched.
  static absl::StatusOr<std::vector<std::unique_ptr<Tracee>>> SeizeProcess(pid_t pid);
  // Adopts a child that called PTRACE_TRACEME and stopped itself. It dies
  // with the tracer (PTRACE_O_EXITKILL), and the threads and processes it
  // creates start traced and stopped (PTRACE_O_TRACECLONE, TRACEFORK),
  // with the same options.
  static absl::StatusOr<std::unique_ptr<Tracee>> AdoptStoppedChild(pid_t pid);
  // Adopts thread or process `tid` (in our PID namespace) that `creator`
  // just created under PTRACE_O_TRACECLONE or TRACEFORK, once it reports
  // its first stop (before it ran any user code). It shares the creator's
  // system call site (a process: a copy of the creator's memory).
  static absl::StatusOr<std::unique_ptr<Tracee>> AdoptNewThread(pid_t tid, const Tracee& creator);
  // Kills the process of `threads` (its main thread first) and waits for
  // every thread we trace, so none stays a zombie: a traced thread is
  // released only when its tracer waits for it, and the main thread only
  // after all the others. The main thread is left for its parent to reap
  // when that is us and we did not create it (the caller of a dump).
  static void KillProcess(absl::Span<const std::unique_ptr<Tracee>> threads);

  ~Tracee();
  Tracee(const Tracee&) = delete;
  Tracee& operator=(const Tracee&) = delete;

  pid_t tid() const { return tid_; }
  const ArchBackend& arch() const { return arch_; }
  // Registers and blocked signals at the stop where the tracee was taken.
  const ArchRegs& initial_regs() const { return initial_regs_; }
  uint64_t initial_sigmask() const { return initial_sigmask_; }

  absl::StatusOr<ArchRegs> GetRegs();
  absl::Status SetRegs(const ArchRegs& regs);
  // Blocked signals, bit n-1 for signal n.
  absl::Status SetSigmask(uint64_t mask);
  // Puts back the signal mask and registers the tracee was taken with, in
  // that order (see BorrowAt).
  absl::Status RestoreInitialState();

  // The tracee's memory. Reads use process_vm_readv (one copy) and fall
  // back to /proc/PID/mem (opened at the first use) for what it cannot
  // read; writes use /proc/PID/mem. Large reads and writes are fast.
  absl::Status ReadMemory(uint64_t address, void* buffer, size_t size);
  absl::Status WriteMemory(uint64_t address, const void* buffer, size_t size);

  // Finds the system call instruction to run remote calls at; call again
  // after the vDSO moves.
  absl::Status FindSyscallSite();
  // The address of the last `size` bytes of the tracee's vDSO when they
  // are unused (all zero: the vDSO image ends before its last page does;
  // or a recovering site an interrupted dump left there), or 0. Code
  // written there through /proc/PID/mem gets the process a private copy of
  // that page and changes nothing any code uses.
  absl::StatusOr<uint64_t> FindVdsoSlack(size_t size);
  // Uses `other`'s site (a thread of the same process) instead of finding
  // one again.
  void ShareSyscallSite(const Tracee& other) { syscall_site_ = other.syscall_site_; }
  // Runs remote calls at `site` from now on (an ArchBackend recovering
  // site, say); 0 goes back to the vDSO's.
  void SetSyscallSite(uint64_t site) { syscall_site_ = site; }
  uint64_t syscall_site() const { return syscall_site_; }
  // Readies the thread for remote calls at its recovering `site`: points
  // it there first, then blocks every signal, so that at no moment would
  // a dead tracer release it with a borrowed mask and its own registers.
  absl::Status BorrowAt(uint64_t site);
  // Runs system call `nr` in the tracee; returns its raw result (-errno on
  // failure). Registers are left as the call left them. A thread the call
  // creates under PTRACE_O_TRACECLONE is left stopped for AdoptNewThread.
  absl::StatusOr<int64_t> Syscall(long nr, std::array<uint64_t, 6> args = {});
  // Creates a thread or process with a remote clone3 that asks for TID
  // `tid` (set_tid, in this tracee's PID namespace), with `args`' flags,
  // exit signal and child_tid, and adopts it (AdoptNewThread). The
  // arguments go at `scratch`. A TID still being freed by the kernel is
  // waited for (sys::AwaitTidRelease); one in use is AlreadyExists,
  // "`kind` N is in use by another process".
  absl::StatusOr<std::unique_ptr<Tracee>> CloneWithTid(sys::CloneArgs args, pid_t tid,
                                                      uint64_t scratch, const char* kind);
  // The TID, in our PID namespace, of the thread or process the last
  // remote clone created (the call's result is the TID in the tracee's).
  pid_t last_created() const { return last_created_; }
  // Same, but a negative result becomes an error naming the call.
  // Lets the thread, stopped after a remote call, run on to the end of
  // the next system call its code makes (`nr`, for messages), as a site
  // that closes its result does (ArchBackend::RecoveringSyscallSite).
  absl::StatusOr<int64_t> RunToSyscallExit(long nr);
  absl::StatusOr<int64_t> CheckedSyscall(const char* what, long nr,
                                         std::array<uint64_t, 6> args = {});

  // Many system calls with one stop instead of two per call: the arch's
  // batch code is written to `code` (memory of the tracee's that is
  // executable) and `calls` to a table at `table` (writable, room for
  // calls.size() + 1 entries of 64 bytes), then the thread runs until the
  // code's breakpoint. Calls run in order and stop after the first that
  // fails; each ran call gets its raw result. Returns how many ran. The
  // breakpoint's SIGTRAP is forced on the thread, which resets a blocked
  // SIGTRAP's handler to SIG_DFL and unblocks it: use it only where
  // handlers and mask are set afterwards (restore).
  struct RemoteCall {
    long nr = 0;
    std::array<uint64_t, 6> args{};
    int64_t result = 0;
  };
  absl::StatusOr<size_t> SyscallBatch(uint64_t code, uint64_t table,
                                      absl::Span<RemoteCall> calls);
  // The same in a restore's scratch area [`scratch`, `scratch` + `size`)
  // (readable, writable and executable, at least 64 KiB): the code and
  // table go at kBatchCodeOffset and above, the calls' arguments below.
  // Runs every call, in as many batches as the table needs; a call that
  // fails is an error naming `what(i)` for its index and the errno.
  absl::Status RunBatch(uint64_t scratch, uint64_t size, absl::Span<RemoteCall> calls,
                        const std::function<std::string(size_t)>& what);
  // Runs code already written at `code` in the tracee, which ends in a
  // breakpoint, with `table` as its argument (ArchBackend::SetBatchCall),
  // until that breakpoint; any other stop is an error naming `what`. The
  // same SIGTRAP caveat as SyscallBatch.
  absl::Status RunCode(uint64_t code, uint64_t table, const char* what);

  // For a seized thread (a dump): seccomp stops filtering the thread's
  // system calls, ours included, until it is detached
  // (PTRACE_O_SUSPEND_SECCOMP; needs CAP_SYS_ADMIN).
  absl::Status SuspendSeccomp();

  // Ends tracing; the thread continues with `signal` (0 for none).
  absl::Status Detach(int signal = 0);

 private:
  Tracee(pid_t tid, const ArchBackend& arch) : tid_(tid), arch_(arch) {}
  // Seize in two halves, so that many threads can stop at once:
  // PTRACE_SEIZE + PTRACE_INTERRUPT, then the wait for the stop.
  static absl::StatusOr<std::unique_ptr<Tracee>> StartSeize(pid_t tid);
  absl::Status FinishSeize();
  // Reads the registers and signal mask at the first stop.
  absl::Status Init();
  // At the first stop, lets a thread caught inside a recovering call site
  // finish it (see the definition).
  absl::Status FinishRecoveringSite();
  // At the first stop, takes a thread stopped inside a call that runs
  // under a temporary signal mask to where its real mask shows (see the
  // definition).
  absl::Status SettleTemporaryMask();
  absl::Status OpenMemory();
  // Waits for the next stop; NotFound/Aborted if the tracee died.
  absl::StatusOr<int> WaitStop();
  // WaitStop() after resuming the tracee into a remote call, and if the
  // wait fails, SettleLostCall() before returning its error.
  absl::StatusOr<int> WaitStopInCall();
  // After a failed waitpid the tracee is running our remote code or
  // stopped in it with its stop unreported. Takes it to a stop that is not
  // a syscall-entry stop, skipping the call there, as a finished remote
  // call leaves it: restoring the registers at an entry stop would make
  // the kernel run the system call they name when the thread resumes.
  void SettleLostCall();

  pid_t tid_;
  const ArchBackend& arch_;
  int mem_fd_ = -1;
  bool attached_ = true;
  bool our_child_ = false;  // created by us (AdoptStoppedChild): we reap it
  bool group_stop_ = false;  // seized in a group stop (SIGSTOP): left as it is
  uint64_t syscall_site_ = 0;
  pid_t last_created_ = 0;
  ArchRegs initial_regs_;
  uint64_t initial_sigmask_ = 0;
};

}  // namespace crlib

#endif  // CRLIB_REMOTE_TRACEE_H_
