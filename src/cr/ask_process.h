// What only the process itself can report, asked with remote calls in
// its stopped threads (CRIU's "parasite", without injected code): signal
// handlers, timers, brk, attributes, seccomp. Each thread runs its calls
// at a call site of its own that recovers by itself, so a tracer killed at
// any moment releases every thread into its own state.
#ifndef CRLIB_CR_ASK_PROCESS_H_
#define CRLIB_CR_ASK_PROCESS_H_

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/records.h"
#include "remote/tracee.h"

namespace crlib {

// What only the process itself can report.
struct AskedState {
  SignalHandlersRecord handlers;
  ItimersRecord timers;
  uint64_t brk = 0;
  uint32_t securebits = 0;
  std::vector<ThreadRecord> threads;  // in the order of `threads`
  ProcessAttributesRecord attributes;
  PosixTimersRecord posix_timers;
  std::vector<ThreadAttributesRecord> thread_attributes;  // in the order of `threads`
  std::optional<SeccompRecord> seccomp;
};

// Asks `threads` (one process, all stopped; the main thread first, its
// /proc status `status`) everything AskedState holds. Every thread has its
// own registers and signal mask back when it returns, success or not.
absl::StatusOr<AskedState> AskProcess(absl::Span<const std::unique_ptr<Tracee>> threads,
                                      absl::string_view status);

}  // namespace crlib

#endif  // CRLIB_CR_ASK_PROCESS_H_
