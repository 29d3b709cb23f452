// Process trees through `crlib dump` and `crlib restore` (issue 10): a
// tree is dumped from its root, killed whole, and restored whole with its
// PIDs, parents, groups, sessions and process states, or in new PID
// namespaces, several copies at once; objects shared inside the tree
// (pipes, shared memory, one file offset) stay shared, and a pipe to the
// outside is handed back by the caller (`--inherit-fd`). Every workload
// (tests/workloads/, tree.h) checks itself after SIGUSR1: its root passes
// the signal down and collects its descendants' verdicts. From outside,
// the test compares the restored tree with what /proc showed before the
// dump. Freeze and restore times per process are measured in
// benchmarks/tree_benchmark.cc, never asserted here.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>

#include <deque>
#include <map>
#include <optional>

#include "sys/kernel.h"
#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

// One process as /proc shows it.
struct Proc {
  pid_t pid = 0, ppid = 0, pgid = 0, sid = 0, tracer = 0;
  pid_t inner = 0;  // its PID in its own PID namespace (the last NSpid)
  char state = '?';
  std::string exe;  // "" for a zombie
};

std::optional<Proc> ReadProc(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  const std::string stat = Slurp(dir + "/stat");
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return std::nullopt;
  Proc p;
  p.pid = pid;
  std::istringstream fields(stat.substr(paren + 2));
  fields >> p.state >> p.ppid >> p.pgid >> p.sid;
  std::istringstream status(Slurp(dir + "/status"));
  for (std::string line; std::getline(status, line);) {
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "TracerPid:") words >> p.tracer;
    if (key == "NSpid:") {
      for (pid_t id; words >> id;) p.inner = id;
    }
  }
  p.exe = ReadLink(dir + "/exe");
  return p;
}

std::vector<Proc> AllProcs() {
  std::vector<Proc> all;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (std::optional<Proc> p = ReadProc(std::stoi(name))) all.push_back(*p);
  }
  return all;
}

// `root` and its descendants in `all`, parents before children; empty if
// `root` is not in `all`.
std::vector<Proc> Subtree(pid_t root, const std::vector<Proc>& all) {
  std::multimap<pid_t, const Proc*> children;
  const Proc* top = nullptr;
  for (const Proc& p : all) {
    children.emplace(p.ppid, &p);
    if (p.pid == root) top = &p;
  }
  std::vector<Proc> tree;
  if (!top) return tree;
  std::deque<const Proc*> todo = {top};
  while (!todo.empty()) {
    const Proc* p = todo.front();
    todo.pop_front();
    tree.push_back(*p);
    auto [from, to] = children.equal_range(p->pid);
    for (auto it = from; it != to; ++it) todo.push_back(it->second);
  }
  return tree;
}

// Running and sleeping are one class: what a process does at the moment
// is not state. Stopped and zombie must stay what they were.
char StateClass(char state) {
  if (state == 'Z' || state == 'T' || state == 't') return state == 'Z' ? 'Z' : 'T';
  return 'S';
}

std::string Text(const Proc& p) {
  std::ostringstream s;
  s << "pid " << p.pid << " (inner " << p.inner << ") ppid " << p.ppid << " pgid " << p.pgid
    << " sid " << p.sid << " state " << p.state << " tracer " << p.tracer << " exe '" << p.exe
    << "'";
  return s.str();
}

std::string Text(const std::vector<Proc>& tree) {
  std::string s;
  for (const Proc& p : tree) s += "\n  " + Text(p);
  return s;
}

// What differs between the tree recorded before a dump and the processes
// running now with its PIDs ("" if nothing): the same parents (the root's
// is `root_parent`), groups, sessions, executables and states, untraced.
std::string TreeMismatch(const std::vector<Proc>& tree, pid_t root_parent) {
  for (size_t i = 0; i < tree.size(); ++i) {
    const Proc& want = tree[i];
    std::optional<Proc> now = ReadProc(want.pid);
    if (!now) return "pid " + std::to_string(want.pid) + " does not exist";
    const pid_t ppid = i == 0 ? root_parent : want.ppid;
    if (now->ppid != ppid || now->pgid != want.pgid || now->sid != want.sid ||
        now->exe != want.exe || now->tracer != 0 ||
        StateClass(now->state) != StateClass(want.state)) {
      return "now " + Text(*now) + "; was " + Text(want) + " (parent " + std::to_string(ppid) + ")";
    }
  }
  return "";
}

// What differs between the tree recorded before a dump and one copy of it
// restored in a new PID namespace, `below` its restore ("" if nothing):
// every recorded PID runs inside (untraced, with the recorded executable
// and state) with the recorded parent inside. Sets `root` to the copy's
// root, by its PID outside.
std::string CopyMismatch(const std::vector<Proc>& tree, const std::vector<Proc>& below,
                         pid_t* root) {
  std::map<pid_t, Proc> by_inner, by_outer;
  for (const Proc& p : below) {
    by_outer[p.pid] = p;
    if (p.exe == tree[0].exe && p.tracer == 0) by_inner[p.inner] = p;
  }
  for (size_t m = 0; m < tree.size(); ++m) {
    auto it = by_inner.find(tree[m].pid);
    if (it == by_inner.end() || StateClass(it->second.state) != StateClass(tree[m].state)) {
      return "no pid " + std::to_string(tree[m].pid) + " running inside";
    }
    auto parent = by_outer.find(it->second.ppid);
    if (m > 0 && (parent == by_outer.end() || parent->second.inner != tree[m].ppid)) {
      return Text(it->second) + " has not parent " + std::to_string(tree[m].ppid) + " inside";
    }
  }
  *root = by_inner[tree[0].pid].pid;
  return "";
}

// Reads one line (without its '\n') from `fd`, waiting up to `timeout`.
std::string ReadLine(int fd, Clock::duration timeout) {
  std::string line;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    char c;
    if (read(fd, &c, 1) != 1 || c == '\n') break;
    line += c;
  }
  return line;
}

// A pipe from a workload to the test: the workload gets the write end at
// fd 3, the test reads; its key in an image is "pipe:[INODE]".
struct SupervisorPipe {
  int read_fd = -1, write_fd = -1;
  std::string key;
  ~SupervisorPipe() {
    for (int fd : {read_fd, write_fd}) {
      if (fd >= 0) close(fd);
    }
  }
};

class TreeTest : public WorkloadTest {
 protected:
  void TearDown() override {
    KillOurDescendants();
    WorkloadTest::TearDown();
  }

  // Whatever runs below us, however deep (a restored tree whose root
  // died, a stopped child, a PID namespace's init): the harness's TearDown
  // only sees our children.
  void KillOurDescendants() {
    WaitFor(
        [] {
          std::vector<Proc> below = Subtree(getpid(), AllProcs());
          for (size_t i = 1; i < below.size(); ++i) kill(below[i].pid, SIGKILL);
          while (waitpid(-1, nullptr, WNOHANG) > 0) {
          }
          return below.size() <= 1;
        },
        kReapTimeout);
  }

  // The tree under the running workload `w`, which must have `size` processes.
  void Snapshot(const Workload& w, size_t size, std::vector<Proc>* tree) {
    *tree = Subtree(w.pid, AllProcs());
    ASSERT_EQ(tree->size(), size) << w.name << " is not the expected tree:" << Text(*tree)
                                  << Output(w);
  }

  // Members of `tree` died (a dump killed them, or the tree ended) and
  // came to us, the subreaper: reap them so their PIDs are free.
  void ReapTree(const std::vector<Proc>& tree) {
    pid_t alive = 0;
    bool gone = WaitFor(
        [&] {
          while (waitpid(-1, nullptr, WNOHANG) > 0) {
          }
          alive = 0;
          for (const Proc& p : tree) {
            if (Probe(p.pid).exists) alive = p.pid;
          }
          return alive == 0;
        },
        kReapTimeout);
    ASSERT_TRUE(gone) << "pid " << alive
                      << " of the tree still exists: " << Text(ReadProc(alive).value_or(Proc{}));
  }

  // `crlib dump` of the whole tree, which must kill it all.
  void DumpTree(Workload* w, const std::string& image, const std::vector<Proc>& tree) {
    ASSERT_NO_FATAL_FAILURE(Dump(w, image));
    ASSERT_NO_FATAL_FAILURE(ReapTree(tree));
  }

  // `crlib restore` of a dumped tree (with `extra` arguments and `fds` at
  // 3, 4, ...) in the background, its stdout file cut back to what the
  // dump saw. Returns once every member runs again as recorded (see
  // TreeMismatch), the root as a child of crlib.
  void RestoreTree(Workload* w, const std::string& image, const std::vector<Proc>& tree,
                   Running* restore, const std::vector<std::string>& extra = {},
                   const std::vector<int>& fds = {}) {
    for (const Proc& p : tree)
      ASSERT_FALSE(Probe(p.pid).exists) << "pid " << p.pid << " is not free";
    ASSERT_EQ(truncate(w->out.c_str(), static_cast<off_t>(w->dumped.size())), 0) << strerror(errno);
    std::vector<std::string> args = {"restore", "--image", image};
    args.insert(args.end(), extra.begin(), extra.end());
    *restore = StartCli(args, -1, -1, fds);
    ASSERT_GT(restore->pid, 0);
    restored_.emplace_back(w->pid, w->exe);
    std::string mismatch;
    int status = 0;
    bool ended = false;
    bool up = WaitFor(
        [&] {
          mismatch = TreeMismatch(tree, restore->pid);
          if (mismatch.empty()) return true;
          ended = waitpid(restore->pid, &status, WNOHANG) == restore->pid;
          return ended;
        },
        kRestoredTimeout);
    if (ended) {
      CliResult r{restore->command, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                  Slurp(restore->out_path), Slurp(restore->err_path)};
      FAIL() << "restore ended (" << StatusText(status)
             << ") before the tree was seen running: " << mismatch << Describe(*w, r);
    }
    if (!up) {
      CliResult r = Finish(*restore, seconds(0));
      FAIL() << "tree not restored after " << kRestoredTimeout.count() << " s: " << mismatch
             << Describe(*w, r);
    }
  }

  // SIGUSR1 to the restored root (or its whole process group); the
  // restore must exit 0 with the root's OK after what the dump left in its
  // stdout, and the tree must be gone.
  void SignalAndExpectRestoredOk(Workload* w, const Running& restore, const std::vector<Proc>& tree,
                                 bool whole_group = false) {
    ASSERT_EQ(kill(whole_group ? -w->pid : w->pid, SIGUSR1), 0) << strerror(errno);
    CliResult r = Finish(restore, kExitTimeout);
    EXPECT_EQ(r.exit_code, 0) << "the restored tree did not exit 0" << Describe(*w, r);
    std::string out = Slurp(w->out);
    ASSERT_THAT(out, StartsWith(w->dumped)) << "output before the dump changed" << Describe(*w, r);
    std::string added = out.substr(w->dumped.size());
    EXPECT_THAT(added, StartsWith("OK")) << Describe(*w, r);
    EXPECT_THAT(added, Not(HasSubstr("FAIL"))) << Describe(*w, r);
    EXPECT_THAT(added, Not(HasSubstr("READY"))) << "the workload started over" << Describe(*w, r);
    EXPECT_NO_FATAL_FAILURE(ReapTree(tree));
  }

  // Start, dump (killing the tree of `size`), restore, signal, OK.
  void TreeRoundTrip(Workload* w, const std::string& name, size_t size,
                     const std::vector<std::string>& argv = {}, bool whole_group = false) {
    ASSERT_NO_FATAL_FAILURE(Start(w, name, argv));
    std::vector<Proc> tree;
    ASSERT_NO_FATAL_FAILURE(Snapshot(*w, size, &tree));
    const std::string image = Path(name + ".img");
    ASSERT_NO_FATAL_FAILURE(DumpTree(w, image, tree));
    Running restore;
    ASSERT_NO_FATAL_FAILURE(RestoreTree(w, image, tree, &restore));
    ASSERT_NO_FATAL_FAILURE(SignalAndExpectRestoredOk(w, restore, tree, whole_group));
  }

  // Starts external_pipe with the write end of a new pipe at fd 3, reads
  // its HELLO, and dumps it (killing it).
  void DumpExternalPipe(Workload* w, SupervisorPipe* pipe, const std::string& image,
                        std::vector<Proc>* tree) {
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0) << strerror(errno);
    pipe->read_fd = fds[0];
    pipe->write_fd = fds[1];
    struct stat st;
    ASSERT_EQ(fstat(pipe->write_fd, &st), 0) << strerror(errno);
    pipe->key = "pipe:[" + std::to_string(st.st_ino) + "]";
    ASSERT_NO_FATAL_FAILURE(Start(w, "external_pipe", {}, {.extra_fds = {pipe->write_fd}}));
    ASSERT_EQ(ReadLine(pipe->read_fd, kReadyTimeout), "HELLO " + std::to_string(w->pid));
    ASSERT_NO_FATAL_FAILURE(Snapshot(*w, 1, tree));
    ASSERT_NO_FATAL_FAILURE(DumpTree(w, image, *tree));
  }
};

// ---- Trees: the same processes back, with their PIDs and relations.

// Root, two children, a grandchild under each: own memory, memory still
// shared copy-on-write since the root forked, parents.
TEST_F(TreeTest, ThreeLevelTree) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "tree_levels", 5));
}

// A single process is a tree of one: restored as before, with the
// relations TreeMismatch checks (its group and session, crlib its parent).
TEST_F(TreeTest, TreeOfOne) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "heap_checksum", 1));
}

TEST_F(TreeTest, HundredProcesses) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "tree_many", 100));
}

// sh -c 'producer | consumer', dumped while the producer fills the pipe
// as fast as the consumer empties it: no byte lost or read twice. sh
// ignores SIGUSR1, so it goes to the whole group.
TEST_F(TreeTest, ShellPipelineMidStream) {
  Workload w;
  const std::string dir = WorkloadsDir() + "/";
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(
      &w, "seq_pipeline", 3,
      {"/bin/sh", "-c", "trap '' USR1; " + dir + "seq_producer | " + dir + "seq_consumer"},
      /*whole_group=*/true));
}

// A multiprocessing.Pool of four forked workers with tasks in flight, its
// handler threads and the semaphores in unlinked /dev/shm files.
TEST_F(TreeTest, PythonPoolFork) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "python_pool", 5,
                                        {"/usr/bin/python3", WorkloadsDir() + "/python_pool.py"}));
}

// The root leads the session; A leads a group with its child in it, B
// another, and M lives in a group whose leader has exited. TreeMismatch
// compares every PGID and SID from outside; the workload, from inside.
TEST_F(TreeTest, SessionLeaderWithTwoGroupsAndOrphanedGroup) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "session_groups", 5));
}

// An unreaped child with exit status 7 is a zombie again after restore.
TEST_F(TreeTest, ZombieChild) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "zombie_child", 2));
}

// A child made with clone(CLONE_FILES | CLONE_FS) shares its parent's fd
// table, cwd and umask again after restore.
TEST_F(TreeTest, FdTableAndFsSharedWithParent) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "clone_shared", 2));
}

// A PID checked free before the point of no return and taken after it
// (here: by us, while the restore loads the parent's 256 MiB) is a clean
// error that names it, with nothing of the tree left running.
TEST_F(TreeTest, PidTakenAfterThePointOfNoReturn) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "big_parent"));
  std::vector<Proc> tree;
  ASSERT_NO_FATAL_FAILURE(Snapshot(w, 2, &tree));
  const pid_t child = tree[0].pid == w.pid ? tree[1].pid : tree[0].pid;
  const std::string image = Path("big_parent.img");
  ASSERT_NO_FATAL_FAILURE(DumpTree(&w, image, tree));
  Running restore = StartCli({"restore", "--image", image});
  ASSERT_GT(restore.pid, 0);
  // The root exists: the checks are behind; its pages are loading.
  ASSERT_TRUE(WaitFor([&] { return Probe(w.pid).exists; }, kRestoredTimeout));
  long taker = sys::CloneWithPid(child);
  if (taker == 0) {
    for (;;) syscall(SYS_pause);
  }
  ASSERT_GT(taker, 0) << "could not take pid " << child << " in time: " << strerror(errno);
  CliResult r = Finish(restore, kCliTimeout);
  kill(static_cast<pid_t>(taker), SIGKILL);
  waitpid(static_cast<pid_t>(taker), nullptr, 0);
  EXPECT_NE(r.exit_code, 0) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("pid " + std::to_string(child) + " is in use")) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("nothing left running")) << Describe(w, r);
  EXPECT_NO_FATAL_FAILURE(ReapTree(tree));
}

// A 1 TiB sparse reservation a child shares with its parent: compared
// where the two have pages, not page table entry by entry.
TEST_F(TreeTest, SparseReservationSharedWithAChild) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "tree_reservation", 2));
}

// A child stopped by SIGSTOP stays stopped until its parent continues it.
TEST_F(TreeTest, StoppedChild) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "stopped_child", 2));
}

// MAP_SHARED | MAP_ANONYMOUS between parent and child: one counter.
TEST_F(TreeTest, SharedAnonymousCounter) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "shared_counter", 2));
}

// Parent and child write records through one inherited file description:
// one offset, no record overwritten or lost.
TEST_F(TreeTest, InheritedFdOffsetIsShared) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "inherited_fd", 2,
                                        {WorkloadsDir() + "/inherited_fd", Path("records.dat")}));
}

// dump --leave-running: the live tree runs on and checks itself, then the
// image restores it again.
TEST_F(TreeTest, LeaveRunningTreeThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "tree_levels"));
  std::vector<Proc> tree;
  ASSERT_NO_FATAL_FAILURE(Snapshot(w, 5, &tree));
  const std::string image = Path("tree_levels.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image, /*leave_running=*/true));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(TreeMismatch(tree, getpid()), "") << "the tree is not as it was before the dump";
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
  ASSERT_NO_FATAL_FAILURE(ReapTree(tree));
  Running restore;
  ASSERT_NO_FATAL_FAILURE(RestoreTree(&w, image, tree, &restore));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectRestoredOk(&w, restore, tree));
}

// ---- PID namespaces: one image, four copies at once.

// Four `restore --pid-ns` of one image run at once, each tree with its
// recorded PIDs inside its own namespace. The copies append to one stdout
// file (the workload opened it O_APPEND): four OK lines.
TEST_F(TreeTest, PidNamespaceFourConcurrentCopies) {
  constexpr int kCopies = 4;
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "tree_levels", {}, {.append_out = true}));
  std::vector<Proc> tree;
  ASSERT_NO_FATAL_FAILURE(Snapshot(w, 5, &tree));
  const std::string image = Path("tree_levels.img");
  ASSERT_NO_FATAL_FAILURE(DumpTree(&w, image, tree));
  std::vector<Running> copies;
  for (int i = 0; i < kCopies; ++i) {
    copies.push_back(StartCli({"restore", "--pid-ns", "--image", image}));
    ASSERT_GT(copies.back().pid, 0);
  }
  // Each copy's root, by its PID outside.
  std::vector<pid_t> roots(kCopies, 0);
  std::string why;
  bool up = WaitFor(
      [&] {
        const std::vector<Proc> all = AllProcs();
        for (int i = 0; i < kCopies; ++i) {
          why = CopyMismatch(tree, Subtree(copies[i].pid, all), &roots[i]);
          if (!why.empty()) {
            why = "copy " + std::to_string(i) + ": " + why;
            return false;
          }
        }
        return true;
      },
      kRestoredTimeout);
  for (pid_t root : roots) {
    if (root > 0) restored_.emplace_back(root, w.exe);
  }
  ASSERT_TRUE(up) << "not all copies restored: " << why << Output(w);
  std::set<pid_t> distinct(roots.begin(), roots.end());
  ASSERT_EQ(distinct.size(), static_cast<size_t>(kCopies)) << "copies share a root";
  for (pid_t root : roots) ASSERT_EQ(kill(root, SIGUSR1), 0) << strerror(errno);
  for (int i = 0; i < kCopies; ++i) {
    CliResult r = Finish(copies[i], kExitTimeout);
    EXPECT_EQ(r.exit_code, 0) << "copy " << i << " did not exit 0" << Describe(w, r);
  }
  std::string out = Slurp(w.out);
  ASSERT_THAT(out, StartsWith(w.dumped));
  std::string added = out.substr(w.dumped.size());
  size_t oks = 0;
  for (size_t at = 0; (at = added.find("OK ", at)) != std::string::npos; ++at) {
    if (at == 0 || added[at - 1] == '\n') ++oks;
  }
  EXPECT_EQ(oks, static_cast<size_t>(kCopies)) << added;
  EXPECT_THAT(added, Not(HasSubstr("FAIL"))) << added;
}

// ---- What lies outside the tree: a pipe to the test.

// The image names the pipe by its key; the restore is given the test's own
// write end for it and the restored process writes through it.
TEST_F(TreeTest, ExternalPipeWithInheritFd) {
  Workload w;
  SupervisorPipe pipe;
  std::vector<Proc> tree;
  const std::string image = Path("external_pipe.img");
  ASSERT_NO_FATAL_FAILURE(DumpExternalPipe(&w, &pipe, image, &tree));
  CliResult inspect = Crlib({"inspect", image});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_THAT(inspect.out, HasSubstr(pipe.key)) << "inspect does not show the external key";
  Running restore;
  ASSERT_NO_FATAL_FAILURE(
      RestoreTree(&w, image, tree, &restore, {"--inherit-fd", pipe.key + "=3"}, {pipe.write_fd}));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectRestoredOk(&w, restore, tree));
  EXPECT_EQ(ReadLine(pipe.read_fd, seconds(5)), "AFTER " + std::to_string(w.pid));
}

// Without --inherit-fd for its key the restore fails before creating
// anything: one line naming the key and the option, nothing running, and
// nobody but the test holds the pipe.
TEST_F(TreeTest, ExternalPipeRefusedWithoutInheritFd) {
  Workload w;
  SupervisorPipe pipe;
  std::vector<Proc> tree;
  const std::string image = Path("external_pipe.img");
  ASSERT_NO_FATAL_FAILURE(DumpExternalPipe(&w, &pipe, image, &tree));
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr(pipe.key));
  EXPECT_THAT(r.err, HasSubstr("--inherit-fd"));
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  EXPECT_EQ(OurChildren(), std::set<pid_t>()) << "left running: " << PidText(OurChildren());
  EXPECT_FALSE(Probe(w.pid).exists) << "pid " << w.pid << " was created";
  close(pipe.write_fd);
  pipe.write_fd = -1;
  pollfd p = {pipe.read_fd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 1000), 1) << "another process holds the pipe's write end";
  char c;
  EXPECT_EQ(read(pipe.read_fd, &c, 1), 0) << "the pipe is not at its end: a writer is left";
}

// ---- Processes with other credentials than the root's.

// A root master (uid 0) with a worker that dropped to 65534: each file is
// reopened with the rights of the process holding it first, so the
// worker's own file (0600, 65534's) and the root's (0600, root's), which
// the worker inherited, are both back; each process has its credentials.
TEST_F(TreeTest, WorkersWithOtherCredentials) {
  Workload w;
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0) << strerror(errno);  // the worker enters it
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(
      &w, "tree_creds", 2,
      {WorkloadsDir() + "/tree_creds", Path("root_only"), Path("worker_only")}));
}

// ---- pidfds.

// The root's pidfds of its child A, of its zombie child C and of a child
// that had exited and been reaped, and A's pidfd of the root: after
// restore A gets a signal and is waited for through its pidfd, C is
// reaped through its own, A signals the root through its pidfd of it,
// and the dead pidfd answers waitid, poll and signals as before.
TEST_F(TreeTest, PidfdsWithinTheTree) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "pidfd_tree", 3));
}

// An epoll a parent and child share is one epoll, filled once (a second
// EPOLL_CTL_ADD would fail the restore), and the child's own is filled in
// the child (tests/workloads/epoll_shared.c).
TEST_F(TreeTest, EpollSharedByParentAndChild) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(TreeRoundTrip(&w, "epoll_shared", 2));
}

// A pidfd of a process outside the tree (the test itself) is refused by
// name; the tree runs on untouched.
TEST_F(TreeTest, PidfdOfAnOutsideProcessRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(
      Start(&w, "pidfd_tree", {WorkloadsDir() + "/pidfd_tree", "outside"}));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(
      &w, "a pidfd of pid " + std::to_string(getpid()) + ", which is outside the dumped processes"));
}

// A thread pidfd (PIDFD_THREAD) of a thread other than the main one is
// refused by name: restore makes pidfds before such threads exist.
TEST_F(TreeTest, PidfdOfASecondThreadRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pidfd_tree", {WorkloadsDir() + "/pidfd_tree", "thread"}));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(
      &w, "of pid " + std::to_string(w.pid) + " (PIDFD_THREAD), which is not its main thread"));
}

// The same tree restored in a new PID namespace (--pid-ns): the pidfds are
// made there, of the recorded PIDs.
TEST_F(TreeTest, PidfdsWithinTheTreeInAPidNamespace) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pidfd_tree"));
  std::vector<Proc> tree;
  ASSERT_NO_FATAL_FAILURE(Snapshot(w, 3, &tree));
  const std::string image = Path("pidfd_tree.img");
  ASSERT_NO_FATAL_FAILURE(DumpTree(&w, image, tree));
  ASSERT_EQ(truncate(w.out.c_str(), static_cast<off_t>(w.dumped.size())), 0) << strerror(errno);
  Running restore = StartCli({"restore", "--pid-ns", "--image", image});
  ASSERT_GT(restore.pid, 0);
  // CopyMismatch knows a process inside by its executable, which a zombie
  // (C) no longer shows: the live ones.
  std::vector<Proc> live;
  for (const Proc& p : tree) {
    if (p.state != 'Z') live.push_back(p);
  }
  pid_t root = 0;
  std::string why;
  bool up = WaitFor(
      [&] {
        why = CopyMismatch(live, Subtree(restore.pid, AllProcs()), &root);
        return why.empty();
      },
      kRestoredTimeout);
  if (root > 0) restored_.emplace_back(root, w.exe);
  ASSERT_TRUE(up) << "not restored: " << why << Output(w);
  ASSERT_EQ(kill(root, SIGUSR1), 0) << strerror(errno);
  CliResult r = Finish(restore, kExitTimeout);
  EXPECT_EQ(r.exit_code, 0) << Describe(w, r);
  std::string out = Slurp(w.out);
  ASSERT_THAT(out, StartsWith(w.dumped));
  EXPECT_THAT(out.substr(w.dumped.size()), StartsWith("OK")) << Describe(w, r);
}

}  // namespace
}  // namespace crlib
