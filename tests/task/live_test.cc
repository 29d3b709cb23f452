// Live dumps (issue 11): the process runs while its memory is copied and
// is stopped only for what it wrote last. tests/workloads/live_transfer.c
// moves units between random pages from two threads, and maps and unmaps
// memory from a third, all through the dump; after restore every unit and
// every page's sum must be where they were at the stop. Each case runs
// several times: a race shows as a lost unit or a torn page on some run.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kRuns = 3;

using LiveTest = WorkloadTest;

TEST_F(LiveTest, UnitsAndPagesHoldAfterRestore) {
  for (int run = 0; run < kRuns; ++run) {
    SCOPED_TRACE(run);
    Workload w;
    ASSERT_NO_FATAL_FAILURE(Start(&w, "live_transfer", {WorkloadsDir() + "/live_transfer", "64"}));
    const std::string image = Path("live.img");
    CliResult r = DumpWithStats(&w, image, {});
    ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
    EXPECT_THAT(r.err, HasSubstr("live: memory copied while it ran")) << r.err;
    int status = 0;
    ASSERT_TRUE(WaitExit(w.pid, &status, kReapTimeout)) << Describe(w, r);
    ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
  }
}

TEST_F(LiveTest, UnitsAndPagesHoldUnderLeaveRunning) {
  for (int run = 0; run < kRuns; ++run) {
    SCOPED_TRACE(run);
    Workload w;
    ASSERT_NO_FATAL_FAILURE(Start(&w, "live_transfer", {WorkloadsDir() + "/live_transfer", "64"}));
    const std::string image = Path("live.img");
    CliResult r = DumpWithStats(&w, image, {"--leave-running"});
    ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
    EXPECT_THAT(r.err, HasSubstr("live: memory copied while it ran")) << r.err;
    // The original goes on moving units, then checks itself.
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
    ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
    ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
  }
}

TEST_F(LiveTest, StoppedDumpHoldsToo) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "live_transfer", {WorkloadsDir() + "/live_transfer", "16"}));
  const std::string image = Path("stopped.img");
  CliResult r = DumpWithStats(&w, image, {"--stopped"});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  EXPECT_THAT(r.err, Not(HasSubstr("live:"))) << r.err;
  int status = 0;
  ASSERT_TRUE(WaitExit(w.pid, &status, kReapTimeout)) << Describe(w, r);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// An image on a stream has its records before its pages: the process is
// stopped for the whole dump, and the statistics say why.
TEST_F(LiveTest, StreamImageIsDumpedStopped) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  const std::string fifo = Path("live.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
  Running cat = StartCli({"inspect", fifo});
  CliResult r = DumpWithStats(&w, fifo, {"--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  EXPECT_THAT(r.err, Not(HasSubstr("live:"))) << r.err;
  CliResult inspected = Finish(cat, kExitTimeout);
  EXPECT_EQ(inspected.exit_code, 0) << inspected.err;
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

}  // namespace
}  // namespace crlib
