// Fault injection (issue 8): every place in `crlib dump` and in `crlib
// restore` that makes a system call has it fail in turn (EIO), by
// tests/tools/fault_injector. Each run must end with one line `crlib:
// error: ...`, leave nothing running, leave the dumped process running
// untouched and no file in the image directory; afterwards the process
// still checks itself OK and a normal restore still works. The totals are
// printed ("fault injection, dump: ...") so that they can be quoted.
//
// Calls never failed (the injector's comment has the details): those
// before main() (the dynamic loader's); memory management (mmap, munmap,
// mremap, brk, mprotect, madvise) and futex, whose failure is a C++ or
// glibc abort (std::bad_alloc, __libc_fatal), not an error path of crlib;
// thread creation (clone/clone3 with CLONE_THREAD: std::thread throws);
// calls that do not return (exit, exit_group, rt_sigreturn, execve) or
// cannot fail (getpid, gettid, getppid, get[e]uid, get[e]gid, getpgrp,
// umask, sched_yield). Only crlib's main thread is followed: the dump's
// page-writer thread is not.
//
// Decisions:
// - A run may end well when crlib tolerates the failed call (a close, a
//   /proc read with a fallback, ...). Then its result must be complete:
//   the image exists, or the restored process runs. Which calls those were
//   is printed with the totals.
// - A dump that fails after its image is committed (while resuming the
//   process with --leave-running) keeps the image, complete, and says so.
// - `restore --detach` runs, so a restore ends when the process runs; a
//   failure of the final write of its PID leaves it running and exits 0.
// - Not every call: the first and the last call of every site (the
//   injector's "site": the call and the innermost return addresses in
//   crlib's code), so each place that makes a system call has it fail
//   once before its loop got anywhere and once after it got all the way.
//   The other calls of a site repeat one of those error paths with other
//   data (another thread, page run or /proc line). Sites follow crlib's
//   code, calls its workload: 152 sites of 716 dump calls, 138 of 824
//   restore calls, some 600 runs instead of 1600.
// - Dumps: each of those with --leave-running; in the default mode (kill
//   once the image is complete) each site's first call and the last 40
//   calls (the kill, and the reaping of each thread).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

// The call a "failed N NAME" report names.
std::string FailedCall(const std::string& report) {
  std::istringstream in(report);
  std::string word, n, name;
  in >> word >> n >> name;
  return name;
}

std::string InjectorBin() { return EnvOr("CRLIB_FAULT_INJECTOR", "fault_injector"); }

// What one pass over the calls of a command came to.
struct Tally {
  long counted = 0;    // calls of a run with no failure
  std::vector<long> sites;  // sites[n - 1]: the site of call n
  long site_count = 0;
  long failed = 0;     // runs whose call N was failed
  long clean = 0;      // ... that ended with a one-line error, nothing left
  long tolerated = 0;  // ... that succeeded all the same
  long not_reached = 0;  // runs that made fewer than N calls this time
  long image_kept = 0;   // clean errors after the image was committed
  std::map<std::string, long> tolerated_calls;

  // Counts one run from the injector's report and crlib's exit code;
  // false if the run made fewer calls than the one to fail.
  bool Add(const std::string& report, int exit_code) {
    if (report.rfind("failed ", 0) != 0) {
      ++not_reached;
      return false;
    }
    ++failed;
    if (exit_code == 0) {
      ++tolerated;
      ++tolerated_calls[FailedCall(report)];
    }
    return true;
  }

  std::string Text(const char* what) const {
    std::string s = std::string(what) + ": " + std::to_string(counted) + " calls counted at " +
                    std::to_string(site_count) + " sites, " +
                    std::to_string(failed) + " failed, " + std::to_string(clean) +
                    " clean errors, " + std::to_string(tolerated) + " tolerated";
    for (const auto& [name, n] : tolerated_calls) s += " " + name + "x" + std::to_string(n);
    return s + ", " + std::to_string(not_reached) + " not reached (" + std::to_string(image_kept) +
           " errors after the image was committed kept it)";
  }
};

class FaultTest : public WorkloadTest {
 protected:
  // `fault_injector MODE... -- crlib ARGS...`; `*report` gets its report.
  CliResult Inject(const std::vector<std::string>& mode, const std::vector<std::string>& args,
                   std::string* report) {
    const std::string report_path = Path("report-" + std::to_string(++runs_));
    std::vector<std::string> argv = {InjectorBin(), "--report", report_path};
    argv.insert(argv.end(), mode.begin(), mode.end());
    argv.push_back("--");
    argv.push_back(CrlibBin());
    argv.insert(argv.end(), args.begin(), args.end());
    Running r;
    for (const std::string& a : argv) r.command += (r.command.empty() ? "" : " ") + a;
    const std::string base = Path("run-" + std::to_string(runs_));
    r.out_path = base + ".log-out";  // not *.out: PrintLogs would print thousands
    r.err_path = base + ".log-err";
    r.pid = Spawn(argv, r.out_path, r.err_path, /*new_session=*/false);
    CliResult result = Finish(r, seconds(30));  // a run takes ~0.1 s
    *report = Slurp(report_path);
    for (const std::string& p : {report_path, r.out_path, r.err_path}) unlink(p.c_str());
    return result;
  }

  // Counts the calls of `crlib ARGS...` run once without failure, and
  // their sites, into `tally`.
  void Count(const std::vector<std::string>& args, CliResult* result, Tally* tally) {
    std::string report;
    *result = Inject({"count"}, args, &report);
    tally->counted = report.rfind("calls ", 0) == 0 ? atol(report.c_str() + 6) : -1;
    std::istringstream lines(report);
    for (std::string line; std::getline(lines, line);) {
      long n, site;
      if (sscanf(line.c_str(), "site %ld %ld", &n, &site) != 2) continue;
      tally->sites.push_back(site);
      tally->site_count = std::max(tally->site_count, site);
    }
  }

  // The calls to fail (module comment): the first and the last of each
  // site; with `firsts_only`, the first.
  static std::set<long> CallsToFail(const Tally& tally, bool firsts_only) {
    std::map<long, long> first, last;
    for (long n = 1; n <= static_cast<long>(tally.sites.size()); ++n) {
      first.emplace(tally.sites[n - 1], n);
      last[tally.sites[n - 1]] = n;
    }
    std::set<long> calls;
    for (const auto& [site, n] : first) calls.insert(n);
    if (!firsts_only) {
      for (const auto& [site, n] : last) calls.insert(n);
    }
    return calls;
  }

  // Files in `dir`, for "nothing left behind".
  static std::vector<std::string> Files(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path());
    return names;
  }

  int runs_ = 0;
};

// Stops a long matrix after this many failing runs: the first say enough.
constexpr int kMaxBadRuns = 5;

TEST_F(FaultTest, EverySiteOfADumpFails) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "threads"));
  const std::string dir = Path("images");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << strerror(errno);
  const std::string image = dir + "/threads.img";
  // The stopped path: a live dump makes several times the calls (its
  // rounds), more runs than the suite's time allows; its failures are
  // covered by InterruptTest's kill before every ptrace request.
  std::vector<std::string> args = {"dump", "--pid", std::to_string(w.pid), "--image", image,
                                   "--leave-running", "--stopped"};
  CliResult counted;
  Tally tally;
  Count(args, &counted, &tally);
  ASSERT_EQ(counted.exit_code, 0) << Describe(w, counted);
  ASSERT_GT(tally.counted, 0);
  ASSERT_EQ(static_cast<long>(tally.sites.size()), tally.counted) << "a site per call";
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  unlink(image.c_str());

  const auto start = Clock::now();
  int bad = 0;
  // Each site's first and last call with --leave-running; each site's
  // first also in the default mode, which kills the process once the
  // image is complete, and every one of its last 40 calls (the kill and
  // the reaping of each thread: a failed wait there once left the dump
  // waiting forever).
  const std::set<long> leave_running_calls = CallsToFail(tally, /*firsts_only=*/false);
  std::set<long> kill_calls = CallsToFail(tally, /*firsts_only=*/true);
  for (long n = std::max(1L, tally.counted - 39); n <= tally.counted; ++n) kill_calls.insert(n);
  std::set<long> calls = leave_running_calls;
  calls.insert(kill_calls.begin(), kill_calls.end());
  for (auto it = calls.begin(); it != calls.end() && bad < kMaxBadRuns; ++it) {
    const long n = *it;
    for (bool leave_running : {true, false}) {
      if (!(leave_running ? leave_running_calls : kill_calls).count(n)) continue;
      std::vector<std::string> run_args = args;
      if (!leave_running) std::erase(run_args, "--leave-running");
      std::string report;
      CliResult r = Inject({"fail", std::to_string(n)}, run_args, &report);
      const bool had_failure = HasFailure();
      const std::string context = "call " + std::to_string(n) + ": " + report + Describe(w, r);
      if (!tally.Add(report, r.exit_code)) {
        EXPECT_EQ(r.exit_code, 0) << context;
      }
      if (r.exit_code == 0) {
        EXPECT_TRUE(Exists(image)) << "success without an image; " << context;
        unlink(image.c_str());
        if (!leave_running) {
          // Killed as it should be: a new one for the runs to come.
          int status;
          EXPECT_TRUE(WaitExit(w.pid, &status, kReapTimeout)) << context;
          ASSERT_NO_FATAL_FAILURE(Start(&w, "threads"));
          args[2] = std::to_string(w.pid);
          continue;
        }
      } else {
        ExpectOneLineError(r);
        // A failure once the image is committed (resuming the process)
        // keeps the image: it is complete, and the process may not be.
        if (r.err.find("written, but resuming") != std::string::npos) {
          EXPECT_TRUE(Exists(image)) << context;
          ++tally.image_kept;
          unlink(image.c_str());
        }
        EXPECT_THAT(Files(dir), ::testing::IsEmpty()) << context;
      }
      ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w)) << context;
      if (!HasFailure() && r.exit_code != 0) ++tally.clean;
      if (HasFailure() && !had_failure) ADD_FAILURE() << context;
      if (HasFailure()) ++bad;
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  printf("fault injection, %s; %.1f s\n", tally.Text("dump").c_str(), secs);
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

TEST_F(FaultTest, EverySiteOfARestoreFails) {
  Workload w;
  std::vector<pid_t> tids;
  const std::string image = Path("threads.img");
  ASSERT_NO_FATAL_FAILURE(DumpThreads(&w, &tids, image));
  std::vector<pid_t> all = tids;
  all.push_back(w.pid);
  const std::vector<std::string> args = {"restore", "--image", image, "--detach"};

  // A restored process (a run that ended well) is ours once crlib exits:
  // kill it and reap it so that its PID is free for the next run.
  auto kill_restored = [&]() {
    for (pid_t p : OurChildren()) {
      kill(p, SIGKILL);
      int status;
      WaitExit(p, &status, kReapTimeout);
    }
  };
  CliResult counted;
  Tally tally;
  Count(args, &counted, &tally);
  ASSERT_EQ(counted.exit_code, 0) << Describe(w, counted);
  ASSERT_GT(tally.counted, 0);
  ASSERT_EQ(static_cast<long>(tally.sites.size()), tally.counted) << "a site per call";
  kill_restored();

  const auto start = Clock::now();
  int bad = 0;
  const std::set<long> calls = CallsToFail(tally, /*firsts_only=*/false);
  for (auto it = calls.begin(); it != calls.end() && bad < kMaxBadRuns; ++it) {
    const long n = *it;
    std::string report;
    CliResult r = Inject({"fail", std::to_string(n)}, args, &report);
    const bool had_failure = HasFailure();
    const std::string context = "call " + std::to_string(n) + ": " + report + Describe(w, r);
    tally.Add(report, r.exit_code);
    if (r.exit_code == 0) {
      EXPECT_TRUE(Probe(w.pid).exists) << "success and no process; " << context;
      kill_restored();
    } else {
      ExpectOneLineError(r);
      EXPECT_EQ(OurChildren(), std::set<pid_t>()) << PidText(OurChildren()) << " " << context;
      for (pid_t p : all) EXPECT_FALSE(Probe(p).exists) << p << " exists; " << context;
      kill_restored();
      if (!HasFailure()) ++tally.clean;
    }
    if (HasFailure() && !had_failure) ADD_FAILURE() << context;
    if (HasFailure()) ++bad;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  printf("fault injection, %s; %.1f s\n", tally.Text("restore").c_str(), secs);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

}  // namespace
}  // namespace crlib
