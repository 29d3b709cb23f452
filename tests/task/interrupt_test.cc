// An interrupted crlib never harms its target, and images travel through
// streams: `crlib dump` killed with SIGKILL at random points of a large
// dump, or cancelled by SIGINT/SIGTERM/SIGHUP, leaves the process running
// as it was and no file behind; a cancelled restore leaves nothing
// running; images go through pipes and FIFOs (`--image -`), and a
// truncated stream fails cleanly. Plus the processes a dump must refuse or
// treat specially, each named: stopped, zombie, traced, in a PID namespace.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/ptrace.h>

#include <optional>
#include <random>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

// A process large enough that a dump spends most of its time on pages.
constexpr char kLargeMiB[] = "512";
constexpr int kKillPoints = 20;

class InterruptTest : public WorkloadTest {
 protected:
  // What the test directory holds besides logs: an image or a temporary.
  std::vector<std::string> StrayFiles() const {
    std::vector<std::string> stray;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      const std::string n = e.path().filename();
      if (!n.ends_with(".out") && !n.ends_with(".err") && !keep_.contains(n)) stray.push_back(n);
    }
    return stray;
  }

  // The workload runs, untraced; waits up to a second for the kernel to
  // finish detaching it from a tracer that was just killed.
  void ExpectRunsOn(const Workload& w) {
    WaitFor(
        [&] {
          ProcInfo info = Probe(w.pid);
          return info.tracer == 0 && (info.state == 'S' || info.state == 'R');
        },
        seconds(1));
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  }

  // How long a whole `crlib dump --leave-running` of `w` takes here, the
  // fastest of two runs.
  Clock::duration TimeWholeDump(const Workload& w) {
    Clock::duration fastest = Clock::duration::max();
    for (int i = 0; i < 2; ++i) {
      const auto t0 = Clock::now();
      CliResult r = Crlib({"dump", "--pid", std::to_string(w.pid), "--image", Path("whole.img"),
                           "--leave-running"});
      fastest = std::min(fastest, Clock::now() - t0);
      EXPECT_EQ(r.exit_code, 0) << Describe(w, r);
      std::filesystem::remove(Path("whole.img"));
    }
    return fastest;
  }

  // `crlib ARGS`, sent `sig` after `delay`.
  CliResult Interrupt(const std::vector<std::string>& args, Clock::duration delay, int sig) {
    Running r = StartCli(args);
    std::this_thread::sleep_for(delay);
    kill(r.pid, sig);
    return Finish(r, kCliTimeout);
  }

  std::set<std::string> keep_;  // files the test made on purpose
};

std::vector<std::string> DumpArgs(const Workload& w, const std::string& image, bool leave_running) {
  std::vector<std::string> args = {"dump", "--pid", std::to_string(w.pid), "--image", image};
  if (leave_running) args.push_back("--leave-running");
  return args;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : " ") + x;
  return s.empty() ? "none" : s;
}

// Reads `fd` to its end into a string, on a thread of its own.
class Drain {
 public:
  explicit Drain(int fd)
      : thread_([this, fd] {
          char buf[1 << 16];
          for (ssize_t n; (n = read(fd, buf, sizeof(buf))) != 0;) {
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) break;
            data_.append(buf, static_cast<size_t>(n));
          }
          close(fd);
        }) {}
  std::string Take() {
    thread_.join();
    return std::move(data_);
  }

 private:
  std::string data_;
  std::thread thread_;
};

// Writes `data` into `fd` and closes it, on a thread of its own (a reader
// that gives up makes it stop with EPIPE).
class Feed {
 public:
  Feed(int fd, std::string data)
      : data_(std::move(data)), thread_([this, fd] {
          signal(SIGPIPE, SIG_IGN);
          size_t done = 0;
          while (done < data_.size()) {
            ssize_t n = write(fd, data_.data() + done, data_.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            done += static_cast<size_t>(n);
          }
          close(fd);
        }) {}
  ~Feed() { thread_.join(); }

 private:
  std::string data_;
  std::thread thread_;
};

// ---- SIGKILL at random points: the target always runs on, intact.

TEST_F(InterruptTest, KilledDumpNeverHarmsItsTarget) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(
      Start(&w, "heap_checksum", {WorkloadsDir() + "/heap_checksum", kLargeMiB}));
  const Clock::duration whole = TimeWholeDump(w);
  ASSERT_FALSE(HasFailure());
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  int survivors = 0, kills = 0;
  std::string points;
  for (int attempt = 0; kills < kKillPoints && attempt < 2 * kKillPoints; ++attempt) {
    // Even points: --leave-running, anywhere in the dump (one that
    // finishes first simply made an image). Odd points: kill mode, in the
    // first half, so that the dump cannot have finished (and killed the
    // target, by design) before crlib is killed.
    const bool leave_running = attempt % 2 == 0;
    const auto span = leave_running ? whole : whole / 2;
    const auto delay = std::chrono::duration_cast<Clock::duration>(
        span * std::uniform_real_distribution<double>(0, 1)(rng));
    const int64_t ms = std::chrono::duration_cast<milliseconds>(delay).count();
    CliResult r = Interrupt(DumpArgs(w, Path("killed.img"), leave_running), delay, SIGKILL);
    if (r.exit_code == 0 && leave_running) {
      points += (points.empty() ? "" : " ") + std::to_string(ms) + "done";
      std::filesystem::remove(Path("killed.img"));
      continue;
    }
    ++kills;
    points += (points.empty() ? "" : " ") + std::to_string(ms) + (leave_running ? "L" : "K");
    // A --leave-running dump killed after its commit, while it resumed the
    // threads, leaves its image, complete (each run's length varies).
    if (leave_running && Exists(Path("killed.img"))) {
      CliResult inspect = Crlib({"inspect", Path("killed.img")});
      EXPECT_EQ(inspect.exit_code, 0) << "a killed dump left an incomplete image " << ms
                                      << " ms in" << Describe(w, inspect);
      std::filesystem::remove(Path("killed.img"));
      points += "c";
    }
    ASSERT_NE(r.exit_code, 0) << "the dump finished before its kill point (" << ms << " ms of "
                              << std::chrono::duration_cast<milliseconds>(whole).count()
                              << " ms)" << Describe(w, r);
    ASSERT_NO_FATAL_FAILURE(ExpectRunsOn(w)) << "after a kill " << ms << " ms into the dump";
    EXPECT_THAT(StrayFiles(), ::testing::IsEmpty()) << "after a kill " << ms << " ms in";
    ++survivors;
  }
  EXPECT_EQ(kills, kKillPoints) << points;
  fprintf(stderr, "killed crlib dump at %d random points (seed %u; ms, L=leave-running K=kill "
                  "mode, c=after the commit, done=finished first; whole dump %lld ms): %s; %d "
                  "survivors\n",
          kills, seed,
          static_cast<long long>(std::chrono::duration_cast<milliseconds>(whole).count()),
          points.c_str(), survivors);
  // Its memory is intact: the workload's own checksum.
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

// ---- SIGKILL before every ptrace request of a dump: no moment is unsafe,
// the remote calls included (each runs at a site that recovers by itself).

// Sets an environment variable for the commands the test starts, until
// destroyed.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST_F(InterruptTest, KilledBeforeEveryPtraceRequest) {
  const std::string shim = EnvOr("CRLIB_KILL_SHIM", "");
  ASSERT_FALSE(shim.empty()) << "CRLIB_KILL_SHIM is not set; tests/meson.build sets it";
  // An ASan-built crlib (make test-sanitize) refuses a preloaded library
  // ahead of its runtime unless told the order does not matter.
  const std::string asan = EnvOr("ASAN_OPTIONS", "");
  ScopedEnv asan_order("ASAN_OPTIONS",
                       (asan.empty() ? "" : asan + ":") + "verify_asan_link_order=0");
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "threads"));
  const std::vector<std::string> dump = DumpArgs(w, Path("every.img"), /*leave_running=*/true);
  long requests = 0;
  {
    ScopedEnv preload("LD_PRELOAD", shim);
    ScopedEnv count("CRLIB_TEST_PTRACE_COUNT", Path("requests.txt"));
    CliResult r = Crlib(dump);
    ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
    requests = atol(Slurp(Path("requests.txt")).c_str());
    std::filesystem::remove(Path("requests.txt"));
    std::filesystem::remove(Path("every.img"));
  }
  ASSERT_GT(requests, 20) << "the shim counted no ptrace requests";
  // Every thread's blocked signals, which a kill must not leave borrowed.
  auto masks = [&] {
    std::string all;
    for (pid_t tid : sys::ListThreads(w.pid).value_or(std::vector<pid_t>{})) {
      std::string status = Slurp("/proc/" + std::to_string(w.pid) + "/task/" +
                                 std::to_string(tid) + "/status");
      size_t at = status.find("SigBlk:");
      all += std::to_string(tid) + ":" + status.substr(at + 8, status.find('\n', at) - at - 8) + " ";
    }
    return all;
  };
  const std::string masks_before = masks();
  int survived = 0;
  for (long n = 1; n <= requests; ++n) {
    // A thread released by a kill may harm the process only when it next
    // runs: the kill before this one is named, with how the process ended.
    ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w))
        << "before the kill at request " << n << ", after the kill at request " << n - 1;
    ScopedEnv preload("LD_PRELOAD", shim);
    ScopedEnv kill_at("CRLIB_TEST_KILL_AT_PTRACE", std::to_string(n));
    CliResult r = Crlib(dump);
    ASSERT_EQ(r.exit_code, -1) << "request " << n << " of " << requests << Describe(w, r);
    ASSERT_NO_FATAL_FAILURE(ExpectRunsOn(w)) << "killed before ptrace request " << n;
    // A thread released inside a remote call puts its mask back when it
    // next runs, which may be a moment after the kernel detached it.
    WaitFor([&] { return masks() == masks_before; }, seconds(1));
    ASSERT_EQ(masks(), masks_before) << "killed before ptrace request " << n;
    // Killed after the commit (while it resumed the threads), the dump is
    // done: its image is whole. Before, nothing may be left.
    if (std::vector<std::string> stray = StrayFiles(); stray == std::vector<std::string>{"every.img"}) {
      CliResult check = Crlib({"inspect", Path("every.img")});
      ASSERT_EQ(check.exit_code, 0) << "a partial image after a kill before request " << n
                                    << ":\n" << check.err;
      std::filesystem::remove(Path("every.img"));
    } else {
      ASSERT_THAT(stray, ::testing::IsEmpty()) << "killed before ptrace request " << n;
    }
    ++survived;
  }
  fprintf(stderr, "killed crlib dump before each of its %ld ptrace requests: %d survivors\n",
          requests, survived);
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

// ---- SIGINT, SIGTERM, SIGHUP: a clean cancel, named.

TEST_F(InterruptTest, SignalsCancelADumpCleanly) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum", {WorkloadsDir() + "/heap_checksum", "256"}));
  const Clock::duration whole = TimeWholeDump(w);
  ASSERT_FALSE(HasFailure());
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    // Kill mode: had the signal been ignored, the dump would kill it.
    CliResult r = Interrupt(DumpArgs(w, Path("cancelled.img"), false), whole / 3, sig);
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr(std::string("interrupted by SIG") + sigabbrev_np(sig)))
        << Describe(w, r);
    EXPECT_THAT(r.err, HasSubstr("runs on")) << Describe(w, r);
    ASSERT_NO_FATAL_FAILURE(ExpectRunsOn(w));
    EXPECT_THAT(StrayFiles(), ::testing::IsEmpty());
  }
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

TEST_F(InterruptTest, SignalCancelsARestoreCleanly) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum", {WorkloadsDir() + "/heap_checksum", "256"}));
  const std::string image = Path("restore.img");
  keep_.insert("restore.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  // SIGINT as soon as the PID exists again: the process is being built.
  Running restore = StartCli({"restore", "--image", image});
  WaitFor([&] { return Probe(w.pid).exists; }, kRestoredTimeout);
  kill(restore.pid, SIGINT);
  CliResult r = Finish(restore, kCliTimeout);
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("interrupted by SIGINT")) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("nothing restored is left running")) << Describe(w, r);
  EXPECT_TRUE(WaitFor([&] { return !Probe(w.pid).exists; }, kReapTimeout))
      << "pid " << w.pid << " exists after a cancelled restore";
  EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  // The image is untouched and restores.
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// ---- Images as streams.

TEST_F(InterruptTest, ImagesGoThroughPipes) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  Running dump = StartCli({"dump", "--pid", std::to_string(w.pid), "--image", "-"}, -1, out[1]);
  close(out[1]);
  Drain drain(out[0]);
  CliResult r = Finish(dump, kCliTimeout);
  std::string bytes = drain.Take();
  w.dumped = Slurp(w.out);
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  ASSERT_GT(bytes.size(), 32u << 20);
  EXPECT_EQ(bytes.substr(0, 8), "CRLIBIMG");
  int status;
  ASSERT_TRUE(WaitExit(w.pid, &status, kReapTimeout));
  int in[2];
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  {
    Feed feed(in[1], bytes);
    ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, "-", {}, in[0]));
    close(in[0]);
  }
  EXPECT_THAT(StrayFiles(), ::testing::IsEmpty());
}

// A reader that goes away in the middle of the page data: the dump fails
// with an error that names the stream, and the process runs on intact
// (not killed: its image is not complete), in both modes. A slow reader
// gets the whole image.
TEST_F(InterruptTest, StreamReaderThatDiesOrLagsHarmsNothing) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  for (bool leave_running : {false, true}) {
    int out[2];
    ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
    std::vector<std::string> args = DumpArgs(w, "-", leave_running);
    Running dump = StartCli(args, -1, out[1]);
    close(out[1]);
    std::thread reader([fd = out[0]] {
      std::vector<char> buf(1 << 16);
      for (size_t got = 0; got < (8u << 20);) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<size_t>(n);
      }
      close(fd);  // gone, 8 MiB in
    });
    CliResult r = Finish(dump, kCliTimeout);
    reader.join();
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr("writing the image to")) << Describe(w, r);
    ASSERT_NO_FATAL_FAILURE(ExpectRunsOn(w)) << "after a reader died (leave_running "
                                             << leave_running << ")";
  }
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  Running dump = StartCli(DumpArgs(w, "-", true), -1, out[1]);
  close(out[1]);
  std::string bytes;
  std::thread reader([&, fd = out[0]] {
    std::vector<char> buf(1 << 16);
    for (ssize_t n; (n = read(fd, buf.data(), buf.size())) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      bytes.append(buf.data(), static_cast<size_t>(n));
      std::this_thread::sleep_for(std::chrono::microseconds(500));  // slower than the dump
    }
    close(fd);
  });
  CliResult r = Finish(dump, kCliTimeout);
  reader.join();
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  int in[2];
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  CliResult inspect;
  {
    Feed feed(in[1], bytes);
    inspect = Finish(StartCli({"inspect", "-"}, in[0]), kCliTimeout);
    close(in[0]);
  }
  EXPECT_EQ(inspect.exit_code, 0) << "the slow reader's image" << Describe(w, inspect);
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

TEST_F(InterruptTest, ImagesGoThroughFifos) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  const std::string fifo = Path("image.fifo");
  keep_.insert("image.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
  Running dump = StartCli({"dump", "--pid", std::to_string(w.pid), "--image", fifo});
  // While the dump waits for a reader, the process is not frozen.
  std::this_thread::sleep_for(milliseconds(200));
  ASSERT_NO_FATAL_FAILURE(ExpectRunsOn(w)) << "frozen while the dump waits for the FIFO's reader";
  int reader = open(fifo.c_str(), O_RDONLY | O_CLOEXEC);  // waits for the dump to open it
  ASSERT_GE(reader, 0) << strerror(errno);
  Drain drain(reader);
  CliResult r = Finish(dump, kCliTimeout);
  std::string bytes = drain.Take();
  w.dumped = Slurp(w.out);
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  int status;
  ASSERT_TRUE(WaitExit(w.pid, &status, kReapTimeout));
  // The restore opens the FIFO and waits for a writer: us.
  std::thread writer([&] {
    int fd = -1;
    WaitFor(
        [&] {
          fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // ENXIO: no reader yet
          return fd >= 0;
        },
        kRestoredTimeout);
    if (fd < 0) return;
    fcntl(fd, F_SETFL, 0);
    Feed feed(fd, bytes);
  });
  RestoreAndCheck(&w, fifo);
  writer.join();
}

TEST_F(InterruptTest, TruncatedStreamFailsAndLeavesNothing) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  const std::string image = Path("whole.img");
  keep_.insert("whole.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  const std::string bytes = Slurp(image);
  // Cut in the page data, which a stream reaches only after the point of
  // no return: the half-built process must be killed.
  // Once as "-", once as /dev/stdin: a path that reopens the same pipe.
  for (size_t keep : {bytes.size() / 2, bytes.size() - 8}) {
    int in[2];
    ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
    CliResult r;
    {
      Feed feed(in[1], bytes.substr(0, keep));
      const std::string name = keep == bytes.size() / 2 ? "-" : "/dev/stdin";
      r = Finish(StartCli({"restore", "--image", name}, in[0]), kCliTimeout);
      close(in[0]);
    }
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr("truncated")) << Describe(w, r);
    EXPECT_TRUE(WaitFor([&] { return !Probe(w.pid).exists; }, kReapTimeout))
        << "pid " << w.pid << " exists after a failed restore";
    EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  }
  // The whole image through /dev/stdin restores.
  int in[2];
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  {
    Feed feed(in[1], bytes);
    ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, "/dev/stdin", {}, in[0]));
    close(in[0]);
  }
}

// ---- Processes a dump treats specially.

TEST_F(InterruptTest, StoppedProcessComesBackStopped) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  ASSERT_EQ(kill(w.pid, SIGSTOP), 0);
  ASSERT_TRUE(WaitFor([&] { return Probe(w.pid).state == 'T'; }, seconds(5)));
  const std::string image = Path("stopped.img");
  CliResult r = Crlib(DumpArgs(w, image, /*leave_running=*/true));
  ASSERT_EQ(r.exit_code, 0) << Describe(w, r);
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(Probe(w.pid).state, 'T') << "--leave-running woke a stopped process";
  EXPECT_EQ(Probe(w.pid).tracer, 0);
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  // Restored: stopped again, untraced; SIGCONT, then the usual check.
  ASSERT_EQ(truncate(w.out.c_str(), static_cast<off_t>(w.dumped.size())), 0);
  Running restore = StartCli({"restore", "--image", image});
  restored_.emplace_back(w.pid, w.exe);
  ASSERT_TRUE(WaitFor(
      [&] {
        ProcInfo info = Probe(w.pid);
        return info.exists && info.exe == w.exe && info.tracer == 0 && info.state == 'T';
      },
      kRestoredTimeout))
      << "pid " << w.pid << " not restored stopped (state " << Probe(w.pid).state << ")";
  ASSERT_EQ(kill(w.pid, SIGCONT), 0);
  ASSERT_EQ(kill(w.pid, SIGUSR1), 0);
  r = Finish(restore, kExitTimeout);
  EXPECT_EQ(r.exit_code, 0) << Describe(w, r);
  EXPECT_THAT(Slurp(w.out).substr(w.dumped.size()), StartsWith("OK")) << Describe(w, r);
}

TEST_F(InterruptTest, DumpNamesAZombie) {
  pid_t zombie = fork();
  ASSERT_GE(zombie, 0);
  if (zombie == 0) _exit(0);
  spawned_.push_back(zombie);
  ASSERT_TRUE(WaitFor([&] { return Probe(zombie).state == 'Z'; }, seconds(5)));
  CliResult r = Crlib({"dump", "--pid", std::to_string(zombie), "--image", Path("z.img")});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("zombie")) << r.err;
  EXPECT_THAT(r.err, ContainsRegex(PidRegex(getpid()))) << "names the parent: " << r.err;
  EXPECT_THAT(StrayFiles(), ::testing::IsEmpty());
}

TEST_F(InterruptTest, DumpNamesAnotherTracer) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  ASSERT_EQ(ptrace(PTRACE_SEIZE, w.pid, 0, 0), 0) << strerror(errno);
  CliResult r = Crlib(DumpArgs(w, Path("traced.img"), false));
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, ContainsRegex("traced by pid " + std::to_string(getpid()))) << r.err;
  EXPECT_THAT(StrayFiles(), ::testing::IsEmpty());
  ASSERT_EQ(ptrace(PTRACE_DETACH, w.pid, 0, 0) == 0 || errno == ESRCH, true);
  // A seized, running tracee detaches only from a stop.
  if (Probe(w.pid).tracer != 0) {
    ASSERT_EQ(ptrace(PTRACE_INTERRUPT, w.pid, 0, 0), 0) << strerror(errno);
    int status;
    ASSERT_EQ(waitpid(w.pid, &status, __WALL), w.pid);
    ASSERT_EQ(ptrace(PTRACE_DETACH, w.pid, 0, 0), 0) << strerror(errno);
  }
  ASSERT_NO_FATAL_FAILURE(ExpectRunsOn(w));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

TEST_F(InterruptTest, DumpRefusesTheInitOfAPidNamespace) {
  // unshare(1) forks `sleep` as pid 1 of a new PID namespace.
  Workload u;
  u.name = "unshare";
  u.out = Path("unshare.out");
  u.err = Path("unshare.err");
  u.pid = Spawn({"/usr/bin/unshare", "--pid", "--fork", "--kill-child", "/bin/sleep", "600"}, u.out,
                u.err, /*new_session=*/true);
  ASSERT_GT(u.pid, 0);
  pid_t init = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string kids = Slurp("/proc/" + std::to_string(u.pid) + "/task/" +
                                 std::to_string(u.pid) + "/children");
        init = atoi(kids.c_str());
        return init > 0 && Probe(init).exe == "/usr/bin/sleep";
      },
      kReadyTimeout))
      << Output(u);
  for (bool leave_running : {false, true}) {
    std::vector<std::string> args = {"dump", "--pid", std::to_string(init), "--image",
                                     Path("ns.img")};
    if (leave_running) args.push_back("--leave-running");
    CliResult r = Crlib(args, seconds(30));
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr("init of a PID namespace")) << r.err;
    EXPECT_TRUE(Probe(init).exists) << "the namespace's init is gone";
  }
  EXPECT_THAT(StrayFiles(), ::testing::IsEmpty());
}

TEST_F(InterruptTest, CompressionLevelsOutOfRangeAreRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  for (const char* level : {"100", "-3", "0", "x"}) {
    std::vector<std::string> args = DumpArgs(w, Path("c.img"), false);
    args.insert(args.end(), {"--compress", level});
    CliResult r = Crlib(args);
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr("1 to 19")) << r.err;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectRunsOn(w));
  EXPECT_THAT(StrayFiles(), ::testing::IsEmpty()) << Join(StrayFiles());
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

}  // namespace
}  // namespace crlib
