#include "task/xfeatures.h"

#include <cerrno>
#include <vector>

#include "absl/strings/str_format.h"
#include "arch/arch_backend.h"
#include "core/records.h"
#include "core/status.h"
#include "task/thread_restore.h"

namespace crlib {
namespace {

// The xstate components a thread's image holds (its xstate_component
// records; components in their init state have none).
absl::StatusOr<uint64_t> ComponentsHeld(const ThreadImage& thread) {
  uint64_t held = 0;
  for (const Record& r : thread.cpu) {
    if (r.type() != RecordType::kXstateComponent) continue;
    XstateComponentRecord c;
    CRLIB_RETURN_IF_ERROR(DecodeFields(r.payload, &c));
    if (c.component < 64) held |= uint64_t{1} << c.component;
  }
  return held;
}

// The permitted features of `t`'s process, through `buf`.
absl::StatusOr<uint64_t> PermittedFeatures(Tracee* t, uint64_t buf) {
  const ArchBackend::CallSpec get = t->arch().GetPermittedFeaturesCall(buf);
  if (get.nr < 0) return 0;
  CRLIB_RETURN_IF_ERROR(
      t->CheckedSyscall("read of the permitted xsave features", get.nr, get.args).status());
  uint64_t permitted = 0;
  CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &permitted, sizeof(permitted)));
  return permitted;
}

}  // namespace

absl::StatusOr<uint64_t> CapturePermittedFeatures(Tracee* t, uint64_t buf) {
  return PermittedFeatures(t, buf);
}

absl::Status CheckPermittedFeatures(const ProcessImage& image) {
  if (!image.attributes) return absl::OkStatus();
  const ArchBackend& arch = HostArchBackend();
  const uint64_t missing = image.attributes->xfeatures_permitted & ~arch.HostPermittableFeatures();
  if (missing == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "the process was permitted xsave features 0x%x (%s), which this machine's kernel does not "
      "offer (it offers 0x%x)",
      missing, arch.DescribeComponents(missing), arch.HostPermittableFeatures()));
}

absl::Status RestoreDynamicFeatures(absl::Span<const std::unique_ptr<Tracee>> threads,
                                    const ProcessImage& image, uint64_t scratch) {
  if (threads.empty() || !image.attributes) return absl::OkStatus();
  Tracee* main = threads.front().get();
  const ArchBackend& arch = main->arch();
  // Only dynamic features are ever asked for or allocated late: without
  // any, no remote call (the common case, every process on most CPUs).
  if ((image.attributes->xfeatures_permitted & arch.HostDynamicFeatures()) == 0) {
    return absl::OkStatus();
  }
  CRLIB_ASSIGN_OR_RETURN(uint64_t have, PermittedFeatures(main, scratch));
  // Permission is the process's: asked once, it covers every thread. A
  // process may hold more than the image's (inherited from crlib's own):
  // no call takes a permission back.
  const uint64_t ask = image.attributes->xfeatures_permitted & ~have;
  for (int i = 0; i < 64; ++i) {
    if (!(ask & (uint64_t{1} << i))) continue;
    const ArchBackend::CallSpec req = arch.RequestFeatureCall(i);
    CRLIB_ASSIGN_OR_RETURN(int64_t r, main->Syscall(req.nr, req.args));
    if (r < 0 && r > -4096) {
      const char* name = arch.ComponentName(i);
      return ThreadStep(
          "xsave feature permission", main->tid(),
          ErrnoError(static_cast<int>(-r),
                     absl::StrFormat("permission for xsave feature %d (%s)%s", i, name ? name : "?",
                                     r == -ENOSPC ? ": an alternate signal stack of the process "
                                                    "is too small for the larger signal frame"
                                                  : "")));
    }
  }
  // Room per thread, for the threads whose image holds dynamic state.
  const uint64_t code = scratch + kBatchCodeOffset;
  const uint64_t data = code + 256;  // 64-byte aligned
  bool used = false;
  for (size_t i = 0; i < threads.size() && i < image.threads.size(); ++i) {
    CRLIB_ASSIGN_OR_RETURN(uint64_t held, ComponentsHeld(image.threads[i]));
    const uint64_t dynamic = held & arch.HostDynamicFeatures();
    if (dynamic == 0) continue;
    Tracee* t = threads[i].get();
    const std::vector<uint8_t> bytes = arch.FirstUseCode(dynamic);
    const std::vector<uint8_t> zeroes(ArchBackend::kFirstUseDataBytes, 0);
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(code, bytes.data(), bytes.size()));
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(data, zeroes.data(), zeroes.size()));
    CRLIB_RETURN_IF_ERROR(ThreadStep(
        "first use of dynamic xsave features", t->tid(),
        t->RunCode(code, data,
                   absl::StrFormat("first use of xsave features 0x%x (%s)", dynamic,
                                   arch.DescribeComponents(dynamic))
                       .c_str())));
    used = true;
  }
  if (!used) return absl::OkStatus();
  return ThreadStep("signal handlers", main->tid(), RestoreSignalHandlers(main, image, scratch));
}

}  // namespace crlib
