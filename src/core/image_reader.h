// Reads and validates an image record by record.
//
// Every length is checked against the format's limits and, where the source
// knows its size, against the bytes left, before anything is allocated.
// Every error is absl::DataLoss (damaged or truncated image),
// FailedPrecondition (a valid image this build cannot use) or the source's
// own I/O error, with a one-line message that names the record and offset.
#ifndef CRLIB_CORE_IMAGE_READER_H_
#define CRLIB_CORE_IMAGE_READER_H_

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "core/byte_stream.h"
#include "core/codec.h"
#include "core/image_format.h"
#include "core/records.h"

namespace crlib {

struct Record {
  RecordHeader header{};
  uint64_t offset = 0;       // stream offset of the record header
  uint64_t bulk_offset = 0;  // stream offset of the bulk data
  uint64_t index = 0;        // 0 for the first record
  Bytes payload;

  RecordType type() const { return static_cast<RecordType>(header.type); }
};

struct ReaderOptions {
  // Check the CRC of bulk data even when it is skipped. Off only for mapped
  // restore, which must not touch every page.
  bool verify_bulk = true;
  // Accept records flagged kRecordBulkElided (a dump's copy of its own
  // records, which it checks); an image never has them.
  bool accept_elided_bulk = false;
};

// Not thread-safe.
class ImageReader {
 public:
  // Reads and checks the file header. `source` must outlive the reader.
  static absl::StatusOr<std::unique_ptr<ImageReader>> Open(
      ByteSource* source, ReaderOptions options = {});

  const ImageInfo& info() const { return info_; }

  // The next record, or nullptr after the end record (which it validates,
  // along with the absence of trailing bytes). Bulk data of the previous
  // record that the caller did not read is skipped (and verified).
  // Records of unknown type flagged skippable are passed over; the pointer
  // stays valid until the next call.
  absl::StatusOr<const Record*> Next();

  // Reads the current record's bulk data into `dest`, whose total length
  // must equal bulk_length. Verifies its CRC.
  absl::Status ReadBulk(absl::Span<const iovec> dest);
  // Hands the bulk data to `consume` in chunks of at most `chunk` bytes.
  using BulkConsumer = std::function<absl::Status(absl::Span<const uint8_t>)>;
  absl::Status ReadBulkChunks(size_t chunk, const BulkConsumer& consume);

  // Decodes the current record's payload as R, checking the type.
  template <FieldStruct R>
  absl::StatusOr<R> Decode(const Record& record) const {
    if (record.type() != R::kType) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "record %d is type 0x%04x, not %s", record.index, record.header.type, R::kName));
    }
    R value;
    absl::Status st = DecodeFields(record.payload, &value);
    if (!st.ok()) {
      return absl::DataLossError(absl::StrFormat(
          "%s record %d at offset %d: %s", R::kName, record.index, record.offset, st.message()));
    }
    return value;
  }

  // A place between records to come back to, in a source that can seek:
  // restore checks a whole image file before the point of no return, then
  // reads its pages from where they begin.
  struct Bookmark {
    uint64_t offset = 0, records = 0, payload_bytes = 0, bulk_bytes = 0;
  };
  // The position just before the record Next() returned last.
  Bookmark BeforeCurrent() const;
  // Goes back to `mark` (taken from this reader): the next Next() reads
  // the record found there again. Records after `mark` must not define
  // objects, or they would be defined twice. Unimplemented on a stream.
  absl::Status Rewind(const Bookmark& mark);
  // Makes the next Next() return the current record again (its bulk data
  // untouched): how a stream hands the first page record from the reader
  // of the process's state to the reader of its pages.
  absl::Status Unread();

  ByteSource* source() const { return source_; }
  uint64_t offset() const { return offset_; }
  const EndRecord& end() const { return end_; }

 private:
  ImageReader(ByteSource* source, ReaderOptions options)
      : source_(source), options_(options) {}
  absl::Status ReadHeader();
  absl::Status ReadExact(void* buffer, size_t size, const char* what);
  absl::Status SkipPending();
  absl::Status ReadBulkImpl(const std::function<absl::Span<uint8_t>()>& next,
                            const BulkConsumer& consume);
  absl::Status Fail(const std::string& what) const;
  absl::Status CheckFits(uint64_t size, const char* what) const;

  ByteSource* source_;
  ReaderOptions options_;
  ImageInfo info_;
  Record current_;
  uint64_t offset_ = 0;
  uint64_t records_ = 0;
  uint64_t payload_bytes_ = 0;
  uint64_t bulk_bytes_ = 0;
  uint64_t bulk_left_ = 0;  // unread bulk bytes of the current record
  uint64_t tail_left_ = 0;  // padding after the bulk
  bool bulk_started_ = false;
  bool unread_ = false;  // Next() returns current_ again
  bool done_ = false;
  EndRecord end_;
  absl::flat_hash_set<ObjectRef> defined_;
};

}  // namespace crlib

#endif  // CRLIB_CORE_IMAGE_READER_H_
