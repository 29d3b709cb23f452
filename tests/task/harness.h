// The harness of the tests that run real processes through the crlib
// command line: workloads (tests/workloads/) started with only fds 0-2,
// `crlib` run in the background with bounded waits, and checks that a
// process is running and untraced, or that nothing was left behind.
//
// WorkloadTest makes the test process a child subreaper, so whatever a
// restore leaves behind is reparented here: "nothing left running" is
// checked by listing our children, and TearDown kills and reaps them all.
#ifndef CRLIB_TESTS_TASK_HARNESS_H_
#define CRLIB_TESTS_TASK_HARNESS_H_

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sys/proc.h"

namespace crlib::test {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Every wait is bounded by one of these.
constexpr auto kReadyTimeout = seconds(20);     // workload start to READY
constexpr auto kCliTimeout = seconds(120);      // a dump, or a restore that must fail
constexpr auto kRestoredTimeout = seconds(60);  // restore start to the process running
constexpr auto kExitTimeout = seconds(60);      // SIGUSR1 to exit
constexpr auto kReapTimeout = seconds(10);      // a killed process to be reaped

inline std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return v && *v ? v : fallback;
}

inline std::string CrlibBin() { return EnvOr("CRLIB_BIN", "crlib"); }
inline std::string WorkloadsDir() { return EnvOr("CRLIB_WORKLOADS_DIR", "tests/workloads"); }

// A file's contents, "" if it cannot be read.
inline std::string Slurp(const std::string& path) { return sys::ReadFile(path).value_or(""); }

inline bool Exists(const std::string& path) { return std::filesystem::exists(path); }

inline std::string ReadLink(const std::string& path) { return sys::ReadLink(path).value_or(""); }

// Polls `done` every 10 ms until it holds or `timeout` passes.
inline bool WaitFor(const std::function<bool()>& done, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

// waitpid() with a deadline. False if `pid` has not ended by then.
inline bool WaitExit(pid_t pid, int* status, Clock::duration timeout) {
  return WaitFor(
      [&] {
        pid_t r = waitpid(pid, status, WNOHANG);
        return r == pid || (r < 0 && errno == ECHILD);
      },
      timeout);
}

inline std::string StatusText(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// What /proc says about a PID.
struct ProcInfo {
  bool exists = false;
  char state = '?';
  pid_t ppid = 0;
  pid_t tracer = 0;
  std::string exe;
};

inline ProcInfo Probe(pid_t pid) {
  ProcInfo info;
  const std::string dir = "/proc/" + std::to_string(pid);
  std::string stat = Slurp(dir + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 4 > stat.size()) return info;
  info.exists = true;
  info.state = stat[paren + 2];
  info.ppid = atoi(stat.c_str() + paren + 4);
  std::string status = Slurp(dir + "/status");
  size_t t = status.find("TracerPid:");
  if (t != std::string::npos) info.tracer = atoi(status.c_str() + t + 10);
  info.exe = ReadLink(dir + "/exe");
  return info;
}

// Processes whose parent is this one (live or zombie).
inline std::set<pid_t> OurChildren() {
  absl::StatusOr<std::vector<pid_t>> children = sys::ListChildren(getpid());
  return children.ok() ? std::set<pid_t>(children->begin(), children->end()) : std::set<pid_t>();
}

inline std::string PidText(const std::set<pid_t>& pids) {
  std::string s;
  for (pid_t p : pids) s += (s.empty() ? "" : " ") + std::to_string(p) + " (" + Probe(p).exe + ")";
  return s.empty() ? "none" : s;
}

// Matches `pid` as a whole number.
inline std::string PidRegex(pid_t pid) { return "(^|[^0-9])" + std::to_string(pid) + "([^0-9]|$)"; }

// The thread IDs the threads workload prints before READY ("TIDS a b c").
inline std::vector<pid_t> WorkloadTids(const std::string& out) {
  std::vector<pid_t> tids;
  size_t at = out.find("TIDS ");
  if (at == std::string::npos) return tids;
  std::istringstream line(out.substr(at + 5, out.find('\n', at) - at - 5));
  for (pid_t tid; line >> tid;) tids.push_back(tid);
  return tids;
}

struct CliResult {
  std::string command;
  int exit_code = -1;  // -1: killed by a signal or timed out (see `err`)
  std::string out, err;
};

// A command started in the background.
struct Running {
  pid_t pid = -1;
  std::string command, out_path, err_path;
};

// A workload process, our child.
struct Workload {
  std::string name;
  pid_t pid = -1;
  std::string out, err;  // its stdout and stderr files
  std::string exe;       // /proc/PID/exe once it is READY
  std::string dumped;    // what its stdout held when it was checkpointed
};

// How WorkloadTest::Start runs a workload, beyond its argv.
struct StartOptions {
  std::vector<int> extra_fds;  // given to it as fds 3, 4, ... (see Spawn)
  bool append_out = false;     // its stdout file open with O_APPEND
};

class WorkloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Orphans of a restore (a restored process whose restorer died, a
    // half-built one) come to us, not to init: we can see and reap them.
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0) << strerror(errno);
    std::string templ = ::testing::TempDir();  // ends with '/'
    templ += "crlib-task-XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr) << strerror(errno);
    dir_ = templ;
  }

  void TearDown() override {
    // Restored processes may have been reparented anywhere if the
    // subreaper did not hold; kill them only if the PID is still theirs.
    for (const auto& [pid, exe] : restored_) {
      ProcInfo info = Probe(pid);
      if (info.exists && info.exe == exe) kill(pid, SIGKILL);
    }
    std::set<pid_t> left = OurChildren();
    for (pid_t pid : spawned_) left.insert(pid);
    for (pid_t pid : left) kill(pid, SIGKILL);
    for (pid_t pid : left) {
      int status;
      WaitExit(pid, &status, kReapTimeout);
    }
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (HasFailure()) PrintLogs();
    if (getenv("CRLIB_KEEP_TEST_DIR")) {
      fprintf(stderr, "test files kept in %s\n", dir_.c_str());
    } else {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  // Every log of this test: workload stdout/stderr, crlib stdout/stderr.
  void PrintLogs() {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      std::string n = e.path().filename();
      if (n.ends_with(".out") || n.ends_with(".err")) names.push_back(n);
    }
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
      std::string text = Slurp(dir_ + "/" + n);
      if (text.size() > 4096) text = text.substr(0, 4096) + "\n[... truncated]";
      fprintf(stderr, "---- %s (%zu bytes)\n%s%s", n.c_str(), text.size(), text.c_str(),
              text.empty() || text.back() == '\n' ? "" : "\n");
    }
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Starts argv[0] with stdin /dev/null and stdout/stderr to files, no other
  // descriptor, an empty signal mask, in a new session when asked.
  // `stdin_fd` and `stdout_fd`, when given, are used instead of /dev/null
  // and the `out` file (a pipe between two commands, say); `extra_fds`
  // are given to it as fds 3, 4, ... (a pipe to a supervisor). The caller
  // keeps and closes them all.
  pid_t Spawn(const std::vector<std::string>& argv, const std::string& out,
              const std::string& err, bool new_session, int stdin_fd = -1, int stdout_fd = -1,
              const std::vector<int>& extra_fds = {}) {
    int in_fd = stdin_fd >= 0 ? fcntl(stdin_fd, F_DUPFD_CLOEXEC, 3)
                              : open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out_fd = stdout_fd >= 0 ? fcntl(stdout_fd, F_DUPFD_CLOEXEC, 3)
                                : open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    // Copies above 3 + n, so that placing one never overwrites another.
    const int n_extra = static_cast<int>(extra_fds.size());
    std::vector<int> extra;
    for (int fd : extra_fds) extra.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 3 + n_extra));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    if (in_fd >= 0 && out_fd >= 0 && err_fd >= 0 &&
        std::find(extra.begin(), extra.end(), -1) == extra.end()) {
      pid = fork();
    }
    if (pid == 0) {
      if (new_session) setsid();
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      signal(SIGPIPE, SIG_DFL);
      if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) _exit(126);
      for (int i = 0; i < n_extra; ++i) {
        if (dup2(extra[i], 3 + i) < 0) _exit(126);
      }
      syscall(SYS_close_range, 3 + n_extra, ~0u, 0);
      execv(args[0], args.data());
      _exit(127);
    }
    int saved = errno;
    for (int fd : {in_fd, out_fd, err_fd}) {
      if (fd >= 0) close(fd);
    }
    for (int fd : extra) {
      if (fd >= 0) close(fd);
    }
    if (pid < 0) {
      ADD_FAILURE() << "cannot start " << argv[0] << ": " << strerror(saved);
    } else {
      spawned_.push_back(pid);
    }
    return pid;
  }

  // `crlib ARGS...` in the background; its output goes to cli-N-VERB.out/.err
  // (stdin and stdout to the given descriptors instead, and more fds from
  // 3 on, as in Spawn).
  Running StartCli(const std::vector<std::string>& args, int stdin_fd = -1, int stdout_fd = -1,
                   const std::vector<int>& extra_fds = {}) {
    Running r;
    std::vector<std::string> argv = {CrlibBin()};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a : argv) r.command += (r.command.empty() ? "" : " ") + a;
    std::string base = Path("cli-" + std::to_string(++cli_runs_) + "-" + args.at(0));
    r.out_path = base + ".out";
    r.err_path = base + ".err";
    r.pid = Spawn(argv, r.out_path, r.err_path, /*new_session=*/false, stdin_fd, stdout_fd,
                  extra_fds);
    return r;
  }

  // Waits for a background command; kills it if it outlives `timeout`.
  CliResult Finish(const Running& r, Clock::duration timeout) {
    CliResult result;
    result.command = r.command;
    int status = 0;
    bool ended = r.pid > 0 && WaitExit(r.pid, &status, timeout);
    if (r.pid > 0 && !ended) {
      kill(r.pid, SIGKILL);
      WaitExit(r.pid, &status, kReapTimeout);
    }
    result.out = Slurp(r.out_path);
    result.err = Slurp(r.err_path);
    if (!ended) {
      result.err += "[test: timed out after " +
                    std::to_string(std::chrono::duration_cast<seconds>(timeout).count()) +
                    " s and was killed]\n";
    } else if (WIFEXITED(status)) {
      result.exit_code = WEXITSTATUS(status);
    } else {
      result.err += "[test: " + StatusText(status) + "]\n";
    }
    return result;
  }

  CliResult Crlib(const std::vector<std::string>& args, Clock::duration timeout = kCliTimeout) {
    return Finish(StartCli(args), timeout);
  }

  // What to print when an expectation about `w` or `r` fails.
  static std::string Describe(const Workload& w, const CliResult& r) {
    return "\n$ " + r.command + "\nexit code: " + std::to_string(r.exit_code) + "\ncrlib stdout:\n" +
           r.out + "\ncrlib stderr:\n" + r.err + "\n" + w.name + " (pid " + std::to_string(w.pid) +
           ") stdout:\n" + Slurp(w.out) + "\n" + w.name + " stderr:\n" + Slurp(w.err);
  }

  static std::string Output(const Workload& w) {
    return "\n" + w.name + " stdout:\n" + Slurp(w.out) + "\n" + w.name + " stderr:\n" + Slurp(w.err);
  }

  // Starts a workload and waits for its READY line.
  void Start(Workload* w, const std::string& name, std::vector<std::string> argv = {},
             const StartOptions& options = {}) {
    w->name = name;
    if (argv.empty()) argv = {WorkloadsDir() + "/" + name};
    w->out = Path(name + ".out");
    w->err = Path(name + ".err");
    int out_fd = -1;
    if (options.append_out) {
      out_fd = open(w->out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
      ASSERT_GE(out_fd, 0) << w->out << ": " << strerror(errno);
    }
    w->pid = Spawn(argv, w->out, w->err, /*new_session=*/true, -1, out_fd, options.extra_fds);
    if (out_fd >= 0) close(out_fd);
    ASSERT_GT(w->pid, 0);
    int status = 0;
    bool exited = false;
    std::string ready;
    bool ok = WaitFor(
        [&] {
          std::string out = Slurp(w->out);
          size_t at = out.find("READY ");
          size_t eol = at == std::string::npos ? at : out.find('\n', at);
          if (eol != std::string::npos) {
            ready = out.substr(at, eol - at);
            return true;
          }
          exited = waitpid(w->pid, &status, WNOHANG) == w->pid;
          return exited;
        },
        kReadyTimeout);
    ASSERT_FALSE(exited) << name << " ended before READY: " << StatusText(status) << Output(*w);
    ASSERT_TRUE(ok) << name << " printed no READY in " << kReadyTimeout.count() << " s" << Output(*w);
    ASSERT_EQ(ready, "READY " + std::to_string(w->pid)) << Output(*w);
    w->exe = ReadLink("/proc/" + std::to_string(w->pid) + "/exe");
    ASSERT_FALSE(w->exe.empty());
  }

  // The workload is running, not stopped and not traced by anyone.
  void ExpectRunningUntouched(const Workload& w) {
    int status;
    pid_t r = waitpid(w.pid, &status, WNOHANG);
    ASSERT_EQ(r, 0) << w.name << " is gone: " << StatusText(status) << Output(w);
    ProcInfo info = Probe(w.pid);
    ASSERT_TRUE(info.exists);
    EXPECT_EQ(info.tracer, 0) << w.name << " is still traced";
    EXPECT_TRUE(info.state == 'S' || info.state == 'R') << w.name << " is in state " << info.state;
  }

  // Sends SIGUSR1 to our own (not restored) child and expects OK, exit 0.
  void SignalAndExpectOk(Workload* w) {
    size_t before = Slurp(w->out).size();
    ASSERT_EQ(kill(w->pid, SIGUSR1), 0) << strerror(errno);
    int status = 0;
    ASSERT_TRUE(WaitExit(w->pid, &status, kExitTimeout)) << w->name << " did not exit" << Output(*w);
    std::string added = Slurp(w->out).substr(before);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << StatusText(status) << Output(*w);
    EXPECT_THAT(added, StartsWith("OK")) << Output(*w);
  }

  // `crlib dump --stats` of `w` with `extra` arguments, checked by the
  // caller; w->dumped holds the workload's output up to then.
  CliResult DumpWithStats(Workload* w, const std::string& image,
                          const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"dump", "--pid", std::to_string(w->pid), "--image", image,
                                     "--stats"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = Crlib(args);
    w->dumped = Slurp(w->out);
    return r;
  }

  // `crlib dump` of a workload; by default it must kill it, and we reap it
  // so that its PID is free for the restore.
  void Dump(Workload* w, const std::string& image, bool leave_running = false) {
    std::vector<std::string> args = {"dump", "--pid", std::to_string(w->pid), "--image", image};
    if (leave_running) args.push_back("--leave-running");
    CliResult r = Crlib(args);
    w->dumped = Slurp(w->out);
    ASSERT_EQ(r.exit_code, 0) << Describe(*w, r);
    struct stat st;
    ASSERT_EQ(stat(image.c_str(), &st), 0) << "no image at " << image << Describe(*w, r);
    EXPECT_GT(st.st_size, 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << "an image holds the whole memory: owner only";
    if (leave_running) {
      ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(*w));
      return;
    }
    int status = 0;
    ASSERT_TRUE(WaitExit(w->pid, &status, kReapTimeout))
        << "pid " << w->pid << " still runs after a dump without --leave-running" << Describe(*w, r);
    EXPECT_TRUE(WIFSIGNALED(status)) << "the dumped process was not killed: " << StatusText(status)
                                     << Describe(*w, r);
    EXPECT_FALSE(Probe(w->pid).exists);
  }

  // `crlib restore` (no --detach) of a workload whose PID is free: waits
  // until the process runs again, signals it, and expects the restore to
  // exit 0 with the workload's OK appended to what its stdout held at the
  // dump (the file is cut back to that first, so a second restore of the
  // same image can be told apart). `extra` are more arguments to restore;
  // with `image` "-", the image comes from `stdin_fd`.
  void RestoreAndCheck(Workload* w, const std::string& image,
                       const std::vector<std::string>& extra = {}, int stdin_fd = -1) {
    ASSERT_FALSE(Probe(w->pid).exists) << "pid " << w->pid << " is not free";
    ASSERT_EQ(truncate(w->out.c_str(), static_cast<off_t>(w->dumped.size())), 0) << strerror(errno);
    std::vector<std::string> args = {"restore", "--image", image};
    args.insert(args.end(), extra.begin(), extra.end());
    Running restore = StartCli(args, stdin_fd);
    ASSERT_GT(restore.pid, 0);
    restored_.emplace_back(w->pid, w->exe);
    // Restored means: the PID runs the workload's executable again and
    // crlib no longer traces it. Checking the executable and the tracer,
    // not only that /proc/PID exists, keeps SIGUSR1 from reaching the
    // half-built process while it still has crlib's signal handlers.
    bool restore_ended = false;
    int status = 0;
    bool up = WaitFor(
        [&] {
          ProcInfo info = Probe(w->pid);
          if (info.exists && info.exe == w->exe && info.tracer == 0 && info.state != 'Z' &&
              info.state != 'X') {
            return true;
          }
          restore_ended = waitpid(restore.pid, &status, WNOHANG) == restore.pid;
          return restore_ended;
        },
        kRestoredTimeout);
    if (restore_ended) {
      // Finish() reads the logs; the command is reaped already.
      CliResult r{restore.command, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                  Slurp(restore.out_path), Slurp(restore.err_path)};
      FAIL() << "restore ended (" << StatusText(status) << ") before pid " << w->pid
             << " was seen running" << Describe(*w, r);
    }
    if (!up) {
      ProcInfo info = Probe(w->pid);
      CliResult r = Finish(restore, seconds(0));
      FAIL() << "pid " << w->pid << " not restored after " << kRestoredTimeout.count()
             << " s (exists " << info.exists << ", state " << info.state << ", exe " << info.exe
             << ", tracer " << info.tracer << ")" << Describe(*w, r);
    }
    ASSERT_EQ(kill(w->pid, SIGUSR1), 0) << strerror(errno);
    CliResult r = Finish(restore, kExitTimeout);
    EXPECT_EQ(r.exit_code, 0) << "the restored process did not exit 0" << Describe(*w, r);
    std::string out = Slurp(w->out);
    ASSERT_THAT(out, StartsWith(w->dumped)) << "output before the dump changed" << Describe(*w, r);
    std::string added = out.substr(w->dumped.size());
    EXPECT_THAT(added, StartsWith("OK")) << Describe(*w, r);
    EXPECT_THAT(added, Not(HasSubstr("FAIL"))) << Describe(*w, r);
    EXPECT_THAT(added, Not(HasSubstr("READY"))) << "the workload started over" << Describe(*w, r);
  }

  // Starts the threads workload, reads the TIDs of its three other threads
  // and dumps it (killing it).
  void DumpThreads(Workload* w, std::vector<pid_t>* tids, const std::string& image) {
    ASSERT_NO_FATAL_FAILURE(Start(w, "threads"));
    *tids = WorkloadTids(Slurp(w->out));
    ASSERT_EQ(tids->size(), 3u) << Output(*w);
    ASSERT_NO_FATAL_FAILURE(Dump(w, image));
  }

  // Dump (killing it), reap, restore, signal, OK.
  void RoundTrip(Workload* w) {
    const std::string image = Path(w->name + ".img");
    ASSERT_NO_FATAL_FAILURE(Dump(w, image));
    ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(w, image));
  }

  // dump --leave-running: the process runs on, answers OK, exits; then the
  // image restores too.
  void LeaveRunningThenRestore(Workload* w) {
    const std::string image = Path(w->name + ".img");
    ASSERT_NO_FATAL_FAILURE(Dump(w, image, /*leave_running=*/true));
    std::this_thread::sleep_for(milliseconds(300));
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(*w));
    ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(w));
    ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(w, image));
  }

  // A dump of `w` (with `extra` arguments) that must be refused: one line
  // holding `reason`, no file left under the image's name or beside it,
  // and the process runs on untouched and still checks itself OK.
  void ExpectDumpRefused(Workload* w, const std::string& reason,
                         const std::vector<std::string>& extra = {}) {
    const std::string image = Path("refused.img");
    std::vector<std::string> args = {"dump", "--pid", std::to_string(w->pid), "--image", image};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = Crlib(args);
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr(reason)) << Describe(*w, r);
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      EXPECT_THAT(e.path().filename().string(), Not(StartsWith("refused.img")))
          << "a refused dump left a file";
    }
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(*w));
    ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(w));
  }

  static void ExpectOneLineError(const CliResult& r) {
    EXPECT_GT(r.exit_code, 0) << r.command << "\n" << r.err;
    EXPECT_THAT(r.err, StartsWith("crlib: error: ")) << r.command;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.command << "\n" << r.err;
    EXPECT_TRUE(!r.err.empty() && r.err.back() == '\n') << r.err;
  }

  std::string dir_;
  std::vector<pid_t> spawned_;                               // our direct children
  std::vector<std::pair<pid_t, std::string>> restored_;     // PID, executable
  int cli_runs_ = 0;
};

// Workloads that set their state up in a directory of the test's own
// (files_): they take it as argv[1].
class FilesWorkloadTest : public WorkloadTest {
 protected:
  void SetUp() override {
    WorkloadTest::SetUp();
    files_ = Path("files");
    ASSERT_EQ(mkdir(files_.c_str(), 0755), 0) << strerror(errno);
  }

  void StartIn(Workload* w, const std::string& name, const std::vector<std::string>& more = {}) {
    std::vector<std::string> argv = {WorkloadsDir() + "/" + name, files_};
    argv.insert(argv.end(), more.begin(), more.end());
    Start(w, name, argv);
  }

  std::string files_;
};

}  // namespace crlib::test

#endif  // CRLIB_TESTS_TASK_HARNESS_H_
