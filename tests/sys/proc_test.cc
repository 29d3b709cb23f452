#include "sys/proc.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

namespace crlib::sys {
namespace {

TEST(ProcTest, ParsesMapsLines) {
  auto maps = ParseMaps(
      "55d0c0a00000-55d0c0a02000 r--p 00000000 fe:00 1234567                    /usr/bin/cat\n"
      "7ffd5a1c0000-7ffd5a1e1000 rw-p 00000000 00:00 0                          [stack]\n"
      "7f0000000000-7f0000001000 rw-s 00001000 00:05 42                         /dev/zero (deleted)\n"
      "7f0000002000-7f0000003000 ---p 00000000 00:00 0 \n");
  ASSERT_TRUE(maps.ok()) << maps.status();
  ASSERT_EQ(maps->size(), 4u);
  const MapsEntry& cat = (*maps)[0];
  EXPECT_EQ(cat.start, 0x55d0c0a00000u);
  EXPECT_EQ(cat.end, 0x55d0c0a02000u);
  EXPECT_TRUE(cat.read);
  EXPECT_FALSE(cat.write);
  EXPECT_EQ(cat.dev_major, 0xfeu);
  EXPECT_EQ(cat.inode, 1234567u);
  EXPECT_EQ(cat.path, "/usr/bin/cat");
  EXPECT_EQ((*maps)[1].path, "[stack]");
  EXPECT_TRUE((*maps)[2].shared);
  EXPECT_EQ((*maps)[2].offset, 0x1000u);
  EXPECT_EQ((*maps)[2].path, "/dev/zero (deleted)");
  EXPECT_EQ((*maps)[3].path, "");
}

TEST(ProcTest, ParsesSmapsVmFlags) {
  auto maps = ParseSmaps(
      "7f0000000000-7f1000000000 rw-p 00000000 00:00 0 \n"
      "Size:           67108864 kB\n"
      "Rss:                   8 kB\n"
      "VmFlags: rd wr mr mw me nr dd \n"
      "7ffd5a1c0000-7ffd5a1e1000 rw-p 00000000 00:00 0                          [stack]\n"
      "Size:                132 kB\n"
      "VmFlags: rd wr mr mw me gd ac\n");
  ASSERT_TRUE(maps.ok()) << maps.status();
  ASSERT_EQ(maps->size(), 2u);
  EXPECT_EQ((*maps)[0].end, 0x7f1000000000u);
  EXPECT_EQ((*maps)[0].vm_flags, "rd wr mr mw me nr dd");
  EXPECT_EQ((*maps)[1].path, "[stack]");
  EXPECT_EQ((*maps)[1].vm_flags, "rd wr mr mw me gd ac");
  EXPECT_FALSE(ParseSmaps("VmFlags: rd\n").ok());
}

TEST(ProcTest, RejectsGarbage) {
  EXPECT_FALSE(ParseMaps("not a maps line\n").ok());
  EXPECT_FALSE(ParseMaps("1000-zz00 rw-p 0 0:0 0\n").ok());
}

TEST(ProcTest, ReadsOwnProcess) {
  auto maps = ReadMaps(getpid());
  ASSERT_TRUE(maps.ok());
  bool vdso = false;
  for (const auto& m : *maps) vdso |= m.path == "[vdso]";
  EXPECT_TRUE(vdso);
  auto threads = ListThreads(getpid());
  ASSERT_TRUE(threads.ok());
  EXPECT_FALSE(threads->empty());
  auto fds = ListFds(getpid());
  ASSERT_TRUE(fds.ok());
  EXPECT_TRUE(ProcessExists(getpid()));
  auto stat = ReadStatFields(getpid());
  ASSERT_TRUE(stat.ok());
  EXPECT_GT(stat->size(), 48u);  // up to env_end (field 51)
  auto status = ReadFile("/proc/self/status");
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(StatusField(*status, "Umask").ok());
  EXPECT_EQ(StatusField(*status, "NoSuchKey").status().code(), absl::StatusCode::kNotFound);
}

TEST(ProcTest, LimitsAreWhatGetrlimitSays) {
  auto limits = ReadLimits(getpid());
  ASSERT_TRUE(limits.ok()) << limits.status();
  ASSERT_EQ(limits->size(), static_cast<size_t>(RLIM_NLIMITS));
  for (int r = 0; r < RLIM_NLIMITS; ++r) {
    rlimit64 lim;
    ASSERT_EQ(getrlimit64(static_cast<__rlimit_resource>(r), &lim), 0);
    EXPECT_EQ((*limits)[r].cur, lim.rlim_cur) << "resource " << r;
    EXPECT_EQ((*limits)[r].max, lim.rlim_max) << "resource " << r;
  }
}

}  // namespace
}  // namespace crlib::sys
