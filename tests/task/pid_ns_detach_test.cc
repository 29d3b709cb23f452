// `crlib restore --pid-ns --detach` prints "INIT ROOT": the PID of the
// namespace's init (crlib's child, which exits with the root's status) and
// the root's PID as seen from outside, so that a caller can signal the
// root without searching /proc. Two copies of one tree at once.

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

// The last field of NSpid: the PID inside the process's own namespace.
pid_t InnerPid(pid_t pid) {
  std::istringstream status(Slurp("/proc/" + std::to_string(pid) + "/status"));
  pid_t inner = -1;
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("NSpid:")) continue;
    std::istringstream words(line.substr(6));
    for (pid_t id; words >> id;) inner = id;
  }
  return inner;
}

// `pid` and all its descendants.
std::vector<pid_t> TreeOf(pid_t pid) {
  std::vector<pid_t> tree = {pid};
  for (size_t i = 0; i < tree.size(); ++i) {
    for (pid_t child : sys::ListChildren(tree[i]).value_or(std::vector<pid_t>{})) {
      tree.push_back(child);
    }
  }
  return tree;
}

class PidNsDetachTest : public WorkloadTest {
 protected:
  // `crlib dump` of the whole tree, which kills it; its members come to
  // us, the subreaper, and are reaped so that their PIDs are free.
  void DumpTree(Workload* w, const std::string& image) {
    const std::vector<pid_t> tree = TreeOf(w->pid);
    ASSERT_EQ(tree.size(), 5u) << Output(*w);
    ASSERT_NO_FATAL_FAILURE(Dump(w, image));
    ASSERT_TRUE(WaitFor(
        [&] {
          while (waitpid(-1, nullptr, WNOHANG) > 0) {
          }
          return std::none_of(tree.begin(), tree.end(), [](pid_t p) { return Probe(p).exists; });
        },
        kReapTimeout))
        << "the dumped tree is still there";
  }
};

TEST_F(PidNsDetachTest, PrintsTheInitAndTheRoot) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "tree_levels", {}, {.append_out = true}));
  const std::string image = Path("tree_levels.img");
  ASSERT_NO_FATAL_FAILURE(DumpTree(&w, image));
  pid_t init[2] = {0, 0}, root[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    CliResult r = Crlib({"restore", "--pid-ns", "--detach", "--image", image});
    ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
    std::istringstream line(r.out);
    std::string rest;
    ASSERT_TRUE(line >> init[i] >> root[i]) << "not 'INIT ROOT': " << r.out;
    EXPECT_FALSE(std::getline(line, rest) && !rest.empty()) << "more than 'INIT ROOT': " << r.out;
    restored_.emplace_back(root[i], w.exe);
    // The init is crlib's child, now ours (the test is a subreaper).
    EXPECT_EQ(InnerPid(init[i]), 1);
    const ProcInfo info = Probe(root[i]);
    EXPECT_TRUE(info.exists);
    EXPECT_EQ(info.ppid, init[i]);
    EXPECT_EQ(info.exe, w.exe);
    EXPECT_EQ(InnerPid(root[i]), w.pid) << "the root has its recorded PID inside";
  }
  EXPECT_NE(root[0], root[1]);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(kill(root[i], SIGUSR1), 0) << strerror(errno);
    int status = 0;
    ASSERT_TRUE(WaitExit(init[i], &status, kExitTimeout)) << "init " << init[i] << Output(w);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the init exits with the root's status: " << StatusText(status) << Output(w);
  }
  std::string added = Slurp(w.out).substr(w.dumped.size());
  size_t oks = 0;
  for (size_t at = 0; (at = added.find("OK", at)) != std::string::npos; ++at) {
    if (at == 0 || added[at - 1] == '\n') ++oks;
  }
  EXPECT_EQ(oks, 2u) << added;
  EXPECT_EQ(added.find("FAIL"), std::string::npos) << added;
}

// Without --pid-ns, --detach still prints the root's PID alone.
TEST_F(PidNsDetachTest, WithoutPidNsPrintsTheRootAlone) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "tree_levels"));
  const std::string image = Path("tree_levels.img");
  ASSERT_NO_FATAL_FAILURE(DumpTree(&w, image));
  CliResult r = Crlib({"restore", "--detach", "--image", image});
  restored_.emplace_back(w.pid, w.exe);
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  EXPECT_EQ(r.out, std::to_string(w.pid) + "\n");
  ASSERT_EQ(kill(w.pid, SIGUSR1), 0) << strerror(errno);
  int status = 0;
  ASSERT_TRUE(WaitExit(w.pid, &status, kExitTimeout)) << Output(w);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << StatusText(status) << Output(w);
}

}  // namespace
}  // namespace crlib
