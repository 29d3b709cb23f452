// CheckpointOptions::syscall_results through the C++ API: a child blocked in
// read() on a pipe is dumped with that read recorded as returning a chosen
// value; the process restored from the image sees exactly that value, while
// the original (with leave_running) goes on reading as if nothing happened.
// Also the refusals: a thread not in the process, a thread not in a call.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "core/context.h"
#include "cr/checkpoint.h"
#include "sys/proc.h"
#include "cr/restore.h"

namespace crlib {
namespace {

// What the recorded read returns: more than it asks for, so no real read
// can return it.
constexpr int64_t kResult = 0x5245;
constexpr size_t kReadSize = 8;
// The child's exit status: its read returned kResult, or kReadSize bytes.
constexpr int kSawResult = 42;
constexpr int kSawData = 8;

enum class Mode { kMainReads, kThreadReads, kSpins };

struct Child {
  pid_t pid = -1;
  pid_t tid = -1;     // the thread that reads (or spins)
  int read_fd = -1;   // the child's end; ours is closed
  int write_fd = -1;  // kept by both
};

int Status(long n) { return n == kResult ? kSawResult : n == kReadSize ? kSawData : 1; }

long ReadPipe(int fd) {
  char buf[kReadSize];
  return syscall(SYS_read, fd, buf, sizeof(buf));
}

struct ReaderArgs {
  int fd, report;
};

void* ReaderThread(void* arg) {
  auto* a = static_cast<ReaderArgs*>(arg);
  pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  (void)!write(a->report, &tid, sizeof(tid));
  close(a->report);
  return reinterpret_cast<void*>(ReadPipe(a->fd));
}

// Forks a child holding only its standard streams and the pipe: the thread
// of `mode` reports its TID, then blocks in read() (or spins). The child's
// exit status says what the read returned.
Child StartChild(Mode mode) {
  Child c;
  int fds[2], report[2];
  if (pipe(fds) != 0 || pipe(report) != 0) return c;
  c.read_fd = fds[0];
  c.write_fd = fds[1];
  c.pid = fork();
  if (c.pid == 0) {
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != fds[0] && fd != fds[1] && fd != report[1]) close(fd);
    }
    ReaderArgs args{fds[0], report[1]};
    if (mode == Mode::kThreadReads) {
      pthread_t t;
      void* n;
      if (pthread_create(&t, nullptr, ReaderThread, &args) != 0) _exit(2);
      pthread_join(t, &n);
      _exit(Status(reinterpret_cast<long>(n)));
    }
    pid_t tid = getpid();
    (void)!write(report[1], &tid, sizeof(tid));
    close(report[1]);
    if (mode == Mode::kSpins) {
      for (;;) asm volatile("pause");
    }
    _exit(Status(ReadPipe(fds[0])));
  }
  close(report[1]);
  if (read(report[0], &c.tid, sizeof(c.tid)) != sizeof(c.tid)) c.tid = -1;
  // End of file: the child has closed its end, which must not be dumped.
  char more;
  while (read(report[0], &more, 1) > 0) {
  }
  close(report[0]);
  close(fds[0]);
  return c;
}

std::string Slurp(const std::string& path) { return sys::ReadFile(path).value_or(""); }

// Waits until thread `tid` of `pid` is blocked in read(fd, ...).
bool WaitBlockedInRead(pid_t pid, pid_t tid, int fd) {
  const std::string path =
      "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/syscall";
  char want[32];
  snprintf(want, sizeof(want), "%d 0x%x ", SYS_read, fd);
  for (int i = 0; i < 2000; ++i) {
    if (Slurp(path).rfind(want, 0) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

int WaitExitStatus(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? -WTERMSIG(status) : -1000;
}

class SyscallResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "crlib-syscall-results-XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    image_ = dir_ + "/image";
  }
  void TearDown() override {
    if (child_.pid > 0) {
      kill(child_.pid, SIGKILL);
      waitpid(child_.pid, nullptr, 0);
    }
    if (child_.write_fd >= 0) close(child_.write_fd);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void Start(Mode mode) {
    child_ = StartChild(mode);
    ASSERT_GT(child_.pid, 0);
    ASSERT_GT(child_.tid, 0);
    if (mode != Mode::kSpins) {
      ASSERT_TRUE(WaitBlockedInRead(child_.pid, child_.tid, child_.read_fd));
    }
  }

  absl::Status Checkpoint(pid_t tid, bool leave_running) {
    Context ctx;
    CheckpointOptions options;
    options.leave_running = leave_running;
    options.skip_fds = {child_.read_fd, child_.write_fd};
    options.syscall_results[tid] = kResult;
    return CheckpointProcess(&ctx, child_.pid, image_, options);
  }

  // The original still runs, untraced, and its read gets real data.
  void ExpectOriginalReadsData() {
    EXPECT_NE(Slurp("/proc/" + std::to_string(child_.pid) + "/status").find("TracerPid:\t0\n"),
              std::string::npos)
        << "still traced after the dump";
    ASSERT_EQ(write(child_.write_fd, "12345678", kReadSize), static_cast<ssize_t>(kReadSize));
    EXPECT_EQ(WaitExitStatus(child_.pid), kSawData);
    child_.pid = -1;
  }

  void ExpectRestoredSeesResult() {
    Context ctx;
    absl::StatusOr<pid_t> restored = RestoreProcess(&ctx, image_);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ(WaitExitStatus(*restored), kSawResult);
  }

  std::string dir_, image_;
  Child child_;
};

TEST_F(SyscallResultsTest, MainThreadReadReturnsTheValue) {
  ASSERT_NO_FATAL_FAILURE(Start(Mode::kMainReads));
  absl::Status st = Checkpoint(child_.tid, /*leave_running=*/false);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(WaitExitStatus(child_.pid), -SIGKILL);
  child_.pid = -1;
  ASSERT_NO_FATAL_FAILURE(ExpectRestoredSeesResult());
}

TEST_F(SyscallResultsTest, OtherThreadReadReturnsTheValueOriginalUnchanged) {
  ASSERT_NO_FATAL_FAILURE(Start(Mode::kThreadReads));
  ASSERT_NE(child_.tid, child_.pid);
  absl::Status st = Checkpoint(child_.tid, /*leave_running=*/true);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_NO_FATAL_FAILURE(ExpectOriginalReadsData());
  // Restored: the reader's read returns the value, the main thread's
  // pthread_join (a futex wait) resumes and sees the reader end.
  ASSERT_NO_FATAL_FAILURE(ExpectRestoredSeesResult());
}

TEST_F(SyscallResultsTest, RefusesAThreadOutsideTheProcess) {
  ASSERT_NO_FATAL_FAILURE(Start(Mode::kMainReads));
  absl::Status st = Checkpoint(999999999, /*leave_running=*/false);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("999999999"), std::string::npos) << st;
  EXPECT_FALSE(std::filesystem::exists(image_));
  ASSERT_NO_FATAL_FAILURE(ExpectOriginalReadsData());
}

TEST_F(SyscallResultsTest, RefusesAThreadNotInASystemCall) {
  ASSERT_NO_FATAL_FAILURE(Start(Mode::kSpins));
  absl::Status st = Checkpoint(child_.tid, /*leave_running=*/false);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("not inside a system call"), std::string::npos) << st;
  EXPECT_FALSE(std::filesystem::exists(image_));
  EXPECT_NE(Slurp("/proc/" + std::to_string(child_.pid) + "/status").find("TracerPid:\t0\n"),
            std::string::npos)
      << "still traced after a refused dump";
}

}  // namespace
}  // namespace crlib
