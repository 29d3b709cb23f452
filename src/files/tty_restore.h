// Restore of pseudo-terminal pairs: the pair opened anew at the image's
// index (before the point of no return, in the restorer), its termios,
// window size, packet mode and lock; then, in the restored process once it
// leads its session, the controlling terminal and its /dev/tty fds.
#ifndef CRLIB_FILES_TTY_RESTORE_H_
#define CRLIB_FILES_TTY_RESTORE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/records.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

// Checks, in this process, that every pty index the image needs is free
// here (no /dev/pts/N) and that the master's path opens: one line naming
// the index otherwise. Nothing is created.
absl::Status CheckTerminals(const ProcessImage& image);

// Opens a new pty pair with the index of `tty`: fails naming the index
// when it is taken, unless `any_index` (then any free one will do).
// Returns the master (close-on-exec, not a controlling terminal of ours),
// unlocked, with the image's termios, window size and packet mode.
absl::StatusOr<int> OpenPtyPair(const TtyRecord& tty, bool any_index = false);

// Opens the slave of pair `master` (unlocked) with `flags` (TIOCGPTPEER:
// no path, so never another pair's), never as our controlling terminal,
// and gives it the image's mode.
absl::StatusOr<int> OpenPtySlave(int master, const TtyRecord& tty, int flags);

// Locks the pair again if it was locked, once its slaves are open.
absl::Status FinishPtyPair(int master, const TtyRecord& tty);

// In the restored process `t`, which leads its new session: makes the
// image's controlling pty its controlling terminal (TIOCSCTTY), sets the
// foreground process group, and opens each /dev/tty fd of the image at its
// number. `scratch` is writable memory of the tracee's for the arguments.
absl::Status RestoreControllingTerminal(Tracee* t, const ProcessImage& image, uint64_t scratch);

}  // namespace crlib

#endif  // CRLIB_FILES_TTY_RESTORE_H_
