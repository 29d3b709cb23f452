#include "core/status.h"

#include "absl/strings/str_cat.h"

namespace crlib {

absl::Status ErrnoError(int error_number, absl::string_view what) {
  // A caller that saw no errno must not get an OK status by accident.
  if (error_number == 0) return absl::InternalError(absl::StrCat(what, ": failed (no errno)"));
  // ErrnoToStatus appends ": <strerror>" itself.
  return absl::ErrnoToStatus(error_number, what);
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace crlib
