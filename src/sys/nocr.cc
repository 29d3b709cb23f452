#include "sys/nocr.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/status.h"

namespace crlib {
namespace {

// memfd names are at most 249 bytes; "crlib-nocr:" takes 11.
constexpr size_t kMaxReason = 200;

struct Marks {
  std::mutex mu;
  std::vector<std::string> reasons;  // held marks, oldest first
  int fd = -1;                        // the memfd naming reasons.back()
};

Marks& TheMarks() {
  static Marks* marks = new Marks;  // never destroyed: usable during exit
  return *marks;
}

// Points the mark descriptor at a memfd named after `reason`.
absl::Status ShowLocked(Marks& m, const std::string& reason) {
  const std::string name = absl::StrCat("crlib-nocr:", reason);
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return Errno("memfd_create(%s)", name);
  if (m.fd < 0) {
    m.fd = fd;
    return absl::OkStatus();
  }
  // Replace in place, so a reader of /proc/PID/fd never sees no mark.
  int r = dup3(fd, m.fd, O_CLOEXEC);
  int saved = errno;
  close(fd);
  if (r < 0) return ErrnoError(saved, "dup3 of the nocr mark descriptor");
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> NoCrReasonFromLink(absl::string_view link) {
  if (!absl::ConsumePrefix(&link, kNoCrLinkPrefix)) return std::nullopt;
  absl::ConsumeSuffix(&link, " (deleted)");
  return std::string(link);
}

absl::Status NoCrEnter(absl::string_view reason) {
  std::string r(reason.substr(0, kMaxReason));
  for (char& c : r) {
    if (c == '/' || c == '\0' || c == '\n') c = ' ';  // a memfd name is a file name
  }
  if (r.empty()) r = "(no reason given)";
  Marks& m = TheMarks();
  std::lock_guard<std::mutex> lock(m.mu);
  CRLIB_RETURN_IF_ERROR(ShowLocked(m, r));
  m.reasons.push_back(std::move(r));
  return absl::OkStatus();
}

absl::Status NoCrLeave() {
  Marks& m = TheMarks();
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.reasons.empty()) return absl::InvalidArgumentError("crlib_nocr_leave without a mark held");
  m.reasons.pop_back();
  if (m.reasons.empty()) {
    close(m.fd);
    m.fd = -1;
    return absl::OkStatus();
  }
  return ShowLocked(m, m.reasons.back());
}

std::optional<std::string> NoCrHeld() {
  Marks& m = TheMarks();
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.reasons.empty()) return std::nullopt;
  return m.reasons.back();
}

}  // namespace crlib
