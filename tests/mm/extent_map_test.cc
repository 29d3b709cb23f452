#include "mm/extent_map.h"

#include <gtest/gtest.h>

namespace crlib {
namespace {

bool Same(const Extent& a, const Extent& b) {
  return a.start == b.start && a.end == b.end && a.tag == b.tag && a.value == b.value;
}

// A later record's run replaces the part of an earlier one it covers, and
// what is left of the earlier keeps its offsets: the last record wins.
TEST(ExtentMapTest, InsertReplacesWhatItOverlapsAndValuesMoveWithTheAddress) {
  ExtentMap m;
  m.Insert({0x1000, 0x9000, 1, 0});
  m.Insert({0x3000, 0x5000, 2, 0x100000});
  std::vector<Extent> all = m.All();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_TRUE(Same(all[0], {0x1000, 0x3000, 1, 0}));
  EXPECT_TRUE(Same(all[1], {0x3000, 0x5000, 2, 0x100000}));
  EXPECT_TRUE(Same(all[2], {0x5000, 0x9000, 1, 0x4000}));
  const Extent* e = m.Find(0x6fff);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->value + (0x6000 - e->start), 0x5000u);
  EXPECT_EQ(m.Find(0x9000), nullptr);
  EXPECT_EQ(m.Find(0xfff), nullptr);
}

TEST(ExtentMapTest, CutReturnsTheClippedPartsAndKeepsTheRest) {
  ExtentMap m;
  m.Insert({0x1000, 0x4000, 0, 0x71000});
  m.Insert({0x6000, 0x8000, 0, 0x76000});
  std::vector<Extent> cut = m.Cut(0x2000, 0x7000);
  ASSERT_EQ(cut.size(), 2u);
  EXPECT_TRUE(Same(cut[0], {0x2000, 0x4000, 0, 0x72000}));
  EXPECT_TRUE(Same(cut[1], {0x6000, 0x7000, 0, 0x76000}));
  std::vector<Extent> all = m.All();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_TRUE(Same(all[0], {0x1000, 0x2000, 0, 0x71000}));
  EXPECT_TRUE(Same(all[1], {0x7000, 0x8000, 0, 0x77000}));
  EXPECT_TRUE(m.Cut(0x4000, 0x6000).empty());  // a hole: nothing to cut
  m.Cut(0, ~uint64_t{0});
  EXPECT_TRUE(m.empty());
}

TEST(ExtentMapTest, OverlappingClipsToTheRange) {
  ExtentMap m;
  m.Insert({0x1000, 0x3000, 4, 0x10});
  std::vector<Extent> o = m.Overlapping(0x2000, 0x9000);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_TRUE(Same(o[0], {0x2000, 0x3000, 4, 0x1010}));
  EXPECT_TRUE(m.Overlapping(0x3000, 0x4000).empty());
  EXPECT_EQ(m.First()->start, 0x1000u);
}

}  // namespace
}  // namespace crlib
