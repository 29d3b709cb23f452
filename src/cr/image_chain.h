// Incremental images (docs/CHECKPOINT.md, "Incremental dumps"): a dump
// that keeps tracking the process's writes leaves its userfaultfd in the
// process (mm/dirty_tracker.h) and records where in a chain record; a
// later dump with that image as its parent writes only the pages written
// since. Restore follows the chain: the oldest image's pages first, each
// newer one's over them, each only inside the VMAs the newer images
// inherit from it (kVmaFromParent).
#ifndef CRLIB_CR_IMAGE_CHAIN_H_
#define CRLIB_CR_IMAGE_CHAIN_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/byte_stream.h"
#include "core/image_reader.h"
#include "core/records.h"
#include "image/process_image.h"
#include "sys/unique_fd.h"

namespace crlib {

// ---- Dump ----

// The parent image of an incremental dump.
struct ParentImage {
  std::string path;   // absolute
  ChainRecord chain;  // its own chain record
};

// Reads image `path` and checks that it may be the parent of a dump of
// `pid`: an image of that very process (PID and start time) from a dump
// that kept tracking it. InvalidArgument naming the problem otherwise.
absl::StatusOr<ParentImage> ReadParentImage(const std::string& path, pid_t pid);

// The chain record of a dump of `pid` that leaves its tracking at
// `tracking_fd` (-1: ends it), child of `parent` (nullptr: a full image).
absl::StatusOr<ChainRecord> NewChainRecord(pid_t pid, int tracking_fd, const ParentImage* parent);

// ---- Restore ----

// One ancestor of an incremental image, open and its records read.
struct ChainLink {
  std::string path;
  sys::UniqueFd fd;
  std::unique_ptr<FdSource> source;
  std::unique_ptr<ImageReader> reader;  // at its first page record
  // Its process; stale_pages also lists every page outside the VMAs the
  // images after it inherit, which the restore skips.
  ProcessImage process;
};

struct ImageChain {
  std::vector<ChainLink> links;  // oldest first; empty for a full image
};

// Opens the ancestors of `image` (whose file's fstat is `image_file`)
// and checks them before anything is created: each is where the chain
// says, with the identity it records, an image of the same process, of
// the same owner as `image_file` (or root's) and writable by no one else
// unless `trusted`. FailedPrecondition / DataLoss naming the image.
absl::StatusOr<ImageChain> OpenImageChain(const ProcessImage& image, const struct stat& image_file,
                                          bool trusted);

// One line per image of the chain that starts at the image whose chain
// record is `chain`, newest first, for `crlib inspect`: each parent is
// opened, a missing or replaced one said so.
absl::StatusOr<std::vector<std::string>> DescribeImageChain(const ChainRecord& chain);

}  // namespace crlib

#endif  // CRLIB_CR_IMAGE_CHAIN_H_
