// Lazy restore: the process runs before its memory is in. Its private
// anonymous mappings are registered with a userfaultfd (MISSING mode) that
// the process itself created with a remote call and that crlib took with
// pidfd_getfd; a server thread answers each fault with UFFDIO_COPY from the
// image and meanwhile copies every other page in the background, until
// every page is in. docs/CHECKPOINT.md, "Lazy restore", has the design.
#ifndef CRLIB_MM_LAZY_RESTORE_H_
#define CRLIB_MM_LAZY_RESTORE_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/context.h"
#include "core/image_reader.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

// Whether the pages of `image` can be restored lazily: refuses, with the
// reason, what LazyPages cannot serve. Runs before the point of no return.
absl::Status CheckLazyRestore(const TreeImage& tree);

class LazyServer;

// The pages of one restored process, on their way in. Thread-safe.
class LazyPages {
 public:
  // In tracee `t`, whose address space RebuildAddressSpace built and which
  // has the privileges of the restorer still: reads where each page of
  // `image` is in `reader` (the rest of a stream: every page, into memory;
  // the last record holding a page wins), writes the pages that cannot be
  // served lazily (those of file mappings, of locked mappings ...), creates
  // the userfaultfd, registers the anonymous private mappings and starts
  // the server thread, which serves faults from then on. `keep_alive` (the
  // reader's source and fd) is kept until serving ends. On error nothing
  // is left serving; the caller kills the process.
  static absl::StatusOr<std::unique_ptr<LazyPages>> Start(Context* ctx, Tracee* t,
                                                          const ProcessImage& image,
                                                          ImageReader* reader,
                                                          std::shared_ptr<void> keep_alive);
  // Waits until every page is in (Wait()).
  ~LazyPages();
  LazyPages(const LazyPages&) = delete;
  LazyPages& operator=(const LazyPages&) = delete;

  // Blocks until every page is in the process (and in every child it forked
  // meanwhile), or the processes have exited, or serving failed: then the
  // error, after the processes it served were killed (never a wrong page).
  absl::Status Wait();
  // A descriptor that becomes readable when Wait() would no longer block
  // (an eventfd, owned by this object).
  int done_fd() const;
  // The process runs: copy the rest in the background from now on (until
  // then only faults are served, and the restore has the CPU).
  void Released();
  // Stops serving now, for a restore that failed and killed the process.
  void Abandon();

  struct Progress {
    uint64_t pages_total = 0;     // pages served lazily
    uint64_t pages_faulted = 0;   // copied in on a fault
    uint64_t pages_pushed = 0;    // copied in the background
    uint64_t pages_eager = 0;     // written before the process ran
    int64_t done_ns = 0;          // when serving ended (NowNs clock), 0 before
  };
  Progress progress() const;

 private:
  LazyPages() = default;
  std::unique_ptr<LazyServer> server_;
  std::thread thread_;
  std::once_flag joined_;
};

}  // namespace crlib

#endif  // CRLIB_MM_LAZY_RESTORE_H_
