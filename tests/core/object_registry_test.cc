#include "core/object_registry.h"

#include <gtest/gtest.h>

namespace crlib {
namespace {

TEST(ObjectRegistryTest, SharedObjectGetsOneRef) {
  ObjectRegistry reg;
  auto a = reg.Intern({ObjectKind::kPipe, 77});
  auto b = reg.Intern({ObjectKind::kPipe, 77});
  EXPECT_TRUE(a.inserted);
  EXPECT_FALSE(b.inserted);
  EXPECT_EQ(a.ref, b.ref);
  EXPECT_NE(reg.Intern({ObjectKind::kPipe, 78}).ref, a.ref);
  EXPECT_NE(reg.Intern({ObjectKind::kInode, 77}).ref, a.ref);  // kinds are separate
  EXPECT_EQ(reg.Find({ObjectKind::kPipe, 77}), a.ref);
  EXPECT_EQ(reg.Find({ObjectKind::kPipe, 79}), 0u);
}

TEST(ObjectRegistryTest, SameKeyToldApartByComparator) {
  // Two open file descriptions of one inode: same key, different objects.
  ObjectRegistry reg;
  KernelIdentity key{ObjectKind::kFile, 1, 1234};
  auto first = reg.Intern(key, [](ObjectRef) { return false; });
  auto second = reg.Intern(key, [](ObjectRef) { return false; });
  EXPECT_NE(first.ref, second.ref);
  auto again = reg.Intern(key, [&](ObjectRef r) { return r == second.ref; });
  EXPECT_FALSE(again.inserted);
  EXPECT_EQ(again.ref, second.ref);
  EXPECT_EQ(reg.size(), 2u);
}

TEST(ObjectRegistryTest, RefsAreNeverZeroAndNeverReused) {
  ObjectRegistry reg;
  ObjectRef a = reg.NewRef();
  ObjectRef b = reg.Intern({ObjectKind::kThread, 1}).ref;
  EXPECT_NE(a, 0u);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace crlib
