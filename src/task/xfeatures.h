// Dynamic xstate features: state the kernel gives a process only after it
// asked for permission, and allocates for a thread only when the thread
// first uses it (x86-64: AMX tile data, arch_prctl(ARCH_REQ_XCOMP_PERM),
// XFD). Loading such state into a restored thread with ptrace fails
// (SETREGSET: EINVAL) unless its process holds the permission and the
// thread has room for the state; restore gives it both, before the CPU
// state is loaded. See docs/CHECKPOINT.md, "xstate and AMX".
#ifndef CRLIB_TASK_XFEATURES_H_
#define CRLIB_TASK_XFEATURES_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

// The xsave features the process of thread `t` (borrowed at its site) may
// use, dynamic ones it asked for included, read with a remote call whose
// result goes to `buf`; 0 where the CPU family has no such permissions.
absl::StatusOr<uint64_t> CapturePermittedFeatures(Tracee* t, uint64_t buf);

// Before anything is created: every feature the image's process was
// permitted can be had on this machine. FailedPrecondition naming those
// that cannot.
absl::Status CheckPermittedFeatures(const ProcessImage& image);

// Once every thread of `threads` (the main thread first) exists: asks, in
// the main thread, for the dynamic features the image's process was
// permitted and this one is not, then makes each thread whose image holds
// dynamic state use it once, so that the kernel allocates room for it.
// `scratch` is the restore's scratch area. A refusal names the feature
// (ENOSPC: a thread's alternate signal stack is too small for the larger
// signal frame). The first use ends in a breakpoint, which resets a
// blocked SIGTRAP handler: the image's signal handlers are set again.
absl::Status RestoreDynamicFeatures(absl::Span<const std::unique_ptr<Tracee>> threads,
                                    const ProcessImage& image, uint64_t scratch);

}  // namespace crlib

#endif  // CRLIB_TASK_XFEATURES_H_
