// Throughput of the image format: record encode/decode, and page sections
// written and read raw or zstd-compressed, next to memcpy of the same bytes
// measured in the same run, so every page figure can be read as a fraction
// of what the machine's memory bandwidth allows.
//
// Page benchmarks report bytes/s of *uncompressed* page data (the same bytes
// BM_Memcpy copies), so write/read rate divided by memcpy rate is the cost of
// the format, and `ratio` (page bytes / stored bytes) is the compression won.
// Rates are per CPU second of the benchmark thread (Google Benchmark's
// default), which includes the kernel's work for its system calls and page
// faults: nothing here blocks, so on an idle machine CPU and wall time agree,
// and on the shared build VMs these run on, CPU time is the figure that other
// jobs do not inflate. Compare the Time and CPU columns to see contention.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "core/byte_stream.h"
#include "core/codec.h"
#include "core/context.h"
#include "core/image_format.h"
#include "core/image_reader.h"
#include "core/image_writer.h"
#include "core/records.h"
#include "mm/page_array.h"

namespace crlib {
namespace {

// Ends a benchmark with a failed status as its error text.
void Skip(benchmark::State& state, const absl::Status& st) {
  state.SkipWithError(std::string(st.message()).c_str());
}

constexpr size_t kPageSize = 4096;
constexpr size_t kMiB = size_t{1} << 20;
// Where the benchmark's pages "live" in the dumped address space.
constexpr uint64_t kPagesAt = 0x7f1200000000;
// Records per iteration of the record benchmarks: enough that opening the
// reader or writing the file header is noise next to the records.
constexpr int kRecordsPerImage = 1000;

ImageInfo BenchInfo(uint32_t flags) {
  ImageInfo info;
  info.cpu_family = CpuFamily::kX86_64;
  info.page_size = kPageSize;
  info.xsave_features = 0x2e7;
  info.xsave_size = 2696;
  info.flags = flags;
  info.kernel_release = "6.1.0-bench";
  return info;
}

// Fast deterministic generator (splitmix64): the data must be the same in
// every run so compression ratios are comparable between runs and machines.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }

 private:
  uint64_t state_;
};

// A page-aligned buffer, written once at allocation so its pages are
// faulted in before any timing: a fresh 64 MiB buffer costs ~16k page faults,
// which would otherwise be charged to whichever benchmark touches it first.
class Buffer {
 public:
  explicit Buffer(size_t size)
      : size_(size), data_(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, size))) {
    if (data_ == nullptr) abort();
    memset(data_.get(), 0x5a, size_);
  }
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  size_t size_;
  std::unique_ptr<uint8_t, Free> data_;
};

// Fills one page with text: words of a small vocabulary, skewed towards the
// common ones the way natural text and identifiers are, with some numbers.
void FillText(Rng& rng, uint8_t* page) {
  static constexpr const char* kWords[] = {
      "the",     "of",        "and",       "to",      "in",        "is",
      "for",     "that",      "with",      "on",      "as",        "by",
      "value",   "error",     "return",    "status",  "request",   "response",
      "server",  "client",    "thread",    "memory",  "process",   "config",
      "user_id", "timestamp", "session",   "buffer",  "handler",   "checkpoint",
      "restore", "version",   "\"name\":", "\"id\":", "{",         "}",
      "INFO",    "WARN",      "DEBUG",     "/usr/lib", "http://",  "GET",
  };
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  size_t pos = 0;
  while (pos < kPageSize) {
    char word[32];
    int len;
    uint64_t r = rng.Next();
    if (r % 8 == 0) {
      len = snprintf(word, sizeof(word), "%u", static_cast<unsigned>(r >> 40) % 100000);
    } else {
      // Product of two uniforms: small indices (common words) dominate.
      size_t i = ((r >> 8) % kCount) * ((r >> 24) % kCount) / kCount;
      len = snprintf(word, sizeof(word), "%s", kWords[i]);
    }
    word[len++] = (r >> 56) % 12 == 0 ? '\n' : ' ';
    size_t n = std::min<size_t>(len, kPageSize - pos);
    memcpy(page + pos, word, n);
    pos += n;
  }
}

// Fills one page with heap-like objects: 64-byte structs of pointers into a
// few regions, small counters, flags and zero padding.
void FillStructs(Rng& rng, uint8_t* page) {
  static constexpr uint64_t kRegions[] = {0x55d4c3a00000, 0x7f12a4000000, 0x7f12b8000000};
  for (size_t off = 0; off < kPageSize; off += 64) {
    uint64_t obj[8] = {};
    uint64_t r = rng.Next();
    obj[0] = 0x55d4c3a41230 + 0x40 * (r % 16);  // vtable: a handful of classes
    obj[1] = kRegions[(r >> 4) % 3] + ((rng.Next() % (1 << 20)) & ~uint64_t{15});
    obj[2] = kRegions[(r >> 6) % 3] + ((rng.Next() % (1 << 20)) & ~uint64_t{15});
    obj[3] = (r >> 8) % 1000;                   // length or count
    obj[4] = (r >> 20) % 4 == 0 ? rng.Next() : 0;  // an occasional hash
    obj[5] = (r >> 22) % 2;                      // flag
    memcpy(page + off, obj, sizeof(obj));
  }
}

// Fills one page with numeric arrays: ascending indices, then doubles of a
// smooth signal with noise in the low mantissa bits (poorly compressible).
void FillNumbers(Rng& rng, uint8_t* page) {
  uint32_t base = static_cast<uint32_t>(rng.Next() % 1000000);
  auto* ints = reinterpret_cast<uint32_t*>(page);
  for (size_t i = 0; i < kPageSize / 8; ++i) ints[i] = base + static_cast<uint32_t>(i) * 3;
  auto* doubles = reinterpret_cast<double*>(page + kPageSize / 2);
  for (size_t i = 0; i < kPageSize / 16; ++i) {
    doubles[i] = 1000.0 + static_cast<double>(i) * 0.25 +
                 static_cast<double>(rng.Next() % 1000000) * 1e-9;
  }
}

// Fills one page with bytes that do not compress (media, encrypted or
// already-compressed data).
void FillRandom(Rng& rng, uint8_t* page) {
  for (size_t off = 0; off < kPageSize; off += 8) {
    uint64_t v = rng.Next();
    memcpy(page + off, &v, 8);
  }
}

// Fills one page the way .bss and freshly used heap look: mostly zero, a few
// words set (never all zero: PageArray would drop the page).
void FillSparse(Rng& rng, uint8_t* page) {
  memset(page, 0, kPageSize);
  int words = 1 + static_cast<int>(rng.Below(16));
  for (int i = 0; i < words; ++i) {
    uint64_t v = rng.Next() | 1;
    memcpy(page + rng.Below(kPageSize / 8) * 8, &v, 8);
  }
}

// `mib` MiB of non-zero pages in a mix meant to resemble a process heap:
// 30% text, 30% objects, 15% numbers, 15% sparse, 10% incompressible. Kinds
// come in short runs, as allocations of one kind cluster in real memory.
const Buffer& PageData(int mib) {
  static auto* cache = new std::map<int, std::unique_ptr<Buffer>>;
  std::unique_ptr<Buffer>& data = (*cache)[mib];
  if (data) return *data;
  data = std::make_unique<Buffer>(mib * kMiB);
  Rng rng(0xc0ffee + mib);
  const size_t pages = data->size() / kPageSize;
  size_t i = 0;
  while (i < pages) {
    uint64_t kind = rng.Below(100);
    size_t run = std::min<size_t>(1 + rng.Below(8), pages - i);
    for (size_t j = 0; j < run; ++j, ++i) {
      uint8_t* page = data->data() + i * kPageSize;
      if (kind < 30) {
        FillText(rng, page);
      } else if (kind < 60) {
        FillStructs(rng, page);
      } else if (kind < 75) {
        FillNumbers(rng, page);
      } else if (kind < 90) {
        FillSparse(rng, page);
      } else {
        FillRandom(rng, page);
      }
    }
  }
  return *data;
}

// A destination as large as the page data, for reads and memcpy; one per
// size and reused, so no benchmark pays for faulting it in.
Buffer& Destination(int mib) {
  static auto* cache = new std::map<int, std::unique_ptr<Buffer>>;
  std::unique_ptr<Buffer>& dest = (*cache)[mib];
  if (!dest) dest = std::make_unique<Buffer>(mib * kMiB);
  return *dest;
}

struct PageImageStats {
  uint64_t image_bytes = 0;
  uint64_t page_bytes_stored = 0;
};

// Writes a minimal valid image holding `data` as one VMA's pages: process,
// memory map, VMA, the pages records, end. What a checkpoint of one
// anonymous mapping writes.
absl::Status WritePageImage(ByteSink* sink, const Buffer& data, int level,
                            PageImageStats* stats) {
  ImageWriter writer(sink, BenchInfo(level > 0 ? kImageCompressed : 0));
  Context ctx(Options{.compression_level = level});
  ctx.set_writer(&writer);
  ObjectRegistry& reg = ctx.registry();
  absl::Status st = writer.Begin();
  if (!st.ok()) return st;
  ObjectRef process = reg.NewRef();
  st = writer.Write(ProcessRecord{.pid = 4242, .ppid = 1, .comm = "bench"}, process, 0);
  if (!st.ok()) return st;
  ObjectRef mm = reg.NewRef();
  st = writer.Write(MemoryMapRecord{}, mm, process);
  if (!st.ok()) return st;
  st = writer.Write(VmaRecord{.start = kPagesAt, .end = kPagesAt + data.size(), .prot = 3,
                              .flags = 0x22},
                    reg.NewRef(), mm);
  if (!st.ok()) return st;
  PageArray pages(&ctx, mm);
  st = pages.Add(kPagesAt, data.data(), data.size() / kPageSize);
  if (!st.ok()) return st;
  st = pages.Flush();
  if (!st.ok()) return st;
  st = writer.Finish();
  if (!st.ok()) return st;
  stats->image_bytes = writer.bytes_written();
  stats->page_bytes_stored = ctx.stats().page_bytes_stored;
  return absl::OkStatus();
}

// Reads every pages record of an image into `dest` (indexed from kPagesAt);
// returns the number of page bytes read.
absl::StatusOr<uint64_t> ReadPageImage(ByteSource* source, Buffer& dest) {
  absl::StatusOr<std::unique_ptr<ImageReader>> reader = ImageReader::Open(source);
  if (!reader.ok()) return reader.status();
  const uint64_t limit = dest.size() / kPageSize;
  uint64_t page_bytes = 0;
  PageDestination destination = [&](uint64_t address,
                                    uint64_t pages) -> absl::StatusOr<uint8_t*> {
    const uint64_t first = (address - kPagesAt) / kPageSize;
    if (address < kPagesAt || first > limit || pages > limit - first) {
      return absl::OutOfRangeError(absl::StrFormat("run at 0x%x is outside the buffer", address));
    }
    return dest.data() + first * kPageSize;
  };
  for (;;) {
    absl::StatusOr<const Record*> record = (*reader)->Next();
    if (!record.ok()) return record.status();
    if (*record == nullptr) break;
    if ((*record)->type() != RecordType::kPages) continue;
    absl::StatusOr<PagesRecord> pages = (*reader)->Decode<PagesRecord>(**record);
    if (!pages.ok()) return pages.status();
    absl::Status st = ReadPages(reader->get(), **record, *pages, destination);
    if (!st.ok()) return st;
    page_bytes += pages->page_count * kPageSize;
  }
  return page_bytes;
}

// Images for the read benchmarks, written once per (level, size), in memory
// and as a /dev/shm file. The files are removed by RemoveImageFiles().
struct StoredImage {
  std::vector<uint8_t> bytes;
  PageImageStats stats;
  std::string path;
};

std::map<std::pair<int, int>, StoredImage>& ImageCache() {
  static auto* cache = new std::map<std::pair<int, int>, StoredImage>;
  return *cache;
}

std::string ShmPath(absl::string_view what) {
  return absl::StrFormat("/dev/shm/crlib-image-benchmark-%d-%s", getpid(), what);
}

const StoredImage* PageImage(int level, int mib, benchmark::State& state) {
  StoredImage& image = ImageCache()[{level, mib}];
  if (!image.bytes.empty()) return &image;
  MemorySink sink(&image.bytes);
  absl::Status st = WritePageImage(&sink, PageData(mib), level, &image.stats);
  if (st.ok()) {
    image.path = ShmPath(absl::StrFormat("read-%d-%d", level, mib));
    int fd = open(image.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      st = absl::InternalError("open " + image.path + ": " + strerror(errno));
    } else {
      iovec all{image.bytes.data(), image.bytes.size()};
      st = FdSink(fd).Write(absl::MakeConstSpan(&all, 1));
      close(fd);
    }
  }
  if (!st.ok()) {
    Skip(state, st);
    image.bytes.clear();
    return nullptr;
  }
  return &image;
}

void RemoveImageFiles() {
  for (auto& [key, image] : ImageCache()) {
    if (!image.path.empty()) unlink(image.path.c_str());
  }
}

void SetPageCounters(benchmark::State& state, uint64_t page_bytes, const PageImageStats& stats) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * page_bytes));
  state.counters["ratio"] = static_cast<double>(page_bytes) / stats.page_bytes_stored;
  state.counters["image_MiB"] = static_cast<double>(stats.image_bytes) / kMiB;
}

// ---------------------------------------------------------------------------
// The reference: what copying the same bytes once costs.

void BM_Memcpy(benchmark::State& state) {
  const int mib = static_cast<int>(state.range(0));
  const Buffer& src = PageData(mib);
  Buffer& dst = Destination(mib);
  for (auto _ : state) {
    memcpy(dst.data(), src.data(), src.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * src.size()));
}
BENCHMARK(BM_Memcpy)->ArgName("MiB")->Arg(64)->Unit(benchmark::kMillisecond);

// The file-write reference: one plain write() of the same bytes into a new
// tmpfs file. Creating tmpfs pages is costly on these VMs (every page is
// allocated and zeroed by the kernel, and the VM's memory may not be backed
// yet), so this, not memcpy, bounds what BM_WritePagesFile can reach.
void BM_TmpfsWrite(benchmark::State& state) {
  const int mib = static_cast<int>(state.range(0));
  const Buffer& src = PageData(mib);
  const std::string path = ShmPath("tmpfs-write");
  for (auto _ : state) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      state.SkipWithError("open in /dev/shm failed");
      break;
    }
    iovec all{const_cast<uint8_t*>(src.data()), src.size()};
    absl::Status st = FdSink(fd).Write(absl::MakeConstSpan(&all, 1));
    close(fd);
    state.PauseTiming();  // freeing the file is not part of writing it
    unlink(path.c_str());
    state.ResumeTiming();
    if (!st.ok()) {
      Skip(state, st);
      break;
    }
  }
  unlink(path.c_str());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * src.size()));
}
BENCHMARK(BM_TmpfsWrite)->ArgName("MiB")->Arg(64)->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// Page sections. Arguments: zstd level (0 = raw), MiB of pages.

void PageArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"level", "MiB"});
  for (int level : {0, 1, 3}) b->Args({level, 64});
  b->Unit(benchmark::kMillisecond);
}

// PageArray into a MemorySink whose vector keeps its (pre-faulted) capacity
// from one iteration to the next.
void BM_WritePagesMemory(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const Buffer& data = PageData(static_cast<int>(state.range(1)));
  std::vector<uint8_t> image(data.size() + kMiB);  // touch every page once
  PageImageStats stats;
  for (auto _ : state) {
    image.clear();
    MemorySink sink(&image);
    absl::Status st = WritePageImage(&sink, data, level, &stats);
    if (!st.ok()) {
      Skip(state, st);
      break;
    }
    benchmark::DoNotOptimize(image.data());
  }
  SetPageCounters(state, data.size(), stats);
}
BENCHMARK(BM_WritePagesMemory)->Apply(PageArgs);

// PageArray into a new /dev/shm file through FdSink, as a checkpoint to
// tmpfs does; see BM_TmpfsWrite for the cost of tmpfs itself.
void BM_WritePagesFile(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const Buffer& data = PageData(static_cast<int>(state.range(1)));
  const std::string path = ShmPath(absl::StrFormat("write-%d", level));
  PageImageStats stats;
  for (auto _ : state) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      state.SkipWithError("open in /dev/shm failed");
      break;
    }
    FdSink sink(fd);
    absl::Status st = WritePageImage(&sink, data, level, &stats);
    close(fd);
    state.PauseTiming();  // freeing the file is not part of writing it
    unlink(path.c_str());
    state.ResumeTiming();
    if (!st.ok()) {
      Skip(state, st);
      break;
    }
  }
  unlink(path.c_str());
  SetPageCounters(state, data.size(), stats);
}
BENCHMARK(BM_WritePagesFile)->Apply(PageArgs);

// Checks after the timed loop that the pages arrived intact, so a fast but
// wrong reader cannot pass unnoticed.
void CheckPages(benchmark::State& state, const Buffer& data, const Buffer& dest) {
  if (memcmp(data.data(), dest.data(), data.size()) != 0) {
    state.SkipWithError("pages read back differ from the pages written");
  }
}

// ImageReader + ReadPages of an image held in memory into a pre-faulted
// buffer: decoding, CRC checks and decompression, no I/O.
void BM_ReadPagesMemory(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const int mib = static_cast<int>(state.range(1));
  const StoredImage* image = PageImage(level, mib, state);
  if (image == nullptr) return;
  Buffer& dest = Destination(mib);
  memset(dest.data(), 0, dest.size());
  for (auto _ : state) {
    MemorySource source(image->bytes);
    absl::StatusOr<uint64_t> read = ReadPageImage(&source, dest);
    if (!read.ok() || *read != dest.size()) {
      state.SkipWithError(read.ok() ? "short read" : std::string(read.status().message()).c_str());
      return;
    }
  }
  CheckPages(state, PageData(mib), dest);
  SetPageCounters(state, dest.size(), image->stats);
}
BENCHMARK(BM_ReadPagesMemory)->Apply(PageArgs);

// The same from a /dev/shm file through FdSource: adds the read() copies.
void BM_ReadPagesFile(benchmark::State& state) {
  const int level = static_cast<int>(state.range(0));
  const int mib = static_cast<int>(state.range(1));
  const StoredImage* image = PageImage(level, mib, state);
  if (image == nullptr) return;
  Buffer& dest = Destination(mib);
  memset(dest.data(), 0, dest.size());
  for (auto _ : state) {
    int fd = open(image->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      state.SkipWithError("open of the image in /dev/shm failed");
      return;
    }
    FdSource source(fd);
    absl::StatusOr<uint64_t> read = ReadPageImage(&source, dest);
    close(fd);
    if (!read.ok() || *read != dest.size()) {
      state.SkipWithError(read.ok() ? "short read" : std::string(read.status().message()).c_str());
      return;
    }
  }
  CheckPages(state, PageData(mib), dest);
  SetPageCounters(state, dest.size(), image->stats);
}
BENCHMARK(BM_ReadPagesFile)->Apply(PageArgs);

// ---------------------------------------------------------------------------
// Records. Typical values; names and paths vary the way a real map does.

std::vector<VmaRecord> SampleVmas() {
  static constexpr const char* kNames[] = {
      "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
      "[heap]", "", "[stack]", "/usr/bin/python3.11", "", "/usr/lib/locale/C.utf8/LC_CTYPE"};
  std::vector<VmaRecord> vmas;
  uint64_t at = 0x7f1200000000;
  for (int i = 0; i < 8; ++i) {
    bool file = kNames[i][0] == '/';
    vmas.push_back(VmaRecord{.start = at, .end = at + (uint64_t{1} << (12 + i)),
                             .pgoff = file ? uint64_t{0x28000} * i : 0, .prot = 1u | (i % 3),
                             .flags = file ? 0x02u : 0x22u, .kind = file ? 1u : 0u,
                             .file = file ? uint64_t{100} + i : 0, .dev = file ? 0x803u : 0,
                             .inode = file ? uint64_t{1311000} + i : 0, .name = kNames[i]});
    at += uint64_t{1} << 24;
  }
  return vmas;
}

std::vector<ThreadRecord> SampleThreads() {
  static constexpr const char* kComms[] = {"java", "GC Thread#0", "C2 CompilerThre",
                                           "worker-17", "Signal Dispatch", "epoll"};
  std::vector<ThreadRecord> threads;
  for (int i = 0; i < 6; ++i) {
    threads.push_back(ThreadRecord{.tid = 4242u + i, .sigmask = i % 2 ? 0x10000u : 0,
                                   .sigaltstack_sp = i == 0 ? uint64_t{0x7f12a0000000} : 0,
                                   .sigaltstack_size = i == 0 ? 65536u : 0,
                                   .sigaltstack_flags = i == 0 ? 0u : 2u, .rseq_length = 32,
                                   .rseq_address = uint64_t{0x7f12a4001000} + 0x1000u * i,
                                   .rseq_signature = 0x53053053, .syscall_nr = i % 3 ? 202 : 7,
                                   .comm = kComms[i]});
  }
  return threads;
}

template <typename R>
std::vector<R> SampleRecords();
template <>
std::vector<VmaRecord> SampleRecords<VmaRecord>() { return SampleVmas(); }
template <>
std::vector<ThreadRecord> SampleRecords<ThreadRecord>() { return SampleThreads(); }

// The parent a record of type R names: memory map for VMAs, process for
// threads; defined first so the reader accepts the references.
absl::Status WriteParent(ImageWriter& writer, ObjectRef self, const VmaRecord*) {
  return writer.Write(MemoryMapRecord{}, self, 0);
}
absl::Status WriteParent(ImageWriter& writer, ObjectRef self, const ThreadRecord*) {
  return writer.Write(ProcessRecord{.pid = 4242, .comm = "bench"}, self, 0);
}

// Payload bytes of one pass over the samples, for bytes/s.
template <typename R>
uint64_t PayloadBytes(const std::vector<R>& records) {
  uint64_t bytes = 0;
  for (const R& r : records) bytes += EncodeFields(r).size();
  return bytes;
}

// Field encoding alone (EncodeFields allocates the payload, as its callers
// pay for).
template <typename R>
void BM_EncodeFields(benchmark::State& state) {
  const std::vector<R> records = SampleRecords<R>();
  for (auto _ : state) {
    for (const R& r : records) {
      Bytes payload = EncodeFields(r);
      benchmark::DoNotOptimize(payload.data());
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * records.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * PayloadBytes(records)));
}
BENCHMARK(BM_EncodeFields<VmaRecord>);
BENCHMARK(BM_EncodeFields<ThreadRecord>);

template <typename R>
void BM_DecodeFields(benchmark::State& state) {
  std::vector<Bytes> payloads;
  uint64_t bytes = 0;
  for (const R& r : SampleRecords<R>()) {
    payloads.push_back(EncodeFields(r));
    bytes += payloads.back().size();
  }
  for (auto _ : state) {
    for (const Bytes& payload : payloads) {
      R value;
      absl::Status st = DecodeFields(payload, &value);
      if (!st.ok()) Skip(state, st);
      benchmark::DoNotOptimize(value);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * payloads.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_DecodeFields<VmaRecord>);
BENCHMARK(BM_DecodeFields<ThreadRecord>);

// A whole image of kRecordsPerImage records of type R (plus their parent).
template <typename R>
absl::Status WriteRecordImage(ByteSink* sink, const std::vector<R>& samples) {
  ImageWriter writer(sink, BenchInfo(0));
  absl::Status st = writer.Begin();
  if (!st.ok()) return st;
  constexpr ObjectRef kParent = 1;
  st = WriteParent(writer, kParent, static_cast<const R*>(nullptr));
  if (!st.ok()) return st;
  for (int i = 0; i < kRecordsPerImage; ++i) {
    st = writer.Write(samples[i % samples.size()], kParent + 1 + i, kParent);
    if (!st.ok()) return st;
  }
  return writer.Finish();
}

// ImageWriter::Write: encoding plus header, CRCs and buffering, into memory.
// bytes/s counts the whole image, headers included.
template <typename R>
void BM_WriteRecords(benchmark::State& state) {
  const std::vector<R> samples = SampleRecords<R>();
  std::vector<uint8_t> image;
  for (auto _ : state) {
    image.clear();
    MemorySink sink(&image);
    absl::Status st = WriteRecordImage(&sink, samples);
    if (!st.ok()) {
      Skip(state, st);
      break;
    }
    benchmark::DoNotOptimize(image.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kRecordsPerImage));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * image.size()));
}
BENCHMARK(BM_WriteRecords<VmaRecord>);
BENCHMARK(BM_WriteRecords<ThreadRecord>);

// ImageReader::Next + Decode: header and payload checks, CRCs, reference
// tracking and field decoding, from memory.
template <typename R>
void BM_ReadRecords(benchmark::State& state) {
  std::vector<uint8_t> image;
  MemorySink sink(&image);
  absl::Status st = WriteRecordImage(&sink, SampleRecords<R>());
  if (!st.ok()) {
    Skip(state, st);
    return;
  }
  for (auto _ : state) {
    MemorySource source(image);
    absl::StatusOr<std::unique_ptr<ImageReader>> reader = ImageReader::Open(&source);
    if (!reader.ok()) {
      Skip(state, reader.status());
      return;
    }
    int decoded = 0;
    for (;;) {
      absl::StatusOr<const Record*> record = (*reader)->Next();
      if (!record.ok()) {
        Skip(state, record.status());
        return;
      }
      if (*record == nullptr) break;
      if ((*record)->type() != R::kType) continue;
      absl::StatusOr<R> value = (*reader)->Decode<R>(**record);
      if (!value.ok()) {
        Skip(state, value.status());
        return;
      }
      benchmark::DoNotOptimize(*value);
      ++decoded;
    }
    if (decoded != kRecordsPerImage) {
      state.SkipWithError("wrong number of records decoded");
      return;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kRecordsPerImage));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * image.size()));
}
BENCHMARK(BM_ReadRecords<VmaRecord>);
BENCHMARK(BM_ReadRecords<ThreadRecord>);

}  // namespace
}  // namespace crlib

// BENCHMARK_MAIN, plus removal of the /dev/shm images the read benchmarks
// keep between runs.
int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  crlib::RemoveImageFiles();
  return 0;
}
