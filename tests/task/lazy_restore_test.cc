// Lazy restore (`crlib restore --lazy`): the process runs before its memory
// is in, and must never see a wrong page: not when it checks all of it,
// not from a compressed image or a pipe, not when it forks, drops, moves
// or unmaps memory or makes the kernel touch it while pages still come in,
// and not when the image turns out bad after it started (it is killed).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

// Large enough that the background copy takes a while (about 0.1 s) after
// the process runs: what the workload does at once happens meanwhile.
constexpr char kMiB[] = "256";

class LazyRestoreTest : public WorkloadTest {
 protected:
  void StartLazyMemory(Workload* w, const std::string& mode, const char* mib = kMiB) {
    ASSERT_NO_FATAL_FAILURE(
        Start(w, "lazy_memory", {WorkloadsDir() + "/lazy_memory", mib, mode}));
  }

  // `crlib dump` with `extra` arguments, which must kill the process.
  void DumpWith(Workload* w, const std::string& image, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"dump", "--pid", std::to_string(w->pid), "--image", image};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = Crlib(args);
    w->dumped = Slurp(w->out);
    ASSERT_EQ(r.exit_code, 0) << Describe(*w, r);
    int status = 0;
    ASSERT_TRUE(WaitExit(w->pid, &status, kReapTimeout)) << Describe(*w, r);
  }

  // The restored workload said OK and nothing else but its lazy line.
  static void ExpectLazyOk(const Workload& w, const std::string& mode) {
    const std::string added = Slurp(w.out).substr(w.dumped.size());
    EXPECT_THAT(added, ContainsRegex("lazy: [0-9]+ of [0-9]+ pages resident")) << Output(w);
    EXPECT_THAT(added, HasSubstr("OK " + mode)) << Output(w);
    EXPECT_THAT(added, Not(HasSubstr("FAIL"))) << Output(w);
  }
};

TEST_F(LazyRestoreTest, LargeHeapIsWholeAfterLazyRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartLazyMemory(&w, "check"));
  const std::string image = Path("lazy.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image, {"--lazy"}));
  ExpectLazyOk(w, "check");
}

TEST_F(LazyRestoreTest, CompressedImage) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartLazyMemory(&w, "check"));
  const std::string image = Path("lazy.img");
  ASSERT_NO_FATAL_FAILURE(DumpWith(&w, image, {"--compress", "3"}));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image, {"--lazy"}));
  ExpectLazyOk(w, "check");
}

// The child forked before every page came gets them too (a userfaultfd of
// its own, from the fork event); without that it would read zeros.
TEST_F(LazyRestoreTest, ForkWhilePagesComeIn) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartLazyMemory(&w, "fork"));
  const std::string image = Path("lazy.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image, {"--lazy"}));
  ExpectLazyOk(w, "fork");
}

// MADV_DONTNEED (zeros after, never the image's bytes again), mremap (the
// pages follow the memory), munmap, and faults taken inside read(2) and
// write(2), all on pages not yet in.
TEST_F(LazyRestoreTest, DropMoveUnmapAndSystemCallsWhilePagesComeIn) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartLazyMemory(&w, "reshape"));
  const std::string image = Path("lazy.img");
  ASSERT_NO_FATAL_FAILURE(DumpWith(&w, image, {"--compress", "1"}));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image, {"--lazy"}));
  ExpectLazyOk(w, "reshape");
}

// `crlib dump --image - | crlib restore --lazy --image -`, the two running
// at once. The dumped process is alive until its image is complete, so
// the restore takes a PID namespace, where its PID is free.
TEST_F(LazyRestoreTest, ThroughAPipe) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartLazyMemory(&w, "reshape", "64"));
  w.dumped = Slurp(w.out);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  Running dump = StartCli({"dump", "--pid", std::to_string(w.pid), "--image", "-"}, -1, p[1]);
  Running restore =
      StartCli({"restore", "--image", "-", "--lazy", "--pid-ns", "--detach", "--stats"}, p[0]);
  close(p[0]);
  close(p[1]);
  CliResult d = Finish(dump, kCliTimeout);
  ASSERT_EQ(d.exit_code, 0) << Describe(w, d);
  // --detach with --lazy returns once every page is in: "INIT ROOT".
  CliResult r = Finish(restore, kCliTimeout);
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("pages served until")) << Describe(w, r);
  pid_t init = 0, root = 0;
  ASSERT_EQ(sscanf(r.out.c_str(), "%d %d", &init, &root), 2) << Describe(w, r);
  ASSERT_EQ(kill(root, SIGUSR1), 0) << strerror(errno);
  int status = 0;
  ASSERT_TRUE(WaitExit(init, &status, kExitTimeout)) << Describe(w, r);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << StatusText(status) << Output(w);
  ExpectLazyOk(w, "reshape");
}

// A stream cut short is found before the process runs (every page of a
// stream is read first): one line, nothing left running.
TEST_F(LazyRestoreTest, TruncatedStreamLeavesNothingRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartLazyMemory(&w, "check", "64"));
  const std::string image = Path("lazy.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  const std::string bytes = Slurp(image);
  for (size_t keep : {bytes.size() / 2, bytes.size() - 8}) {
    int in[2];
    ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
    std::thread feed([&, fd = in[1]] {
      signal(SIGPIPE, SIG_IGN);
      (void)!write(fd, bytes.data(), keep);  // a pipe reader takes it all
      close(fd);
    });
    CliResult r = Finish(StartCli({"restore", "--image", "-", "--lazy"}, in[0]), kCliTimeout);
    close(in[0]);
    feed.join();
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr("truncated")) << Describe(w, r);
    EXPECT_TRUE(WaitFor([&] { return !Probe(w.pid).exists; }, kReapTimeout))
        << "pid " << w.pid << " exists after a failed restore";
    EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  }
}

// Page data damaged in an image file is found while pages are served,
// after the process ran: it is killed, with a clear message, rather than
// left with a wrong page or none.
TEST_F(LazyRestoreTest, DamagedPagesKillTheProcess) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartLazyMemory(&w, "check", "64"));
  const std::string image = Path("lazy.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  {
    // A byte in the middle of the page data: the workload's block, served
    // lazily (the first and last records hold pages written before it runs).
    int fd = open(image.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    const off_t at = st.st_size / 2;
    char byte = 0;
    ASSERT_EQ(pread(fd, &byte, 1, at), 1);
    byte ^= 0x5a;
    ASSERT_EQ(pwrite(fd, &byte, 1, at), 1);
    close(fd);
  }
  CliResult r = Crlib({"restore", "--image", image, "--lazy"});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("checksum")) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("killed")) << Describe(w, r);
  EXPECT_THAT(Slurp(w.out).substr(w.dumped.size()), Not(HasSubstr("OK"))) << Output(w);
  EXPECT_TRUE(WaitFor([&] { return !Probe(w.pid).exists; }, kReapTimeout));
  EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
}

// A tree is refused before anything is created.
TEST_F(LazyRestoreTest, TreeIsRefusedBeforeAnythingIsCreated) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "zombie_child"));
  const std::string image = Path("tree.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  CliResult r = Crlib({"restore", "--image", image, "--lazy"});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("lazy restore of a tree")) << Describe(w, r);
  // (The dumped root's zombie child is ours now, as the subreaper: no
  // test of our children here.)
  EXPECT_FALSE(Probe(w.pid).exists);
}

}  // namespace
}  // namespace crlib
