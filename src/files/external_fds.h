// External fds: descriptors whose other end was outside the dumped
// processes, which the caller of a restore gives back (--inherit-fd).
#ifndef CRLIB_FILES_EXTERNAL_FDS_H_
#define CRLIB_FILES_EXTERNAL_FDS_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "image/process_image.h"

namespace crlib {

// Checks the external files of `images` (every process of the restored
// tree) against the restorer's `inherit_fds` (key -> an fd of ours),
// before anything is created: each key needs an open fd of ours that
// allows the recorded access mode, unless `accept_unmapped` (a dump
// checking its own image, where nobody can give one); a key none of the
// images has is refused too (a typo would otherwise go unnoticed).
// The error is one line naming the fd, pid, key and option:
// "fd 5 of pid 123 is external (pipe:[4567], its other end was outside the
// dumped processes): give it with --inherit-fd 'pipe:[4567]=FD'".
absl::Status CheckInheritFds(absl::Span<const ProcessImage* const> images,
                             const std::map<std::string, int>& inherit_fds, bool accept_unmapped);

}  // namespace crlib

#endif  // CRLIB_FILES_EXTERNAL_FDS_H_
