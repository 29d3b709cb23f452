// Batches of (address, page) runs on their way into or out of an image —
// linux-cr's cr_pgarr. On the way in, zero pages are dropped, adjacent pages
// merge into runs, and a full batch becomes one kPages record whose bulk
// goes out with vectored I/O straight from the batch buffer (raw images) or
// as one zstd frame (compressed images).
#ifndef CRLIB_MM_PAGE_ARRAY_H_
#define CRLIB_MM_PAGE_ARRAY_H_

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/context.h"
#include "core/image_reader.h"
#include "core/image_writer.h"
#include "core/records.h"

namespace crlib {

// Not thread-safe for its callers. Writes through ctx->writer() and counts
// into ctx->stats(). Batches are double-buffered: while the caller fills
// one, a worker thread scans the other for zero pages, checksums or
// compresses it and writes it, so reading a process's memory and writing
// the image overlap. The writer must not be used by anyone else until
// Flush() returns.
class PageArray {
 public:
  // Records name `parent` (the memory map) as their owner.
  PageArray(Context* ctx, ObjectRef parent);
  ~PageArray();
  PageArray(const PageArray&) = delete;
  PageArray& operator=(const PageArray&) = delete;

  // A buffer for up to `pages` pages starting at `address`, for the caller
  // to fill; it may be shorter than asked (at least one page). The caller
  // then calls Commit with the pages it filled. Hands a full batch to the
  // worker first.
  absl::StatusOr<absl::Span<uint8_t>> Reserve(uint64_t address, size_t pages);
  absl::Status Commit(size_t pages);

  // Copies `pages` pages from `data` (Reserve + memcpy + Commit).
  absl::Status Add(uint64_t address, const void* data, size_t pages);

  // Pages added from now on belong to memory map `parent` (one array can
  // serve every process of a tree: one worker, one pair of buffers).
  absl::Status SetParent(ObjectRef parent);

  // Whether zero pages committed from now on are kept: a page a restore
  // would otherwise find non-zero (one a child inherits from its parent).
  void set_keep_zero(bool keep) { keep_zero_ = keep; }

  // The phase its progress reports name: kMemory, or kFreeze while a live
  // dump copies a process that still runs.
  void set_phase(Phase phase) { phase_ = phase; }

  // Writes whatever is batched and waits until everything is written.
  absl::Status Flush();

 private:
  struct Batch {
    uint8_t* buffer = nullptr;  // capacity_ pages, page-aligned
    size_t used = 0;            // pages filled
    std::vector<PageRun> segments;  // what was filled, in buffer order
    std::vector<bool> keep_zero;    // per segment: its zero pages are kept
    ObjectRef parent = 0;           // the memory map its pages belong to
  };
  absl::Status Submit();  // hands the current batch to the worker
  absl::Status Wait();    // for the batch the worker has
  absl::Status WriteBatch(Batch& batch);  // on the worker

  Context* ctx_;
  ObjectRef parent_;
  size_t page_size_;
  size_t capacity_;  // pages per batch
  bool compress_;
  Batch batches_[2];
  int current_ = 0;
  uint64_t reserved_address_ = 0;
  size_t reserved_pages_ = 0;
  bool keep_zero_ = false;
  Phase phase_ = Phase::kMemory;
  // The worker thread, started by the first Submit(), and the one batch
  // it may hold: `handed_` is set by Submit() and cleared by the worker
  // when the batch is written, with its status in `written_`.
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  Batch* handed_ = nullptr;
  bool stopping_ = false;
  absl::Status written_;
  void WorkerLoop();
  // Worker-only state.
  PagesRecord record_;
  std::vector<iovec> iov_;
  std::vector<uint8_t> compressed_;
  struct ZstdCtx;
  std::unique_ptr<ZstdCtx> zstd_;
};

// True when the `size` bytes at `p` (a multiple of 64) are all zero.
bool IsZeroPage(const uint8_t* p, size_t size);

// Reads the bulk data of the kPages `record` (already decoded as `pages`)
// into memory that `destination(address, pages)` returns for each run.
// Validates the runs against the record before writing anywhere.
using PageDestination = std::function<absl::StatusOr<uint8_t*>(uint64_t address, uint64_t pages)>;
absl::Status ReadPages(ImageReader* reader, const Record& record, const PagesRecord& pages,
                       const PageDestination& destination);

}  // namespace crlib

#endif  // CRLIB_MM_PAGE_ARRAY_H_
