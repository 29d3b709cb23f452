// The page path of a dump and a restore, each next to its floor, measured
// in the same run: a process holding 64 MiB .. 1 GiB of non-zero pages is
// dumped
//   - to a new /dev/shm file, against write() of the image's size to a new
//     file there in 4 MiB and in 1 MiB chunks (the "tmpfs-write floor");
//   - to a pipe drained by a reader thread (the stream path: `crlib dump
//     --image - | ssh ...`), against write() of as many bytes to a pipe
//     drained the same way;
//   - compressed (zstd level 1) to /dev/shm;
// and restored from the file, from a pipe fed by a thread that copies the
// file into it (`cat image | crlib restore --image -`), and compressed.
// A summary with the ratios is printed at the end.
//
// Run as root. Only the library call or the floor's loop is timed. Within
// an iteration the dump and its floors run in rotating order, after the
// child has filled its memory: on these VMs a tmpfs write costs several
// times more when its guest pages are not backed by the host yet, and the
// rotation gives each the same share of pages freed by the one before.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "benchmarks/bench_child.h"
#include "core/context.h"
#include "cr/checkpoint.h"
#include "core/byte_stream.h"
#include "core/image_writer.h"
#include "cr/restore.h"
#include "mm/page_array.h"

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

// Mean ms per size in MiB and figure name, for the summary.
std::map<int64_t, std::map<std::string, double>> g_ms;

std::string ImagePath() { return absl::StrFormat("/dev/shm/crlib-pagepath-%d.img", getpid()); }

void Fail(benchmark::State& state, const std::string& what, const absl::Status& st) {
  std::string msg = what + ": " + st.ToString();
  fprintf(stderr, "ERROR %s\n", msg.c_str());
  state.SkipWithError(msg.c_str());
}

// A pipe whose read end a thread drains into a 1 MiB buffer, as `ssh` or
// `cat >/dev/null` would; the pipe keeps the default size a shell gives.
class DrainedPipe {
 public:
  DrainedPipe() {
    if (pipe2(fds_, O_CLOEXEC) != 0) return;
    reader_ = std::thread([this] {
      std::vector<char> buf(kMiB);
      for (;;) {
        ssize_t n = read(fds_[0], buf.data(), buf.size());
        if (n <= 0) break;
        drained_ += n;
      }
    });
  }
  // Closes the write end (if still open) and waits for the reader.
  uint64_t Finish() {
    CloseWriteEnd();
    if (reader_.joinable()) reader_.join();
    if (fds_[0] >= 0) close(fds_[0]);
    fds_[0] = -1;
    return drained_;
  }
  ~DrainedPipe() { Finish(); }
  int write_fd() const { return fds_[1]; }
  void CloseWriteEnd() {
    if (fds_[1] >= 0) close(fds_[1]);
    fds_[1] = -1;
  }

 private:
  int fds_[2] = {-1, -1};
  std::thread reader_;
  uint64_t drained_ = 0;
};

// One step of a dump iteration: returns its wall ms, or an error.
using Step = std::function<absl::StatusOr<double>()>;

// Each iteration spawns a child of range(0) MiB, then runs `dump` (which
// dumps and kills it) and each of `floors` in rotating order; their means
// go to the summary as `name` and `name`.floor names. The first iteration
// runs the dump first so that floors know the image size.
void RunDumpIterations(benchmark::State& state, const std::string& name,
                       const std::function<absl::StatusOr<double>(pid_t, crlib::Stats*)>& dump,
                       const std::vector<std::pair<std::string, Step>>& floors) {
  const size_t bytes = state.range(0) * kMiB;
  std::vector<double> sums(floors.size() + 1, 0);
  double sum_cpu = 0;
  crlib::Stats last;
  int64_t round = 0;
  for (auto _ : state) {
    absl::StatusOr<pid_t> child = SpawnChild(bytes);
    if (!child.ok()) {
      Fail(state, "spawn", child.status());
      break;
    }
    const size_t steps = floors.size() + 1;
    bool ok = true;
    for (size_t k = 0; k < steps && ok; ++k) {
      const size_t which = (k + round) % steps;  // 0 is the dump
      if (which == 0) {
        crlib::Stats stats;
        const double c0 = CpuMs();
        absl::StatusOr<double> ms = dump(*child, &stats);
        sum_cpu += CpuMs() - c0;
        if (!ms.ok()) {
          KillAndReap(*child);
          Fail(state, name, ms.status());
          ok = false;
          break;
        }
        waitpid(*child, nullptr, 0);
        state.SetIterationTime(*ms / 1e3);
        sums[0] += *ms;
        last = stats;
      } else {
        absl::StatusOr<double> ms = floors[which - 1].second();
        if (!ms.ok()) {
          Fail(state, floors[which - 1].first, ms.status());
          ok = false;
          break;
        }
        sums[which] += *ms;
      }
    }
    ++round;
    if (!ok) {
      KillAndReap(*child);
      break;
    }
  }
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  auto& figures = g_ms[state.range(0)];
  figures[name] = sums[0] / n;
  state.counters["dump_ms"] = sums[0] / n;
  state.counters["cpu_ms"] = sum_cpu / n;
  state.counters["lib_ms"] = last.total_ns / 1e6;
  state.counters["frozen_ms"] = last.frozen_ns / 1e6;
  state.counters["image_MiB"] = last.bytes / double(kMiB);
  for (size_t i = 0; i < floors.size(); ++i) {
    figures[name + "." + floors[i].first] = sums[i + 1] / n;
    state.counters[floors[i].first] = sums[i + 1] / n;
  }
  figures[name + ".image_MiB"] = last.bytes / double(kMiB);
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

// A dump of `pid` with `options` to `path` (or options.image_fd), timed.
absl::StatusOr<double> TimedDump(pid_t pid, const crlib::Options& options, const std::string& path,
                                 const crlib::CheckpointOptions& cp, crlib::Stats* stats) {
  crlib::Context ctx(options);
  const double t0 = NowMs();
  absl::Status st = crlib::CheckpointProcess(&ctx, pid, path, cp);
  const double ms = NowMs() - t0;
  *stats = ctx.stats();
  if (!st.ok()) return st;
  return ms;
}

// The tmpfs-write floor: `*size` bytes to a new file next to the image.
Step FileFloor(const uint8_t* chunk, size_t chunk_bytes, const uint64_t* size) {
  return [=]() -> absl::StatusOr<double> {
    const std::string path = ImagePath() + ".floor";
    const double t0 = NowMs();
    absl::Status st = WriteFile(path, chunk, chunk_bytes, *size);
    const double ms = NowMs() - t0;
    unlink(path.c_str());
    if (!st.ok()) return st;
    return ms;
  };
}

void BM_DumpFile(benchmark::State& state) {
  const std::string image = ImagePath();
  uint8_t* chunk = MapFilled(kChunk);
  uint64_t size = state.range(0) * kMiB;
  RunDumpIterations(
      state, "dump_file",
      [&](pid_t pid, crlib::Stats* stats) -> absl::StatusOr<double> {
        absl::StatusOr<double> ms = TimedDump(pid, {}, image, {}, stats);
        size = stats->bytes;
        unlink(image.c_str());
        return ms;
      },
      {{"floor_4M", FileFloor(chunk, kChunk, &size)},
       {"floor_1M", FileFloor(chunk, kMiB, &size)}});
  munmap(chunk, kChunk);
}

void BM_DumpPipe(benchmark::State& state) {
  uint8_t* chunk = MapFilled(kChunk);
  uint64_t size = state.range(0) * kMiB;
  RunDumpIterations(
      state, "dump_pipe",
      [&](pid_t pid, crlib::Stats* stats) -> absl::StatusOr<double> {
        DrainedPipe pipe;
        crlib::CheckpointOptions cp;
        cp.image_fd = pipe.write_fd();
        absl::StatusOr<double> ms = TimedDump(pid, {}, "pipe", cp, stats);
        size = stats->bytes;
        if (ms.ok() && pipe.Finish() != stats->bytes) {
          return absl::DataLossError("the reader got fewer bytes than the image has");
        }
        return ms;
      },
      {{"pipe_floor_4M",
        [&]() -> absl::StatusOr<double> {
          DrainedPipe pipe;
          const double t0 = NowMs();
          for (uint64_t done = 0; done < size;) {
            ssize_t w = write(pipe.write_fd(), chunk, std::min<uint64_t>(kChunk, size - done));
            if (w <= 0) return absl::ErrnoToStatus(errno, "write to a pipe");
            done += w;
          }
          pipe.CloseWriteEnd();
          pipe.Finish();  // the reader has everything
          return NowMs() - t0;
        }},
       {"floor_4M", FileFloor(chunk, kChunk, &size)}});
  munmap(chunk, kChunk);
}

void BM_DumpCompressed(benchmark::State& state) {
  const std::string image = ImagePath();
  uint8_t* chunk = MapFilled(kChunk);
  uint64_t size = state.range(0) * kMiB;
  crlib::Options options;
  options.compression_level = 1;
  RunDumpIterations(
      state, "dump_zstd",
      [&](pid_t pid, crlib::Stats* stats) -> absl::StatusOr<double> {
        absl::StatusOr<double> ms = TimedDump(pid, options, image, {}, stats);
        unlink(image.c_str());
        return ms;
      },
      // Against writing the raw image: what compression saves or costs.
      {{"floor_4M", FileFloor(chunk, kChunk, &size)}});
  munmap(chunk, kChunk);
}

// Restores from one image, read as a file and as a pipe fed by a thread
// that copies the file into it in 1 MiB reads (like `cat`).
void RestoreFrom(benchmark::State& state, const crlib::Options& dump_options, bool pipe,
                 const std::string& name) {
  const size_t bytes = state.range(0) * kMiB;
  const std::string image = ImagePath();
  {
    absl::StatusOr<pid_t> child = SpawnChild(bytes);
    crlib::Stats stats;
    absl::Status st = child.status();
    if (st.ok()) st = TimedDump(*child, dump_options, image, {}, &stats).status();
    if (child.ok()) waitpid(*child, nullptr, 0);
    if (!st.ok()) {
      Fail(state, "dump (restore set-up)", st);
      for (auto _ : state) {
      }
      return;
    }
  }
  double sum_ms = 0, sum_cpu = 0;
  bool checked = false;
  for (auto _ : state) {
    int fds[2] = {-1, -1};
    std::thread feeder;
    crlib::RestoreOptions ro;
    if (pipe) {
      if (pipe2(fds, O_CLOEXEC) != 0) {
        Fail(state, "pipe2", absl::ErrnoToStatus(errno, "pipe2"));
        break;
      }
      ro.image_fd = fds[0];
    }
    crlib::Context ctx;
    const double t0 = NowMs(), c0 = CpuMs();
    if (pipe) {
      feeder = std::thread([&] {
        int in = open(image.c_str(), O_RDONLY | O_CLOEXEC);
        std::vector<char> buf(kMiB);
        for (ssize_t n; in >= 0 && (n = read(in, buf.data(), buf.size())) > 0;) {
          for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fds[1], buf.data() + off, n - off);
            if (w <= 0) break;
            off += w;
          }
        }
        if (in >= 0) close(in);
        close(fds[1]);
      });
    }
    absl::StatusOr<pid_t> pid = crlib::RestoreProcess(&ctx, image, ro);
    const double t1 = NowMs(), c1 = CpuMs();
    if (pipe) {
      close(fds[0]);  // a feeder still writing gets EPIPE
      feeder.join();
    }
    if (!pid.ok()) {
      Fail(state, "RestoreProcess", pid.status());
      break;
    }
    state.SetIterationTime((t1 - t0) / 1e3);
    sum_ms += t1 - t0;
    sum_cpu += c1 - c0;
    if (!checked) {
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
  state.counters["restore_ms"] = sum_ms / n;
  state.counters["cpu_ms"] = sum_cpu / n;
  g_ms[state.range(0)][name] = sum_ms / n;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

void BM_RestoreFile(benchmark::State& state) { RestoreFrom(state, {}, false, "restore_file"); }
void BM_RestorePipe(benchmark::State& state) { RestoreFrom(state, {}, true, "restore_pipe"); }
void BM_RestoreCompressed(benchmark::State& state) {
  crlib::Options options;
  options.compression_level = 1;
  RestoreFrom(state, options, false, "restore_zstd");
}

// The page array alone, no process: range(0) MiB of child-like pages
// through PageArray::Add to /dev/null, raw or compressed (zstd level 1),
// with the thread (and so its workers) pinned to one CPU or on all of
// them: what compressing batches in parallel gains.
void PageArrayOnly(benchmark::State& state, int level, bool one_cpu, const std::string& name) {
  const size_t bytes = state.range(0) * kMiB;
  uint8_t* data = MapFilled(bytes);
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  cpu_set_t saved;
  sched_getaffinity(0, sizeof(saved), &saved);
  if (one_cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &saved)) {
        CPU_SET(c, &one);
        break;
      }
    }
    sched_setaffinity(0, sizeof(one), &one);
  }
  crlib::ImageInfo info;
  info.page_size = crlib_bench::kPage;
  info.flags = level > 0 ? crlib::kImageCompressed : 0;
  double sum_ms = 0, sum_cpu = 0;
  for (auto _ : state) {
    crlib::FdSink sink(null);
    crlib::ImageWriter writer(&sink, info);
    crlib::Context ctx(crlib::Options{.compression_level = level});
    ctx.set_writer(&writer);
    const double t0 = NowMs();
    timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    absl::Status st = writer.Begin();
    {
      crlib::PageArray pages(&ctx, 0);
      if (st.ok()) st = pages.Add(crlib_bench::kDataAddress, data, bytes / crlib_bench::kPage);
      if (st.ok()) st = pages.Flush();
    }
    if (st.ok()) st = writer.Finish();
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    const double ms = NowMs() - t0;
    if (!st.ok()) {
      Fail(state, "PageArray", st);
      break;
    }
    state.SetIterationTime(ms / 1e3);
    sum_ms += ms;
    sum_cpu += (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6;
  }
  sched_setaffinity(0, sizeof(saved), &saved);
  close(null);
  munmap(data, bytes);
  const double n = static_cast<double>(state.iterations());
  if (n == 0) return;
  state.counters["process_cpu_ms"] = sum_cpu / n;
  g_ms[state.range(0)][name] = sum_ms / n;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

void BM_PageArrayRaw(benchmark::State& state) { PageArrayOnly(state, 0, false, "array_raw"); }
void BM_PageArrayZstdOneCpu(benchmark::State& state) {
  PageArrayOnly(state, 1, true, "array_zstd_1cpu");
}
void BM_PageArrayZstd(benchmark::State& state) { PageArrayOnly(state, 1, false, "array_zstd"); }

#define SIZES Arg(64)->Arg(256)->Arg(1024)
BENCHMARK(BM_DumpFile)->SIZES->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DumpPipe)->SIZES->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DumpCompressed)->SIZES->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RestoreFile)->SIZES->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RestorePipe)->SIZES->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RestoreCompressed)->SIZES->Iterations(3)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PageArrayRaw)->Arg(256)->Iterations(5)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PageArrayZstdOneCpu)->Arg(256)->Iterations(5)->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PageArrayZstd)->Arg(256)->Iterations(5)->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void PrintSummary() {
  if (g_ms.empty()) return;
  auto get = [](const std::map<std::string, double>& f, const char* k) {
    auto it = f.find(k);
    return it == f.end() ? 0.0 : it->second;
  };
  auto ratio = [](double a, double b) { return a > 0 && b > 0 ? a / b : 0.0; };
  printf("\nSummary: mean wall ms; ratio = crlib / floor, the floor measured in the same "
         "iterations: write() of the image's size to a new /dev/shm file in 4 MiB (f4) or "
         "1 MiB (f1) chunks, or to a drained pipe (p4)\n");
  printf("%5s | %9s %7s %7s %5s %5s | %9s %7s %7s %5s %5s | %9s %7s %7s %5s | %8s %8s %5s "
         "%8s %5s\n",
         "MiB", "dump_file", "f4", "f1", "r_f4", "r_f1", "dump_pipe", "p4", "f4", "r_p4", "r_f4",
         "dump_zstd", "MiB", "f4", "r_f4", "rst_file", "rst_pipe", "ratio", "rst_zstd", "ratio");
  for (const auto& [mib, f] : g_ms) {
    const double file = get(f, "dump_file"), pipe = get(f, "dump_pipe"),
                 zstd = get(f, "dump_zstd"), rfile = get(f, "restore_file");
    printf("%5" PRId64 " | %9.1f %7.1f %7.1f %5.2f %5.2f | %9.1f %7.1f %7.1f %5.2f %5.2f | "
           "%9.1f %7.1f %7.1f %5.2f | %8.1f %8.1f %5.2f %8.1f %5.2f\n",
           mib, file, get(f, "dump_file.floor_4M"), get(f, "dump_file.floor_1M"),
           ratio(file, get(f, "dump_file.floor_4M")), ratio(file, get(f, "dump_file.floor_1M")),
           pipe, get(f, "dump_pipe.pipe_floor_4M"), get(f, "dump_pipe.floor_4M"),
           ratio(pipe, get(f, "dump_pipe.pipe_floor_4M")), ratio(pipe, get(f, "dump_pipe.floor_4M")),
           zstd, get(f, "dump_zstd.image_MiB"), get(f, "dump_zstd.floor_4M"),
           ratio(zstd, get(f, "dump_zstd.floor_4M")), rfile, get(f, "restore_pipe"),
           ratio(get(f, "restore_pipe"), rfile), get(f, "restore_zstd"),
           ratio(get(f, "restore_zstd"), rfile));
  }
  for (const auto& [mib, f] : g_ms) {
    if (get(f, "array_zstd") == 0) continue;
    printf("%5" PRId64 " MiB through PageArray to /dev/null: raw %.1f ms, zstd on one CPU %.1f ms, "
           "zstd on all CPUs %.1f ms (%.2fx)\n",
           mib, get(f, "array_raw"), get(f, "array_zstd_1cpu"), get(f, "array_zstd"),
           ratio(get(f, "array_zstd_1cpu"), get(f, "array_zstd")));
  }
}

}  // namespace

int main(int argc, char** argv) {
  BlockReadySignal();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  PrintSummary();
  return 0;
}
