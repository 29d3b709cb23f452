// Restore of event objects: eventfd, timerfd, signalfd and inotify are
// made again by the restorer, like other files (OpenedFiles); an epoll
// instance too, empty, and its entries are added in the restored process
// itself once its descriptors are in place, since the kernel keys each
// entry by the target's fd number.
#ifndef CRLIB_FILES_EVENT_RESTORE_H_
#define CRLIB_FILES_EVENT_RESTORE_H_

#include <time.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

// The clock a timerfd's schedule is kept on in TimerfdRecord: its own for
// an absolute timer; for a relative one the clock its countdown runs on
// (CLOCK_MONOTONIC, or CLOCK_BOOTTIME for the boot-time clocks), which
// setting the time of day does not move.
clockid_t TimerfdReferenceClock(int32_t clock, uint32_t settime_flags);

// The entries of an epoll's fdinfo text ("tfd: %8d events: %8x data:
// %16llx ..."), targets not named; an unparsable line is an error quoting it.
absl::StatusOr<std::vector<EpollEntry>> ParseEpollEntries(absl::string_view fdinfo);

// `clock` now, in nanoseconds.
int64_t ClockNs(clockid_t clock);

// A new event object for `file` (kinds 30-34) with the state its record in
// `image` holds, opened close-on-exec in the calling thread, with its
// credentials (`uid` names them in errors). Errors name the object and,
// for a watched path that changed, the path.
absl::StatusOr<int> OpenEventFile(const ProcessImage& image, const FileImage& file, uint32_t uid);

// In restored process `t`, once its descriptors are in place: adds the
// entries of the epolls it fills (ProcessImage::epolls_to_fill), an epoll
// whose targets include another epoll after that one. A fired
// EPOLLONESHOT entry is made to fire again (added first, listening for
// every event, and collected with epoll_wait), which leaves it disarmed
// exactly as it was. `scratch`: kRestoreScratchBytes of memory of `t`
// for the arguments.
absl::Status RestoreEpollEntries(Tracee* t, const ProcessImage& image, uint64_t scratch);

}  // namespace crlib

#endif  // CRLIB_FILES_EVENT_RESTORE_H_
