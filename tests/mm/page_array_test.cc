#include "mm/page_array.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/byte_stream.h"
#include "tests/core/sample_image.h"

namespace crlib {
namespace {

constexpr uint64_t kBase = 0x10000000;

// Writes `pages` pages at kBase (non-zero unless listed in `zero`) and
// returns the decoded kPages records.
struct Written {
  std::vector<uint8_t> image;
  std::vector<PagesRecord> records;
  Stats stats;
};

Written WritePages(uint32_t flags, size_t pages, const std::vector<size_t>& zero,
                   size_t batch_pages) {
  Written w;
  MemorySink sink(&w.image);
  ImageWriter writer(&sink, testing::SampleInfo(flags));
  EXPECT_TRUE(writer.Begin().ok());
  Context ctx(Options{.compression_level = 1, .page_batch_bytes = batch_pages * 4096});
  ctx.set_writer(&writer);
  std::vector<uint8_t> data(pages * 4096);
  for (size_t i = 0; i < pages; ++i) memset(&data[i * 4096], static_cast<int>(i % 250 + 1), 4096);
  for (size_t z : zero) memset(&data[z * 4096], 0, 4096);
  {
    PageArray array(&ctx, 0);
    EXPECT_TRUE(array.Add(kBase, data.data(), pages).ok());
    EXPECT_TRUE(array.Flush().ok());
  }
  EXPECT_TRUE(writer.Finish().ok());
  w.stats = ctx.stats();
  MemorySource source(w.image);
  auto reader = ImageReader::Open(&source);
  std::vector<uint8_t> back(pages * 4096, 0);
  for (;;) {
    auto rec = (*reader)->Next();
    EXPECT_TRUE(rec.ok()) << rec.status();
    if (!rec.ok() || *rec == nullptr) break;
    auto p = (*reader)->Decode<PagesRecord>(**rec);
    EXPECT_TRUE(p.ok());
    w.records.push_back(*p);
    EXPECT_TRUE(ReadPages(reader->get(), **rec, *p,
                          [&](uint64_t a, uint64_t) -> absl::StatusOr<uint8_t*> {
                            return back.data() + (a - kBase);
                          })
                    .ok());
  }
  EXPECT_EQ(back, data) << "pages did not come back intact";
  return w;
}

TEST(PageArrayTest, MergesAdjacentRuns) {
  Written w = WritePages(0, 16, {}, 64);
  ASSERT_EQ(w.records.size(), 1u);
  ASSERT_EQ(w.records[0].runs.size(), 1u);
  EXPECT_EQ(w.records[0].runs[0].address, kBase);
  EXPECT_EQ(w.records[0].runs[0].pages, 16u);
}

TEST(PageArrayTest, NeverStoresZeroPages) {
  Written w = WritePages(0, 16, {0, 5, 6, 15}, 64);
  ASSERT_EQ(w.records.size(), 1u);
  EXPECT_EQ(w.records[0].page_count, 12u);
  ASSERT_EQ(w.records[0].runs.size(), 2u);  // [1,5) and [7,15)
  EXPECT_EQ(w.records[0].runs[0].address, kBase + 4096);
  EXPECT_EQ(w.records[0].runs[0].pages, 4u);
  EXPECT_EQ(w.records[0].runs[1].pages, 8u);
  EXPECT_EQ(w.stats.pages_zero, 4u);
  EXPECT_EQ(w.stats.pages_stored, 12u);
  EXPECT_EQ(w.stats.pages_scanned, 16u);
}

TEST(PageArrayTest, SplitsIntoBatches) {
  Written w = WritePages(0, 100, {}, 32);
  ASSERT_EQ(w.records.size(), 4u);  // 32 + 32 + 32 + 4
  EXPECT_EQ(w.records[3].page_count, 4u);
}

TEST(PageArrayTest, CompressedBatchesRoundTrip) {
  Written w = WritePages(kImageCompressed, 100, {3, 50}, 32);
  EXPECT_EQ(w.stats.pages_stored, 98u);
  EXPECT_LT(w.stats.page_bytes_stored, 98u * 4096 / 10) << "uniform pages compress well";
}

// Compressed batches are compressed by several workers at once but must
// reach the image in the order they were filled.
TEST(PageArrayTest, CompressedBatchesKeepTheirOrder) {
  Written w = WritePages(kImageCompressed, 1000, {}, 8);
  ASSERT_EQ(w.records.size(), 125u);
  for (size_t i = 0; i < w.records.size(); ++i) {
    ASSERT_EQ(w.records[i].runs.size(), 1u);
    EXPECT_EQ(w.records[i].runs[0].address, kBase + i * 8 * 4096) << "record " << i;
  }
}

// A sink that takes `good` writes, then fails every one, counting them.
class FailingSink : public ByteSink {
 public:
  explicit FailingSink(int good) : good_(good) {}
  absl::Status Write(absl::Span<const iovec>) override {
    ++calls_;
    if (calls_ > good_) return absl::ResourceExhaustedError("the reader went away");
    return absl::OkStatus();
  }
  int calls() const { return calls_; }

 private:
  int good_;
  int calls_ = 0;
};

// After a failed write nothing more is written, and the caller hears of
// the failure, raw or compressed by several workers.
TEST(PageArrayTest, StopsWritingAtTheFirstError) {
  for (uint32_t flags : {0u, static_cast<uint32_t>(kImageCompressed)}) {
    FailingSink sink(3);  // the header goes with the first record
    ImageWriter writer(&sink, testing::SampleInfo(flags));
    ASSERT_TRUE(writer.Begin().ok());
    Context ctx(Options{.compression_level = flags ? 1 : 0, .page_batch_bytes = 4 * 4096});
    ctx.set_writer(&writer);
    std::vector<uint8_t> data(400 * 4096, 0x5a);
    absl::Status st;
    {
      PageArray array(&ctx, 0);
      st = array.Add(kBase, data.data(), 400);
      if (st.ok()) st = array.Flush();
      EXPECT_FALSE(array.Flush().ok()) << "a second Flush forgot the error";
    }
    EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
    EXPECT_EQ(sink.calls(), 4) << "written after the failure (flags " << flags << ")";
  }
}

TEST(PageArrayTest, MappableBulkIsPageAligned) {
  Written w = WritePages(kImageMappable, 40, {7}, 16);
  MemorySource source(w.image);
  auto reader = ImageReader::Open(&source);
  for (;;) {
    auto rec = (*reader)->Next();
    ASSERT_TRUE(rec.ok());
    if (*rec == nullptr) break;
    EXPECT_EQ((*rec)->bulk_offset % 4096, 0u);
  }
}

TEST(PageArrayTest, IsZeroPageSeesEveryByte) {
  std::vector<uint8_t> page(4096, 0);
  EXPECT_TRUE(IsZeroPage(page.data(), page.size()));
  for (size_t i = 0; i < page.size(); i += 97) {
    page[i] = 1;
    EXPECT_FALSE(IsZeroPage(page.data(), page.size())) << i;
    page[i] = 0;
  }
  page[4095] = 0x80;
  EXPECT_FALSE(IsZeroPage(page.data(), page.size()));
}

TEST(PageArrayTest, ReadPagesRejectsRunsThatDisagreeWithTheRecord) {
  Written w = WritePages(0, 4, {}, 64);
  MemorySource source(w.image);
  auto reader = ImageReader::Open(&source);
  auto rec = (*reader)->Next();
  ASSERT_TRUE(rec.ok() && *rec);
  PagesRecord p = w.records[0];
  p.runs[0].pages = 5;  // more than page_count
  bool called = false;
  absl::Status st = ReadPages(reader->get(), **rec, p,
                              [&](uint64_t, uint64_t) -> absl::StatusOr<uint8_t*> {
                                called = true;
                                return nullptr;
                              });
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_FALSE(called) << "validation must come before any destination is asked for";
}

}  // namespace
}  // namespace crlib
