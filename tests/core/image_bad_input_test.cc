// A damaged image is an error that names the problem, never a crash and
// never an allocation sized by an unchecked field.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "core/byte_stream.h"
#include "core/crc32c.h"
#include "core/image_reader.h"
#include "core/image_writer.h"
#include "cr/inspect.h"
#include "tests/core/sample_image.h"

namespace crlib {
namespace {

// Reads the whole image as `crlib inspect` does: every record decoded,
// every bulk checksum verified.
absl::Status ReadAll(const std::vector<uint8_t>& image) {
  MemorySource source(image);
  std::string out;
  return InspectImage(&source, {}, &out);
}

std::vector<uint64_t> RecordOffsets(const std::vector<uint8_t>& image) {
  MemorySource source(image);
  auto reader = ImageReader::Open(&source);
  std::vector<uint64_t> offsets;
  for (;;) {
    auto rec = (*reader)->Next();
    if (!rec.ok() || *rec == nullptr) break;
    offsets.push_back((*rec)->offset);
  }
  return offsets;
}

RecordHeader* HeaderAt(std::vector<uint8_t>& image, uint64_t offset) {
  return reinterpret_cast<RecordHeader*>(image.data() + offset);
}

void Reseal(RecordHeader* h) { h->header_crc = Crc32c(0, h, offsetof(RecordHeader, header_crc)); }

void ExpectError(const absl::Status& st, absl::StatusCode code, const std::string& words) {
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), code) << st;
  EXPECT_NE(st.message().find(words), std::string::npos) << st;
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << "not one line: " << st;
}

TEST(ImageBadInputTest, SampleIsValid) {
  for (uint32_t flags : {0u, kImageCompressed, kImageMappable}) {
    EXPECT_TRUE(ReadAll(testing::BuildSampleImage(flags)).ok()) << flags;
  }
}

TEST(ImageBadInputTest, TruncatedAtEveryByte) {
  for (uint32_t flags : {kImageCompressed, kImageMappable}) {
    std::vector<uint8_t> image = testing::BuildSampleImage(flags);
    for (size_t n = 0; n < image.size(); ++n) {
      std::vector<uint8_t> cut(image.begin(), image.begin() + n);
      absl::Status st = ReadAll(cut);
      ASSERT_FALSE(st.ok()) << "truncated to " << n << " bytes was accepted";
      ASSERT_EQ(st.code(), absl::StatusCode::kDataLoss) << n << ": " << st;
      if (n >= 8) {
        ASSERT_NE(st.message().find("truncated"), std::string::npos) << n << ": " << st;
      }
    }
  }
}

TEST(ImageBadInputTest, EveryFlippedBitIsCaught) {
  std::vector<uint8_t> image = testing::BuildSampleImage(kImageCompressed);
  for (size_t byte = 0; byte < image.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      image[byte] ^= 1 << bit;
      absl::Status st = ReadAll(image);
      ASSERT_FALSE(st.ok()) << "flip of bit " << bit << " at byte " << byte << " was accepted";
      image[byte] ^= 1 << bit;
    }
  }
  // Mappable images: page data and page-alignment padding too.
  image = testing::BuildSampleImage(kImageMappable);
  for (size_t byte = 0; byte < image.size(); byte += 7) {
    image[byte] ^= 0x10;
    ASSERT_FALSE(ReadAll(image).ok()) << "flip at byte " << byte << " was accepted";
    image[byte] ^= 0x10;
  }
}

TEST(ImageBadInputTest, WrongMagic) {
  std::vector<uint8_t> image = testing::BuildSampleImage(0);
  image[0] = 'X';
  ExpectError(ReadAll(image), absl::StatusCode::kDataLoss, "not a crlib image");
  ExpectError(ReadAll({'#', '!', '/', 'b', 'i', 'n'}), absl::StatusCode::kDataLoss, "truncated");
}

TEST(ImageBadInputTest, FutureFormatVersion) {
  std::vector<uint8_t> image = testing::BuildSampleImage(0);
  FileHeader* h = reinterpret_cast<FileHeader*>(image.data());
  h->format_version = kFormatVersion + 1;
  ExpectError(ReadAll(image), absl::StatusCode::kFailedPrecondition, "newer");
}

std::vector<uint8_t> ImageWithUnknownRecord(uint32_t flags) {
  std::vector<uint8_t> image;
  MemorySink sink(&image);
  ImageWriter writer(&sink, testing::SampleInfo(0));
  EXPECT_TRUE(writer.Begin().ok());
  uint8_t payload[12] = {1, 2, 3};
  char bulk[] = "future bulk";
  iovec v{bulk, sizeof(bulk)};
  EXPECT_TRUE(writer.WriteRecord(0x7777, flags, 1, 0, payload, absl::MakeConstSpan(&v, 1), false).ok());
  EXPECT_TRUE(writer.Write(ProcessRecord{.pid = 7}, 2, 1).ok());
  EXPECT_TRUE(writer.Finish().ok());
  return image;
}

TEST(ImageBadInputTest, UnknownRequiredRecordIsRefused) {
  ExpectError(ReadAll(ImageWithUnknownRecord(0)), absl::StatusCode::kFailedPrecondition,
              "unknown type 0x7777");
}

TEST(ImageBadInputTest, UnknownSkippableRecordIsSkipped) {
  std::vector<uint8_t> image = ImageWithUnknownRecord(kRecordSkippable);
  MemorySource source(image);
  auto reader = ImageReader::Open(&source);
  ASSERT_TRUE(reader.ok());
  auto rec = (*reader)->Next();
  ASSERT_TRUE(rec.ok()) << rec.status();
  ASSERT_NE(*rec, nullptr);
  EXPECT_EQ((*rec)->type(), RecordType::kProcess);  // the unknown one was passed over
  auto end = (*reader)->Next();
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(*end, nullptr);
}

TEST(ImageBadInputTest, LengthsPastTheEnd) {
  std::vector<uint8_t> image = testing::BuildSampleImage(0);
  uint64_t first = RecordOffsets(image).at(0);
  {
    std::vector<uint8_t> bad = image;
    HeaderAt(bad, first)->length = kMaxPayloadLength;
    Reseal(HeaderAt(bad, first));
    ExpectError(ReadAll(bad), absl::StatusCode::kDataLoss, "claims");
  }
  {
    std::vector<uint8_t> bad = image;
    HeaderAt(bad, first)->length = kMaxPayloadLength + 1;
    Reseal(HeaderAt(bad, first));
    ExpectError(ReadAll(bad), absl::StatusCode::kDataLoss, "exceeds");
  }
  {
    std::vector<uint8_t> bad = image;
    HeaderAt(bad, first)->bulk_length = uint64_t{1} << 39;
    Reseal(HeaderAt(bad, first));
    ExpectError(ReadAll(bad), absl::StatusCode::kDataLoss, "claims");
  }
}

TEST(ImageBadInputTest, AbsurdLengthsFromAPipeDoNotAllocate) {
  // A source of unknown size cannot be checked up front: the reader must
  // still not allocate what the header claims. Cap the address space so an
  // attempt to allocate 512 GiB would fail loudly rather than pass.
  std::vector<uint8_t> image = testing::BuildSampleImage(0);
  uint64_t pipe_rec = 0;
  {
    MemorySource source(image);
    auto reader = ImageReader::Open(&source);
    for (;;) {
      auto rec = (*reader)->Next();
      ASSERT_TRUE(rec.ok());
      ASSERT_NE(*rec, nullptr);
      if ((*rec)->header.bulk_length) {
        pipe_rec = (*rec)->offset;
        break;
      }
    }
  }
  HeaderAt(image, pipe_rec)->bulk_length = uint64_t{1} << 39;
  Reseal(HeaderAt(image, pipe_rec));
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    FdSink sink(fds[1]);
    iovec v{image.data(), image.size()};
    (void)sink.Write(absl::MakeConstSpan(&v, 1));
    _exit(0);
  }
  close(fds[1]);
  FdSource source(fds[0]);
  std::string out;
  absl::Status st = InspectImage(&source, {}, &out);
  close(fds[0]);
  waitpid(child, nullptr, 0);
  ExpectError(st, absl::StatusCode::kDataLoss, "truncated");
}

TEST(ImageBadInputTest, UndefinedParentAndDuplicateSelf) {
  std::vector<uint8_t> image = testing::BuildSampleImage(0);
  std::vector<uint64_t> offsets = RecordOffsets(image);
  {
    std::vector<uint8_t> bad = image;
    HeaderAt(bad, offsets[1])->parent = 999;
    Reseal(HeaderAt(bad, offsets[1]));
    ExpectError(ReadAll(bad), absl::StatusCode::kDataLoss, "names parent object 999");
  }
  {
    std::vector<uint8_t> bad = image;
    HeaderAt(bad, offsets[1])->self = HeaderAt(bad, offsets[0])->self;
    Reseal(HeaderAt(bad, offsets[1]));
    ExpectError(ReadAll(bad), absl::StatusCode::kDataLoss, "second time");
  }
}

TEST(ImageBadInputTest, TrailingBytesAfterEnd) {
  std::vector<uint8_t> image = testing::BuildSampleImage(0);
  image.push_back(0);
  ExpectError(ReadAll(image), absl::StatusCode::kDataLoss, "trailing bytes");
}

TEST(ImageBadInputTest, BadPayloadFieldIsNamed) {
  // A payload whose CRC is right but whose content is not: an array count
  // that runs past the record.
  std::vector<uint8_t> image;
  MemorySink sink(&image);
  ImageWriter writer(&sink, testing::SampleInfo(0));
  ASSERT_TRUE(writer.Begin().ok());
  Bytes payload = EncodeFields(RlimitsRecord{.limits = {{.resource = 1}}});
  uint64_t huge = uint64_t{1} << 61;
  memcpy(payload.data(), &huge, 8);
  ASSERT_TRUE(writer.WriteRecord(static_cast<uint32_t>(RecordType::kRlimits), 0, 0, 0, payload,
                                 {}, false)
                  .ok());
  ASSERT_TRUE(writer.Finish().ok());
  ExpectError(ReadAll(image), absl::StatusCode::kDataLoss, "field 'limits'");
}

}  // namespace
}  // namespace crlib
