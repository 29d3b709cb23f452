// One checkpoint or restore operation: its options, statistics, object
// registry and image stream (linux-cr's cr_ctx). Nothing in crlib keeps
// state outside a Context.
#ifndef CRLIB_CORE_CONTEXT_H_
#define CRLIB_CORE_CONTEXT_H_

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <functional>
#include <algorithm>
#include "absl/strings/string_view.h"
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "core/object_registry.h"
#include "core/shared_objects.h"

namespace crlib {

class ImageWriter;
class ImageReader;

struct Options {
  // 0 stores pages raw; 1..19 compresses them with zstd at that level.
  int compression_level = 0;
  // Raw pages at page-aligned offsets, so restore can map them.
  bool mappable = false;
  // Pages gathered before they are written as one record. Two batches per
  // writing thread are in use at a time (one filled, one written; a
  // compressed image has a thread per CPU); their memory is fresh for
  // a small dump, and on our VMs each fresh page costs a fault (~3 us), so
  // batches stay small.
  size_t page_batch_bytes = 1u << 20;
};

// The clock Stats' times are read from (monotonic, nanoseconds).
inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Stats {
  uint64_t records = 0;
  uint64_t bytes = 0;         // image bytes written or read
  uint64_t pages_scanned = 0;  // pages looked at
  uint64_t pages_zero = 0;     // of those, all zero and not stored
  uint64_t pages_stored = 0;
  uint64_t page_bytes_stored = 0;  // after compression
  // At a restore, of pages_stored, those mapped from the image file.
  uint64_t pages_mapped = 0;
  int64_t total_ns = 0;
  int64_t frozen_ns = 0;  // time the target was stopped
  // Of that, the time its threads ran remote calls with borrowed
  // registers and every signal blocked (the dump's only unsafe window).
  int64_t borrowed_ns = 0;
  // The time a dump spent checking that its image restores here, on a
  // thread of its own while the pages were copied (so mostly not frozen).
  int64_t check_ns = 0;
  // A live dump: the rounds that copied what the process wrote while it
  // ran (0: none, or dumped stopped), and why it was dumped stopped.
  // (A fixed array: Stats crosses the self-checkpoint's pipe as bytes.)
  int live_rounds = 0;
  char live_refused[240] = {};
  void set_live_refused(absl::string_view why) { SetReason(live_refused, why); }
  // A dump with a parent image that wrote every page instead (the
  // tracking it left is lost), and why.
  char incremental_refused[240] = {};
  void set_incremental_refused(absl::string_view why) { SetReason(incremental_refused, why); }

 private:
  static void SetReason(char (&to)[240], absl::string_view why) {
    const size_t n = std::min(why.size(), sizeof(to) - 1);
    std::copy_n(why.data(), n, to);
    to[n] = '\0';
  }
};

// Steps an operation reports (the values of the C ABI's CRLIB_PHASE_*).
enum class Phase { kFreeze = 1, kState = 2, kMemory = 3, kDone = 4 };

// Told where an operation is; returns false to cancel it. `total` is 0
// when unknown. Called on the thread that runs the operation.
using ProgressFn = std::function<bool(Phase phase, uint64_t done, uint64_t total)>;

// Not thread-safe: one operation, one thread at a time.
class Context {
 public:
  explicit Context(Options options = {}) : options_(options) {}

  const Options& options() const { return options_; }
  Stats& stats() { return stats_; }
  const Stats& stats() const { return stats_; }
  ObjectRegistry& registry() { return registry_; }

  // The image stream; set by the operation that owns this context.
  ImageWriter* writer() const { return writer_; }
  ImageReader* reader() const { return reader_; }
  void set_writer(ImageWriter* writer) { writer_ = writer; }
  void set_reader(ImageReader* reader) { reader_ = reader; }

  // At a dump, the writer of objects that several families refer to
  // (core/shared_objects.h); set by the operation that owns this context.
  SharedObjectWriter* objects() const { return objects_; }
  void set_objects(SharedObjectWriter* objects) { objects_ = objects; }

  // At a restore of a mappable image whose pages were copied, why they
  // were not mapped (for the caller to say); empty otherwise.
  const std::string& pages_copied_reason() const { return pages_copied_reason_; }
  void set_pages_copied_reason(std::string why) { pages_copied_reason_ = std::move(why); }

  void set_progress(ProgressFn progress) { progress_ = std::move(progress); }
  // Reports a step; Cancelled if the callback asked to stop, which the
  // operation then undoes like any other failure.
  absl::Status Progress(Phase phase, uint64_t done = 0, uint64_t total = 0) {
    if (!progress_ || progress_(phase, done, total)) return absl::OkStatus();
    return absl::CancelledError("cancelled by the progress callback");
  }

 private:
  Options options_;
  Stats stats_;
  ObjectRegistry registry_;
  ImageWriter* writer_ = nullptr;
  ImageReader* reader_ = nullptr;
  SharedObjectWriter* objects_ = nullptr;
  ProgressFn progress_;
  std::string pages_copied_reason_;
};

}  // namespace crlib

#endif  // CRLIB_CORE_CONTEXT_H_
