#include "files/external_fds.h"

#include <fcntl.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/status.h"

namespace crlib {
namespace {

std::string AccessModeName(int mode) {
  switch (mode & O_ACCMODE) {
    case O_RDONLY: return "reading";
    case O_WRONLY: return "writing";
    default: return "reading and writing";
  }
}

}  // namespace

absl::Status CheckInheritFds(absl::Span<const ProcessImage* const> images,
                             const std::map<std::string, int>& inherit_fds, bool accept_unmapped) {
  std::set<std::string> keys;
  for (const ProcessImage* image : images) {
    for (const FdRecord& fd : image->fds) {
      const FileRecord& f = image->files.at(fd.file).record;
      if (static_cast<FileKind>(f.kind) != FileKind::kExternal) continue;
      keys.insert(f.path);
      auto given = inherit_fds.find(f.path);
      if (given == inherit_fds.end()) {
        if (accept_unmapped) continue;
        return absl::FailedPreconditionError(absl::StrFormat(
            "fd %d of pid %d is external (%s, its other end was outside the dumped processes): "
            "give it with --inherit-fd '%s=FD'",
            fd.fd, image->process.pid, f.path, f.path));
      }
      const std::string option = absl::StrFormat("--inherit-fd '%s=%d'", f.path, given->second);
      const int flags = fcntl(given->second, F_GETFL);
      if (flags < 0) return Errno("%s: fcntl(F_GETFL) of fd %d", option, given->second);
      const int want = static_cast<int>(f.flags) & O_ACCMODE;
      const int have = (flags & O_PATH) ? -1 : flags & O_ACCMODE;
      const bool readable = have == O_RDONLY || have == O_RDWR;
      const bool writable = have == O_WRONLY || have == O_RDWR;
      if ((want != O_WRONLY && !readable) || (want != O_RDONLY && !writable)) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s: fd %d of pid %d was open for %s, and fd %d is not", option, fd.fd,
            image->process.pid, AccessModeName(want), given->second));
      }
    }
  }
  for (const auto& [key, fd] : inherit_fds) {
    if (keys.contains(key)) continue;
    return absl::InvalidArgumentError(absl::StrFormat(
        "--inherit-fd '%s=%d': the image has no external fd %s (%s)", key, fd, key,
        keys.empty() ? std::string("it has none")
                     : absl::StrCat("its keys: ", absl::StrJoin(keys, ", "))));
  }
  return absl::OkStatus();
}

}  // namespace crlib
