#include "mm/memory_restore.h"

#include <gtest/gtest.h>

namespace crlib {
namespace {

TEST(MemoryRestoreTest, FindFreeRangeSkipsOccupied) {
  auto a = FindFreeRange(0x10000, {{0x10000, 0x20000}, {0x30000, 0x40000}});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 0x20000u);
  auto b = FindFreeRange(0x20000, {{0x10000, 0x20000}, {0x30000, 0x40000}});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, 0x40000u);
  // Unsorted and overlapping input.
  auto c = FindFreeRange(0x1000, {{0x15000, 0x50000}, {0x10000, 0x16000}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, 0x50000u);
  EXPECT_FALSE(FindFreeRange(0x1000, {{0x10000, 0x7ffffffff000}}).ok());
}

}  // namespace
}  // namespace crlib
