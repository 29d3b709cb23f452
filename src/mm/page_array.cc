#include "mm/page_array.h"

#include <sched.h>
#include <sys/mman.h>
#include <zstd.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "core/status.h"

namespace crlib {

struct PageArray::ZstdCtx {
  explicit ZstdCtx(int level) {
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, std::max(1, level));
  }
  ~ZstdCtx() { ZSTD_freeCCtx(cctx); }
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
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

namespace {

// CPUs this thread may run on: compression workers beyond those only queue.
size_t UsableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

}  // namespace

PageArray::PageArray(Context* ctx, ObjectRef parent)
    : ctx_(ctx),
      parent_(parent),
      page_size_(ctx->writer()->info().page_size),
      capacity_(std::max<size_t>(1, ctx->options().page_batch_bytes / page_size_)),
      compress_(ctx->writer()->info().flags & kImageCompressed),
      worker_count_(compress_ ? std::min(kMaxWorkers, UsableCpus()) : 1),
      batches_(2 * worker_count_) {}

PageArray::~PageArray() {
  (void)Wait();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& w : workers_) w.join();
  for (Batch& b : batches_) {
    if (b.buffer) munmap(b.buffer, capacity_ * page_size_);
  }
}

absl::StatusOr<absl::Span<uint8_t>> PageArray::Reserve(uint64_t address, size_t pages) {
  if (pages == 0) return absl::InvalidArgumentError("PageArray::Reserve of 0 pages");
  if (current().used == capacity_) CRLIB_RETURN_IF_ERROR(Submit());
  Batch& b = current();
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
    Batch& b = current();
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
  cv_.wait(lock, [this] { return written_ == submitted_; });
  return error_;
}

void PageArray::WorkerLoop() {
  std::unique_ptr<ZstdCtx> zstd;
  if (compress_) zstd = std::make_unique<ZstdCtx>(ctx_->options().compression_level);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return claimed_ < submitted_ || stopping_; });
    if (claimed_ == submitted_) return;  // stopping, nothing left
    const uint64_t number = claimed_++;
    Batch& batch = batches_[number % batches_.size()];
    const bool failed = !error_.ok();
    lock.unlock();
    // After an error the image is broken: later batches are only dropped.
    absl::Status st = failed ? absl::OkStatus() : Prepare(batch, zstd.get());
    lock.lock();
    cv_.wait(lock, [&] { return written_ == number; });
    if (error_.ok() && !st.ok()) error_ = st;
    if (error_.ok()) {
      lock.unlock();  // the batches before are written, the others wait
      st = Emit(batch);
      lock.lock();
      if (error_.ok()) error_ = st;
    }
    batch.used = 0;
    batch.segments.clear();
    batch.keep_zero.clear();
    ++written_;
    cv_.notify_all();
  }
}

absl::Status PageArray::Submit() {
  if (current().used == 0) return absl::OkStatus();
  CRLIB_RETURN_IF_ERROR(ctx_->Progress(phase_, ctx_->stats().pages_scanned * page_size_));
  std::unique_lock<std::mutex> lock(mu_);
  if (!error_.ok()) return error_;
  if (workers_.empty()) {
    for (size_t w = 0; w < worker_count_; ++w) workers_.emplace_back([this] { WorkerLoop(); });
  }
  ++submitted_;
  cv_.notify_all();
  // The next batch's buffer is free once its last contents are written.
  cv_.wait(lock, [this] { return submitted_ - written_ < batches_.size() || !error_.ok(); });
  return error_;
}

absl::Status PageArray::SetParent(ObjectRef parent) {
  // A batch holds one memory map's pages: the last one's go out first.
  if (current().used > 0 && current().parent != parent) {
    CRLIB_RETURN_IF_ERROR(Submit());
  }
  parent_ = parent;
  return absl::OkStatus();
}

absl::Status PageArray::Flush() {
  CRLIB_RETURN_IF_ERROR(Submit());
  return Wait();
}

absl::Status PageArray::Prepare(Batch& batch, ZstdCtx* zstd) {
  PagesRecord& record = batch.record;
  record.encoding = static_cast<uint32_t>(compress_ ? PageEncoding::kZstd : PageEncoding::kRaw);
  record.runs.clear();
  record.page_count = 0;
  batch.bulk.clear();
  batch.zero_pages = 0;
  uint8_t* page = batch.buffer;
  for (size_t s = 0; s < batch.segments.size(); ++s) {
    const PageRun& seg = batch.segments[s];
    for (uint64_t i = 0; i < seg.pages; ++i, page += page_size_) {
      uint64_t address = seg.address + i * page_size_;
      if (!batch.keep_zero[s] && IsZeroPage(page, page_size_)) {
        ++batch.zero_pages;
        continue;
      }
      if (!record.runs.empty() &&
          record.runs.back().address + record.runs.back().pages * page_size_ == address) {
        ++record.runs.back().pages;
      } else {
        record.runs.push_back({address, 1});
      }
      std::vector<iovec>& iov = batch.bulk;
      if (!iov.empty() && static_cast<uint8_t*>(iov.back().iov_base) + iov.back().iov_len == page) {
        iov.back().iov_len += page_size_;
      } else {
        iov.push_back({page, page_size_});
      }
      ++record.page_count;
    }
  }
  if (!compress_ || record.page_count == 0) return absl::OkStatus();
  batch.compressed.resize(ZSTD_compressBound(record.page_count * page_size_));
  ZSTD_outBuffer out{batch.compressed.data(), batch.compressed.size(), 0};
  for (size_t i = 0; i < batch.bulk.size(); ++i) {
    ZSTD_inBuffer in{batch.bulk[i].iov_base, batch.bulk[i].iov_len, 0};
    ZSTD_EndDirective mode = i + 1 == batch.bulk.size() ? ZSTD_e_end : ZSTD_e_continue;
    size_t left;
    do {
      left = ZSTD_compressStream2(zstd->cctx, &out, &in, mode);
      if (ZSTD_isError(left)) {
        return absl::InternalError(
            absl::StrFormat("zstd compression: %s", ZSTD_getErrorName(left)));
      }
    } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
  }
  batch.bulk.assign(1, iovec{batch.compressed.data(), out.pos});
  return absl::OkStatus();
}

absl::Status PageArray::Emit(Batch& batch) {
  Stats& stats = ctx_->stats();
  stats.pages_zero += batch.zero_pages;
  if (batch.record.page_count == 0) return absl::OkStatus();
  CRLIB_RETURN_IF_ERROR(ctx_->writer()->Write(batch.record, 0, batch.parent, batch.bulk,
                                              /*align_bulk=*/!compress_));
  stats.pages_stored += batch.record.page_count;
  stats.page_bytes_stored += compress_ ? batch.bulk[0].iov_len
                                       : batch.record.page_count * page_size_;
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

absl::Status CheckPageRuns(const Record& record, const PagesRecord& pages, uint64_t page_size) {
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
  const auto encoding = static_cast<PageEncoding>(pages.encoding);
  if (encoding != PageEncoding::kRaw && encoding != PageEncoding::kZstd) {
    return absl::DataLossError(absl::StrFormat("%s: unknown page encoding %d", where, pages.encoding));
  }
  if (encoding == PageEncoding::kRaw && record.header.bulk_length != total * page_size) {
    return absl::DataLossError(absl::StrFormat("%s: %d bulk bytes for %d raw pages", where,
                                               record.header.bulk_length, total));
  }
  return absl::OkStatus();
}

absl::Status ReadPages(ImageReader* reader, const Record& record, const PagesRecord& pages,
                       const PageDestination& destination) {
  const uint64_t page_size = reader->info().page_size;
  const std::string where =
      absl::StrFormat("pages record %d at offset %d", record.index, record.offset);
  CRLIB_RETURN_IF_ERROR(CheckPageRuns(record, pages, page_size));
  const auto encoding = static_cast<PageEncoding>(pages.encoding);
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
