// Shared by the benchmarks that dump or restore a real process: a child
// holding N MiB of non-zero, different-on-every-page data at a fixed
// address, the floors' file writes, and the clocks they are timed with.
#ifndef CRLIB_BENCHMARKS_BENCH_CHILD_H_
#define CRLIB_BENCHMARKS_BENCH_CHILD_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace crlib_bench {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kPage = 4096;
// The child's data lives here, so the parent can check a restored process.
constexpr uintptr_t kDataAddress = 0x600000000000;

// Wall and CPU time of the calling thread, in ms.
double NowMs();
double CpuMs();

// A different, non-zero pattern on every page: its index, then words mixed
// from page and word index with a text-like run (zstd level 1 keeps about
// 75 % of it).
void FillPage(uint8_t* page, uint64_t index);
void Fill(uint8_t* p, size_t bytes);
bool CheckPage(const uint8_t* page, uint64_t index);
// `bytes` of fresh anonymous memory, filled; nullptr on failure.
uint8_t* MapFilled(size_t bytes);

// The state letter of /proc/PID/stat ('?' when unknown).
char ProcState(pid_t pid);

// Forks a child that maps `bytes` at kDataAddress, fills it, keeps only
// fd 0-2 (all /dev/null) and sleeps in pause(). Returns once it sleeps.
// With `reserve_bytes`, the child also holds a MAP_NORESERVE reservation
// that big with one page written per 64 GiB (as ASan's shadow or a JVM
// heap). The caller must block SIGUSR2 (BlockReadySignal) before: the
// child announces readiness with it.
absl::StatusOr<pid_t> SpawnChild(size_t bytes, size_t reserve_bytes = 0);
void BlockReadySignal();
void KillAndReap(pid_t pid);

// Reads a few pages of a restored child's data and compares them.
absl::Status CheckRestored(pid_t pid, size_t bytes);

// Writes `bytes` to a new file at `path`, `chunk_bytes` per write() from
// `chunk` (at least that long): the floor a dump to that directory is
// measured against.
absl::Status WriteFile(const std::string& path, const uint8_t* chunk, size_t chunk_bytes,
                       size_t bytes);

}  // namespace crlib_bench

#endif  // CRLIB_BENCHMARKS_BENCH_CHILD_H_
