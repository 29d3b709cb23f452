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
// into ctx->stats(). Full batches go to worker threads that scan them for
// zero pages, checksum or compress them and write them, in order, while the
// caller fills the next, so reading a process's memory and writing the
// image overlap. Raw images use one worker and two buffers; compressed
// ones one worker per CPU (at most kMaxWorkers) and two buffers per worker:
// each batch is one zstd frame, compressed in parallel with the others and
// written in its turn. The writer must not be used by anyone else until
// Flush() returns. After a failed write nothing more is written; the error
// comes back from the next Reserve, Commit, SetParent or Flush.
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
  struct ZstdCtx;
  struct Batch {
    uint8_t* buffer = nullptr;  // capacity_ pages, page-aligned
    size_t used = 0;            // pages filled
    std::vector<PageRun> segments;  // what was filled, in buffer order
    std::vector<bool> keep_zero;    // per segment: its zero pages are kept
    ObjectRef parent = 0;           // the memory map its pages belong to
    // Made by the worker that prepares the batch, for the write.
    PagesRecord record;
    std::vector<iovec> bulk;  // into `buffer`, or `compressed`
    std::vector<uint8_t> compressed;
    uint64_t zero_pages = 0;
  };
  static constexpr size_t kMaxWorkers = 4;

  absl::Status Submit();  // hands the current batch to the workers
  absl::Status Wait();    // until every batch handed is written
  void WorkerLoop();
  // On a worker: drops zero pages and, for a compressed image, compresses
  // the batch with `zstd`, so that Emit() only writes.
  absl::Status Prepare(Batch& batch, ZstdCtx* zstd);
  absl::Status Emit(Batch& batch);  // on the worker whose turn it is
  Batch& current() { return batches_[submitted_ % batches_.size()]; }

  Context* ctx_;
  ObjectRef parent_;
  size_t page_size_;
  size_t capacity_;  // pages per batch
  bool compress_;
  size_t worker_count_;
  std::vector<Batch> batches_;  // a ring: batch number n is batches_[n % size]
  uint64_t reserved_address_ = 0;
  size_t reserved_pages_ = 0;
  bool keep_zero_ = false;
  Phase phase_ = Phase::kMemory;
  // The workers, started by the first Submit(). The caller fills batch
  // number `submitted_`; batches `written_` .. `submitted_` - 1 are handed
  // out, those below `claimed_` taken by a worker; a worker writes its
  // batch when `written_` reaches its number. The first error is kept in
  // `error_` and stops all writing.
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t submitted_ = 0;  // changed by the caller, under mu_
  uint64_t claimed_ = 0;    // under mu_
  uint64_t written_ = 0;    // under mu_
  bool stopping_ = false;
  absl::Status error_;
};

// True when the `size` bytes at `p` (a multiple of 64) are all zero.
bool IsZeroPage(const uint8_t* p, size_t size);

// Checks that the runs of kPages `record` (decoded as `pages`) are
// well-formed: page-aligned, non-empty, not wrapping around, adding up to
// its page count, and, raw, to its bulk length; DataLoss naming the record
// otherwise.
absl::Status CheckPageRuns(const Record& record, const PagesRecord& pages, uint64_t page_size);

// Reads the bulk data of the kPages `record` (already decoded as `pages`)
// into memory that `destination(address, pages)` returns for each run.
// Validates the runs against the record before writing anywhere.
using PageDestination = std::function<absl::StatusOr<uint8_t*>(uint64_t address, uint64_t pages)>;
absl::Status ReadPages(ImageReader* reader, const Record& record, const PagesRecord& pages,
                       const PageDestination& destination);

}  // namespace crlib

#endif  // CRLIB_MM_PAGE_ARRAY_H_
