#include "core/status.h"

#include "absl/strings/str_cat.h"

namespace crlib {

absl::Status ErrnoError(int error_number, absl::string_view what) {
  // ErrnoToStatus appends ": <strerror>" itself.
  return absl::ErrnoToStatus(error_number, what);
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace crlib
