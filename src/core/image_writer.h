// Writes an image: the file header, records, the end record.
#ifndef CRLIB_CORE_IMAGE_WRITER_H_
#define CRLIB_CORE_IMAGE_WRITER_H_

#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/byte_stream.h"
#include "core/codec.h"
#include "core/image_format.h"
#include "core/records.h"

namespace crlib {

// Not thread-safe. Small records are gathered in a buffer; a record with
// bulk data goes out with the buffer in one writev, the bulk taken straight
// from the caller's memory (no copy).
class ImageWriter {
 public:
  // `sink` must outlive the writer. Nothing is written until Begin().
  ImageWriter(ByteSink* sink, ImageInfo info);

  absl::Status Begin();

  // Writes one record. `bulk` (optional) is written after the payload; when
  // `align_bulk` and the image is mappable, the bulk starts page-aligned.
  template <FieldStruct R>
  absl::Status Write(const R& record, ObjectRef self, ObjectRef parent,
                     absl::Span<const iovec> bulk = {}, bool align_bulk = false) {
    payload_.clear();
    Encoder enc(&payload_);
    R::Fields(record, enc);
    return WriteRecord(static_cast<uint32_t>(R::kType), 0, self, parent,
                       payload_, bulk, align_bulk);
  }

  // The generic form: any type number and flags (tests use it to write
  // records this version does not know).
  absl::Status WriteRecord(uint32_t type, uint32_t flags, ObjectRef self,
                           ObjectRef parent, absl::Span<const uint8_t> payload,
                           absl::Span<const iovec> bulk, bool align_bulk);

  // Before Begin() (or after, before FillReserved): also writes to `copy` the image as far as the first
  // record of type `until`, included, without any bulk data: each record
  // that has some is flagged kRecordBulkElided instead (ReaderOptions::
  // accept_elided_bulk reads it). A dump keeps so the records a restore
  // reads before the page data, to check them as a restore would, without
  // reading the image back or holding memory contents twice.
  absl::Status CopyPrefix(ByteSink* copy, RecordType until);

  // Room left in the image for records written later (FillReserved).
  struct Reservation {
    uint64_t offset = 0;  // in the image
    uint64_t bytes = 0;
  };
  // Leaves `bytes` (a multiple of 8) for records written later: a live
  // dump learns its records only at the stop, after the pages it copied
  // while the process ran, and restore needs the records first. Needs a
  // sink that can seek (ByteSink::SkipAhead).
  absl::StatusOr<Reservation> Reserve(uint64_t bytes);

  // Writes what `write` writes through this writer into `r`, then a
  // filler record over the rest (its bulk is the zeros the reservation
  // already holds). ResourceExhausted when they do not fit: the image is
  // then unusable. With a CopyPrefix copy set, it gets the records and
  // then, as its first pages record, an empty one owned by
  // `first_pages_parent`: the page data that follows the reservation.
  absl::Status FillReserved(const Reservation& r, absl::FunctionRef<absl::Status()> write,
                            ObjectRef first_pages_parent);

  // Writes the end record and flushes. The writer is finished afterwards.
  absl::Status Finish();

  const ImageInfo& info() const { return info_; }
  uint64_t bytes_written() const { return offset_; }
  uint64_t record_count() const { return record_count_; }

 private:
  absl::Status Flush(absl::Span<const iovec> extra = {});
  absl::Status CopyRecord(const RecordHeader& h, absl::Span<const uint8_t> payload);
  void Append(const void* p, size_t n);
  void AppendZeros(size_t n);

  class ReservedSink;
  ByteSink* sink_;
  ImageInfo info_;
  std::vector<uint8_t> buffer_;   // pending bytes not yet handed to the sink
  std::vector<uint8_t> payload_;  // scratch for encoding
  uint64_t offset_ = 0;           // stream offset of the end of buffer_
  uint64_t record_count_ = 0;
  uint64_t payload_bytes_ = 0;
  uint64_t bulk_bytes_ = 0;
  std::vector<uint8_t> header_;  // the file header, for a CopyPrefix after Begin()
  ByteSink* copy_ = nullptr;  // CopyPrefix
  uint32_t copy_until_ = 0;
  bool begun_ = false;
  bool finished_ = false;
};

}  // namespace crlib

#endif  // CRLIB_CORE_IMAGE_WRITER_H_
