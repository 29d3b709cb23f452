// A call site for remote calls in a process's main thread that recovers
// by itself if crlib dies mid-call (ArchBackend::RecoveringSyscallSite),
// written into the unused tail of the thread's vDSO, its stack below the
// red zone. A vDSO without a free tail (none seen) falls back to its own
// system call instruction.
#ifndef CRLIB_REMOTE_VDSO_SITE_H_
#define CRLIB_REMOTE_VDSO_SITE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "remote/tracee.h"

namespace crlib {

class VdsoCallSite {
 public:
  // `t`: the stopped main thread, with its initial registers. With
  // `close_result`, the site closes the call's result after it
  // (RecoveringSyscallSite), when the vDSO has room for one.
  static absl::StatusOr<VdsoCallSite> Install(Tracee* t, bool close_result = false);
  // Whether the site closes the result (else it is the vDSO's own
  // instruction, which does not).
  bool closes_result() const { return closes_; }
  // Where remote calls go (Tracee::BorrowAt).
  uint64_t address() const { return site_; }
  // The vDSO's tail back to zeros, and the tracee's site back to the
  // vDSO's own instruction.
  absl::Status Remove();

 private:
  VdsoCallSite(Tracee* t, uint64_t vdso_site, uint64_t slack, uint64_t site, bool closes)
      : t_(t), vdso_site_(vdso_site), slack_(slack), site_(site), closes_(closes) {}
  Tracee* t_;
  uint64_t vdso_site_, slack_, site_;
  bool closes_;
};

}  // namespace crlib

#endif  // CRLIB_REMOTE_VDSO_SITE_H_
