#include "core/image_writer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "core/crc32c.h"
#include "core/status.h"

namespace crlib {
namespace {

constexpr size_t kFlushThreshold = 256 * 1024;
// Source of padding bytes; bulk padding is at most a page.
alignas(4096) const uint8_t kZeros[65536] = {};

uint32_t BulkCrc(absl::Span<const iovec> bulk) {
  uint32_t crc = 0;
  for (const iovec& v : bulk) crc = Crc32c(crc, v.iov_base, v.iov_len);
  return crc;
}

}  // namespace

ImageWriter::ImageWriter(ByteSink* sink, ImageInfo info)
    : sink_(sink), info_(std::move(info)) {
  buffer_.reserve(kFlushThreshold + 4096);
}

void ImageWriter::Append(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  buffer_.insert(buffer_.end(), b, b + n);
  offset_ += n;
}

void ImageWriter::AppendZeros(size_t n) {
  buffer_.resize(buffer_.size() + n, 0);
  offset_ += n;
}

absl::Status ImageWriter::Begin() {
  if (begun_) return absl::FailedPreconditionError("image writer: Begin() called twice");
  if (info_.kernel_release.size() > kMaxHeaderLength - sizeof(FileHeader)) {
    return absl::InvalidArgumentError("kernel release string too long");
  }
  begun_ = true;
  FileHeader h{};
  memcpy(h.magic, kImageMagic, sizeof(h.magic));
  h.format_version = info_.format_version;
  h.kernel_release_length = static_cast<uint32_t>(info_.kernel_release.size());
  h.header_length =
      static_cast<uint32_t>(AlignUp(sizeof(FileHeader) + h.kernel_release_length, 8));
  h.cpu_family = static_cast<uint32_t>(info_.cpu_family);
  h.page_size = info_.page_size;
  h.xsave_features = info_.xsave_features;
  h.xsave_size = info_.xsave_size;
  h.flags = info_.flags;
  h.header_crc = 0;
  size_t start = buffer_.size();
  Append(&h, sizeof(h));
  Append(info_.kernel_release.data(), info_.kernel_release.size());
  AppendZeros(h.header_length - sizeof(FileHeader) - h.kernel_release_length);
  uint32_t crc = Crc32c(0, buffer_.data() + start, h.header_length);
  memcpy(buffer_.data() + start + offsetof(FileHeader, header_crc), &crc, sizeof(crc));
  header_.assign(buffer_.begin() + static_cast<ptrdiff_t>(start), buffer_.end());
  if (copy_ != nullptr) {
    const iovec header{header_.data(), header_.size()};
    return copy_->Write(absl::MakeConstSpan(&header, 1));
  }
  return absl::OkStatus();
}

absl::Status ImageWriter::CopyPrefix(ByteSink* copy, RecordType until) {
  copy_ = copy;
  copy_until_ = static_cast<uint32_t>(until);
  if (!begun_) return absl::OkStatus();
  const iovec header{header_.data(), header_.size()};
  return copy_->Write(absl::MakeConstSpan(&header, 1));
}

// Writes into a reservation of the sink: the bytes go to their offset.
class ImageWriter::ReservedSink final : public ByteSink {
 public:
  ReservedSink(ByteSink* sink, uint64_t offset) : sink_(sink), offset_(offset) {}
  absl::Status Write(absl::Span<const iovec> iov) override {
    uint64_t n = 0;
    for (const iovec& v : iov) n += v.iov_len;
    CRLIB_RETURN_IF_ERROR(sink_->WriteAt(offset_, iov));
    offset_ += n;
    return absl::OkStatus();
  }

 private:
  ByteSink* sink_;
  uint64_t offset_;
};

absl::StatusOr<ImageWriter::Reservation> ImageWriter::Reserve(uint64_t bytes) {
  if (!begun_ || finished_ || bytes % 8 != 0 || bytes < sizeof(RecordHeader)) {
    return absl::FailedPreconditionError("image writer: Reserve() outside Begin()/Finish()");
  }
  CRLIB_RETURN_IF_ERROR(Flush());
  CRLIB_RETURN_IF_ERROR(sink_->SkipAhead(bytes));
  Reservation r{.offset = offset_, .bytes = bytes};
  offset_ += bytes;
  return r;
}

absl::Status ImageWriter::FillReserved(const Reservation& r, absl::FunctionRef<absl::Status()> write,
                                       ObjectRef first_pages_parent) {
  CRLIB_RETURN_IF_ERROR(Flush());
  ReservedSink reserved(sink_, r.offset);
  ByteSink* const sink = sink_;
  const uint64_t resume_at = offset_;
  sink_ = &reserved;
  offset_ = r.offset;
  absl::Status st = write();
  // Whatever the records left: a filler whose bulk is the reservation's
  // own zeros, never written (the sink skipped over them).
  const uint64_t end = r.offset + r.bytes;
  if (st.ok() && offset_ + sizeof(RecordHeader) > end) {
    st = absl::ResourceExhaustedError(absl::StrFormat(
        "the records need more than the %d bytes reserved for them", r.bytes));
  }
  if (st.ok()) {
    RecordHeader h{};
    h.type = static_cast<uint32_t>(RecordType::kFiller);
    h.flags = kRecordSkippable;
    h.bulk_length = end - offset_ - sizeof(RecordHeader);
    uint32_t crc = 0;
    for (uint64_t left = h.bulk_length; left > 0;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof(kZeros)));
      crc = Crc32c(crc, kZeros, n);
      left -= n;
    }
    h.bulk_crc = crc;
    h.header_crc = Crc32c(0, &h, offsetof(RecordHeader, header_crc));
    Append(&h, sizeof(h));
    ++record_count_;
    bulk_bytes_ += h.bulk_length;
    ByteSink* const copy = copy_;
    if (copy != nullptr) st = CopyRecord(h, {});
    if (st.ok()) st = Flush();
    offset_ += h.bulk_length;
    if (st.ok() && copy != nullptr) {
      // The page data follows in the image; the copy ends as a copy made
      // with CopyPrefix(.., kPages) would, at its first pages record.
      const Bytes payload = EncodeFields(PagesRecord{});
      RecordHeader p{};
      p.type = static_cast<uint32_t>(RecordType::kPages);
      p.length = static_cast<uint32_t>(payload.size());
      p.payload_crc = Crc32c(0, payload.data(), payload.size());
      p.parent = first_pages_parent;
      p.header_crc = Crc32c(0, &p, offsetof(RecordHeader, header_crc));
      const iovec iov[] = {{&p, sizeof(p)},
                           {const_cast<uint8_t*>(payload.data()), payload.size()},
                           {const_cast<uint8_t*>(kZeros), AlignUp(payload.size(), 8) - payload.size()}};
      st = copy->Write(iov);
      copy_ = nullptr;
    }
  }
  sink_ = sink;
  offset_ = resume_at;
  buffer_.clear();
  return st;
}

absl::Status ImageWriter::WriteRecord(uint32_t type, uint32_t flags,
                                      ObjectRef self, ObjectRef parent,
                                      absl::Span<const uint8_t> payload,
                                      absl::Span<const iovec> bulk,
                                      bool align_bulk) {
  if (!begun_ || finished_) {
    return absl::FailedPreconditionError("image writer: record outside Begin()/Finish()");
  }
  if (payload.size() > kMaxPayloadLength) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "record type 0x%04x: payload of %u bytes exceeds the %u-byte limit",
        type, payload.size(), kMaxPayloadLength));
  }
  uint64_t bulk_length = 0;
  for (const iovec& v : bulk) bulk_length += v.iov_len;

  RecordHeader h{};
  h.type = type;
  h.flags = flags;
  h.length = static_cast<uint32_t>(payload.size());
  h.payload_crc = Crc32c(0, payload.data(), payload.size());
  h.self = self;
  h.parent = parent;
  h.bulk_length = bulk_length;
  if (bulk_length > 0 && align_bulk && (info_.flags & kImageMappable)) {
    uint64_t bulk_start = offset_ + sizeof(h) + AlignUp(payload.size(), 8);
    h.bulk_pad = static_cast<uint32_t>(AlignUp(bulk_start, info_.page_size) - bulk_start);
  }
  h.bulk_crc = BulkCrc(bulk);
  h.header_crc = Crc32c(0, &h, offsetof(RecordHeader, header_crc));

  Append(&h, sizeof(h));
  Append(payload.data(), payload.size());
  AppendZeros(AlignUp(payload.size(), 8) - payload.size() + h.bulk_pad);
  ++record_count_;
  payload_bytes_ += payload.size();
  if (copy_ != nullptr) CRLIB_RETURN_IF_ERROR(CopyRecord(h, payload));
  if (bulk_length == 0) {
    return buffer_.size() >= kFlushThreshold ? Flush() : absl::OkStatus();
  }
  bulk_bytes_ += bulk_length;
  // Buffered bytes, the bulk straight from the caller, then bulk padding.
  std::vector<iovec> extra(bulk.begin(), bulk.end());
  size_t tail = AlignUp(bulk_length, 8) - bulk_length;
  if (tail) extra.push_back({const_cast<uint8_t*>(kZeros), tail});
  offset_ += bulk_length + tail;
  return Flush(extra);
}

// The record of header `h` as the copy gets it: no bulk (flagged
// kRecordBulkElided when it had some), so the end record's bulk total
// counts only what the copy holds.
absl::Status ImageWriter::CopyRecord(const RecordHeader& h, absl::Span<const uint8_t> payload) {
  RecordHeader c = h;
  Bytes end_payload;
  if (h.type == static_cast<uint32_t>(RecordType::kEnd)) {
    EndRecord end;
    end.record_count = record_count_ - 1;
    end.payload_bytes = payload_bytes_ - payload.size();
    end.bulk_bytes = 0;
    end_payload = EncodeFields(end);
    payload = end_payload;
    c.length = static_cast<uint32_t>(payload.size());
    c.payload_crc = Crc32c(0, payload.data(), payload.size());
  }
  if (c.bulk_length) c.flags |= kRecordBulkElided;
  c.bulk_length = 0;
  c.bulk_pad = 0;
  c.bulk_crc = 0;
  c.header_crc = Crc32c(0, &c, offsetof(RecordHeader, header_crc));
  const size_t pad = AlignUp(payload.size(), 8) - payload.size();
  const iovec iov[] = {{&c, sizeof(c)},
                       {const_cast<uint8_t*>(payload.data()), payload.size()},
                       {const_cast<uint8_t*>(kZeros), pad}};
  absl::Status st = copy_->Write(iov);
  if (h.type == copy_until_) copy_ = nullptr;
  return st;
}

absl::Status ImageWriter::Flush(absl::Span<const iovec> extra) {
  std::vector<iovec> iov;
  iov.reserve(extra.size() + 1);
  if (!buffer_.empty()) iov.push_back({buffer_.data(), buffer_.size()});
  iov.insert(iov.end(), extra.begin(), extra.end());
  absl::Status st = sink_->Write(iov);
  buffer_.clear();
  return st;
}

absl::Status ImageWriter::Finish() {
  EndRecord end;
  end.record_count = record_count_;
  end.payload_bytes = payload_bytes_;
  end.bulk_bytes = bulk_bytes_;
  CRLIB_RETURN_IF_ERROR(Write(end, 0, 0));
  finished_ = true;
  return Flush();
}

}  // namespace crlib
