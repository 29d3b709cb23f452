// Restore of SysV shared memory attachments (VmaKind::kSysvShm). A
// segment that still exists with the image's id, key and size is
// attached again as it is now (like a file on disk, its contents are its
// own); one that is gone is recreated with its id (through
// /proc/sys/kernel/shm_next_id), key, mode, owner and the image's
// contents, and removed again (IPC_RMID) once attached if it had been.
#ifndef CRLIB_MM_SYSV_SHM_H_
#define CRLIB_MM_SYSV_SHM_H_

#include "absl/status/status.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

// Before the point of no return: fails with a one-line reason when a
// segment can neither be attached again nor recreated (its id or key
// taken by another segment, no right to choose the id).
absl::Status CheckSysvSegments(const ProcessImage& image);

// In the new process `t`, before its other VMAs are mapped: recreates
// the segments that are gone and attaches every kSysvShm VMA with shmat
// at its address and protection.
absl::Status AttachSysvSegments(Tracee* t, const ProcessImage& image);

}  // namespace crlib

#endif  // CRLIB_MM_SYSV_SHM_H_
