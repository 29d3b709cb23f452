// Checkpoint of event objects behind file descriptors: eventfd, timerfd,
// signalfd, inotify and epoll, read from /proc/PID/fdinfo; io_uring and
// fanotify refused by name.
#ifndef CRLIB_FILES_EVENT_CAPTURE_H_
#define CRLIB_FILES_EVENT_CAPTURE_H_

#include <sys/types.h>

#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "core/context.h"
#include "core/records.h"
#include "files/file_capture.h"

namespace crlib {

inline bool IsEventKind(FileKind kind) {
  return kind >= FileKind::kEventfd && kind <= FileKind::kEpoll;
}

// For an anonymous-inode descriptor `info` of stopped process `pid`:
// sets its FileKind and returns true for an event object crlib restores
// (its fdinfo read and checked: a watch on a removed file is refused
// here), refuses io_uring and fanotify with a reason that names them, and
// returns false for any other kind, which the caller refuses.
absl::StatusOr<bool> DescribeEventFile(pid_t pid, FdInfo* info);

// An event object's open file description, written as `file`.
struct EventFile {
  const FdInfo* info = nullptr;
  ObjectRef file = 0;
};

// Writes under `table` the record of each of `files` (descriptions of
// pid's first written by this file table). `fd_files` maps every fd of
// `pid` to its file record: an epoll's targets are named by it, and each
// target must still be the file at its fd (kcmp(KCMP_EPOLL_TFD)), else
// the dump is refused naming the fd.
absl::Status WriteEventFiles(Context* ctx, pid_t pid, const std::vector<EventFile>& files,
                             const std::map<int, ObjectRef>& fd_files, ObjectRef table);

}  // namespace crlib

#endif  // CRLIB_FILES_EVENT_CAPTURE_H_
