// The first part of a live dump, before the stop: the process's private
// memory copied into the image while it runs (mm/live_copy.h), the
// records' room reserved ahead of those pages (ImageWriter::Reserve).
// docs/CHECKPOINT.md, "Live dumps", says what is copied when.
#ifndef CRLIB_CR_LIVE_DUMP_H_
#define CRLIB_CR_LIVE_DUMP_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "arch/arch_backend.h"
#include "core/byte_stream.h"
#include "core/context.h"
#include "core/image_writer.h"
#include "mm/live_copy.h"
#include "mm/page_array.h"
#include "remote/tracee.h"

namespace crlib {

// The image's header for processes of `arch`, with ctx's options.
ImageInfo DescribeImage(const ArchBackend& arch, const Options& options);

// Incremental dumps: the tracking of the process's writes kept from one
// dump to the next (`crlib dump --track`, `--parent`).
struct TrackingPlan {
  bool keep = false;   // leave the tracking in the process after the dump
  int resume_fd = -1;  // the descriptor an earlier dump left it at, or -1
};

struct LiveDump {
  std::unique_ptr<ImageWriter> writer;  // begun; the pages follow the reservation
  ImageWriter::Reservation reservation;
  std::unique_ptr<LiveCopy> copy;
  std::unique_ptr<PageArray> pages;  // owned by copy->mm_ref(), still filling
  int rounds = 0;
  int tracking_fd = -1;  // where the process keeps the tracking (plan.keep)
  // The main thread's numa_maps with the VMAs ScanBeforeStop read (none
  // on a kernel without NUMA): RefuseUncarriedProcState at the stop.
  std::optional<std::string> numa_maps;
  ~LiveDump() {
    pages.reset();  // its worker writes through `writer`
  }
};

// Copies process `pid`'s private memory into `sink` while it runs: a
// brief stop makes the userfaultfd that tracks its writes (one remote
// call), then round after round copies what it wrote, until little is
// left for the stop. `skip_children`: children that are not dumped.
// FailedPrecondition when the process is better dumped stopped (a tree, a
// process that uses userfaultfd itself, large carried inodes ...), the
// reason in the message: the caller dumps it stopped, on an emptied sink.
// Cancelled when ctx's progress callback cancels. On success ctx->writer()
// is the live dump's writer, which its page array's worker uses.
absl::StatusOr<std::unique_ptr<LiveDump>> StartLiveDump(Context* ctx, pid_t pid, ByteSink* sink,
                                                       const std::vector<pid_t>& skip_children,
                                                       const TrackingPlan& plan = {});

// Closes the tracking a dump kept in the process at `fd` (remote calls in
// its stopped main thread `t`, left with its own registers back): a dump
// that fails leaves no tracking that no image names.
absl::Status EndTracking(Tracee* t, int fd);
// The same in running process `pid`: seized, then resumed as it was.
absl::Status EndTrackingOf(pid_t pid, int fd);

}  // namespace crlib

#endif  // CRLIB_CR_LIVE_DUMP_H_
