// The trust model of docs/SECURITY.md on real processes: a process of
// another user comes back with exactly its credentials (uids, gids,
// supplementary groups, capabilities), its files are reopened with its
// rights and not the restorer's, and an image claims no more than the
// owner of the image file could grant unless the caller trusts it.
//
// The workload (tests/workloads/creds.c) starts as root and drops itself
// to the user under test; its output files and the test directory are
// handed to that user, as they would be to a real one.

#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>

#include "absl/strings/str_replace.h"
#include "core/codec.h"
#include "core/records.h"
#include "tests/task/harness.h"
#include "tests/task/image_edit.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

// A user the tests run the workload as.
struct User {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string groups;  // comma-separated, for the workload's command line
  std::string caps;    // hexadecimal: the capabilities it keeps; "" none
};

// A uid above 1000 with no passwd entry, and two groups of its own.
User UserWithoutPasswdEntry() {
  uid_t uid = 1001;
  while (getpwuid(uid) != nullptr) ++uid;
  return {uid, uid, std::to_string(uid) + "," + std::to_string(uid + 1)};
}

// CAP_KILL and CAP_NET_BIND_SERVICE: harmless, and not CAP_DAC_*, so
// the forbidden file stays forbidden.
constexpr char kSomeCaps[] = "420";

// "nobody", with its groups: a user with a passwd entry on every Debian.
// Fails the test when missing.
void Nobody(User* user) {
  passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr) << "this test needs the user 'nobody' in the passwd database";
  gid_t groups[64];
  int n = 64;
  ASSERT_GE(getgrouplist(pw->pw_name, pw->pw_gid, groups, &n), 0);
  *user = {pw->pw_uid, pw->pw_gid, ""};
  for (int i = 0; i < n; ++i) user->groups += (i ? "," : "") + std::to_string(groups[i]);
}

class SecurityTest : public WorkloadTest {
 protected:
  // Starts tests/workloads/creds as `user`, holding Path("held") open and
  // denied Path("forbidden") (root:root 0640), in a test directory the
  // user can enter, with output files it can reopen.
  void StartAs(Workload* w, const User& user) {
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0) << strerror(errno);
    forbidden_ = Path("forbidden");
    held_ = Path("held");
    std::ofstream(forbidden_) << "for root's group only\n";
    std::ofstream(held_) << "held open by the workload\n";
    ASSERT_EQ(chmod(forbidden_.c_str(), 0640), 0) << strerror(errno);
    ASSERT_EQ(chmod(held_.c_str(), 0644), 0) << strerror(errno);
    std::vector<std::string> argv = {WorkloadsDir() + "/creds", std::to_string(user.uid),
                                     std::to_string(user.gid), user.groups, forbidden_, held_};
    if (!user.caps.empty()) argv.push_back(user.caps);
    ASSERT_NO_FATAL_FAILURE(Start(w, "creds", argv));
    for (const std::string& f : {w->out, w->err}) {
      ASSERT_EQ(chown(f.c_str(), user.uid, user.gid), 0) << f << ": " << strerror(errno);
    }
    ASSERT_THAT(Slurp(w->out), HasSubstr("CREDS Uid: " + std::to_string(user.uid)))
        << Output(*w);
  }

  // StartAs, then a dump into `*image`, owned by `owner`, mode 0600.
  void StartAndDump(Workload* w, const User& user, uid_t owner, std::string* image) {
    ASSERT_NO_FATAL_FAILURE(StartAs(w, user));
    *image = Path(w->name + ".img");
    ASSERT_NO_FATAL_FAILURE(Dump(w, *image));
    ASSERT_EQ(chown(image->c_str(), owner, owner), 0) << strerror(errno);
    ASSERT_EQ(chmod(image->c_str(), 0600), 0) << strerror(errno);
  }

  // The refused restore changed nothing: no child, the PID free.
  void ExpectNothingRestored(const Workload& w, const CliResult& r) {
    EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren()) << Describe(w, r);
    EXPECT_FALSE(Probe(w.pid).exists) << "pid " << w.pid << " exists" << Describe(w, r);
  }

  std::string forbidden_, held_;
};

// Rewrites the process record of `image` with `edit`; the payload must
// keep its size (IDs and capability sets, not the group list).
void EditProcessRecord(std::string* image, const std::function<void(ProcessRecord*)>& edit) {
  EXPECT_EQ(EditRecordsOfType<ProcessRecord>(image, edit), 1) << "process records in the image";
}

// Our own permitted capabilities: what an image may claim and still be
// restorable here.
uint64_t OurPermittedCaps() {
  return sys::StatusMask(Slurp("/proc/self/status"), "CapPrm").value_or(0);
}

// Point 4 of issue 8: groups and capabilities as they were, not root's.
TEST_F(SecurityTest, UserCredentialsRoundTripThroughRoot) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartAs(&w, UserWithoutPasswdEntry()));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));  // a root-owned image may claim anything
}

// Capability sets, bounding set, ambient set and securebits, in every
// thread, after going from uid 0 to another.
TEST_F(SecurityTest, UserCapabilitiesRoundTripThroughRoot) {
  Workload w;
  User user = UserWithoutPasswdEntry();
  user.caps = kSomeCaps;
  ASSERT_NO_FATAL_FAILURE(StartAs(&w, user));
  ASSERT_THAT(Slurp(w.out), HasSubstr("CapAmb: 0000000000000420")) << Output(w);
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

// Point 5: a file the user can no longer open is not opened for it.
TEST_F(SecurityTest, FileMadeRootOnlyFailsTheRestoreBeforeAnythingExists) {
  Workload w;
  const User user = UserWithoutPasswdEntry();
  std::string image;
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, user, 0, &image));
  ASSERT_EQ(chmod(held_.c_str(), 0600), 0) << strerror(errno);
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("open " + held_ + " as uid " + std::to_string(user.uid) +
                               ": Permission denied"))
      << Describe(w, r);
  ExpectNothingRestored(w, r);
}

// Issue 9: a dump whose image a restore here would refuse does not kill
// the process. Its file became root's only after it opened it.
TEST_F(SecurityTest, DumpThatCouldNotRestoreLeavesTheProcessRunning) {
  Workload w;
  const User user = UserWithoutPasswdEntry();
  ASSERT_NO_FATAL_FAILURE(StartAs(&w, user));
  ASSERT_EQ(chmod(held_.c_str(), 0600), 0) << strerror(errno);
  const std::string image = Path("creds.img");
  CliResult r = Crlib({"dump", "--pid", std::to_string(w.pid), "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("would not restore on this machine")) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("open " + held_ + " as uid " + std::to_string(user.uid) +
                               ": Permission denied"))
      << Describe(w, r);
  EXPECT_FALSE(Exists(image)) << "a refused dump left an image";
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  ASSERT_EQ(chmod(held_.c_str(), 0644), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

// Point 6: an image its owner edited to claim root is refused; trusted,
// it restores as root; the unedited one restores as its user.
TEST_F(SecurityTest, ImageClaimingRootIsRefusedUnlessTrusted) {
  Workload w;
  const User user = UserWithoutPasswdEntry();
  std::string image;
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, user, user.uid, &image));
  std::string bytes = Slurp(image);
  const uint64_t caps = OurPermittedCaps();
  ASSERT_NE(caps, 0u);
  EditProcessRecord(&bytes, [&](ProcessRecord* p) {
    p->uid = p->euid = p->suid = p->fsuid = 0;
    p->cap_permitted = p->cap_effective = caps;
  });
  std::ofstream(image, std::ios::binary | std::ios::trunc) << bytes;
  ASSERT_EQ(Slurp(image), bytes);

  CliResult refused = Crlib({"restore", "--image", image});
  ExpectOneLineError(refused);
  EXPECT_THAT(refused.err, HasSubstr("image claims uid 0"));
  EXPECT_THAT(refused.err, HasSubstr("owned by uid " + std::to_string(user.uid)));
  EXPECT_THAT(refused.err, HasSubstr("--trust-image"));
  ExpectNothingRestored(w, refused);

  CliResult trusted = Crlib({"restore", "--image", image, "--trust-image", "--detach"});
  ASSERT_EQ(trusted.exit_code, 0) << Describe(w, trusted);
  restored_.emplace_back(w.pid, w.exe);
  const std::string status = Slurp("/proc/" + std::to_string(w.pid) + "/status");
  EXPECT_EQ(sys::StatusField(status, "Uid").value_or(""), "0\t0\t0\t0") << status;
  EXPECT_EQ(sys::StatusMask(status, "CapEff").value_or(0), caps) << status;
  EXPECT_EQ(sys::StatusField(status, "Groups").value_or(""),
            absl::StrReplaceAll(user.groups, {{",", " "}}))
      << status;
  kill(w.pid, SIGKILL);
}

// A user with a passwd entry may vouch for its own credentials.
TEST_F(SecurityTest, UneditedImageOwnedByItsUserRestores) {
  User user;
  ASSERT_NO_FATAL_FAILURE(Nobody(&user));
  Workload w;
  std::string image;
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, user, user.uid, &image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// A real-time policy root gave a user's process (chrt -p) is no more the
// image owner's to grant than a capability: refused, unless trusted, and
// then it comes back.
TEST_F(SecurityTest, ImageOwnedByUserClaimingRealTimeIsRefusedUnlessTrusted) {
  User user;
  ASSERT_NO_FATAL_FAILURE(Nobody(&user));
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartAs(&w, user));
  sched_param fifo{.sched_priority = 2};
  ASSERT_EQ(sched_setscheduler(w.pid, SCHED_FIFO, &fifo), 0) << strerror(errno);
  const std::string image = Path("creds.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_EQ(chown(image.c_str(), user.uid, user.gid), 0) << strerror(errno);
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("thread " + std::to_string(w.pid) +
                               ": SCHED_FIFO priority 2 above its RLIMIT_RTPRIO needs CAP_SYS_NICE"))
      << Describe(w, r);
  ExpectNothingRestored(w, r);

  CliResult trusted = Crlib({"restore", "--image", image, "--trust-image", "--detach"});
  ASSERT_EQ(trusted.exit_code, 0) << Describe(w, trusted);
  restored_.emplace_back(w.pid, w.exe);
  EXPECT_EQ(sched_getscheduler(w.pid), SCHED_FIFO);
  sched_param now{};
  EXPECT_EQ(sched_getparam(w.pid, &now), 0);
  EXPECT_EQ(now.sched_priority, 2);
  kill(w.pid, SIGKILL);
}

// The restorer's session keyring (root's, here) holds keys that are not
// the image's: the restored process gets a new one, not the restorer's.
TEST_F(SecurityTest, RestoredProcessIsNotInTheRestorersSessionKeyring) {
  Workload w;
  const std::string name = "crlib-restorer-keyring-" + std::to_string(getpid());
  ASSERT_NO_FATAL_FAILURE(
      Start(&w, "session_keyring", {WorkloadsDir() + "/session_keyring", name}));
  const std::string image = Path("keyring.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  // KEYCTL_JOIN_SESSION_KEYRING: crlib restore inherits it from us.
  ASSERT_GE(syscall(SYS_keyctl, 1, name.c_str()), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// Only root may grant capabilities, even to a process of the image's owner.
TEST_F(SecurityTest, ImageOwnedByUserClaimingCapabilitiesIsRefused) {
  User user;
  ASSERT_NO_FATAL_FAILURE(Nobody(&user));
  user.caps = kSomeCaps;
  Workload w;
  std::string image;
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, user, user.uid, &image));
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("image claims capabilities (permitted 0x420")) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("owned by uid " + std::to_string(user.uid))) << Describe(w, r);
  ExpectNothingRestored(w, r);
}

// No passwd entry: nobody can say which groups the owner is in.
TEST_F(SecurityTest, ImageOwnedByUserWithoutPasswdEntryIsRefused) {
  Workload w;
  const User user = UserWithoutPasswdEntry();
  std::string image;
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, user, user.uid, &image));
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("no passwd entry")) << Describe(w, r);
  ExpectNothingRestored(w, r);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image, {"--trust-image"}));
}

// Anyone in the group could have written a root-owned, group-writable
// image: it vouches for nothing.
TEST_F(SecurityTest, GroupWritableImageIsRefused) {
  Workload w;
  std::string image;
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, UserWithoutPasswdEntry(), 0, &image));
  ASSERT_EQ(chmod(image.c_str(), 0660), 0) << strerror(errno);
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("writable by its group")) << Describe(w, r);
  ExpectNothingRestored(w, r);
}

// Issue 10: in a tree, each file is opened with the rights of the first
// process that holds it. The worker of tests/workloads/tree_creds dropped
// to 65534 and opened a file of its own (0600, 65534's): the image
// restores. Made root's between dump and restore, that file is not opened
// with the rights of the root (uid 0, which could): the restore fails
// before anything exists, naming the file and the worker's uid.
TEST_F(SecurityTest, TreeFileFirstHeldByUnprivilegedWorkerIsOpenedWithItsRights) {
  Workload w;
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0) << strerror(errno);  // the worker enters it
  const std::string mine = Path("root_only"), workers = Path("worker_only");
  ASSERT_NO_FATAL_FAILURE(Start(&w, "tree_creds", {WorkloadsDir() + "/tree_creds", mine, workers}));
  std::istringstream children(
      Slurp("/proc/" + std::to_string(w.pid) + "/task/" + std::to_string(w.pid) + "/children"));
  pid_t worker = 0;
  ASSERT_TRUE(children >> worker) << "the workload has no worker" << Output(w);
  const std::string image = Path("tree_creds.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_TRUE(WaitFor(
      [&] {
        while (waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        return !Probe(worker).exists;
      },
      kReapTimeout))
      << "the worker " << worker << " outlived the dump";

  ASSERT_EQ(chown(workers.c_str(), 0, 0), 0) << strerror(errno);
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("open " + workers + " as uid 65534: Permission denied"))
      << Describe(w, r);
  ExpectNothingRestored(w, r);
  EXPECT_FALSE(Probe(worker).exists) << "the worker " << worker << " was created";

  ASSERT_EQ(chown(workers.c_str(), 65534, 65534), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

}  // namespace
}  // namespace crlib
