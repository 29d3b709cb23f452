// Incremental dumps (issue 11): `crlib dump --track` leaves the process
// running with its writes tracked, `--parent IMAGE` stores only the pages
// written since that image, and restore follows the chain.
// tests/workloads/incremental_rounds.c changes pages, zaps some, maps,
// unmaps and moves regions between the dumps (a round per SIGUSR2), and
// checks every byte after restore; live_transfer writes everywhere from
// two threads all through the dumps.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary
using ::testing::HasSubstr;
using ::testing::Not;

class IncrementalTest : public WorkloadTest {
 protected:
  // Asks incremental_rounds for round `n` (SIGUSR2) and waits for it.
  void Round(Workload* w, int n) {
    ASSERT_EQ(kill(w->pid, SIGUSR2), 0) << strerror(errno);
    const std::string said = "ROUND " + std::to_string(n) + "\n";
    ASSERT_TRUE(WaitFor([&] { return Slurp(w->out).find(said) != std::string::npos; }, seconds(20)))
        << "no " << said << Output(*w);
  }

  static off_t Size(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
  }

  // incremental_rounds with a chain of three images in a, b, c: a full
  // one after round 1, then one per round; the process is killed by the
  // last dump and reaped.
  void DumpChainOfThree(Workload* w, const std::string& a, const std::string& b,
                        const std::string& c) {
    ASSERT_NO_FATAL_FAILURE(Start(w, "incremental_rounds", {WorkloadsDir() + "/incremental_rounds", "64"}));
    ASSERT_NO_FATAL_FAILURE(Round(w, 1));
    CliResult r = DumpWithStats(w, a, {"--track"});
    ASSERT_EQ(r.exit_code, 0) << Describe(*w, r);
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(*w));
    ASSERT_NO_FATAL_FAILURE(Round(w, 2));
    r = DumpWithStats(w, b, {"--parent", a, "--leave-running"});
    ASSERT_EQ(r.exit_code, 0) << Describe(*w, r);
    EXPECT_THAT(r.err, Not(HasSubstr("every page"))) << r.err;
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(*w));
    ASSERT_NO_FATAL_FAILURE(Round(w, 3));
    r = DumpWithStats(w, c, {"--parent", b});
    ASSERT_EQ(r.exit_code, 0) << Describe(*w, r);
    EXPECT_THAT(r.err, Not(HasSubstr("every page"))) << r.err;
    int status = 0;
    ASSERT_TRUE(WaitExit(w->pid, &status, kReapTimeout)) << Describe(*w, r);
  }
};

TEST_F(IncrementalTest, ChainOfThreeRestoresEveryRound) {
  Workload w;
  const std::string a = Path("a.img"), b = Path("b.img"), c = Path("c.img");
  ASSERT_NO_FATAL_FAILURE(DumpChainOfThree(&w, a, b, c));
  // 1% of 64 MiB and a few small regions per round, against 64 MiB.
  EXPECT_LT(Size(b) * 10, Size(a)) << "b " << Size(b) << " a " << Size(a);
  EXPECT_LT(Size(c) * 10, Size(a)) << "c " << Size(c) << " a " << Size(a);
  CliResult inspected = Crlib({"inspect", c});
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  EXPECT_THAT(inspected.out, HasSubstr("parent " + std::filesystem::canonical(b).string()));
  EXPECT_THAT(inspected.out, HasSubstr("parent " + std::filesystem::canonical(a).string()));
  EXPECT_THAT(inspected.out, HasSubstr("(full)"));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, c));
  EXPECT_THAT(Slurp(w.out), HasSubstr("OK 3 rounds"));
}

// The middle of the chain restores too, and its parent stays usable.
TEST_F(IncrementalTest, EveryImageOfTheChainRestores) {
  Workload w;
  const std::string a = Path("a.img"), b = Path("b.img"), c = Path("c.img");
  ASSERT_NO_FATAL_FAILURE(DumpChainOfThree(&w, a, b, c));
  const std::string after_c = w.dumped;
  // Each restore cuts the output back to what it held at the dump.
  w.dumped = after_c.substr(0, after_c.find("ROUND 3"));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, b));
  EXPECT_THAT(Slurp(w.out), HasSubstr("OK 2 rounds"));
  w.dumped = after_c.substr(0, after_c.find("ROUND 2"));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, a));
  EXPECT_THAT(Slurp(w.out), HasSubstr("OK 1 rounds"));
}

// Two threads write everywhere all through three dumps: every unit and
// every page's sum must hold in the image at the end of the chain.
TEST_F(IncrementalTest, ChainUnderConstantWritesHolds) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "live_transfer", {WorkloadsDir() + "/live_transfer", "32"}));
  const std::string a = Path("a.img"), b = Path("b.img"), c = Path("c.img");
  CliResult r = DumpWithStats(&w, a, {"--track"});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  r = DumpWithStats(&w, b, {"--parent", a, "--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  r = DumpWithStats(&w, c, {"--parent", b});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  EXPECT_THAT(r.err, Not(HasSubstr("every page"))) << r.err;
  int status = 0;
  ASSERT_TRUE(WaitExit(w.pid, &status, kReapTimeout)) << Describe(w, r);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, c));
}

// A parent that is gone or replaced is refused before anything is made.
TEST_F(IncrementalTest, RestoreRefusesAMissingOrReplacedParent) {
  Workload w;
  const std::string a = Path("a.img"), b = Path("b.img"), c = Path("c.img");
  ASSERT_NO_FATAL_FAILURE(DumpChainOfThree(&w, a, b, c));
  const std::string moved = Path("b-moved.img");
  ASSERT_EQ(rename(b.c_str(), moved.c_str()), 0) << strerror(errno);
  CliResult r = Crlib({"restore", "--image", c});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("parent image")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("b.img")) << r.err;
  EXPECT_FALSE(Probe(w.pid).exists) << "a restore that failed left pid " << w.pid;
  // Another image under the parent's name: its identity differs.
  ASSERT_EQ(link(a.c_str(), b.c_str()), 0) << strerror(errno);
  r = Crlib({"restore", "--image", c});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("was replaced")) << r.err;
  EXPECT_FALSE(Probe(w.pid).exists) << "a restore that failed left pid " << w.pid;
  CliResult inspected = Crlib({"inspect", c});
  EXPECT_THAT(inspected.out, HasSubstr("replaced")) << inspected.out;
  // The right one back: the chain restores.
  ASSERT_EQ(rename(moved.c_str(), b.c_str()), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, c));
}

// A parent image of another process, or of a dump that did not track, is
// refused and the process runs on.
TEST_F(IncrementalTest, DumpRefusesAParentItCannotFollow) {
  Workload w, other;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "incremental_rounds", {WorkloadsDir() + "/incremental_rounds", "4"}));
  ASSERT_NO_FATAL_FAILURE(Start(&other, "heap_checksum"));
  const std::string theirs = Path("theirs.img"), untracked = Path("untracked.img");
  CliResult r = DumpWithStats(&other, theirs, {"--track"});
  ASSERT_EQ(r.exit_code, 0) << Describe(other, r);
  r = DumpWithStats(&w, Path("x.img"), {"--parent", theirs, "--leave-running"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("of another process")) << r.err;
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  r = DumpWithStats(&w, untracked, {"--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  r = DumpWithStats(&w, Path("y.img"), {"--parent", untracked, "--leave-running"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("not from a dump that kept tracking")) << r.err;
  EXPECT_FALSE(Exists(Path("x.img")) || Exists(Path("y.img")));
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&other));
}

// The tracking an image left is taken by the first dump that names it as
// parent: a second one from the same parent cannot know what the first
// protected again. It is refused, naming why, and the process runs on;
// the newest image goes on.
TEST_F(IncrementalTest, SecondChildOfOneParentIsRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "incremental_rounds", {WorkloadsDir() + "/incremental_rounds", "16"}));
  const std::string a = Path("a.img"), b = Path("b.img"), b2 = Path("b2.img"), c = Path("c.img");
  CliResult r = DumpWithStats(&w, a, {"--track"});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  ASSERT_NO_FATAL_FAILURE(Round(&w, 1));
  r = DumpWithStats(&w, b, {"--parent", a, "--leave-running"});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  ASSERT_NO_FATAL_FAILURE(Round(&w, 2));
  r = DumpWithStats(&w, b2, {"--parent", a, "--leave-running"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("tracking parent image")) << r.err;
  EXPECT_FALSE(Exists(b2));
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  r = DumpWithStats(&w, c, {"--parent", b});
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  EXPECT_THAT(r.err, Not(HasSubstr("every page"))) << r.err;
  int status = 0;
  ASSERT_TRUE(WaitExit(w.pid, &status, kReapTimeout)) << Describe(w, r);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, c));
  EXPECT_THAT(Slurp(w.out), HasSubstr("OK 2 rounds"));
}

}  // namespace
}  // namespace crlib
