// Self-checkpoint through the public C API (crlib.h), the way a runtime
// uses it: time to image, and time from crlib_restore() to the restored
// process running its own code again.
//
//  - Small: a C child with 16 MiB of touched heap snapshots itself; the
//    restored copy tells us (SIGUSR2) it runs.
//  - Python: a python3 interpreter snapshots itself through the ctypes
//    binding (bindings/python), same protocol.
//  - WarmStart: examples/warm_start's image restored by the `crlib restore`
//    command, timed from its start to its exit (the restored program
//    answers its queries and exits; crlib exits with it), as a user of
//    the example times it.
//
// Images go to /dev/shm. The child's own figures (crlib_stats, measured
// around the call inside the child) come back in a regular file, since a
// pipe to the outside is something crlib refuses to checkpoint.
//
// Run as root: restore chooses PIDs.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "benchmark/benchmark.h"
#include "crlib/crlib.h"

namespace {

constexpr size_t kSmallHeap = 16u << 20;

std::string Format(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  vsnprintf(buf, sizeof(buf), format, args);
  va_end(args);
  return buf;
}

double NowMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string TempPath(const char* what) {
  return Format("/dev/shm/crlib-self-bench-%d-%s", getpid(), what);
}

long RssKiB(pid_t pid) {
  std::ifstream f(Format("/proc/%d/status", pid));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// The small child: 16 MiB heap, then one self-checkpoint. The original
// appends "wall_ms total_ms frozen_ms image_bytes rss_kib" to `report`
// and exits 0; a restored copy sends SIGUSR2 to its parent (the restorer),
// checks its heap and exits 0 (1 if the heap is wrong).
[[noreturn]] void SmallChild(const std::string& image, const std::string& report) {
  auto* heap = static_cast<uint64_t*>(malloc(kSmallHeap));
  for (size_t i = 0; i < kSmallHeap / 8; ++i) heap[i] = i * 0x9e3779b97f4a7c15ull;
  crlib_stats stats = CRLIB_STATS_INIT;
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  o.stats = &stats;
  const long rss = RssKiB(getpid());
  const double t0 = NowMs();
  int r = crlib_checkpoint_self(image.c_str(), &o, nullptr);
  const double t1 = NowMs();
  if (r == CRLIB_RESTORED) {
    // Running again: say so first. The heap check after it touches every
    // page, which on these VMs costs ~2.7 us per page on first touch in a
    // new address space (a shadow page-table fault the guest never sees):
    // a cost the program pays as it goes, not part of the restore.
    kill(getppid(), SIGUSR2);
    int bad = 0;
    for (size_t i = 0; i < kSmallHeap / 8; i += 4096 / 8) bad |= heap[i] != i * 0x9e3779b97f4a7c15ull;
    _exit(bad);
  }
  if (r != CRLIB_CHECKPOINTED) _exit(2);
  FILE* f = fopen(report.c_str(), "a");
  if (!f) _exit(3);
  fprintf(f, "%f %f %f %llu %ld\n", t1 - t0, stats.total_ns / 1e6, stats.frozen_ns / 1e6,
          static_cast<unsigned long long>(stats.image_bytes), rss);
  fclose(f);
  _exit(0);
}

const char* kPythonProgram = R"(
import os, signal, sys, time
import crlib
table = {"k%d" % i: [i] * 4 for i in range(20000)}
rss = int([l for l in open("/proc/self/status") if l.startswith("VmRSS:")][0].split()[1])
t0 = time.perf_counter()
r = crlib.checkpoint_self(sys.argv[1])
t1 = time.perf_counter()
if r == crlib.RESTORED:
    ok = table["k777"] == [777] * 4
    os.kill(os.getppid(), signal.SIGUSR2)
    os._exit(0 if ok else 1)
with open(sys.argv[2], "a") as f:
    f.write("%f 0 0 %d %d\n" % ((t1 - t0) * 1e3, os.stat(sys.argv[1]).st_size, rss))
os._exit(0)
)";

struct ChildFigures {
  double wall_ms = 0, total_ms = 0, frozen_ms = 0, image_bytes = 0, rss_kib = 0;
};

bool ReadLastReport(const std::string& report, ChildFigures* f) {
  std::ifstream in(report);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  return sscanf(last.c_str(), "%lf %lf %lf %lf %lf", &f->wall_ms, &f->total_ms, &f->frozen_ms,
                &f->image_bytes, &f->rss_kib) == 5;
}

// Starts the workload child (the C one, or python3) that writes `image`.
pid_t StartChild(bool python, const std::string& image, const std::string& report) {
  fflush(nullptr);
  pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Only 0-2: anything else inherited (a pipe to the shell) is refused.
  for (int fd = 3; fd < 1024; ++fd) close(fd);
  if (!python) SmallChild(image, report);
  int null = open("/dev/null", O_RDWR);
  dup2(null, 0);
  dup2(null, 1);
  setenv("PYTHONPATH", CRLIB_SOURCE_ROOT "/bindings/python", 1);
  setenv("CRLIB_LIBRARY", CRLIB_LIBRARY_PATH, 1);
  setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
  execl("/usr/bin/python3", "python3", "-c", kPythonProgram, image.c_str(), report.c_str(),
        static_cast<char*>(nullptr));
  _exit(127);
}

bool WaitUsr2(double timeout_ms) {
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  timespec ts{static_cast<time_t>(timeout_ms / 1000),
              static_cast<long>(fmod(timeout_ms, 1000) * 1e6)};
  return sigtimedwait(&usr2, nullptr, &ts) == SIGUSR2;
}

// One self-checkpoint per iteration, each by a fresh child; manual time is
// the call as the child measured it.
void SelfCheckpoint(benchmark::State& state, bool python) {
  const std::string image = TempPath("image"), report = TempPath("report");
  ChildFigures sum;
  for (auto _ : state) {
    unlink(image.c_str());
    pid_t child = StartChild(python, image, report);
    int status = 0;
    waitpid(child, &status, 0);
    ChildFigures f;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !ReadLastReport(report, &f)) {
      state.SkipWithError(Format("child failed (status 0x%x)", status).c_str());
      break;
    }
    state.SetIterationTime(f.wall_ms / 1e3);
    sum.wall_ms += f.wall_ms;
    sum.total_ms += f.total_ms;
    sum.frozen_ms += f.frozen_ms;
    sum.image_bytes = f.image_bytes;
    sum.rss_kib = f.rss_kib;
  }
  unlink(report.c_str());
  unlink(image.c_str());
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["checkpoint_ms"] = sum.wall_ms / n;
  if (!python) state.counters["frozen_ms"] = sum.frozen_ms / n;
  state.counters["image_MiB"] = sum.image_bytes / (1 << 20);
  state.counters["rss_MiB"] = sum.rss_kib / 1024;
}

// Restores the image of one self-checkpoint per iteration; manual time is
// crlib_restore() up to the restored process's signal that it runs.
void RestoreToRunning(benchmark::State& state, bool python) {
  const std::string image = TempPath("image"), report = TempPath("report");
  unlink(image.c_str());
  pid_t child = StartChild(python, image, report);
  int status = 0;
  waitpid(child, &status, 0);
  unlink(report.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    state.SkipWithError("the self-checkpointing child failed");
    for (auto _ : state) {
    }
    return;
  }
  double sum_call = 0, sum_running = 0;
  for (auto _ : state) {
    pid_t pid = 0;
    crlib_error* error = nullptr;
    const double t0 = NowMs();
    int r = crlib_restore(image.c_str(), nullptr, &pid, &error);
    const double t1 = NowMs();
    if (r != CRLIB_OK) {
      state.SkipWithError(crlib_error_message(error));
      crlib_error_free(error);
      break;
    }
    const bool up = WaitUsr2(30000);
    const double t2 = NowMs();
    waitpid(pid, &status, 0);
    if (!up || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      state.SkipWithError("the restored process did not run correctly");
      break;
    }
    state.SetIterationTime((t2 - t0) / 1e3);
    sum_call += t1 - t0;
    sum_running += t2 - t0;
  }
  unlink(image.c_str());
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["restore_call_ms"] = sum_call / n;
  state.counters["to_running_ms"] = sum_running / n;
}

// Runs `argv` (stdin and stdout /dev/null, only fds 0-2) and waits for
// it; its exit status, or -1.
int RunQuietly(const char* const* argv) {
  fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    execv(argv[0], const_cast<char* const*>(argv));
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// examples/warm_start, cold once, then `crlib restore` of its image per
// iteration: manual time is the command's start to its exit.
void BM_WarmStart(benchmark::State& state) {
  const std::string image = TempPath("warm");
  unlink(image.c_str());
  const char* cold[] = {CRLIB_WARM_START_PATH, image.c_str(), "7", "123456", nullptr};
  if (RunQuietly(cold) != 0) {
    state.SkipWithError("the cold run of warm_start failed");
    for (auto _ : state) {
    }
    return;
  }
  const char* restore[] = {CRLIB_CLI_PATH, "restore", "--image", image.c_str(), nullptr};
  for (auto _ : state) {
    const double t0 = NowMs();
    const int status = RunQuietly(restore);
    const double t1 = NowMs();
    if (status != 0) {
      state.SkipWithError(Format("crlib restore exited with %d", status).c_str());
      break;
    }
    state.SetIterationTime((t1 - t0) / 1e3);
  }
  unlink(image.c_str());
}

void BM_SelfCheckpointSmall(benchmark::State& s) { SelfCheckpoint(s, false); }
void BM_RestoreSmall(benchmark::State& s) { RestoreToRunning(s, false); }
void BM_SelfCheckpointPython(benchmark::State& s) { SelfCheckpoint(s, true); }
void BM_RestorePython(benchmark::State& s) { RestoreToRunning(s, true); }

BENCHMARK(BM_SelfCheckpointSmall)->Iterations(20)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RestoreSmall)->Iterations(20)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SelfCheckpointPython)->Iterations(10)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RestorePython)->Iterations(10)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WarmStart)->Iterations(10)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  // SIGUSR2 from restored processes waits as pending for sigtimedwait.
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, nullptr);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
