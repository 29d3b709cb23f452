// External fds (docs/CHECKPOINT.md, "External fds"): a pipe end above fd 2
// whose other end is outside the dumped process is no longer refused. The
// image records it by its key ("pipe:[INODE]"), `crlib inspect` shows it,
// and a restore needs `--inherit-fd KEY=FD` for it: without one it fails
// before anything is created, naming the key and the option.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

// The number crlib gets the test's write end at (CrlibWithFd).
constexpr int kCrlibFd = 5;

class ExternalFdsTest : public WorkloadTest {
 protected:
  void SetUp() override {
    WorkloadTest::SetUp();
    ASSERT_EQ(pipe2(pipe_, O_CLOEXEC), 0) << strerror(errno);
    struct stat st;
    ASSERT_EQ(fstat(pipe_[0], &st), 0) << strerror(errno);
    key_ = "pipe:[" + std::to_string(st.st_ino) + "]";
  }

  void TearDown() override {
    if (!crlib_bin_.empty()) setenv("CRLIB_BIN", crlib_bin_.c_str(), 1);
    for (int fd : pipe_) {
      if (fd >= 0) close(fd);
    }
    WorkloadTest::TearDown();
  }

  // `argv` with our descriptor `ours` open in it as `theirs`, any number
  // (Spawn's extra fds start at 3): /bin/sh opens /proc/OURPID/fd/OURS
  // again, for writing, and execs `argv` (same PID). For a pipe end that
  // is the same pipe, through a new open file description.
  static std::vector<std::string> WithFd(const std::vector<std::string>& argv, int ours,
                                         int theirs) {
    std::vector<std::string> out = {
        "/bin/sh", "-c",
        "exec \"$0\" \"$@\" " + std::to_string(theirs) + ">/proc/" + std::to_string(getpid()) +
            "/fd/" + std::to_string(ours)};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }

  // The holder workload with our pipe's write end at `fd`; `mode` is
  // its "prefill" or "stdin". At fd 3 it shares our open file description.
  void StartHolder(Workload* w, int fd, const std::string& mode = "") {
    std::vector<std::string> argv = {WorkloadsDir() + "/external_pipe_holder",
                                     std::to_string(fd)};
    if (!mode.empty()) argv.push_back(mode);
    if (fd == 3) {
      ASSERT_NO_FATAL_FAILURE(Start(w, "external_pipe_holder", argv, {.extra_fds = {pipe_[1]}}));
    } else {
      ASSERT_NO_FATAL_FAILURE(Start(w, "external_pipe_holder", WithFd(argv, pipe_[1], fd)));
    }
  }

  // From here on every `crlib` the harness runs has our write end at
  // kCrlibFd: CRLIB_BIN becomes a script that opens it and execs crlib.
  void CrlibWithFd() {
    crlib_bin_ = CrlibBin();
    const std::string script = Path("crlib-with-fd.sh");
    std::ofstream(script) << "#!/bin/sh\nexec " << kCrlibFd << ">/proc/" << getpid() << "/fd/"
                          << pipe_[1] << "\nexec '" << crlib_bin_ << "' \"$@\"\n";
    ASSERT_EQ(chmod(script.c_str(), 0755), 0) << strerror(errno);
    setenv("CRLIB_BIN", script.c_str(), 1);
  }

  // Whatever the pipe holds now, without waiting.
  std::string Drain() {
    std::string out;
    const int flags = fcntl(pipe_[0], F_GETFL);
    fcntl(pipe_[0], F_SETFL, flags | O_NONBLOCK);
    char buf[4096];
    for (ssize_t n; (n = read(pipe_[0], buf, sizeof(buf))) > 0;) out.append(buf, n);
    fcntl(pipe_[0], F_SETFL, flags);
    return out;
  }

  void ExpectRestoreRefused(const Workload& w, const std::vector<std::string>& args,
                            const std::string& what) {
    CliResult r = Crlib(args);
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr(what)) << Describe(w, r);
    EXPECT_FALSE(Probe(w.pid).exists) << "a refused restore created pid " << w.pid;
    EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  }

  int pipe_[2] = {-1, -1};
  std::string key_;
  std::string crlib_bin_;  // the real crlib, once CrlibWithFd replaced it
};

// The acceptance test: dump, inspect, refused without --inherit-fd (and
// with a wrong one), then restored with it, writing into the test's pipe.
TEST_F(ExternalFdsTest, PipeMappedWithInheritFd) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartHolder(&w, 3));
  const std::string image = Path("external.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));

  CliResult inspect = Crlib({"inspect", image});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_THAT(inspect.out, HasSubstr("fd fd=3 "));
  EXPECT_THAT(inspect.out, HasSubstr(" external " + key_ + " (restore --inherit-fd '" + key_ +
                                     "=FD')"));
  EXPECT_THAT(inspect.out, HasSubstr("kind=8 "));

  const std::string unmapped = "fd 3 of pid " + std::to_string(w.pid) + " is external (" + key_ +
                               ", its other end was outside the dumped processes): give it "
                               "with --inherit-fd '" + key_ + "=FD'";
  ASSERT_NO_FATAL_FAILURE(ExpectRestoreRefused(w, {"restore", "--image", image}, unmapped));
  ASSERT_NO_FATAL_FAILURE(
      ExpectRestoreRefused(w, {"restore", "--image", image, "--check"}, unmapped));
  // A key the image does not have: a typo, refused rather than ignored.
  ASSERT_NO_FATAL_FAILURE(ExpectRestoreRefused(
      w, {"restore", "--image", image, "--inherit-fd", key_ + "=1", "--inherit-fd", "pipe:[1]=1"},
      "--inherit-fd 'pipe:[1]=1': the image has no external fd pipe:[1] (its keys: " + key_ +
          ")"));
  // Fd 0 of crlib is /dev/null, read-only: the workload wrote to fd 3.
  ASSERT_NO_FATAL_FAILURE(ExpectRestoreRefused(
      w, {"restore", "--image", image, "--inherit-fd", key_ + "=0"},
      "--inherit-fd '" + key_ + "=0': fd 3 of pid " + std::to_string(w.pid) +
          " was open for writing, and fd 0 is not"));
  ASSERT_NO_FATAL_FAILURE(ExpectRestoreRefused(
      w, {"restore", "--image", image, "--inherit-fd", "nokey"}, "--inherit-fd takes KEY=FD"));
  EXPECT_EQ(Drain(), "");

  ASSERT_NO_FATAL_FAILURE(CrlibWithFd());
  CliResult check = Crlib({"restore", "--image", image, "--check", "--inherit-fd",
                           key_ + "=" + std::to_string(kCrlibFd)});
  EXPECT_EQ(check.exit_code, 0) << Describe(w, check);
  EXPECT_THAT(check.out, HasSubstr("restorable here"));
  ASSERT_NO_FATAL_FAILURE(
      RestoreAndCheck(&w, image, {"--inherit-fd", key_ + "=" + std::to_string(kCrlibFd)}));
  EXPECT_EQ(Drain(), "after from " + std::to_string(w.pid) + " through fd 3\n");
}

// Fd 7, with bytes in the pipe: the dump refuses nothing and takes none of
// them (they are the pipe's, outside); the process runs on, and a restore
// from the image writes only what it writes after the restore.
TEST_F(ExternalFdsTest, DumpLeavesTheOutsidePipeAlone) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartHolder(&w, 7, "prefill"));
  const std::string image = Path("external7.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image, /*leave_running=*/true));
  EXPECT_EQ(Drain(), "before the dump\n");
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
  EXPECT_EQ(Drain(), "after from " + std::to_string(w.pid) + " through fd 7\n");

  ASSERT_NO_FATAL_FAILURE(CrlibWithFd());
  ASSERT_NO_FATAL_FAILURE(
      RestoreAndCheck(&w, image, {"--inherit-fd=" + key_ + "=" + std::to_string(kCrlibFd)}));
  EXPECT_EQ(Drain(), "after from " + std::to_string(w.pid) + " through fd 7\n")
      << "the bytes buffered at the dump came back, or the line is missing";
}

// A standard stream on the same pipe as fd 3 (a dup, one description): it
// is external too, not reconnected to crlib's own fd 0, and the one key
// gives both.
TEST_F(ExternalFdsTest, StandardStreamSharingAnExternalPipe) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartHolder(&w, 3, "stdin"));
  const std::string image = Path("external-stdin.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  CliResult inspect = Crlib({"inspect", image});
  for (const char* fd : {"fd fd=0 ", "fd fd=3 "}) {
    EXPECT_THAT(inspect.out, ContainsRegex(std::string(fd) + "[^\n]* external pipe:\\[[0-9]+\\]"));
  }
  ASSERT_NO_FATAL_FAILURE(ExpectRestoreRefused(w, {"restore", "--image", image},
                                               "fd 0 of pid " + std::to_string(w.pid) +
                                                   " is external (" + key_));
  ASSERT_NO_FATAL_FAILURE(CrlibWithFd());
  ASSERT_NO_FATAL_FAILURE(
      RestoreAndCheck(&w, image, {"--inherit-fd", key_ + "=" + std::to_string(kCrlibFd)}));
  EXPECT_EQ(Drain(), "after from " + std::to_string(w.pid) + " through fd 3\n");
}

}  // namespace
}  // namespace crlib
