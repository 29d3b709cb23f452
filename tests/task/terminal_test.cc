// Terminals, guard regions and aio rings through `crlib dump` and `crlib
// restore`: each workload sets the state up and checks itself after the
// restore; each refusal leaves the process running and untouched.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/ioctl.h>

#include <filesystem>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

using PtyTest = WorkloadTest;

TEST_F(PtyTest, PtyPairRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pty_pair"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(PtyTest, PtyPairLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pty_pair"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(PtyTest, ControllingTerminalRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pty_ctty"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

// The pty index the image needs is taken here: one line naming it, before
// anything is created.
TEST_F(PtyTest, RestoreRefusesPtyIndexInUse) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pty_pair"));
  const std::string image = Path("taken.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image, /*leave_running=*/true));
  // The original still holds its pair; kill it for its PID, keep a pty of
  // our own at its index.
  ASSERT_EQ(kill(w.pid, SIGKILL), 0);
  int status;
  ASSERT_TRUE(WaitExit(w.pid, &status, kReapTimeout));
  int holder = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(holder, 0) << strerror(errno);
  int index = -1;
  ASSERT_EQ(ioctl(holder, TIOCGPTN, &index), 0);
  CliResult check = Crlib({"restore", "--check", "--image", image});
  CliResult r = Crlib({"restore", "--image", image});
  close(holder);
  ExpectOneLineError(check);
  EXPECT_THAT(check.err, HasSubstr("pty " + std::to_string(index) + " (/dev/pts/" +
                                   std::to_string(index) + ") is in use here"))
      << Describe(w, check);
  ExpectOneLineError(r);
  EXPECT_FALSE(Probe(w.pid).exists) << "pid " << w.pid << " exists after a refused restore";
  EXPECT_THAT(r.err, HasSubstr("is in use here")) << Describe(w, r);
  // Freed, the index is the image's again.
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(PtyTest, DumpRefusesQueuedBytesAndLeavesTheProcessRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pty_refused", {WorkloadsDir() + "/pty_refused", "queued"}));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "wait to be read"));
}

TEST_F(PtyTest, DumpRefusesTerminalLeadingOutsideAndLeavesTheProcessRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pty_refused", {WorkloadsDir() + "/pty_refused", "outside"}));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "master is outside the process"));
}

TEST_F(PtyTest, ControllingTerminalLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pty_ctty"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

// /dev/tty on fd 3 while the controlling terminal is a pty whose master
// is ours (the test's): it leads outside, and only fds 0-2 may.
TEST_F(PtyTest, DumpRefusesDevTtyLeadingOutsideAndLeavesTheProcessRunning) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0) << strerror(errno);
  ASSERT_EQ(grantpt(master), 0);
  ASSERT_EQ(unlockpt(master), 0);
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0) << strerror(errno);
  Workload w;
  w.name = "pty_refused";
  w.out = Path("pty_refused.out");
  w.err = Path("pty_refused.err");
  w.pid = Spawn({WorkloadsDir() + "/pty_refused", "devtty"}, w.out, w.err, /*new_session=*/true,
                slave);
  close(slave);
  ASSERT_GT(w.pid, 0);
  ASSERT_TRUE(WaitFor([&] { return Slurp(w.out).find('\n') != std::string::npos; }, kReadyTimeout))
      << Output(w);
  ASSERT_EQ(Slurp(w.out), "READY " + std::to_string(w.pid) + "\n") << Output(w);
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "/dev/tty, and the controlling terminal is outside"));
  close(master);
}

using GuardRegionTest = WorkloadTest;

TEST_F(GuardRegionTest, GuardRegionRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "guard_region"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(GuardRegionTest, GuardRegionLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "guard_region"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

// The kernel refuses MADV_GUARD_INSTALL in a locked VMA: the dump's own
// restore check refuses the image, and the process runs on.
TEST_F(GuardRegionTest, DumpRefusesGuardRegionInLockedMappingAndLeavesTheProcessRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(
      Start(&w, "guard_region", {WorkloadsDir() + "/guard_region", "locked"}));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "lies in mlocked mapping"));
}

using AioTest = WorkloadTest;

// The ring is the context's id; the kernel shows neither the requests in
// flight nor io_setup's limit, so crlib cannot rebuild the context.
TEST_F(AioTest, DumpRefusesAioContextAndLeavesTheProcessRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "aio_context"));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "aio context"));
}

}  // namespace
}  // namespace crlib
