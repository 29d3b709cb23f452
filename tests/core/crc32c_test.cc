#include "core/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace crlib {
namespace {

TEST(Crc32cTest, MatchesKnownVectors) {
  // RFC 3720, B.4.
  EXPECT_EQ(Crc32c(0, "123456789", 9), 0xe3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(0, zeros.data(), zeros.size()), 0x8a9136aau);
  std::string ones(32, '\xff');
  EXPECT_EQ(Crc32c(0, ones.data(), ones.size()), 0x62a8ab43u);
}

TEST(Crc32cTest, ExtendsAcrossCalls) {
  std::string data = "the quick brown fox jumps over the lazy dog, twice over";
  for (size_t split = 0; split <= data.size(); ++split) {
    uint32_t a = Crc32c(0, data.data(), split);
    EXPECT_EQ(Crc32c(a, data.data() + split, data.size() - split), Crc32c(0, data.data(), data.size()))
        << "split at " << split;
  }
}

TEST(Crc32cTest, LargeInputsMatchTheBytewiseDefinition) {
  // Long enough for the three-chain path, with a ragged tail.
  std::string data(3 * 8192 * 3 + 12345, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 9));
  uint32_t expected = 0xffffffff;
  for (unsigned char c : data) {
    expected ^= c;
    for (int k = 0; k < 8; ++k) expected = (expected & 1) ? (expected >> 1) ^ 0x82f63b78 : expected >> 1;
  }
  expected = ~expected;
  EXPECT_EQ(Crc32c(0, data.data(), data.size()), expected);
  uint32_t split = Crc32c(0, data.data(), 1000);
  EXPECT_EQ(Crc32c(split, data.data() + 1000, data.size() - 1000), expected);
}

}  // namespace
}  // namespace crlib
