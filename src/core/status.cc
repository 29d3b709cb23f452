#include "core/status.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace crlib {
namespace {
constexpr char kNotCheckpointableUrl[] = "crlib/not-checkpointable";
constexpr char kErrnoUrl[] = "crlib/errno";
}  // namespace

absl::Status ErrnoError(int error_number, absl::string_view what) {
  // A caller that saw no errno must not get an OK status by accident.
  if (error_number == 0) return absl::InternalError(absl::StrCat(what, ": failed (no errno)"));
  // ErrnoToStatus appends ": <strerror>" itself.
  absl::Status st = absl::ErrnoToStatus(error_number, what);
  AttachErrno(&st, error_number);
  return st;
}

void AttachErrno(absl::Status* status, int error_number) {
  if (!status->ok() && error_number != 0) {
    status->SetPayload(kErrnoUrl, absl::Cord(absl::StrCat(error_number)));
  }
}

int StatusErrno(const absl::Status& status) {
  auto payload = status.GetPayload(kErrnoUrl);
  int e = 0;
  if (payload && absl::SimpleAtoi(std::string(*payload), &e)) return e;
  return 0;
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status annotated(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    annotated.SetPayload(url, payload);
  });
  return annotated;
}

absl::Status NotCheckpointableError(pid_t pid, absl::string_view reason) {
  absl::Status st = absl::FailedPreconditionError(
      absl::StrCat("pid ", pid, " is not checkpointable now: ", reason));
  st.SetPayload(kNotCheckpointableUrl, absl::Cord(reason));
  return st;
}

std::optional<std::string> NotCheckpointableReason(const absl::Status& status) {
  auto payload = status.GetPayload(kNotCheckpointableUrl);
  if (!payload) return std::nullopt;
  return std::string(*payload);
}

}  // namespace crlib
