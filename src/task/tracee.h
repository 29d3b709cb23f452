// A thread under ptrace, and system calls executed inside it.
//
// Remote system calls run at a system call instruction found in the
// tracee's vDSO, with PTRACE_SYSCALL stops at entry and exit, so nothing in
// the tracee's memory is patched and the site survives any munmap that
// leaves the vDSO in place. Each call costs two ptrace stops.
#ifndef CRLIB_TASK_TRACEE_H_
#define CRLIB_TASK_TRACEE_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "arch/arch_backend.h"

namespace crlib {

// Not thread-safe; ptrace requests must come from the thread that attached.
class Tracee {
 public:
  // Seizes a running thread and stops it (PTRACE_SEIZE + PTRACE_INTERRUPT).
  // Detaching later leaves it as it was.
  static absl::StatusOr<std::unique_ptr<Tracee>> Seize(pid_t tid);
  // Adopts a child that called PTRACE_TRACEME and stopped itself. It dies
  // with the tracer (PTRACE_O_EXITKILL).
  static absl::StatusOr<std::unique_ptr<Tracee>> AdoptStoppedChild(pid_t pid);

  ~Tracee();
  Tracee(const Tracee&) = delete;
  Tracee& operator=(const Tracee&) = delete;

  pid_t tid() const { return tid_; }
  const ArchBackend& arch() const { return arch_; }
  // Registers at the stop where the tracee was taken.
  const ArchRegs& initial_regs() const { return initial_regs_; }

  absl::StatusOr<ArchRegs> GetRegs();
  absl::Status SetRegs(const ArchRegs& regs);

  // The tracee's memory through /proc/PID/mem (large reads are fast).
  absl::Status ReadMemory(uint64_t address, void* buffer, size_t size);
  absl::Status WriteMemory(uint64_t address, const void* buffer, size_t size);
  int mem_fd() const { return mem_fd_; }

  // Finds the system call instruction to run remote calls at; call again
  // after the vDSO moves.
  absl::Status FindSyscallSite();
  // Runs system call `nr` in the tracee; returns its raw result (-errno on
  // failure). Registers are left as the call left them.
  absl::StatusOr<int64_t> Syscall(long nr, std::array<uint64_t, 6> args = {});
  // Same, but a negative result becomes an error naming the call.
  absl::StatusOr<int64_t> CheckedSyscall(const char* what, long nr,
                                         std::array<uint64_t, 6> args = {});

  // Ends tracing; the thread continues with `signal` (0 for none).
  absl::Status Detach(int signal = 0);
  // Kills the whole process and reaps it if it is our child.
  void Kill();

 private:
  Tracee(pid_t tid, const ArchBackend& arch) : tid_(tid), arch_(arch) {}
  absl::Status Init();
  // Waits for the next stop; NotFound/Aborted if the tracee died.
  absl::StatusOr<int> WaitStop();

  pid_t tid_;
  const ArchBackend& arch_;
  int mem_fd_ = -1;
  bool attached_ = true;
  bool our_child_ = false;
  uint64_t syscall_site_ = 0;
  ArchRegs initial_regs_;
};

}  // namespace crlib

#endif  // CRLIB_TASK_TRACEE_H_
