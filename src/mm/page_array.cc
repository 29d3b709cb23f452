#include "mm/page_array.h"

#include <sys/mman.h>
#include <zstd.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "core/status.h"

namespace crlib {

struct PageArray::ZstdCtx {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ~ZstdCtx() { ZSTD_freeCCtx(cctx); }
};

bool IsZeroPage(const uint8_t* p, size_t size) {
  // OR 64 bytes at a time so the compiler vectorizes; stop at the first
  // non-zero block (most data pages are not zero in their first bytes).
  for (size_t off = 0; off < size; off += 64) {
    uint64_t acc = 0;
    for (size_t i = 0; i < 64; i += 8) {
      uint64_t w;
      memcpy(&w, p + off + i, 8);
      acc |= w;
    }
    if (acc) return false;
  }
  return true;
}

PageArray::PageArray(Context* ctx, ObjectRef parent)
    : ctx_(ctx),
      parent_(parent),
      page_size_(ctx->writer()->info().page_size),
      capacity_(std::max<size_t>(1, ctx->options().page_batch_bytes / page_size_)),
      compress_(ctx->writer()->info().flags & kImageCompressed) {
  record_.encoding = static_cast<uint32_t>(compress_ ? PageEncoding::kZstd : PageEncoding::kRaw);
  if (compress_) {
    zstd_ = std::make_unique<ZstdCtx>();
    ZSTD_CCtx_setParameter(zstd_->cctx, ZSTD_c_compressionLevel,
                           std::max(1, ctx->options().compression_level));
  }
}

PageArray::~PageArray() {
  (void)Wait();
  if (worker_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  for (Batch& b : batches_) {
    if (b.buffer) munmap(b.buffer, capacity_ * page_size_);
  }
}

absl::StatusOr<absl::Span<uint8_t>> PageArray::Reserve(uint64_t address, size_t pages) {
  if (pages == 0) return absl::InvalidArgumentError("PageArray::Reserve of 0 pages");
  if (batches_[current_].used == capacity_) CRLIB_RETURN_IF_ERROR(Submit());
  Batch& b = batches_[current_];
  if (b.buffer == nullptr) {
    // Populated in one pass rather than one fault per page.
    void* p = mmap(nullptr, capacity_ * page_size_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) return Errno("mmap of a %d-byte page batch", capacity_ * page_size_);
    b.buffer = static_cast<uint8_t*>(p);
  }
  reserved_address_ = address;
  reserved_pages_ = std::min(pages, capacity_ - b.used);
  return absl::MakeSpan(b.buffer + b.used * page_size_, reserved_pages_ * page_size_);
}

absl::Status PageArray::Commit(size_t pages) {
  if (pages > reserved_pages_) {
    return absl::InvalidArgumentError("PageArray::Commit of more pages than reserved");
  }
  if (pages > 0) {
    Batch& b = batches_[current_];
    if (b.used == 0) b.parent = parent_;
    b.segments.push_back({reserved_address_, pages});
    b.keep_zero.push_back(keep_zero_);
    b.used += pages;
    ctx_->stats().pages_scanned += pages;
  }
  reserved_pages_ = 0;
  return absl::OkStatus();
}

absl::Status PageArray::Add(uint64_t address, const void* data, size_t pages) {
  const auto* src = static_cast<const uint8_t*>(data);
  while (pages > 0) {
    CRLIB_ASSIGN_OR_RETURN(absl::Span<uint8_t> dest, Reserve(address, pages));
    memcpy(dest.data(), src, dest.size());
    size_t n = dest.size() / page_size_;
    CRLIB_RETURN_IF_ERROR(Commit(n));
    src += dest.size();
    address += dest.size();
    pages -= n;
  }
  return absl::OkStatus();
}

absl::Status PageArray::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return handed_ == nullptr; });
  absl::Status st = written_;
  written_ = absl::OkStatus();
  return st;
}

void PageArray::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return handed_ != nullptr || stopping_; });
    if (handed_ == nullptr) return;  // stopping, nothing left
    Batch* batch = handed_;
    lock.unlock();
    absl::Status st = WriteBatch(*batch);
    lock.lock();
    if (written_.ok()) written_ = st;
    handed_ = nullptr;
    cv_.notify_all();
  }
}

absl::Status PageArray::Submit() {
  // Writes go out in order: the previous batch must be done, which also
  // frees its buffer for the next fill.
  CRLIB_RETURN_IF_ERROR(Wait());
  Batch* b = &batches_[current_];
  if (b->used > 0) {
    CRLIB_RETURN_IF_ERROR(
        ctx_->Progress(phase_, ctx_->stats().pages_scanned * page_size_));
    if (!worker_.joinable()) worker_ = std::thread([this] { WorkerLoop(); });
    {
      std::lock_guard<std::mutex> lock(mu_);
      handed_ = b;
    }
    cv_.notify_all();
    current_ ^= 1;
  }
  return absl::OkStatus();
}

absl::Status PageArray::SetParent(ObjectRef parent) {
  // A batch holds one memory map's pages: the last one's go out first.
  if (batches_[current_].used > 0 && batches_[current_].parent != parent) {
    CRLIB_RETURN_IF_ERROR(Submit());
  }
  parent_ = parent;
  return absl::OkStatus();
}

absl::Status PageArray::Flush() {
  CRLIB_RETURN_IF_ERROR(Submit());
  return Wait();
}

absl::Status PageArray::WriteBatch(Batch& batch) {
  Stats& stats = ctx_->stats();
  record_.runs.clear();
  record_.page_count = 0;
  iov_.clear();
  uint8_t* page = batch.buffer;
  for (size_t s = 0; s < batch.segments.size(); ++s) {
    const PageRun& seg = batch.segments[s];
    for (uint64_t i = 0; i < seg.pages; ++i, page += page_size_) {
      uint64_t address = seg.address + i * page_size_;
      if (!batch.keep_zero[s] && IsZeroPage(page, page_size_)) {
        ++stats.pages_zero;
        continue;
      }
      if (!record_.runs.empty() &&
          record_.runs.back().address + record_.runs.back().pages * page_size_ == address) {
        ++record_.runs.back().pages;
      } else {
        record_.runs.push_back({address, 1});
      }
      if (!iov_.empty() && static_cast<uint8_t*>(iov_.back().iov_base) + iov_.back().iov_len == page) {
        iov_.back().iov_len += page_size_;
      } else {
        iov_.push_back({page, page_size_});
      }
      ++record_.page_count;
    }
  }
  batch.used = 0;
  batch.segments.clear();
  batch.keep_zero.clear();
  if (record_.page_count == 0) return absl::OkStatus();
  if (compress_) {
    compressed_.resize(ZSTD_compressBound(record_.page_count * page_size_));
    ZSTD_outBuffer out{compressed_.data(), compressed_.size(), 0};
    for (size_t i = 0; i < iov_.size(); ++i) {
      ZSTD_inBuffer in{iov_[i].iov_base, iov_[i].iov_len, 0};
      ZSTD_EndDirective mode = i + 1 == iov_.size() ? ZSTD_e_end : ZSTD_e_continue;
      size_t left;
      do {
        left = ZSTD_compressStream2(zstd_->cctx, &out, &in, mode);
        if (ZSTD_isError(left)) {
          return absl::InternalError(
              absl::StrFormat("zstd compression: %s", ZSTD_getErrorName(left)));
        }
      } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
    }
    iovec bulk{compressed_.data(), out.pos};
    CRLIB_RETURN_IF_ERROR(ctx_->writer()->Write(record_, 0, batch.parent, absl::MakeConstSpan(&bulk, 1)));
    stats.page_bytes_stored += out.pos;
  } else {
    CRLIB_RETURN_IF_ERROR(ctx_->writer()->Write(record_, 0, batch.parent, iov_, /*align_bulk=*/true));
    stats.page_bytes_stored += record_.page_count * page_size_;
  }
  stats.pages_stored += record_.page_count;
  return absl::OkStatus();
}

namespace {

// Streams one zstd frame from the record's bulk into the runs' memory. Output
// past the last run lands in `overflow`, which must stay empty.
absl::Status ReadZstdPages(ImageReader* reader, const std::string& where,
                           const std::vector<iovec>& iov, uint64_t page_size) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  std::vector<uint8_t> overflow(page_size);
  size_t next_run = 0;
  ZSTD_outBuffer out{nullptr, 0, 0};
  size_t last = 1;  // zstd's "more to come" hint; 0 once the frame is complete
  auto pump = [&](ZSTD_inBuffer in) -> absl::Status {
    while (in.pos < in.size || (out.pos == out.size && last != 0)) {
      if (out.pos == out.size) {
        if (next_run < iov.size()) {
          out = {iov[next_run].iov_base, iov[next_run].iov_len, 0};
          ++next_run;
        } else if (out.dst != overflow.data()) {
          out = {overflow.data(), overflow.size(), 0};
        } else {
          break;
        }
      }
      last = ZSTD_decompressStream(dctx.get(), &out, &in);
      if (ZSTD_isError(last)) {
        return absl::DataLossError(absl::StrFormat("%s: zstd: %s", where, ZSTD_getErrorName(last)));
      }
      if (out.dst == overflow.data() && out.pos > 0) {
        return absl::DataLossError(where + ": zstd frame holds more than its runs");
      }
    }
    return absl::OkStatus();
  };
  CRLIB_RETURN_IF_ERROR(reader->ReadBulkChunks(1 << 20, [&](absl::Span<const uint8_t> chunk) {
    return pump({chunk.data(), chunk.size(), 0});
  }));
  CRLIB_RETURN_IF_ERROR(pump({nullptr, 0, 0}));
  if (last != 0 || next_run != iov.size() || (out.dst != overflow.data() && out.pos != out.size)) {
    return absl::DataLossError(where + ": zstd frame ends before its runs are filled");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadPages(ImageReader* reader, const Record& record, const PagesRecord& pages,
                       const PageDestination& destination) {
  const uint64_t page_size = reader->info().page_size;
  const std::string where =
      absl::StrFormat("pages record %d at offset %d", record.index, record.offset);
  if (pages.page_count > kMaxBulkLength / page_size) {
    return absl::DataLossError(absl::StrFormat("%s: %d pages is more than an image holds", where,
                                               pages.page_count));
  }
  uint64_t total = 0;
  for (const PageRun& run : pages.runs) {
    if (run.pages == 0 || run.address % page_size != 0 ||
        run.pages > (UINT64_MAX - run.address) / page_size || run.pages > pages.page_count - total) {
      return absl::DataLossError(absl::StrFormat("%s: run at 0x%x of %d pages is malformed",
                                                 where, run.address, run.pages));
    }
    total += run.pages;
  }
  if (total != pages.page_count) {
    return absl::DataLossError(absl::StrFormat("%s: runs hold %d pages, record says %d", where,
                                               total, pages.page_count));
  }
  const uint64_t raw_bytes = total * page_size;
  const auto encoding = static_cast<PageEncoding>(pages.encoding);
  if (encoding != PageEncoding::kRaw && encoding != PageEncoding::kZstd) {
    return absl::DataLossError(absl::StrFormat("%s: unknown page encoding %d", where, pages.encoding));
  }
  if (encoding == PageEncoding::kRaw && record.header.bulk_length != raw_bytes) {
    return absl::DataLossError(absl::StrFormat("%s: %d bulk bytes for %d raw pages", where,
                                               record.header.bulk_length, total));
  }
  std::vector<iovec> iov;
  iov.reserve(pages.runs.size());
  for (const PageRun& run : pages.runs) {
    CRLIB_ASSIGN_OR_RETURN(uint8_t * dest, destination(run.address, run.pages));
    iov.push_back({dest, run.pages * page_size});
  }
  if (encoding == PageEncoding::kRaw) return reader->ReadBulk(iov);
  return ReadZstdPages(reader, where, iov, page_size);
}

}  // namespace crlib
