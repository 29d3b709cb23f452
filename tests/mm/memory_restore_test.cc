#include "mm/memory_restore.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

// In a child without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 64 KiB: an
// image with 1 MiB of mlocked memory is refused before anything is created,
// 32 KiB are fine, and unlocked memory never counts. Exit codes say which
// expectation failed.
int CheckLockedMemoryWithoutCapability() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return 10;
  data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  if (syscall(SYS_capset, &header, data) != 0) return 11;
  rlimit limit{64 << 10, 64 << 10};
  if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) return 12;
  ProcessImage image;
  VmaRecord locked{.start = 0x100000, .end = 0x200000, .vm_flags = kVmaLocked};
  image.vmas = {locked};
  absl::Status st = CheckLockedMemory(image);
  if (!absl::IsFailedPrecondition(st)) return 1;
  if (st.message().find("RLIMIT_MEMLOCK") == absl::string_view::npos) return 2;
  image.vmas[0].end = 0x108000;
  if (!CheckLockedMemory(image).ok()) return 3;
  image.vmas[0] = {.start = 0x100000, .end = 0x200000, .vm_flags = kVmaNoReserve};
  if (!CheckLockedMemory(image).ok()) return 4;
  return 0;
}

TEST(MemoryRestoreTest, LockedMemoryBeyondTheLimitIsRefusedBeforeRestore) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(CheckLockedMemoryWithoutCapability());
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "see CheckLockedMemoryWithoutCapability";
}

}  // namespace
}  // namespace crlib
