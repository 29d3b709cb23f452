// Files that are not plain, through `crlib dump` and `crlib restore`:
// removed directories (cwd and fd), removed FIFOs with their data, O_PATH
// descriptors (a symlink itself, a socket's file), namespace files, and
// flock, POSIX and OFD locks and leases. Each workload checks itself after
// restore; what crlib refuses leaves the process running untouched; a
// restore that cannot have what the image needs fails before anything
// exists, in one line.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

class SpecialFilesTest : public FilesWorkloadTest {
 protected:
  // A restore that must fail before the point of no return: one line
  // naming `what`, and no process at the image's PID.
  void ExpectRestoreFails(const Workload& w, const std::string& image, const std::string& what) {
    CliResult r = Crlib({"restore", "--image", image});
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr(what)) << Describe(w, r);
    EXPECT_FALSE(Probe(w.pid).exists) << "restore left pid " << w.pid << " behind";
    EXPECT_EQ(OurChildren(), std::set<pid_t>()) << PidText(OurChildren());
  }
};

TEST_F(SpecialFilesTest, PathDescriptorsRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "path_fds"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(SpecialFilesTest, ReplacedSymlinkFailsBeforeRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "path_fds"));
  const std::string image = Path("path.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  // Same target, another inode: made before the old one goes, so that the
  // file system cannot hand out the old inode number again.
  const std::string link = files_ + "/path-link";
  ASSERT_EQ(symlink("path-file", (link + ".new").c_str()), 0);
  ASSERT_EQ(rename((link + ".new").c_str(), link.c_str()), 0);
  ExpectRestoreFails(w, image, link + " is not the file the image was taken with");
}

TEST_F(SpecialFilesTest, MissingPathFailsBeforeRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "path_fds"));
  const std::string image = Path("path.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  const std::string sock = files_ + "/path-sock";
  ASSERT_EQ(unlink(sock.c_str()), 0);
  ExpectRestoreFails(w, image, "open " + sock);
}

// The cwd is checked like a file: the directory, not a path to it.
TEST_F(SpecialFilesTest, ReplacedCwdFailsBeforeRestore) {
  Workload w;
  const std::string cwd = files_ + "/cwd";
  ASSERT_EQ(mkdir(cwd.c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "path_fds", {"--chdir", cwd}));
  const std::string image = Path("cwd.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_EQ(rename(cwd.c_str(), (cwd + ".old").c_str()), 0);
  ASSERT_EQ(mkdir(cwd.c_str(), 0755), 0);
  ExpectRestoreFails(w, image, "cwd " + cwd + " is not the directory the image was taken with");
}

TEST_F(SpecialFilesTest, OwnNamespaceFilesRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "ns_fds"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(SpecialFilesTest, ForeignNamespaceFileRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "ns_fds", {WorkloadsDir() + "/ns_fds", "foreign"}));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "a uts namespace other than crlib's own"));
}

TEST_F(SpecialFilesTest, RemovedCwdAndDirectoryRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "removed_dirs"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
  // The directories made for it are gone again.
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(files_)) left.push_back(e.path());
  EXPECT_THAT(left, ::testing::IsEmpty());
}

TEST_F(SpecialFilesTest, RemovedCwdHeldByAnFdTooRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "removed_dirs", {"same"}));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(SpecialFilesTest, RemovedRootRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "removed_dirs", {"root"}));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "root directory"));
}

TEST_F(SpecialFilesTest, RemovedFifoRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "removed_fifo"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(SpecialFilesTest, RemovedDeviceNodeRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "removed_device"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(SpecialFilesTest, RemovedDeviceNodeWithoutCapMknodRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "removed_device", {"nocap"}));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(
      &w, "a removed device node (character 1:3), which restore can make again only with "
          "CAP_MKNOD"));
}

// A listener whose name was removed listens again under that name, which
// stays removed.
TEST_F(SpecialFilesTest, UnlinkedSocketRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "unlinked_socket"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
  EXPECT_FALSE(Exists(files_ + "/sock")) << "restore left the removed name behind";
}

TEST_F(SpecialFilesTest, LocksAndLeaseRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "file_locks"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(SpecialFilesTest, LocksLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "file_locks"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(SpecialFilesTest, FlockSharedWithAnotherProcessRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "shared_flock"));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "its flock is held through an open file pid "));
}

// Someone else takes the lock between the dump and the restore: the
// restore fails before the point of no return, then works once released.
struct Conflict {
  const char* kind;
  const char* message;
};

class LockConflictTest : public SpecialFilesTest,
                         public ::testing::WithParamInterface<Conflict> {};

TEST_P(LockConflictTest, RestoreFailsCleanlyThenWorks) {
  const Conflict c = GetParam();
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "file_locks", {c.kind}));
  const std::string image = Path("locks.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  const std::string file = files_ + "/lock-" + c.kind;
  const int mode = strcmp(c.kind, "lease") == 0    ? O_WRONLY
                   : strcmp(c.kind, "wlease") == 0 ? O_RDONLY
                                                   : O_RDWR;
  int fd = open(file.c_str(), mode | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (strcmp(c.kind, "flock") == 0) {
    ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0) << strerror(errno);
  } else if (strcmp(c.kind, "posix") == 0) {
    ASSERT_EQ(fcntl(fd, F_SETLK, &fl), 0) << strerror(errno);
  } else if (strcmp(c.kind, "ofd") == 0) {
    ASSERT_EQ(fcntl(fd, F_OFD_SETLK, &fl), 0) << strerror(errno);
  }  // lease: being open for writing is the conflict; wlease: being open
  // `restore --check` says the same, and takes nothing.
  CliResult check = Crlib({"restore", "--image", image, "--check"});
  ExpectOneLineError(check);
  EXPECT_THAT(check.err, HasSubstr(c.message)) << Describe(w, check);
  ExpectRestoreFails(w, image, c.message);
  close(fd);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, LockConflictTest,
    ::testing::Values(
        Conflict{"flock", "another open file holds a conflicting flock"},
        Conflict{"posix", "holds a conflicting lock"},
        Conflict{"ofd", "another open file holds a conflicting lock"},
        Conflict{"lease", "the file is open elsewhere in a conflicting mode"},
        Conflict{"wlease", "the file is open elsewhere in a conflicting mode"}),
    [](const ::testing::TestParamInfo<Conflict>& info) { return std::string(info.param.kind); });

}  // namespace
}  // namespace crlib
