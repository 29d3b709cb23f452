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

}  // namespace
}  // namespace crlib
