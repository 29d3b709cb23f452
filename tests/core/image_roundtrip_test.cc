#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "core/byte_stream.h"
#include "core/image_reader.h"
#include "core/image_writer.h"
#include "core/records.h"
#include "mm/page_array.h"
#include "tests/core/sample_image.h"

namespace crlib {
namespace {

// Fills every field with a value derived from a counter, so a field that
// is dropped, swapped or misaligned shows up as a mismatch.
class FillVisitor {
 public:
  template <FieldInteger T>
  void operator()(const char*, T& v) {
    v = static_cast<T>(0x0102030405060708ull * ++n_);
  }
  void operator()(const char*, std::string& v) {
    ++n_;
    v = std::string(n_ % 13 + 1, static_cast<char>('a' + n_ % 26));
  }
  void operator()(const char*, Bytes& v) {
    ++n_;
    v.assign(n_ % 29 + 1, static_cast<uint8_t>(n_));
  }
  template <FieldInteger T>
  void operator()(const char*, std::vector<T>& v) {
    v = {static_cast<T>(++n_), static_cast<T>(++n_), static_cast<T>(++n_)};
  }
  template <FieldStruct T>
  void operator()(const char*, std::vector<T>& v) {
    v.resize(2);
    for (T& e : v) T::Fields(e, *this);
  }

 private:
  uint64_t n_ = 0;
};

TEST(ImageRoundTripTest, EveryRecordTypeSurvives) {
  std::vector<uint8_t> image;
  MemorySink sink(&image);
  ImageWriter writer(&sink, testing::SampleInfo(0));
  ASSERT_TRUE(writer.Begin().ok());
  std::vector<Bytes> expected;
  ObjectRef ref = 0;
  ForEachRecordType([&](auto tag) {
    using R = decltype(tag);
    if constexpr (R::kType != RecordType::kEnd) {
      R r;
      FillVisitor fill;
      R::Fields(r, fill);
      expected.push_back(EncodeFields(r));
      ++ref;
      // Each record is the child of the one before: parent refs resolve.
      ASSERT_TRUE(writer.Write(r, ref, ref - 1).ok()) << R::kName;
    }
  });
  ASSERT_TRUE(writer.Finish().ok());

  MemorySource source(image);
  auto reader = ImageReader::Open(&source);
  ASSERT_TRUE(reader.ok()) << reader.status();
  size_t i = 0;
  ForEachRecordType([&](auto tag) {
    using R = decltype(tag);
    if constexpr (R::kType != RecordType::kEnd) {
      auto rec = (*reader)->Next();
      ASSERT_TRUE(rec.ok()) << rec.status();
      ASSERT_NE(*rec, nullptr);
      EXPECT_EQ((*rec)->type(), R::kType);
      EXPECT_EQ((*rec)->header.self, i + 1);
      EXPECT_EQ((*rec)->header.parent, i);
      auto decoded = (*reader)->template Decode<R>(**rec);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(EncodeFields(*decoded), expected[i]) << R::kName;
      ++i;
    }
  });
  auto end = (*reader)->Next();
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(*end, nullptr);
  EXPECT_EQ((*reader)->end().record_count, expected.size());
  EXPECT_EQ(i, std::tuple_size_v<AllRecordTypes> - 1);
}

// Reads the sample image and checks its pages and bulk data.
void CheckSample(const std::vector<uint8_t>& image, uint32_t flags) {
  MemorySource source(image);
  auto reader = ImageReader::Open(&source);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->info().flags, flags);
  EXPECT_EQ((*reader)->info().kernel_release, "6.18.44-test");
  std::vector<uint8_t> memory(testing::kSamplePages * 4096, 0xee);
  bool saw_pages = false, saw_pipe = false;
  for (;;) {
    auto rec = (*reader)->Next();
    ASSERT_TRUE(rec.ok()) << rec.status();
    if (*rec == nullptr) break;
    if ((*rec)->type() == RecordType::kPages) {
      saw_pages = true;
      auto pages = (*reader)->Decode<PagesRecord>(**rec);
      ASSERT_TRUE(pages.ok());
      EXPECT_EQ(pages->page_count, testing::kSamplePages - 1u);  // the zero page is dropped
      EXPECT_EQ(pages->runs.size(), 2u);
      if (flags & kImageMappable) {
        EXPECT_EQ((*rec)->bulk_offset % 4096, 0u);
      }
      ASSERT_TRUE(ReadPages(reader->get(), **rec, *pages,
                            [&](uint64_t addr, uint64_t) -> absl::StatusOr<uint8_t*> {
                              return memory.data() + (addr - testing::kSamplePagesAt);
                            })
                      .ok());
    }
    if ((*rec)->type() == RecordType::kPipe) {
      saw_pipe = true;
      std::string data;
      ASSERT_TRUE((*reader)
                      ->ReadBulkChunks(4, [&](absl::Span<const uint8_t> c) {
                        data.append(c.begin(), c.end());
                        return absl::OkStatus();
                      })
                      .ok());
      EXPECT_EQ(data, "bytes in the pipe");
    }
  }
  EXPECT_TRUE(saw_pages);
  EXPECT_TRUE(saw_pipe);
  for (int i = 0; i < testing::kSamplePages; ++i) {
    uint8_t want = i == 3 ? 0xee : i + 1;  // a zero page is never written
    EXPECT_EQ(memory[i * 4096], want) << "page " << i;
    EXPECT_EQ(memory[i * 4096 + 4095], want) << "page " << i;
  }
}

TEST(ImageRoundTripTest, RawPages) { CheckSample(testing::BuildSampleImage(0), 0); }
TEST(ImageRoundTripTest, CompressedPages) {
  CheckSample(testing::BuildSampleImage(kImageCompressed), kImageCompressed);
}
TEST(ImageRoundTripTest, MappablePagesArePageAligned) {
  CheckSample(testing::BuildSampleImage(kImageMappable), kImageMappable);
}

TEST(ImageRoundTripTest, StreamsThroughAPipe) {
  std::vector<uint8_t> image = testing::BuildSampleImage(kImageCompressed);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    FdSink sink(fds[1]);
    iovec v{image.data(), image.size()};
    _exit(sink.Write(absl::MakeConstSpan(&v, 1)).ok() ? 0 : 1);
  }
  close(fds[1]);
  FdSource source(fds[0]);
  EXPECT_FALSE(source.Remaining().has_value());
  auto reader = ImageReader::Open(&source);
  ASSERT_TRUE(reader.ok()) << reader.status();
  int records = 0;
  for (;;) {
    auto rec = (*reader)->Next();
    ASSERT_TRUE(rec.ok()) << rec.status();
    if (*rec == nullptr) break;
    ++records;
  }
  EXPECT_GT(records, 10);
  close(fds[0]);
  int status;
  waitpid(child, &status, 0);
  EXPECT_EQ(status, 0);
}

// A dump widens a pipe to 1 MiB (from 64 KiB), so that it and its reader
// take turns once per batch of pages, not per 16 pages.
TEST(ImageRoundTripTest, StreamSinkWidensPipes) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(fcntl(fds[0], F_GETPIPE_SZ), 64 << 10);
  { StreamImageSink sink(fds[1], /*owned=*/false, "a pipe"); }
  EXPECT_EQ(fcntl(fds[1], F_GETPIPE_SZ), 1 << 20);
  close(fds[0]);
  close(fds[1]);
}

TEST(AtomicFileSinkTest, NothingUnderTheFinalNameUntilCommit) {
  std::string dir = ::testing::TempDir() + "/atomic_sink_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string path = dir + "/image";
  {
    auto sink = AtomicFileSink::Create(path);
    ASSERT_TRUE(sink.ok()) << sink.status();
    char data[] = "partial";
    iovec v{data, 7};
    ASSERT_TRUE((*sink)->Write(absl::MakeConstSpan(&v, 1)).ok());
    EXPECT_FALSE(std::filesystem::exists(path));
    // An unnamed file: a dump killed now leaves nothing to clean up.
    EXPECT_TRUE(std::filesystem::is_empty(dir)) << "the image being written has a name";
    // Dropped without Commit: as if the dump failed half-way.
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(dir)) << "temporary file left behind";
  {
    auto sink = AtomicFileSink::Create(path);
    ASSERT_TRUE(sink.ok());
    char data[] = "complete";
    iovec v{data, 8};
    ASSERT_TRUE((*sink)->Write(absl::MakeConstSpan(&v, 1)).ok());
    ASSERT_TRUE((*sink)->Commit().ok());
  }
  EXPECT_EQ(std::filesystem::file_size(path), 8u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
  std::filesystem::remove_all(dir);
}

// An image holds a process's whole memory: only its owner may read it,
// whatever the umask, and a new image replaces an old one in one step.
TEST(AtomicFileSinkTest, ImagesAreOwnerOnlyAndReplaceAtomically) {
  std::string dir = ::testing::TempDir() + "/atomic_sink_mode_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/image";
  const mode_t old_umask = umask(0);
  for (const char* contents : {"first", "second image"}) {
    auto sink = AtomicFileSink::Create(path);
    ASSERT_TRUE(sink.ok()) << sink.status();
    iovec v{const_cast<char*>(contents), strlen(contents)};
    ASSERT_TRUE((*sink)->Write(absl::MakeConstSpan(&v, 1)).ok());
    absl::Status st = (*sink)->Commit();
    ASSERT_TRUE(st.ok()) << st;
  }
  umask(old_umask);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(std::filesystem::file_size(path), strlen("second image"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1)
      << "a temporary name was left next to the image";
  std::filesystem::remove_all(dir);
}

TEST(FdSourceTest, RegularFileIsMappableFromOffsetZero) {
  std::string path = ::testing::TempDir() + "/fd_source_test";
  std::vector<uint8_t> image = testing::BuildSampleImage(kImageMappable);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, image.data(), image.size()), static_cast<ssize_t>(image.size()));
  lseek(fd, 0, SEEK_SET);
  FdSource source(fd);
  EXPECT_EQ(source.MappableFd(), fd);
  EXPECT_EQ(source.Remaining(), image.size());
  close(fd);
  unlink(path.c_str());
}

// The copy a dump checks: every record up to the first page record,
// included, each bulk left out and flagged; a reader that is not told to
// accept that refuses it, so an image can never carry it.
TEST(ImageRoundTripTest, CopyPrefixLeavesOutBulkAndStopsAfterTheFirstPages) {
  std::vector<uint8_t> image, copy;
  MemorySink sink(&image), copy_sink(&copy);
  ImageWriter writer(&sink, testing::SampleInfo(0));
  ASSERT_TRUE(writer.CopyPrefix(&copy_sink, RecordType::kPages).ok());
  ASSERT_TRUE(writer.Begin().ok());
  std::vector<uint8_t> contents(100000, 0xab);
  iovec bulk{contents.data(), contents.size()};
  ASSERT_TRUE(writer.Write(PipeRecord{.inode = 7, .capacity = 4096}, 1, 0,
                           absl::MakeConstSpan(&bulk, 1)).ok());
  ASSERT_TRUE(writer.Write(FdRecord{.fd = 3}, 0, 0).ok());
  ASSERT_TRUE(writer.Write(PagesRecord{.page_count = 1}, 0, 0, absl::MakeConstSpan(&bulk, 1)).ok());
  ASSERT_TRUE(writer.Write(PagesRecord{.page_count = 2}, 0, 0, absl::MakeConstSpan(&bulk, 1)).ok());
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_GT(image.size(), 3 * contents.size());
  EXPECT_LT(copy.size(), 1024u) << "the copy holds bulk data";

  MemorySource strict(copy, /*as_stream=*/true);
  auto refused = ImageReader::Open(&strict);
  ASSERT_TRUE(refused.ok()) << refused.status();
  auto first = (*refused)->Next();
  EXPECT_FALSE(first.ok()) << "a reader accepted an elided bulk by default";

  MemorySource source(copy, /*as_stream=*/true);
  auto reader = ImageReader::Open(&source, {.accept_elided_bulk = true});
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<uint32_t> types;
  for (;;) {
    absl::StatusOr<const Record*> rec = (*reader)->Next();
    if (!rec.ok()) break;  // the copy ends after the first page record
    ASSERT_NE(*rec, nullptr) << "the copy has an end record";
    types.push_back((*rec)->header.type);
    EXPECT_EQ((*rec)->header.bulk_length, 0u);
    EXPECT_EQ(((*rec)->header.flags & kRecordBulkElided) != 0,
              (*rec)->header.type != static_cast<uint32_t>(RecordType::kFd));
  }
  EXPECT_EQ(types, (std::vector<uint32_t>{static_cast<uint32_t>(RecordType::kPipe),
                                          static_cast<uint32_t>(RecordType::kFd),
                                          static_cast<uint32_t>(RecordType::kPages)}));
}

// Without page data the copy ends with an end record whose totals match it.
TEST(ImageRoundTripTest, CopyPrefixOfAnImageWithoutPagesEndsCleanly) {
  std::vector<uint8_t> image, copy;
  MemorySink sink(&image), copy_sink(&copy);
  ImageWriter writer(&sink, testing::SampleInfo(0));
  ASSERT_TRUE(writer.CopyPrefix(&copy_sink, RecordType::kPages).ok());
  ASSERT_TRUE(writer.Begin().ok());
  std::vector<uint8_t> contents(5000, 1);
  iovec bulk{contents.data(), contents.size()};
  ASSERT_TRUE(writer.Write(PipeRecord{.inode = 7}, 1, 0, absl::MakeConstSpan(&bulk, 1)).ok());
  ASSERT_TRUE(writer.Finish().ok());
  MemorySource source(copy);
  auto reader = ImageReader::Open(&source, {.accept_elided_bulk = true});
  ASSERT_TRUE(reader.ok()) << reader.status();
  int records = 0;
  for (;;) {
    absl::StatusOr<const Record*> rec = (*reader)->Next();
    ASSERT_TRUE(rec.ok()) << rec.status();
    if (*rec == nullptr) break;
    ++records;
  }
  EXPECT_EQ(records, 1);
}

}  // namespace
}  // namespace crlib
