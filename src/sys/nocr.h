// "Not checkpointable now" marks (crlib_nocr_enter / crlib_nocr_leave).
//
// A process holding marks keeps one descriptor open on a memfd named
// "crlib-nocr:REASON", so any dumper sees the mark in /proc/PID/fd without
// attaching first, and sees it consistently once the process is stopped.
// The name is changed by replacing the descriptor with dup3, atomically for
// a reader of /proc. The descriptor exists only while a mark is held.
//
// The marks are process-wide state by nature (they describe this process
// to the outside), the one exception to "no global mutable state"; all
// functions are thread-safe.
#ifndef CRLIB_SYS_NOCR_H_
#define CRLIB_SYS_NOCR_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace crlib {

// What /proc/PID/fd/N shows for a mark: "/memfd:crlib-nocr:REASON (deleted)".
inline constexpr absl::string_view kNoCrLinkPrefix = "/memfd:crlib-nocr:";

// The reason of a mark from the link of a descriptor, if it is one.
std::optional<std::string> NoCrReasonFromLink(absl::string_view link);

// Enters a mark (nestable). The reason is shown as given, cut to 200 bytes.
absl::Status NoCrEnter(absl::string_view reason);
// Leaves the innermost mark entered last; InvalidArgument if none is held.
absl::Status NoCrLeave();
// The reason of the most recent mark still held, if any.
std::optional<std::string> NoCrHeld();

}  // namespace crlib

#endif  // CRLIB_SYS_NOCR_H_
