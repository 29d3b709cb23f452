// Restore of a process from an image.
#ifndef CRLIB_CR_RESTORE_H_
#define CRLIB_CR_RESTORE_H_

#include <sys/types.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "core/context.h"
#include "mm/lazy_restore.h"

namespace crlib {

struct RestoreOptions {
  // Read the image from this borrowed fd (a file, pipe, FIFO or socket)
  // instead of opening `image_path`, which then only names it in messages.
  int image_fd = -1;
  // Restore whatever credentials the image claims, whoever owns the image
  // file. Without it an image grants no more than its owner has
  // (CheckImageTrust, docs/SECURITY.md).
  bool trust_image = false;
  // Restore the tree inside a new PID namespace, where its recorded PIDs
  // are free by construction: a minimal init is PID 1 there and the
  // caller's child; the root is its child. Needs CAP_SYS_ADMIN.
  // `crlib restore --pid-ns`.
  bool pid_namespace = false;
  // The caller's own fds for the image's external fds, by key ("pipe:[INODE]"
  // -> fd): the restored process gets a dup of each (`crlib restore
  // --inherit-fd KEY=FD`). An external fd without one, or a key the image
  // lacks, fails before anything is created.
  std::map<std::string, int> inherit_fds;
  // Copy the pages of a mappable image instead of mapping them from the
  // image file (`crlib restore --copy-pages`): the restored memory then
  // never depends on the file. Without it a mappable image file that
  // nobody may write is mapped (docs/CHECKPOINT.md, "Mapped restore").
  bool copy_pages = false;
};

// What `crlib restore --check` reports of an image that would restore.
struct RestoreCheckReport {
  pid_t pid = 0;  // of the root
  size_t processes = 0;
  size_t threads = 0;
  size_t mappings = 0;
  size_t fds = 0;
  uint64_t pages = 0;
};

// Everything RestoreProcess does up to its point of no return, and no
// further: the whole image is read and verified (page data included),
// then the machine (CPU, xsave features, page size, vDSO), the image's
// credentials against its owner, the PID and TIDs, locked memory, rlimits,
// and every file, opened with the image's credentials. Nothing is created;
// the first problem is the error.
absl::StatusOr<RestoreCheckReport> CheckRestore(const std::string& image_path,
                                                const RestoreOptions& options = {});

// Restores the process tree in `image_path` with its recorded PIDs and
// lets it run: the root a child of the calling process (or, with
// `pid_namespace`, of a minimal init that is), each other process a child
// of its recorded parent. Every check (format, CPU, vDSO,
// PID, the image's credentials against its owner, files opened with those
// credentials) runs before anything is created; a failure after that kills
// the half-built process. The image is read through one descriptor. An
// image file is checked to its end record before anything is created; a
// stream (pipe, socket) is read once, so a truncated stream is found while
// pages load, after the point of no return, and the half-built process is
// killed then. Returns the PID of the caller's child: the root, or the
// init of the new PID namespace (which exits with the root's status).
//
// With `lazy`, the process runs before its memory is in: its private
// anonymous pages are served on first touch and copied in the background
// by the LazyPages `*lazy` receives, which keeps the image open and serves
// until LazyPages::Wait() says every page is in (destroying it waits for
// that). An image of one process only (CheckLazyRestore). From a stream
// every page is read before the process runs, since a later record may
// replace any page.
absl::StatusOr<pid_t> RestoreProcess(Context* ctx, const std::string& image_path,
                                     const RestoreOptions& options = {},
                                     std::unique_ptr<LazyPages>* lazy = nullptr);

}  // namespace crlib

#endif  // CRLIB_CR_RESTORE_H_
