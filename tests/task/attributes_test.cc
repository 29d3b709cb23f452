// Process and thread attributes through `crlib dump` and `crlib restore`:
// POSIX timers (tests/workloads/posix_timers.c), prctl-style attributes
// (prctl_attrs.c) and seccomp filters (seccomp_filter.c) come back and the
// process checks them itself; what crlib cannot restore exactly is refused
// at dump, naming it, and the process runs on untouched; what the
// restorer lacks the privilege for is refused before the point of no
// return, naming the capability.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>

#include <grp.h>
#include <pwd.h>

#include <fstream>

#include "tests/task/harness.h"
#include "tests/task/image_edit.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

using AttributesTest = WorkloadTest;


TEST_F(AttributesTest, BasicAttributesRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "basic_attrs"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(AttributesTest, PosixTimersRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "posix_timers"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(AttributesTest, PosixTimersLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "posix_timers"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(AttributesTest, PrctlAttributesRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "prctl_attrs"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(AttributesTest, SeccompFiltersRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "seccomp_filter"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(AttributesTest, SeccompLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "seccomp_filter"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(AttributesTest, SeccompStrictRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "seccomp_strict"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

class AttributesRefusalTest : public WorkloadTest {
 protected:
  // Starts workload `name` in `mode`; its dump must fail with a one-line
  // error holding `reason`, write no image, and leave the process running
  // as it was: it still checks itself OK.
  void ExpectDumpRefused(const std::string& name, const std::string& mode,
                         const std::string& reason) {
    Workload w;
    ASSERT_NO_FATAL_FAILURE(Start(&w, name, {WorkloadsDir() + "/" + name, mode}));
    const std::string image = Path(mode + ".img");
    CliResult r = Crlib({"dump", "--pid", std::to_string(w.pid), "--image", image});
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr(reason)) << Describe(w, r);
    EXPECT_FALSE(Exists(image));
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
    ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
  }

  void ExpectRestoreRefused(const std::string& shell_prefix, const std::string& reason);
};

// A restore of the prctl_attrs workload run through `shell_prefix` (shell
// text that takes something from crlib and ends by exec'ing the rest)
// fails before the point of no return with `reason`; the same image then
// restores without it.
void AttributesRefusalTest::ExpectRestoreRefused(const std::string& shell_prefix,
                                                 const std::string& reason) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "prctl_attrs"));
  const std::string image = Path("attrs.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  const std::string command = shell_prefix + CrlibBin() + " restore --image " + image;
  Running run;
  run.command = "sh -c '" + command + "'";
  run.out_path = Path("restricted.out");
  run.err_path = Path("restricted.err");
  run.pid = Spawn({"/bin/sh", "-c", command}, run.out_path, run.err_path, /*new_session=*/false);
  CliResult r = Finish(run, kCliTimeout);
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr(reason)) << Describe(w, r);
  EXPECT_FALSE(Probe(w.pid).exists) << "pid " << w.pid << " exists after a refused restore";
  EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(AttributesRefusalTest, RestoreWithoutAuditControlRefusesLoginuid) {
  ExpectRestoreRefused("exec setpriv --bounding-set -audit_control -- ", "CAP_AUDIT_CONTROL");
}

// Our oom_score_adj above the image's 321: lowering it needs CAP_SYS_RESOURCE.
TEST_F(AttributesRefusalTest, RestoreWithoutSysResourceRefusesLowerOomScoreAdj) {
  ExpectRestoreRefused(
      "echo 500 > /proc/self/oom_score_adj && exec setpriv --bounding-set -sys_resource -- ",
      "CAP_SYS_RESOURCE");
}

// A restorer with no_new_privs would hand it to the thread that had not set it.
TEST_F(AttributesRefusalTest, RestoreWithNoNewPrivsRefusesThreadWithout) {
  ExpectRestoreRefused("exec setpriv --no-new-privs -- ", "crlib runs with no_new_privs");
}

// Rewrites the one record of type R in the image file at `path` with `edit`.
template <typename R>
void EditImage(const std::string& path, const std::function<void(R*)>& edit) {
  std::string bytes = Slurp(path);
  ASSERT_EQ(EditRecordsOfType<R>(&bytes, edit), 1) << R::kName << " records in " << path;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// An image owned by a user vouches for no claim only privilege could make
// (docs/SECURITY.md): a negative oom_score_adj, another user's loginuid.
TEST_F(AttributesRefusalTest, UnprivilegedImageOwnerCannotClaimOomScoreOrLoginuid) {
  passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr) << "this test needs the user 'nobody'";
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "prctl_attrs"));
  const std::string image = Path("owned.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  // The credentials of nobody, which nobody may claim.
  ASSERT_NO_FATAL_FAILURE(EditImage<ProcessRecord>(image, [&](ProcessRecord* p) {
    p->uid = p->euid = p->suid = p->fsuid = uid;
    p->gid = p->egid = p->sgid = p->fsgid = gid;
    p->groups.assign(p->groups.size(), gid);
    p->cap_inheritable = p->cap_permitted = p->cap_effective = p->cap_ambient = 0;
  }));
  ASSERT_NO_FATAL_FAILURE(EditImage<ProcessAttributesRecord>(
      image, [](ProcessAttributesRecord* a) { a->oom_score_adj = -100; }));
  ASSERT_EQ(chown(image.c_str(), uid, gid), 0) << strerror(errno);
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("image claims oom_score_adj -100")) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("owned by uid " + std::to_string(uid))) << Describe(w, r);
  ASSERT_NO_FATAL_FAILURE(EditImage<ProcessAttributesRecord>(
      image, [](ProcessAttributesRecord* a) { a->oom_score_adj = 321; }));
  r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("image claims loginuid 4242")) << Describe(w, r);
  EXPECT_FALSE(Probe(w.pid).exists) << "pid " << w.pid << " exists after a refused restore";
  EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
}

TEST_F(AttributesRefusalTest, DumpRefusesFiltersThatDifferBetweenThreads) {
  ExpectDumpRefused("seccomp_filter", "differ", "different seccomp filters");
}

TEST_F(AttributesRefusalTest, DumpRefusesUserNotifFilter) {
  ExpectDumpRefused("seccomp_filter", "notify", "SECCOMP_RET_USER_NOTIF");
}

TEST_F(AttributesRefusalTest, DumpRefusesFiltersWithoutNoNewPrivsOrCapSysAdmin) {
  ExpectDumpRefused("seccomp_filter", "nonnp", "neither no_new_privs nor CAP_SYS_ADMIN");
}

TEST_F(AttributesRefusalTest, DumpRefusesTimerOfAnExitedThread) {
  ExpectDumpRefused("posix_timers", "orphan", "which is not one of its threads");
}

TEST_F(AttributesRefusalTest, DumpRefusesStrictAndFilterModeMixed) {
  ExpectDumpRefused("seccomp_strict", "mixed", "is in strict mode");
}

TEST_F(AttributesRefusalTest, DumpRefusesSyscallUserDispatch) {
  ExpectDumpRefused("seccomp_filter", "dispatch", "syscall user dispatch");
}

}  // namespace
}  // namespace crlib
