#include "core/image_reader.h"

#include <algorithm>
#include <cstring>

#include "core/crc32c.h"
#include "core/status.h"

namespace crlib {
namespace {

// Payloads are read in pieces of at most this size (see Next()).
constexpr uint64_t kPayloadChunk = 1 << 20;

bool AllZero(const uint8_t* p, size_t n) {
  return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

}  // namespace

absl::StatusOr<std::unique_ptr<ImageReader>> ImageReader::Open(ByteSource* source,
                                                               ReaderOptions options) {
  std::unique_ptr<ImageReader> reader(new ImageReader(source, options));
  CRLIB_RETURN_IF_ERROR(reader->ReadHeader());
  return reader;
}

absl::Status ImageReader::Fail(const std::string& what) const {
  return absl::DataLossError(what);
}

absl::Status ImageReader::ReadExact(void* buffer, size_t size, const char* what) {
  CRLIB_ASSIGN_OR_RETURN(size_t got, source_->Read(buffer, size));
  offset_ += got;
  if (got < size) {
    return Fail(absl::StrFormat("image truncated: %s at offset %d needs %d bytes, only %d left",
                                what, offset_ - got, size, got));
  }
  return absl::OkStatus();
}

absl::Status ImageReader::CheckFits(uint64_t size, const char* what) const {
  std::optional<uint64_t> left = source_->Remaining();
  if (left && size > *left) {
    return Fail(absl::StrFormat(
        "image truncated: %s at offset %d claims %d bytes, only %d left", what,
        offset_, size, *left));
  }
  return absl::OkStatus();
}

absl::Status ImageReader::ReadHeader() {
  FileHeader h;
  CRLIB_ASSIGN_OR_RETURN(size_t got, source_->Read(&h, sizeof(h)));
  offset_ += got;
  if (got >= sizeof(h.magic) && memcmp(h.magic, kImageMagic, sizeof(h.magic)) != 0) {
    return Fail("not a crlib image: wrong magic");
  }
  if (got < sizeof(h)) {
    return Fail(absl::StrFormat("image truncated: file header needs %d bytes, only %d present",
                                sizeof(h), got));
  }
  if (h.format_version == 0) return Fail("file header: format version 0 is invalid");
  if (h.format_version > kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "image format version %d is newer than this crlib reads (up to %d)",
        h.format_version, kFormatVersion));
  }
  if (h.kernel_release_length > kMaxHeaderLength ||
      h.header_length != AlignUp(sizeof(h) + h.kernel_release_length, 8)) {
    return Fail(absl::StrFormat(
        "file header: length %d does not fit a %d-byte kernel release string",
        h.header_length, h.kernel_release_length));
  }
  std::vector<uint8_t> header(h.header_length);
  memcpy(header.data(), &h, sizeof(h));
  CRLIB_RETURN_IF_ERROR(ReadExact(header.data() + sizeof(h), h.header_length - sizeof(h),
                                  "file header"));
  uint32_t stored_crc = h.header_crc;
  memset(header.data() + offsetof(FileHeader, header_crc), 0, sizeof(uint32_t));
  if (Crc32c(0, header.data(), header.size()) != stored_crc) {
    return Fail("file header: checksum mismatch");
  }
  if (!AllZero(header.data() + sizeof(h) + h.kernel_release_length,
               h.header_length - sizeof(h) - h.kernel_release_length)) {
    return Fail("file header: non-zero padding");
  }
  if (h.page_size < 4096 || h.page_size > 65536 || (h.page_size & (h.page_size - 1))) {
    return Fail(absl::StrFormat("file header: page size %d is not a power of two in [4096, 65536]",
                                h.page_size));
  }
  if (h.flags & ~kImageKnownFlags) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "image flags 0x%x include ones this crlib does not know", h.flags));
  }
  if ((h.flags & kImageCompressed) && (h.flags & kImageMappable)) {
    return Fail("file header: an image cannot be both compressed and mappable");
  }
  info_.format_version = h.format_version;
  info_.cpu_family = static_cast<CpuFamily>(h.cpu_family);
  info_.page_size = h.page_size;
  info_.xsave_features = h.xsave_features;
  info_.xsave_size = h.xsave_size;
  info_.flags = h.flags;
  info_.kernel_release.assign(reinterpret_cast<const char*>(header.data() + sizeof(h)),
                              h.kernel_release_length);
  return absl::OkStatus();
}

absl::Status ImageReader::SkipPending() {
  if (bulk_left_ == 0 && tail_left_ == 0) return absl::OkStatus();
  if (options_.verify_bulk || bulk_started_) {
    return ReadBulkChunks(1 << 20, [](absl::Span<const uint8_t>) { return absl::OkStatus(); });
  }
  uint64_t n = current_.header.bulk_pad + bulk_left_ + tail_left_;
  CRLIB_ASSIGN_OR_RETURN(bool whole, source_->Skip(n));
  if (!whole) {
    return Fail(absl::StrFormat("image truncated: bulk data of record %d at offset %d",
                                current_.index, current_.offset));
  }
  offset_ += n;
  bulk_left_ = tail_left_ = 0;
  return absl::OkStatus();
}

ImageReader::Bookmark ImageReader::BeforeCurrent() const {
  return {.offset = current_.offset,
          .records = current_.index,
          .payload_bytes = payload_bytes_ - current_.header.length,
          .bulk_bytes = bulk_bytes_ - current_.header.bulk_length};
}

absl::Status ImageReader::Rewind(const Bookmark& mark) {
  CRLIB_RETURN_IF_ERROR(source_->Seek(mark.offset));
  offset_ = mark.offset;
  records_ = mark.records;
  payload_bytes_ = mark.payload_bytes;
  bulk_bytes_ = mark.bulk_bytes;
  bulk_left_ = tail_left_ = 0;
  bulk_started_ = unread_ = done_ = false;
  return absl::OkStatus();
}

absl::Status ImageReader::Unread() {
  if (done_ || bulk_started_ || bulk_left_ != current_.header.bulk_length) {
    return absl::FailedPreconditionError("image reader: the current record cannot be read again");
  }
  unread_ = true;
  return absl::OkStatus();
}

absl::StatusOr<const Record*> ImageReader::Next() {
  if (unread_) {
    unread_ = false;
    return &current_;
  }
  if (done_) return nullptr;
  CRLIB_RETURN_IF_ERROR(SkipPending());
  for (;;) {
    Record& r = current_;
    r.offset = offset_;
    r.index = records_;
    CRLIB_ASSIGN_OR_RETURN(size_t got, source_->Read(&r.header, sizeof(r.header)));
    offset_ += got;
    if (got == 0) {
      return Fail(absl::StrFormat(
          "image truncated: no end record after %d records (offset %d)", records_, r.offset));
    }
    if (got < sizeof(r.header)) {
      return Fail(absl::StrFormat("image truncated: record %d header at offset %d", r.index,
                                  r.offset));
    }
    const RecordHeader& h = r.header;
    const std::string where = absl::StrFormat("record %d at offset %d", r.index, r.offset);
    if (Crc32c(0, &h, offsetof(RecordHeader, header_crc)) != h.header_crc) {
      return Fail(where + ": header checksum mismatch");
    }
    const uint32_t known =
        kRecordKnownFlags | (options_.accept_elided_bulk ? kRecordBulkElided : 0);
    if (h.reserved != 0 || (h.flags & ~known)) {
      return Fail(absl::StrFormat("%s: unknown flags 0x%x or reserved field set", where, h.flags));
    }
    if (h.length > kMaxPayloadLength) {
      return Fail(absl::StrFormat("%s: payload length %d exceeds the %d-byte limit", where,
                                  h.length, kMaxPayloadLength));
    }
    if (h.bulk_length > kMaxBulkLength || h.bulk_pad >= info_.page_size) {
      return Fail(absl::StrFormat("%s: bulk length %d (pad %d) out of range", where,
                                  h.bulk_length, h.bulk_pad));
    }
    const uint64_t padded = AlignUp(h.length, 8);
    const uint64_t bulk_total = h.bulk_length ? h.bulk_pad + AlignUp(h.bulk_length, 8) : 0;
    if (h.bulk_length == 0 && h.bulk_pad != 0) return Fail(where + ": bulk pad without bulk");
    CRLIB_RETURN_IF_ERROR(CheckFits(padded + bulk_total, "record payload and bulk"));
    // A source that does not know its size (a pipe) could not check the
    // length above: grow the buffer with the bytes that actually arrive, so
    // a forged length costs no more memory than the stream holds.
    r.payload.clear();
    while (r.payload.size() < padded) {
      const size_t at = r.payload.size();
      r.payload.resize(at + std::min<uint64_t>(padded - at, kPayloadChunk));
      CRLIB_ASSIGN_OR_RETURN(size_t got,
                             source_->Read(r.payload.data() + at, r.payload.size() - at));
      offset_ += got;
      if (at + got < r.payload.size()) {
        return Fail(absl::StrFormat(
            "image truncated: record payload at offset %d needs %d bytes, only %d left",
            r.offset + sizeof(RecordHeader), padded, at + got));
      }
    }
    if (!AllZero(r.payload.data() + h.length, padded - h.length)) {
      return Fail(where + ": non-zero payload padding");
    }
    r.payload.resize(h.length);
    if (Crc32c(0, r.payload.data(), r.payload.size()) != h.payload_crc) {
      return Fail(where + ": payload checksum mismatch");
    }
    r.bulk_offset = offset_ + h.bulk_pad;
    bulk_left_ = h.bulk_length;
    tail_left_ = h.bulk_length ? AlignUp(h.bulk_length, 8) - h.bulk_length : 0;
    bulk_started_ = false;

    const char* name = RecordTypeName(h.type);
    if (name == nullptr) {
      if (!(h.flags & kRecordSkippable)) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s has unknown type 0x%04x and is not skippable: the image needs a newer crlib",
            where, h.type));
      }
    }
    if (h.parent != 0 && !defined_.contains(h.parent)) {
      return Fail(absl::StrFormat("%s (%s) names parent object %d, which no earlier record defines",
                                  where, name ? name : "unknown", h.parent));
    }
    if (h.self != 0 && !defined_.insert(h.self).second) {
      return Fail(absl::StrFormat("%s (%s) defines object %d a second time", where,
                                  name ? name : "unknown", h.self));
    }
    if (r.type() == RecordType::kEnd) {
      CRLIB_ASSIGN_OR_RETURN(end_, Decode<EndRecord>(r));
      if (h.self || h.parent || h.bulk_length) return Fail(where + ": malformed end record");
      if (end_.record_count != records_ || end_.payload_bytes != payload_bytes_ ||
          end_.bulk_bytes != bulk_bytes_) {
        return Fail(absl::StrFormat(
            "end record totals (%d records, %d payload bytes, %d bulk bytes) do not match the "
            "image (%d, %d, %d)",
            end_.record_count, end_.payload_bytes, end_.bulk_bytes, records_, payload_bytes_,
            bulk_bytes_));
      }
      uint8_t extra;
      CRLIB_ASSIGN_OR_RETURN(size_t trailing, source_->Read(&extra, 1));
      if (trailing != 0) return Fail(absl::StrFormat("trailing bytes after the end record at offset %d", offset_));
      done_ = true;
      return nullptr;
    }
    ++records_;
    payload_bytes_ += h.length;
    bulk_bytes_ += h.bulk_length;
    if (name != nullptr) return &current_;
    CRLIB_RETURN_IF_ERROR(SkipPending());  // unknown but skippable
  }
}

absl::Status ImageReader::ReadBulkImpl(const std::function<absl::Span<uint8_t>()>& next,
                                       const BulkConsumer& consume) {
  const Record& r = current_;
  if (bulk_started_ || bulk_left_ != r.header.bulk_length) {
    return absl::FailedPreconditionError("image reader: bulk data already read");
  }
  bulk_started_ = true;
  if (r.header.bulk_pad) {
    std::vector<uint8_t> pad(r.header.bulk_pad);
    CRLIB_RETURN_IF_ERROR(ReadExact(pad.data(), pad.size(), "bulk padding"));
    if (!AllZero(pad.data(), pad.size())) {
      return Fail(absl::StrFormat("record %d at offset %d: non-zero bulk padding", r.index,
                                  r.offset));
    }
  }
  uint32_t crc = 0;
  while (bulk_left_ > 0) {
    absl::Span<uint8_t> dest = next();
    size_t n = std::min<uint64_t>(dest.size(), bulk_left_);
    CRLIB_RETURN_IF_ERROR(ReadExact(dest.data(), n, "bulk data"));
    crc = Crc32c(crc, dest.data(), n);
    bulk_left_ -= n;
    CRLIB_RETURN_IF_ERROR(consume(dest.first(n)));
  }
  if (crc != r.header.bulk_crc) {
    return Fail(absl::StrFormat("record %d at offset %d: bulk data checksum mismatch", r.index,
                                r.offset));
  }
  uint8_t tail[8];
  CRLIB_RETURN_IF_ERROR(ReadExact(tail, tail_left_, "bulk padding"));
  if (!AllZero(tail, tail_left_)) {
    return Fail(absl::StrFormat("record %d at offset %d: non-zero bulk padding", r.index, r.offset));
  }
  tail_left_ = 0;
  return absl::OkStatus();
}

absl::Status ImageReader::ReadBulk(absl::Span<const iovec> dest) {
  uint64_t total = 0;
  for (const iovec& v : dest) total += v.iov_len;
  if (total != current_.header.bulk_length) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "record %d: bulk data is %d bytes, destination holds %d", current_.index,
        current_.header.bulk_length, total));
  }
  size_t i = 0;
  return ReadBulkImpl(
      [&] {
        while (dest[i].iov_len == 0) ++i;
        const iovec& v = dest[i++];
        return absl::Span<uint8_t>(static_cast<uint8_t*>(v.iov_base), v.iov_len);
      },
      [](absl::Span<const uint8_t>) { return absl::OkStatus(); });
}

absl::Status ImageReader::ReadBulkChunks(size_t chunk, const BulkConsumer& consume) {
  std::vector<uint8_t> buffer(std::clamp<uint64_t>(bulk_left_, 1, chunk));
  return ReadBulkImpl([&] { return absl::MakeSpan(buffer); }, consume);
}

}  // namespace crlib
