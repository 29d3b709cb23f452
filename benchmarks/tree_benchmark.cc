// Checkpoint and restore of process trees of 1, 10 and 100 processes
// (issue 10), through the library in this process: how long the tree is
// frozen, how long the restore takes until it runs, and the tree's memory
// (the sum of every member's PSS) before the dump and after the restore.
// The goals: each extra process costs at most 2 ms of freeze and 2 ms of
// restore, and a tree of workers forked from one parent does not use N
// times its memory after restore (PSS ratio at most 1.1).
//
// Two shapes, each process holding 16 MiB at kDataAddress:
//   BM_TreePrivate        every process (the root too) fills 16 MiB of its
//                         own after the fork, each with different contents;
//   BM_TreeForkedWorkers  the root fills 16 MiB, then forks N-1 workers
//                         that only read it: copy-on-write shared, as a
//                         server's pre-forked workers.
//
// Run as root. Manual timing: an iteration's time is the dump's library
// call; the tree's set-up, its PSS reads and its teardown are not timed.
// This process is a child subreaper: the dumped tree's members come back
// to it when they die, and it reaps everything it made.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "core/context.h"
#include "sys/proc.h"
#include "cr/checkpoint.h"
#include "cr/restore.h"

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kPage = 4096;
constexpr size_t kBytes = 16 * kMiB;  // per process
constexpr uintptr_t kDataAddress = 0x600000000000;

double NowMs() { return crlib::NowNs() / 1e6; }

// A page that says whose it is: word 0 the seed (a process's index, or 0
// for memory forked from the root), word 1 the page index, the rest mixed
// from both, so no two processes' private pages are alike.
void FillPage(uint64_t* w, uint64_t seed, uint64_t index) {
  w[0] = seed;
  w[1] = index;
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (index + 1) * 0xBF58476D1CE4E5B9ull;
  for (size_t j = 2; j < kPage / 8; ++j) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    w[j] = x;
  }
}

// True if `page` is page `index` of some seed's pattern; sets `seed`.
bool CheckPage(const uint8_t* page, uint64_t index, uint64_t* seed) {
  alignas(8) uint64_t want[kPage / 8];
  memcpy(seed, page, sizeof(*seed));
  FillPage(want, *seed, index);
  return memcmp(page, want, kPage) == 0;
}

// In a member of the tree: maps kBytes at kDataAddress and fills it.
void MapAndFill(uint64_t seed) {
  void* p = mmap(reinterpret_cast<void*>(kDataAddress), kBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) _exit(101);
  for (size_t off = 0; off < kBytes; off += kPage) {
    FillPage(reinterpret_cast<uint64_t*>(kDataAddress + off), seed, off / kPage);
  }
}

// In a member of the tree: says it is ready on fd 3 and sleeps for good.
[[noreturn]] void ReportAndSleep() {
  char c = 'r';
  if (write(3, &c, 1) != 1) _exit(102);
  close(3);
  for (;;) pause();
}

// The tree's root, forked by us, in a group of its own; never returns.
[[noreturn]] void TreeRoot(int n, bool forked_workers, int ready_fd) {
  setpgid(0, 0);
  int null = open("/dev/null", O_RDWR);
  if (null < 0) _exit(103);
  for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
  if (dup2(ready_fd, 3) != 3) _exit(104);
  syscall(SYS_close_range, 4, ~0u, 0);
  if (forked_workers) MapAndFill(0);
  for (int i = 1; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) _exit(105);
    if (pid > 0) continue;
    if (forked_workers) {
      // Read every page, write none: the memory stays shared.
      uint64_t sum = 0;
      for (size_t off = 0; off < kBytes; off += kPage)
        sum += *reinterpret_cast<uint64_t*>(kDataAddress + off + 8);
      benchmark::DoNotOptimize(sum);
    } else {
      MapAndFill(i);
    }
    ReportAndSleep();
  }
  if (!forked_workers) MapAndFill(0);
  ReportAndSleep();
}

char ProcState(pid_t pid) {
  std::ifstream f(absl::StrFormat("/proc/%d/stat", pid));
  std::string line;
  std::getline(f, line);
  size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? '?' : line[paren + 2];
}

// Kills the tree (its group and each member) and reaps every child of ours
// until none is left: the root, and members reparented to us.
void KillAndReap(pid_t root, const std::vector<pid_t>& members) {
  kill(-root, SIGKILL);
  for (pid_t pid : members) kill(pid, SIGKILL);
  while (waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
}

// A tree of `n` processes; returns its members, the root first, once all
// are filled and asleep.
absl::StatusOr<std::vector<pid_t>> SpawnTree(int n, bool forked_workers) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe2");
  fflush(nullptr);
  pid_t root = fork();
  if (root == 0) TreeRoot(n, forked_workers, ready[1]);
  close(ready[1]);
  if (root < 0) {
    close(ready[0]);
    return absl::ErrnoToStatus(errno, "fork");
  }
  int got = 0;
  while (got < n) {
    pollfd p = {ready[0], POLLIN, 0};
    char buf[128];
    ssize_t r = poll(&p, 1, 120 * 1000) == 1 ? read(ready[0], buf, sizeof(buf)) : -1;
    if (r <= 0) break;
    got += static_cast<int>(r);
  }
  close(ready[0]);
  std::vector<pid_t> members = {root};
  absl::StatusOr<std::vector<pid_t>> children = crlib::sys::ListChildren(root);
  if (children.ok()) members.insert(members.end(), children->begin(), children->end());
  if (got != n || static_cast<int>(members.size()) != n) {
    KillAndReap(root, members);
    return absl::DeadlineExceededError(
        absl::StrFormat("tree of %d: %d ready, %zu found", n, got, members.size()));
  }
  for (pid_t pid : members) {
    while (ProcState(pid) != 'S') usleep(200);
  }
  return members;
}

// The tree's PSS in MiB (smaps_rollup), -1 if a member cannot be read.
double PssMiB(const std::vector<pid_t>& members) {
  double kib = 0;
  for (pid_t pid : members) {
    std::ifstream f(absl::StrFormat("/proc/%d/smaps_rollup", pid));
    std::string line;
    bool found = false;
    while (std::getline(f, line)) {
      if (line.rfind("Pss:", 0) == 0) {
        kib += strtod(line.c_str() + 4, nullptr);
        found = true;
        break;
      }
    }
    if (!found) return -1;
  }
  return kib / 1024;
}

// The first and last page of every restored member hold a pattern, the
// private shape's each a different one.
absl::Status CheckRestored(const std::vector<pid_t>& members, bool forked_workers) {
  std::set<uint64_t> seeds;
  for (pid_t pid : members) {
    int fd = open(absl::StrFormat("/proc/%d/mem", pid).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrFormat("open /proc/%d/mem", pid));
    for (uint64_t index : {uint64_t{0}, kBytes / kPage - 1}) {
      alignas(8) uint8_t page[kPage];
      uint64_t seed = 0;
      if (pread(fd, page, kPage, kDataAddress + index * kPage) != static_cast<ssize_t>(kPage) ||
          !CheckPage(page, index, &seed)) {
        close(fd);
        return absl::DataLossError(absl::StrFormat("pid %d: page %" PRIu64 " differs", pid, index));
      }
      seeds.insert(seed);
    }
    close(fd);
  }
  const size_t want = forked_workers ? 1 : members.size();
  if (seeds.size() != want) {
    return absl::DataLossError(
        absl::StrFormat("%zu distinct patterns, expected %zu", seeds.size(), want));
  }
  return absl::OkStatus();
}

struct Figures {
  double dump_ms = 0, frozen_ms = 0, restore_ms = 0, pss_before = 0, pss_after = 0;
};
std::map<std::pair<bool, int64_t>, Figures> g_figures;  // (forked_workers, N)

void Fail(benchmark::State& state, const std::string& what, const absl::Status& st) {
  std::string msg = what + ": " + st.ToString();
  fprintf(stderr, "ERROR %s\n", msg.c_str());
  state.SkipWithError(msg.c_str());
}

void TreeBenchmark(benchmark::State& state, bool forked_workers) {
  const int n = static_cast<int>(state.range(0));
  const std::string image = absl::StrFormat("/dev/shm/crlib-tree-bench-%d.img", getpid());
  Figures sum;
  for (auto _ : state) {
    absl::StatusOr<std::vector<pid_t>> members = SpawnTree(n, forked_workers);
    if (!members.ok()) {
      Fail(state, "spawning the tree", members.status());
      break;
    }
    const pid_t root = members->front();
    const double pss_before = PssMiB(*members);
    crlib::Context dump_ctx;
    double t0 = NowMs();
    absl::Status st = crlib::CheckpointProcess(&dump_ctx, root, image, {});
    double t1 = NowMs();
    KillAndReap(root, *members);  // the dump killed it; reap the members
    if (!st.ok()) {
      unlink(image.c_str());
      Fail(state, absl::StrFormat("CheckpointProcess of a tree of %d", n), st);
      break;
    }
    state.SetIterationTime((t1 - t0) / 1e3);
    crlib::Context restore_ctx;
    double t2 = NowMs();
    absl::StatusOr<pid_t> restored = crlib::RestoreProcess(&restore_ctx, image);
    double t3 = NowMs();
    unlink(image.c_str());
    if (!restored.ok()) {
      KillAndReap(root, *members);
      Fail(state, absl::StrFormat("RestoreProcess of a tree of %d", n), restored.status());
      break;
    }
    const double pss_after = PssMiB(*members);
    absl::Status check = *restored == root ? CheckRestored(*members, forked_workers)
                                           : absl::InternalError("restored with another root PID");
    KillAndReap(root, *members);
    if (!check.ok()) {
      Fail(state, "restored tree", check);
      break;
    }
    sum.dump_ms += t1 - t0;
    sum.frozen_ms += dump_ctx.stats().frozen_ns / 1e6;
    sum.restore_ms += t3 - t2;
    sum.pss_before += pss_before;
    sum.pss_after += pss_after;
  }
  const double iterations = static_cast<double>(state.iterations());
  if (iterations == 0 || state.error_occurred()) return;
  Figures mean{sum.dump_ms / iterations, sum.frozen_ms / iterations, sum.restore_ms / iterations,
               sum.pss_before / iterations, sum.pss_after / iterations};
  state.counters["dump_ms"] = mean.dump_ms;
  state.counters["frozen_ms"] = mean.frozen_ms;
  state.counters["per_process_freeze_ms"] = mean.frozen_ms / n;
  state.counters["restore_ms"] = mean.restore_ms;
  state.counters["per_process_restore_ms"] = mean.restore_ms / n;
  state.counters["pss_before_mib"] = mean.pss_before;
  state.counters["pss_after_mib"] = mean.pss_after;
  state.counters["pss_ratio"] = mean.pss_before > 0 ? mean.pss_after / mean.pss_before : 0;
  g_figures[{forked_workers, n}] = mean;
}

void BM_TreePrivate(benchmark::State& state) { TreeBenchmark(state, /*forked_workers=*/false); }
void BM_TreeForkedWorkers(benchmark::State& state) {
  TreeBenchmark(state, /*forked_workers=*/true);
}

// Each iteration spawns a fresh tree (100 x 16 MiB takes seconds to fill).
BENCHMARK(BM_TreePrivate)->Arg(1)->Arg(10)->Arg(100)->Iterations(2)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TreeForkedWorkers)->Arg(1)->Arg(10)->Arg(100)->Iterations(2)->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Per shape and size, with the cost of each process beyond the first
// (against the same shape's tree of 1), which the goals bound at 2 ms.
void PrintSummary() {
  if (g_figures.empty()) return;
  printf("\nSummary: means in ms; extra = (N's - 1's) / (N - 1), goal <= 2 ms; PSS goal "
         "after/before <= 1.1\n");
  printf("%-15s %4s | %8s %8s %8s | %9s %8s | %9s %9s %6s\n", "shape", "N", "dump", "frozen",
         "extra", "restore", "extra", "pss_MiB", "after", "ratio");
  for (const auto& [key, f] : g_figures) {
    const auto& [forked, n] = key;
    auto one = g_figures.find({forked, 1});
    auto extra = [&](double Figures::*field) {
      return one == g_figures.end() || n <= 1 ? 0.0 : (f.*field - one->second.*field) / (n - 1);
    };
    printf("%-15s %4" PRId64 " | %8.1f %8.1f %8.2f | %9.1f %8.2f | %9.1f %9.1f %6.2f\n",
           forked ? "forked_workers" : "private", n, f.dump_ms, f.frozen_ms,
           extra(&Figures::frozen_ms), f.restore_ms, extra(&Figures::restore_ms), f.pss_before,
           f.pss_after, f.pss_before > 0 ? f.pss_after / f.pss_before : 0.0);
  }
  printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  // Members of a dumped tree die after their root; as a subreaper we get
  // (and reap) them instead of init.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    perror("prctl(PR_SET_CHILD_SUBREAPER)");
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  PrintSummary();
  return 0;
}
