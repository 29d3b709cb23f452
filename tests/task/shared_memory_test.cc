// Inodes whose contents the image carries, through `crlib dump` and
// `crlib restore`: shared anonymous memory and /dev/zero, memfds (sealed,
// several fds and a mapping; executed after restore), deleted files
// (sparse, with mode, owner and times, mapped shared and private). Each
// workload checks itself after restore; refusals leave it untouched.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>

#include "image/process_image.h"
#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

using SharedMemoryTest = WorkloadTest;

// The bytes the image holds: a live dump's image has a hole where it
// reserved more room for records than they needed (a filler record).
void ExpectImageBelow(const std::string& image, off_t bytes) {
  struct stat st;
  ASSERT_EQ(stat(image.c_str(), &st), 0) << image;
  EXPECT_LT(st.st_blocks * 512, bytes) << image;
}

TEST_F(SharedMemoryTest, SharedAnonymousAndDevZeroRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "shared_anon"));
  const std::string image = Path("shared_anon.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(SharedMemoryTest, SharedAnonymousThroughAStream) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "shared_anon"));
  const std::string image = Path("shared_anon.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  int in = open(image.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(in, 0);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  // The image comes through a pipe: contents are staged while it is read.
  std::thread feeder([&] {
    char buf[65536];
    for (ssize_t n; (n = read(in, buf, sizeof(buf))) > 0;) {
      if (write(p[1], buf, static_cast<size_t>(n)) != n) break;
    }
    close(p[1]);
  });
  RestoreAndCheck(&w, "-", {}, p[0]);
  feeder.join();
  close(p[0]);
  close(in);
}

// The id the sysv_shm workload printed for its kept segment.
int KeptShmId(const Workload& w) {
  std::string out = Slurp(w.out);
  size_t at = out.find("SHMID ");
  return at == std::string::npos ? -1 : atoi(out.c_str() + at + 6);
}

// The kept segment outlives the dumped process: it is attached again; the
// removed one died with it: it is recreated with its id and removed again.
TEST_F(SharedMemoryTest, SysvSegmentsKeptAndRemovedRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "sysv_shm"));
  const int kept = KeptShmId(w);
  ASSERT_GE(kept, 0) << Output(w);
  const std::string image = Path("sysv.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
  shmid_ds ds;
  EXPECT_NE(shmctl(kept, IPC_STAT, &ds), 0) << "the workload removes its segment at the end";
}

TEST_F(SharedMemoryTest, SysvSegmentGoneAtRestoreIsRecreated) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "sysv_shm"));
  const int kept = KeptShmId(w);
  ASSERT_GE(kept, 0) << Output(w);
  const std::string image = Path("sysv.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_EQ(shmctl(kept, IPC_RMID, nullptr), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(SharedMemoryTest, SysvKeyTakenByAnotherSegmentRefusesRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "sysv_shm"));
  const int kept = KeptShmId(w);
  ASSERT_GE(kept, 0) << Output(w);
  shmid_ds ds;
  ASSERT_EQ(shmctl(kept, IPC_STAT, &ds), 0) << strerror(errno);
  const key_t key = ds.shm_perm.__key;
  const std::string image = Path("sysv.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_EQ(shmctl(kept, IPC_RMID, nullptr), 0) << strerror(errno);
  const int other = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
  ASSERT_GE(other, 0) << strerror(errno);
  CliResult check = Crlib({"restore", "--check", "--image", image});
  CliResult r = Crlib({"restore", "--image", image});
  shmctl(other, IPC_RMID, nullptr);
  for (const CliResult* c : {&check, &r}) {
    ExpectOneLineError(*c);
    EXPECT_THAT(c->err, HasSubstr("is gone and its key is taken by segment id"));
  }
  EXPECT_FALSE(Probe(w.pid).exists) << "a refused restore left pid " << w.pid;
}

TEST_F(SharedMemoryTest, PartialSysvAttachmentIsRefusedUntouched) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "sysv_shm", {WorkloadsDir() + "/sysv_shm", "partial"}));
  ExpectDumpRefused(&w, "only whole SysV segments attached with shmat are");
}

TEST_F(SharedMemoryTest, MemfdWithSealsFdsAndMappingIsOneInode) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "memfd_seals"));
  const std::string image = Path("memfd.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(SharedMemoryTest, MemfdSealedForFutureWritesWhileMappedWritableIsRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(
      Start(&w, "memfd_seals", {WorkloadsDir() + "/memfd_seals", "future-write"}));
  ExpectDumpRefused(&w, "sealed with F_SEAL_FUTURE_WRITE");
}

TEST_F(SharedMemoryTest, MemfdExecutesAfterRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "memfd_exec"));
  const std::string image = Path("memfd_exec.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(SharedMemoryTest, MemfdLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "memfd_seals"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

// 1 GiB with 8 KiB of data: the image holds the data, not the holes; the
// workload checks holes, mode, owner, mtime, and one inode for the fd and
// its shared and private mappings.
TEST_F(SharedMemoryTest, DeletedSparseFileKeepsHolesAttributesAndMappings) {
  Workload w;
  const std::string file = Path("sparse.data");
  ASSERT_NO_FATAL_FAILURE(Start(&w, "deleted_sparse", {WorkloadsDir() + "/deleted_sparse", file}));
  const std::string image = Path("sparse.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(ExpectImageBelow(image, 1 << 20));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
  EXPECT_FALSE(Exists(file));
}

TEST_F(SharedMemoryTest, DeletedFileAboveTheLimitIsRefusedUntouched) {
  Workload w;
  const std::string file = Path("sparse.data");
  ASSERT_NO_FATAL_FAILURE(Start(&w, "deleted_sparse", {WorkloadsDir() + "/deleted_sparse", file}));
  ExpectDumpRefused(&w,
                    "above the limit of 4096 bytes for deleted files the image carries; raise it "
                    "with --deleted-file-limit BYTES",
                    {"--deleted-file-limit", "4096"});
}

TEST_F(SharedMemoryTest, DeletedFileLimitTakesOnlyANumber) {
  CliResult r = Crlib({"dump", "--pid", "1", "--image", Path("x.img"), "--deleted-file-limit", "lots"});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("--deleted-file-limit takes a number of bytes"));
}

// A restore hands out no inode whose owner the image's credentials could
// not have given it: no root-owned (set-user-ID) memfd for a user's image.
TEST(CarriedInodeTest, ImageMayOwnOnlyItsOwnIdsWithoutCapChown) {
  ProcessRecord user;
  user.uid = user.euid = user.suid = user.fsuid = 1000;
  user.gid = user.egid = user.sgid = user.fsgid = 1000;
  user.groups = {27};
  EXPECT_TRUE(ImageMayOwn(user, 1000, 1000));
  EXPECT_TRUE(ImageMayOwn(user, 1000, 27));
  EXPECT_FALSE(ImageMayOwn(user, 0, 1000));
  EXPECT_FALSE(ImageMayOwn(user, 1000, 0));
  ProcessRecord root;
  root.cap_effective = 1;  // CAP_CHOWN
  EXPECT_TRUE(ImageMayOwn(root, 4321, 4322));
}

}  // namespace
}  // namespace crlib
