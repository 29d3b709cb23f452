// Status helpers shared by every layer: one return-if-error macro pair and
// one way to turn a failed system call into a status that names the call.
#ifndef CRLIB_CORE_STATUS_H_
#define CRLIB_CORE_STATUS_H_

#include <sys/types.h>

#include <cerrno>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace crlib {

// A status for a failed system call. `what` names the call and its
// arguments, e.g. "ptrace(GETREGSET) on tid 4242"; the errno text is
// appended: "ptrace(GETREGSET) on tid 4242: No such process". Never OK:
// errno 0 becomes an Internal error.
absl::Status ErrnoError(int error_number, absl::string_view what);

// Same, formatting `what` and reading errno before anything can clobber it.
template <typename... Args>
absl::Status Errno(const absl::FormatSpec<Args...>& format,
                   const Args&... args) {
  const int saved = errno;
  return ErrnoError(saved, absl::StrFormat(format, args...));
}

// The errno a status from ErrnoError carries, or 0; AttachErrno sets it.
int StatusErrno(const absl::Status& status);
void AttachErrno(absl::Status* status, int error_number);

// Prefixes a status message with context, keeping its code:
// Annotate(st, "restoring VMA 3") -> "restoring VMA 3: <message>".
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// The process asked not to be checkpointed now (crlib_nocr_enter) and said
// why. A FailedPrecondition whose message is "pid N is not checkpointable
// now: REASON", marked so the C ABI can report CRLIB_E_NOT_CHECKPOINTABLE.
absl::Status NotCheckpointableError(pid_t pid, absl::string_view reason);
// The reason of a NotCheckpointableError (kept through Annotate), if it is one.
std::optional<std::string> NotCheckpointableReason(const absl::Status& status);

}  // namespace crlib

#define CRLIB_STATUS_CONCAT_INNER(a, b) a##b
#define CRLIB_STATUS_CONCAT(a, b) CRLIB_STATUS_CONCAT_INNER(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define CRLIB_RETURN_IF_ERROR(expr)                  \
  do {                                               \
    ::absl::Status crlib_status_ = (expr);           \
    if (!crlib_status_.ok()) return crlib_status_;   \
  } while (0)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its status.
#define CRLIB_ASSIGN_OR_RETURN(lhs, expr)                                    \
  CRLIB_ASSIGN_OR_RETURN_IMPL(CRLIB_STATUS_CONCAT(crlib_sor_, __LINE__), lhs, \
                              expr)
#define CRLIB_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

#endif  // CRLIB_CORE_STATUS_H_
