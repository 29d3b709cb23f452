// Terminals, guard regions and aio rings through `crlib dump` and `crlib
// restore`: each workload sets the state up and checks itself after the
// restore; each refusal leaves the process running and untouched.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

class TerminalTestBase : public WorkloadTest {
 protected:
  // A dump that must fail: one line naming `reason`, no image, and the
  // process runs on and still checks itself OK.
  void ExpectRefused(Workload* w, const std::string& reason) {
    const std::string image = Path("refused.img");
    CliResult r = Crlib({"dump", "--pid", std::to_string(w->pid), "--image", image});
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr(reason)) << Describe(*w, r);
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      EXPECT_THAT(e.path().filename().string(), Not(StartsWith("refused.img")))
          << "a refused dump left a file";
    }
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(*w));
    ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(w));
  }
};

using GuardRegionTest = TerminalTestBase;

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

using AioTest = TerminalTestBase;

// The ring is the context's id; the kernel shows neither the requests in
// flight nor io_setup's limit, so crlib cannot rebuild the context.
TEST_F(AioTest, DumpRefusesAioContextAndLeavesTheProcessRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "aio_context"));
  ASSERT_NO_FATAL_FAILURE(ExpectRefused(&w, "aio context"));
}

}  // namespace
}  // namespace crlib
