// Checkpoint and restore of one process holding 64 MiB .. 1 GiB of anonymous
// memory, next to floors measured in the same run: writing the image's size
// to a new /dev/shm file (dump, paired with each dump in the same iteration), and filling fresh anonymous memory with the
// data (restore: memcpy into plain mmap memory, into MAP_POPULATE memory,
// and read() from /dev/shm). Restore also from a --mappable image, whose
// pages are mapped (BM_RestoreMapped), with its time split into phases, and
// lazily (BM_RestoreLazy): the time until the process runs and until every
// page is in it. A summary with the ratios is printed at the end.
//
// Run as root. Every benchmark uses manual timing: only the library call
// (or the floor's copy) is timed, not the child's set-up or teardown.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "benchmarks/bench_child.h"
#include "core/context.h"
#include "cr/checkpoint.h"
#include "cr/restore.h"

namespace {

using crlib_bench::BlockReadySignal;
using crlib_bench::CheckRestored;
using crlib_bench::CpuMs;
using crlib_bench::KillAndReap;
using crlib_bench::kMiB;
using crlib_bench::MapFilled;
using crlib_bench::NowMs;
using crlib_bench::SpawnChild;
using crlib_bench::WriteFile;

constexpr size_t kChunk = 4 * kMiB;

// Mean figures per size in MiB, for the summary.
struct Figures {
  double dump_ms = 0, frozen_ms = 0, lib_dump_ms = 0;
  double restore_ms = 0, lib_restore_ms = 0;
  // Mapped restore of a --mappable image, and where its time went: up to
  // the point of no return (reading and checking the image, opening
  // files), then to the first page record (process creation, address
  // space), the pages, and the rest (files, threads, credentials ...).
  double mapped_ms = 0, mapped_cpu = 0, mapped_check_ms = 0, mapped_build_ms = 0;
  double mapped_pages_ms = 0, mapped_rest_ms = 0, pages_mapped = 0;
  double lazy_running_ms = 0, lazy_all_in_ms = 0;  // restore --lazy
  double image_bytes = 0, pages_stored = 0, pages_zero = 0;
  double floor_write_ms = 0;
  double floor_copy_ms = 0, floor_read_ms = 0, floor_populate_ms = 0;
  // The same, in CPU ms of this thread.
  double dump_cpu = 0, restore_cpu = 0, floor_write_cpu = 0, floor_copy_cpu = 0;
  double floor_populate_cpu = 0, floor_read_cpu = 0;
};
std::map<int64_t, Figures> g_figures;

std::string ImagePath() { return absl::StrFormat("/dev/shm/crlib-bench-%d.img", getpid()); }

// Dumps a fresh child to `image`; the child is killed and reaped.
// `before_dump`, if given, runs between the child's start and the dump.
absl::Status DumpChild(size_t bytes, const std::string& image, crlib::Context* ctx,
                       double* ms, double* cpu_ms,
                       const std::function<bool()>& before_dump = nullptr,
                       size_t reserve_bytes = 0) {
  absl::StatusOr<pid_t> child = SpawnChild(bytes, reserve_bytes);
  if (!child.ok()) return child.status();
  if (before_dump && !before_dump()) {
    KillAndReap(*child);
    return absl::AbortedError("set-up before the dump failed");
  }
  double t0 = NowMs(), c0 = CpuMs();
  absl::Status st = crlib::CheckpointProcess(ctx, *child, image, {});
  double t1 = NowMs(), c1 = CpuMs();
  if (!st.ok()) {
    KillAndReap(*child);
    return st;
  }
  waitpid(*child, nullptr, 0);
  *ms = t1 - t0;
  *cpu_ms = c1 - c0;
  return absl::OkStatus();
}

void Fail(benchmark::State& state, const std::string& what, const absl::Status& st) {
  std::string msg = what + ": " + st.ToString();
  fprintf(stderr, "ERROR %s\n", msg.c_str());
  state.SkipWithError(msg.c_str());
}

// Each iteration dumps a fresh child and, as the floor, writes the image's
// size to a new /dev/shm file from one 4 MiB buffer, in alternating order,
// both after the child has filled its memory. Both are timed in the same
// iteration because on these VMs a tmpfs write costs 5-10x more when the
// guest pages it gets are not backed by the host yet (freed pages are
// handed back to the host): in this order each write reuses the pages the
// other's file just freed, so neither pays that on its own.
void BM_Dump(benchmark::State& state) {
  const size_t bytes = state.range(0) * kMiB;
  const std::string image = ImagePath();
  const std::string floor_path = image + ".floor";
  uint8_t* chunk = MapFilled(kChunk);
  double sum_ms = 0, sum_cpu = 0, sum_lib = 0, sum_frozen = 0;
  double sum_floor = 0, sum_floor_cpu = 0;
  crlib::Stats last;
  int64_t round = 0;
  for (auto _ : state) {
    auto floor = [&]() -> bool {
      // Round 0 runs the floor after its dump, so the image size is known.
      const size_t size = last.bytes;
      double t0 = NowMs(), c0 = CpuMs();
      absl::Status written = WriteFile(floor_path, chunk, kChunk, size);
      sum_floor += NowMs() - t0;
      sum_floor_cpu += CpuMs() - c0;
      unlink(floor_path.c_str());
      if (!written.ok()) Fail(state, "floor", written);
      return written.ok();
    };
    const bool floor_first = round++ % 2 == 1;
    crlib::Context ctx;
    double ms = 0, cpu_ms = 0;
    absl::Status st = DumpChild(bytes, image, &ctx, &ms, &cpu_ms,
                                floor_first ? std::function<bool()>(floor) : nullptr);
    if (!st.ok()) {
      Fail(state, "CheckpointProcess", st);
      break;
    }
    state.SetIterationTime(ms / 1e3);
    last = ctx.stats();
    sum_ms += ms;
    sum_cpu += cpu_ms;
    sum_lib += last.total_ns / 1e6;
    sum_frozen += last.frozen_ns / 1e6;
    unlink(image.c_str());
    if (!floor_first && !floor()) break;
  }
  munmap(chunk, kChunk);
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["dump_ms"] = sum_lib / n;  // ctx.stats().total_ns
  state.counters["cpu_ms"] = sum_cpu / n;
  state.counters["frozen_ms"] = sum_frozen / n;
  state.counters["floor_ms"] = sum_floor / n;
  state.counters["image_MiB"] = last.bytes / double(kMiB);
  state.counters["pages_stored"] = last.pages_stored;
  state.counters["pages_zero"] = last.pages_zero;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  Figures& f = g_figures[state.range(0)];
  f.dump_ms = sum_ms / n;
  f.dump_cpu = sum_cpu / n;
  f.lib_dump_ms = sum_lib / n;
  f.frozen_ms = sum_frozen / n;
  f.image_bytes = last.bytes;
  f.pages_stored = last.pages_stored;
  f.pages_zero = last.pages_zero;
  f.floor_write_ms = sum_floor / n;
  f.floor_write_cpu = sum_floor_cpu / n;
}

// The freeze of a 64 MiB process with and without a MAP_NORESERVE
// reservation of range(0) GiB holding one written page per 64 GiB: page
// discovery (PAGEMAP_SCAN) and smaps cost time in populated pages, so
// frozen_ms must not grow with the reservation.
void BM_DumpReservation(benchmark::State& state) {
  const size_t reserve = static_cast<size_t>(state.range(0)) << 30;
  const std::string image = ImagePath();
  double sum_frozen = 0, sum_lib = 0;
  crlib::Stats last;
  for (auto _ : state) {
    crlib::Context ctx;
    double ms = 0, cpu_ms = 0;
    absl::Status st = DumpChild(64 * kMiB, image, &ctx, &ms, &cpu_ms, nullptr, reserve);
    if (!st.ok()) {
      Fail(state, "CheckpointProcess", st);
      break;
    }
    last = ctx.stats();
    state.SetIterationTime(last.frozen_ns / 1e9);
    sum_frozen += last.frozen_ns / 1e6;
    sum_lib += last.total_ns / 1e6;
    unlink(image.c_str());
  }
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["frozen_ms"] = sum_frozen / n;
  state.counters["dump_ms"] = sum_lib / n;
  state.counters["pages_stored"] = last.pages_stored;
}

// VmRSS of `pid` in KiB, -1 if unknown.
long RssKiB(pid_t pid) {
  std::ifstream f(absl::StrFormat("/proc/%d/status", pid));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// The image a restore benchmark restores: a fresh child's, dumped (and
// killed). False, the benchmark failed, when it cannot be made.
bool DumpToRestore(benchmark::State& state, size_t bytes, const std::string& image) {
  crlib::Context ctx;
  double ms, cpu_ms;
  absl::Status st = DumpChild(bytes, image, &ctx, &ms, &cpu_ms);
  if (st.ok()) return true;
  Fail(state, "CheckpointProcess (restore set-up)", st);
  for (auto _ : state) {
  }
  return false;
}

// Restores of one image of a child holding range(0) MiB: copied, or with
// `mapped` from a --mappable image mapped (restore's default for one).
void Restore(benchmark::State& state, bool mapped) {
  const size_t bytes = state.range(0) * kMiB;
  const std::string image = ImagePath();
  {
    crlib::Context ctx(crlib::Options{.mappable = mapped});
    double ms, cpu_ms;
    absl::Status st = DumpChild(bytes, image, &ctx, &ms, &cpu_ms);
    if (!st.ok()) {
      Fail(state, "CheckpointProcess (restore set-up)", st);
      for (auto _ : state) {
      }
      return;
    }
  }
  double sum_ms = 0, sum_cpu = 0, sum_lib = 0;
  double sum_check = 0, sum_build = 0, sum_pages = 0;
  bool checked = false;
  for (auto _ : state) {
    crlib::Context ctx;
    // When each phase was first reported (ms).
    double state_at = 0, memory_at = 0, done_at = 0;
    ctx.set_progress([&](crlib::Phase phase, uint64_t, uint64_t) {
      double& at = phase == crlib::Phase::kState    ? state_at
                   : phase == crlib::Phase::kMemory ? memory_at
                                                    : done_at;
      if (at == 0) at = NowMs();
      if (phase == crlib::Phase::kMemory) done_at = NowMs();  // the last record's
      return true;
    });
    double t0 = NowMs(), c0 = CpuMs();
    absl::StatusOr<pid_t> pid = crlib::RestoreProcess(&ctx, image);
    double t1 = NowMs(), c1 = CpuMs();
    if (pid.ok() && state_at > 0 && memory_at > 0) {
      sum_check += state_at - t0;
      sum_build += memory_at - state_at;
      sum_pages += done_at - memory_at;
    }
    if (!pid.ok()) {
      Fail(state, "RestoreProcess", pid.status());
      break;
    }
    state.SetIterationTime((t1 - t0) / 1e3);
    sum_ms += t1 - t0;
    sum_cpu += c1 - c0;
    sum_lib += ctx.stats().total_ns / 1e6;
    if (!checked) {
      // Resident right after the call: a copying restore writes every page
      // (pwrite to /proc/PID/mem); a mapped one leaves them in the page
      // cache until the process touches them.
      state.counters["rss_MiB"] = RssKiB(*pid) / 1024.0;
      state.counters["pages_mapped"] = ctx.stats().pages_mapped;
      g_figures[state.range(0)].pages_mapped = ctx.stats().pages_mapped;
      absl::Status st = CheckRestored(*pid, bytes);
      checked = true;
      if (!st.ok()) {
        KillAndReap(*pid);
        Fail(state, "restored process check", st);
        break;
      }
    }
    KillAndReap(*pid);
  }
  unlink(image.c_str());
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["restore_ms"] = sum_lib / n;  // ctx.stats().total_ns
  state.counters["cpu_ms"] = sum_cpu / n;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  Figures& f = g_figures[state.range(0)];
  if (!mapped) {
    f.restore_ms = sum_ms / n;
    f.restore_cpu = sum_cpu / n;
    f.lib_restore_ms = sum_lib / n;
    return;
  }
  f.mapped_ms = sum_ms / n;
  f.mapped_cpu = sum_cpu / n;
  f.mapped_check_ms = sum_check / n;
  f.mapped_build_ms = sum_build / n;
  f.mapped_pages_ms = sum_pages / n;
  f.mapped_rest_ms = (sum_ms - sum_check - sum_build - sum_pages) / n;
}

void BM_Restore(benchmark::State& state) { Restore(state, /*mapped=*/false); }

// Restore to running from a --mappable image in /dev/shm: the pages are
// mapped from the image file (goal for 1 GiB: 5 ms).
void BM_RestoreMapped(benchmark::State& state) { Restore(state, /*mapped=*/true); }

// Lazy restore: timed until the call returns (the process runs), and
// until LazyPages::Wait() says every page is in; the data checked after.
void BM_RestoreLazy(benchmark::State& state) {
  const size_t bytes = state.range(0) * kMiB;
  const std::string image = ImagePath();
  if (!DumpToRestore(state, bytes, image)) return;
  double sum_running = 0, sum_all_in = 0;
  for (auto _ : state) {
    crlib::Context ctx;
    std::unique_ptr<crlib::LazyPages> lazy;
    double t0 = NowMs();
    absl::StatusOr<pid_t> pid = crlib::RestoreProcess(&ctx, image, {}, &lazy);
    double t1 = NowMs();
    if (!pid.ok()) {
      Fail(state, "RestoreProcess(lazy)", pid.status());
      break;
    }
    absl::Status st = lazy->Wait();
    double t2 = NowMs();
    state.SetIterationTime((t1 - t0) / 1e3);
    sum_running += t1 - t0;
    sum_all_in += t2 - t0;
    if (st.ok()) st = CheckRestored(*pid, bytes);
    KillAndReap(*pid);
    if (!st.ok()) {
      Fail(state, "lazily restored process", st);
      break;
    }
  }
  unlink(image.c_str());
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["running_ms"] = sum_running / n;
  state.counters["all_in_ms"] = sum_all_in / n;
  Figures& f = g_figures[state.range(0)];
  f.lazy_running_ms = sum_running / n;
  f.lazy_all_in_ms = sum_all_in / n;
}

// Restore floor: mmap fresh anonymous memory and memcpy the data into it.
// The munmap afterwards is not timed (nor is the restored process's exit).
// Restore floor: mmap fresh anonymous memory (with `extra_flags`) and
// memcpy the data into it. The munmap afterwards is not timed.
void FloorCopy(benchmark::State& state, int extra_flags, double Figures::*ms,
               double Figures::*cpu) {
  const size_t bytes = state.range(0) * kMiB;
  uint8_t* src = MapFilled(bytes);
  double sum_ms = 0, sum_cpu = 0;
  for (auto _ : state) {
    double t0 = NowMs(), c0 = CpuMs();
    void* dst = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
    if (dst == MAP_FAILED) {
      Fail(state, "mmap", absl::ErrnoToStatus(errno, "mmap"));
      break;
    }
    memcpy(dst, src, bytes);
    benchmark::ClobberMemory();
    double t1 = NowMs(), c1 = CpuMs();
    munmap(dst, bytes);
    state.SetIterationTime((t1 - t0) / 1e3);
    sum_ms += t1 - t0;
    sum_cpu += c1 - c0;
  }
  munmap(src, bytes);
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["copy_ms"] = sum_ms / n;
  state.counters["cpu_ms"] = sum_cpu / n;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  g_figures[state.range(0)].*ms = sum_ms / n;
  g_figures[state.range(0)].*cpu = sum_cpu / n;
}

void BM_FloorFreshCopy(benchmark::State& state) {
  FloorCopy(state, 0, &Figures::floor_copy_ms, &Figures::floor_copy_cpu);
}

// Restore floor without user-mode page faults: MAP_POPULATE allocates the
// pages in the kernel (as restore's pwrite to /proc/PID/mem does), then
// memcpy. On a machine where a user page fault is expensive (here about
// 3 s per GiB) this, not BM_FloorFreshCopy, is what restore competes with.
void BM_FloorPopulateCopy(benchmark::State& state) {
  FloorCopy(state, MAP_POPULATE, &Figures::floor_populate_ms, &Figures::floor_populate_cpu);
}

// A second restore floor, closer to what a restore does: read the bytes
// from a /dev/shm file into fresh anonymous memory (4 MiB reads).
void BM_FloorShmReadFresh(benchmark::State& state) {
  const size_t bytes = state.range(0) * kMiB;
  const std::string path = ImagePath() + ".floor";
  uint8_t* chunk = MapFilled(kChunk);
  absl::Status written = WriteFile(path, chunk, kChunk, bytes);
  munmap(chunk, kChunk);
  if (!written.ok()) {
    Fail(state, "floor", written);
    for (auto _ : state) {
    }
    return;
  }
  double sum_ms = 0, sum_cpu = 0;
  for (auto _ : state) {
    double t0 = NowMs(), c0 = CpuMs();
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    auto* dst = static_cast<uint8_t*>(
        mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    size_t done = 0;
    while (fd >= 0 && dst != MAP_FAILED && done < bytes) {
      ssize_t r = read(fd, dst + done, std::min(kChunk, bytes - done));
      if (r <= 0) break;
      done += r;
    }
    benchmark::ClobberMemory();
    double t1 = NowMs(), c1 = CpuMs();
    if (fd >= 0) close(fd);
    if (dst != MAP_FAILED) munmap(dst, bytes);
    if (done != bytes) {
      Fail(state, "read " + path, absl::ErrnoToStatus(errno, "read"));
      break;
    }
    state.SetIterationTime((t1 - t0) / 1e3);
    sum_ms += t1 - t0;
    sum_cpu += c1 - c0;
  }
  unlink(path.c_str());
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["read_ms"] = sum_ms / n;
  state.counters["cpu_ms"] = sum_cpu / n;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  g_figures[state.range(0)].floor_read_ms = sum_ms / n;
  g_figures[state.range(0)].floor_read_cpu = sum_cpu / n;
}

// Few iterations: each dump needs a fresh child (about 3 s to fault in and
// fill 1 GiB on a small machine).
// How long a dump with --leave-running keeps the process stopped, when it
// is stopped for the whole dump (range(1) 0, `crlib dump --stopped`) and
// when its memory is copied while it runs (1, a live dump): issue 11's
// "stopped during a dump" goal. Both in one run, alternating.
void BM_Stopped(benchmark::State& state) {
  const size_t bytes = state.range(0) * kMiB;
  const bool live = state.range(1) != 0;
  const std::string image = ImagePath();
  double sum_frozen = 0, sum_total = 0, rounds = 0;
  for (auto _ : state) {
    absl::StatusOr<pid_t> child = SpawnChild(bytes, 0);
    if (!child.ok()) {
      Fail(state, "spawn", child.status());
      break;
    }
    crlib::Context ctx;
    crlib::CheckpointOptions o;
    o.leave_running = true;
    o.live = live;
    absl::Status st = crlib::CheckpointProcess(&ctx, *child, image, o);
    KillAndReap(*child);
    unlink(image.c_str());
    if (!st.ok()) {
      Fail(state, "CheckpointProcess", st);
      break;
    }
    state.SetIterationTime(ctx.stats().frozen_ns / 1e9);
    sum_frozen += ctx.stats().frozen_ns / 1e6;
    sum_total += ctx.stats().total_ns / 1e6;
    rounds += ctx.stats().live_rounds;
  }
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["frozen_ms"] = sum_frozen / n;
  state.counters["dump_ms"] = sum_total / n;
  state.counters["live_rounds"] = rounds / n;
}

// An incremental round (`crlib dump --parent`) of a process that wrote 1 %
// of its pages since a dump that kept tracking it (`--track`): how long it
// is stopped and the round's wall time (issue 11's goal: at 1 GiB, at
// most 20 ms stopped and 50 ms in all). The pages are written from here,
// through process_vm_writev, which the tracking sees as the process's own
// writes (the round reports them as stored pages).
void BM_IncrementalRound(benchmark::State& state) {
  const size_t bytes = state.range(0) * kMiB;
  const std::string parent = ImagePath() + ".parent", image = ImagePath();
  double sum_frozen = 0, sum_total = 0, stored = 0;
  for (auto _ : state) {
    absl::StatusOr<pid_t> child = SpawnChild(bytes, 0);
    if (!child.ok()) {
      Fail(state, "spawn", child.status());
      break;
    }
    crlib::Context full_ctx;
    crlib::CheckpointOptions o;
    o.leave_running = true;
    o.track = true;
    absl::Status st = crlib::CheckpointProcess(&full_ctx, *child, parent, o);
    // Every 100th page gets new contents.
    std::vector<uint8_t> page(crlib_bench::kPage);
    for (size_t at = 0; st.ok() && at < bytes; at += 100 * crlib_bench::kPage) {
      crlib_bench::FillPage(page.data(), at / crlib_bench::kPage + 7);
      iovec local{page.data(), page.size()};
      iovec remote{reinterpret_cast<void*>(crlib_bench::kDataAddress + at), page.size()};
      if (process_vm_writev(*child, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(page.size())) {
        st = absl::InternalError("process_vm_writev into the child failed");
      }
    }
    crlib::Context ctx;
    o.track = false;
    o.parent_image = parent;
    if (st.ok()) st = crlib::CheckpointProcess(&ctx, *child, image, o);
    KillAndReap(*child);
    unlink(image.c_str());
    unlink(parent.c_str());
    if (!st.ok()) {
      Fail(state, "CheckpointProcess", st);
      break;
    }
    if (ctx.stats().incremental_refused[0] != '\0') {
      Fail(state, "round", absl::InternalError(ctx.stats().incremental_refused));
      break;
    }
    state.SetIterationTime(ctx.stats().total_ns / 1e9);
    sum_frozen += ctx.stats().frozen_ns / 1e6;
    sum_total += ctx.stats().total_ns / 1e6;
    stored += static_cast<double>(ctx.stats().pages_stored);
  }
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["frozen_ms"] = sum_frozen / n;
  state.counters["dump_ms"] = sum_total / n;
  state.counters["pages_stored"] = stored / n;
}

BENCHMARK(BM_IncrementalRound)->Arg(64)->Arg(1024)->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Stopped)->Args({64, 0})->Args({64, 1})->Args({256, 0})->Args({256, 1})
    ->Args({1024, 0})->Args({1024, 1})->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Dump)->Arg(64)->Arg(256)->Arg(1024)->Iterations(4)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DumpReservation)->Arg(0)->Arg(1024)->Iterations(4)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Restore)->Arg(64)->Arg(256)->Arg(1024)->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RestoreMapped)->Arg(64)->Arg(256)->Arg(1024)->Iterations(10)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RestoreLazy)->Arg(64)->Arg(256)->Arg(1024)->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FloorFreshCopy)->Arg(64)->Arg(256)->Arg(1024)->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FloorPopulateCopy)->Arg(64)->Arg(256)->Arg(1024)->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FloorShmReadFresh)->Arg(64)->Arg(256)->Arg(1024)->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void PrintSummary() {
  if (g_figures.empty()) return;
  auto ratio = [](double a, double b) { return a > 0 && b > 0 ? a / b : 0.0; };
  printf("\nSummary: means in ms of wall time around the call (crlib's own total_ns in "
         "brackets); ratio = crlib / floor\n");
  printf("%5s | %14s %8s %9s %9s %6s | %14s %9s %6s %9s %6s %9s %6s\n", "MiB", "dump [lib]",
         "frozen", "image_MiB", "shm_write", "ratio", "restore [lib]", "freshcopy", "ratio",
         "populate", "ratio", "shm_read", "ratio");
  for (const auto& [mib, f] : g_figures) {
    printf("%5" PRId64 " | %6.1f [%5.1f] %8.1f %9.2f %9.1f %6.2f | %6.1f [%5.1f] %9.1f %6.2f "
           "%9.1f %6.2f %9.1f %6.2f\n",
           mib, f.dump_ms, f.lib_dump_ms, f.frozen_ms, f.image_bytes / kMiB, f.floor_write_ms,
           ratio(f.dump_ms, f.floor_write_ms), f.restore_ms, f.lib_restore_ms, f.floor_copy_ms,
           ratio(f.restore_ms, f.floor_copy_ms), f.floor_populate_ms,
           ratio(f.restore_ms, f.floor_populate_ms), f.floor_read_ms,
           ratio(f.restore_ms, f.floor_read_ms));
  }
  printf("\nThe same in CPU ms of the calling thread (robust against other load)\n");
  printf("%5s | %8s %9s %6s | %8s %9s %6s %9s %6s %9s %6s\n", "MiB", "dump", "shm_write",
         "ratio", "restore", "freshcopy", "ratio", "populate", "ratio", "shm_read", "ratio");
  for (const auto& [mib, f] : g_figures) {
    printf("%5" PRId64 " | %8.1f %9.1f %6.2f | %8.1f %9.1f %6.2f %9.1f %6.2f %9.1f %6.2f\n", mib,
           f.dump_cpu, f.floor_write_cpu, ratio(f.dump_cpu, f.floor_write_cpu), f.restore_cpu,
           f.floor_copy_cpu, ratio(f.restore_cpu, f.floor_copy_cpu), f.floor_populate_cpu,
           ratio(f.restore_cpu, f.floor_populate_cpu), f.floor_read_cpu,
           ratio(f.restore_cpu, f.floor_read_cpu));
  }
  printf("\nMapped restore (--mappable image): wall ms, ratio to the copying restore, and "
         "where the time went\n");
  printf("%5s | %8s %8s %9s %9s | %8s %8s %8s %8s | %12s\n", "MiB", "mapped", "copied",
         "ratio", "cpu", "check", "create", "pages", "rest", "pages_mapped");
  for (const auto& [mib, f] : g_figures) {
    if (f.mapped_ms == 0) continue;
    printf("%5" PRId64 " | %8.1f %8.1f %9.3f %9.1f | %8.1f %8.1f %8.1f %8.1f | %12.0f\n", mib,
           f.mapped_ms, f.restore_ms, ratio(f.mapped_ms, f.restore_ms), f.mapped_cpu,
           f.mapped_check_ms, f.mapped_build_ms, f.mapped_pages_ms, f.mapped_rest_ms,
           f.pages_mapped);
  }
  printf("\nLazy restore next to the copying one (wall ms; ratio = lazy / copying restore)\n");
  printf("%5s | %9s | %10s %6s | %11s %6s\n", "MiB", "restore", "lazy:runs", "ratio",
         "lazy:all_in", "ratio");
  for (const auto& [mib, f] : g_figures) {
    if (f.lazy_running_ms == 0) continue;
    printf("%5" PRId64 " | %9.1f | %10.1f %6.3f | %11.1f %6.2f\n", mib, f.restore_ms,
           f.lazy_running_ms, ratio(f.lazy_running_ms, f.restore_ms), f.lazy_all_in_ms,
           ratio(f.lazy_all_in_ms, f.restore_ms));
  }
  printf("\n");
  for (const auto& [mib, f] : g_figures) {
    printf("%5" PRId64 " MiB: image %.0f bytes, %.0f pages stored, %.0f zero pages; "
           "shm_write floor wrote %.0f bytes\n",
           mib, f.image_bytes, f.pages_stored, f.pages_zero, f.image_bytes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Children announce readiness with SIGUSR2, collected by sigtimedwait.
  BlockReadySignal();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  PrintSummary();
  return 0;
}
