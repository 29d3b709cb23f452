#include "core/codec.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/records.h"

namespace crlib {
namespace {

TEST(CodecTest, AlignsFieldsNaturally) {
  ThreadRecord t;
  t.tid = 0x11223344;
  t.flags = 0x55;
  t.sigmask = 0x0102030405060708;
  Bytes b = EncodeFields(t);
  // tid at 0, flags at 4, sigmask at 8.
  uint32_t tid;
  uint64_t mask;
  memcpy(&tid, &b[0], 4);
  memcpy(&mask, &b[8], 8);
  EXPECT_EQ(tid, 0x11223344u);
  EXPECT_EQ(mask, 0x0102030405060708u);
  EXPECT_EQ(b.size() % 8, 0u);
}

TEST(CodecTest, StringsCarryTheirLength) {
  FileRecord f;
  f.path = std::string("a\0b", 3);
  FileRecord back;
  ASSERT_TRUE(DecodeFields(EncodeFields(f), &back).ok());
  EXPECT_EQ(back.path, f.path);
}

TEST(CodecTest, RejectsCountPastTheEnd) {
  PagesRecord p;
  p.runs = {{0x1000, 1}, {0x3000, 2}};
  Bytes b = EncodeFields(p);
  // The run count sits after encoding (u32, padded) and page_count (u64).
  uint64_t huge = uint64_t{1} << 60;
  memcpy(&b[16], &huge, 8);
  PagesRecord back;
  absl::Status st = DecodeFields(b, &back);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("runs"), std::string::npos) << st;
}

TEST(CodecTest, RejectsNonZeroPadding) {
  ThreadRecord t;
  t.comm = "abc";
  Bytes b = EncodeFields(t);
  auto at = std::search(b.begin(), b.end(), t.comm.begin(), t.comm.end());
  ASSERT_NE(at, b.end());
  at[3] = 1;  // padding after the 3-byte string
  ThreadRecord back;
  EXPECT_EQ(DecodeFields(b, &back).code(), absl::StatusCode::kDataLoss);
}

TEST(CodecTest, RejectsShortPayloadAndAcceptsAppendedFields) {
  VmaRecord v{.start = 1, .end = 2, .name = "x"};
  Bytes b = EncodeFields(v);
  VmaRecord back;
  for (size_t n = 0; n < b.size() - 8; ++n) {
    EXPECT_FALSE(DecodeFields(absl::MakeConstSpan(b.data(), n), &back).ok()) << n;
  }
  // A newer writer may append fields: extra trailing bytes are not an error.
  b.resize(b.size() + 16, 0);
  ASSERT_TRUE(DecodeFields(b, &back).ok());
  EXPECT_EQ(back.name, "x");
}

}  // namespace
}  // namespace crlib
