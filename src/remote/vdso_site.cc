#include "remote/vdso_site.h"

#include <vector>

#include "absl/strings/str_format.h"
#include "arch/arch_backend.h"
#include "core/status.h"

namespace crlib {

absl::StatusOr<VdsoCallSite> VdsoCallSite::Install(Tracee* t, bool close_result) {
  const ArchBackend& arch = t->arch();
  CRLIB_RETURN_IF_ERROR(t->FindSyscallSite());
  const uint64_t vdso_site = t->syscall_site();
  CRLIB_ASSIGN_OR_RETURN(uint64_t slack, t->FindVdsoSlack(ArchBackend::kRecoveringSiteBytes));
  if (slack == 0) return VdsoCallSite(t, vdso_site, 0, vdso_site, false);
  // The site returns the thread to its own registers: never to a rip in
  // the bytes it is about to replace (Tracee::FinishRecoveringSite lets a
  // thread caught in an old site finish it first).
  const uint64_t ip = arch.InstructionPointer(t->initial_regs());
  if (ip >= slack && ip < slack + ArchBackend::kRecoveringSiteBytes) {
    return absl::InternalError(absl::StrFormat(
        "tid %d is inside the call site an interrupted dump left at 0x%x", t->tid(), slack));
  }
  // 128 bytes of red zone, then room for the site's 16 bytes of stack.
  const uint64_t below_red_zone = (arch.StackPointer(t->initial_regs()) - 256) & ~uint64_t{15};
  std::vector<uint8_t> site =
      arch.RecoveringSyscallSite(t->initial_regs(), t->initial_sigmask(), below_red_zone,
                                 close_result);
  CRLIB_RETURN_IF_ERROR(t->WriteMemory(slack, site.data(), site.size()));
  return VdsoCallSite(t, vdso_site, slack, slack, close_result);
}

absl::Status VdsoCallSite::Remove() {
  t_->SetSyscallSite(vdso_site_);
  if (slack_ == 0) return absl::OkStatus();
  // A thread that did not get its registers back (a failed ptrace) still
  // runs the site when released: it stays, harmless, rather than cleared
  // under the thread.
  CRLIB_ASSIGN_OR_RETURN(ArchRegs regs, t_->GetRegs());
  const uint64_t ip = t_->arch().InstructionPointer(regs);
  if (ip >= slack_ && ip < slack_ + ArchBackend::kRecoveringSiteBytes) {
    return absl::InternalError(absl::StrFormat(
        "tid %d is still at crlib's call site 0x%x: the site is left in place", t_->tid(), slack_));
  }
  const std::vector<uint8_t> zeros(ArchBackend::kRecoveringSiteBytes, 0);
  return t_->WriteMemory(slack_, zeros.data(), zeros.size());
}

}  // namespace crlib
