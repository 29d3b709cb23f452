#include "benchmarks/bench_child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/str_format.h"
#include "core/context.h"

namespace crlib_bench {

double NowMs() { return crlib::NowNs() / 1e6; }

// CPU time of this thread: nearly all the work of a dump or restore (ptrace,
// /proc/PID/mem, the image I/O) and of the floors runs here, and unlike wall
// time it does not grow when other jobs compete for the CPUs.
double CpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void FillPage(uint8_t* page, uint64_t index) {
  auto* w = reinterpret_cast<uint64_t*>(page);
  w[0] = index + 1;
  uint64_t x = (index + 1) * 0x9E3779B97F4A7C15ull;
  for (size_t j = 1; j < kPage / 8; ++j) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    w[j] = (j % 64 < 16) ? 0x2020656761702061ull + j  // "a page  " + j: text-like
                         : x;
  }
}

void Fill(uint8_t* p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += kPage) FillPage(p + off, off / kPage);
}

bool CheckPage(const uint8_t* page, uint64_t index) {
  alignas(8) uint8_t want[kPage];
  FillPage(want, index);
  return memcmp(page, want, kPage) == 0;
}

uint8_t* MapFilled(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  Fill(static_cast<uint8_t*>(p), bytes);
  return static_cast<uint8_t*>(p);
}

char ProcState(pid_t pid) {
  std::ifstream f(absl::StrFormat("/proc/%d/stat", pid));
  std::string line;
  std::getline(f, line);
  size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? '?' : line[paren + 2];
}

void BlockReadySignal() {
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, nullptr);
}

absl::StatusOr<pid_t> SpawnChild(size_t bytes, size_t reserve_bytes) {
  const pid_t parent = getpid();
  fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    void* p = mmap(reinterpret_cast<void*>(kDataAddress), bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) _exit(101);
    Fill(static_cast<uint8_t*>(p), bytes);
    if (reserve_bytes > 0) {
      auto* r = static_cast<uint8_t*>(mmap(nullptr, reserve_bytes, PROT_READ | PROT_WRITE,
                                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
      if (r == MAP_FAILED) _exit(103);
      for (size_t off = 0; off < reserve_bytes; off += size_t{64} << 30) FillPage(r + off, off);
    }
    int null = open("/dev/null", O_RDWR);
    if (null < 0) _exit(102);
    for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
    syscall(SYS_close_range, 3, ~0u, 0);
    kill(parent, SIGUSR2);  // ready
    for (;;) pause();
  }
  // SIGUSR2 is blocked (BlockReadySignal), so it waits here as pending.
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  for (;;) {
    timespec timeout{120, 0};
    siginfo_t si;
    int sig = sigtimedwait(&usr2, &si, &timeout);
    if (sig == SIGUSR2 && si.si_pid == pid) break;
    if (sig < 0 && errno == EINTR) continue;
    if (sig == SIGUSR2) continue;  // a stale one
    int status = 0;
    pid_t w = waitpid(pid, &status, WNOHANG);
    kill(pid, SIGKILL);
    if (w == 0) waitpid(pid, &status, 0);
    return absl::DeadlineExceededError(
        absl::StrFormat("child %d not ready (status 0x%x)", pid, status));
  }
  // Until it sleeps in pause().
  while (ProcState(pid) != 'S') usleep(200);
  return pid;
}

void KillAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

absl::Status CheckRestored(pid_t pid, size_t bytes) {
  if (ProcState(pid) == 'Z' || kill(pid, 0) != 0)
    return absl::InternalError(absl::StrFormat("restored pid %d is not running", pid));
  int fd = open(absl::StrFormat("/proc/%d/mem", pid).c_str(), O_RDONLY);
  if (fd < 0) return absl::ErrnoToStatus(errno, "open /proc/PID/mem");
  const size_t pages = bytes / kPage;
  alignas(8) uint8_t buf[kPage];
  absl::Status result;
  for (size_t i = 0; i <= pages; i += 997) {
    size_t index = i < pages ? i : pages - 1;  // the last page too
    if (pread(fd, buf, kPage, kDataAddress + index * kPage) != static_cast<ssize_t>(kPage) ||
        !CheckPage(buf, index)) {
      result = absl::DataLossError(absl::StrFormat("restored page %zu differs", index));
      break;
    }
    if (i < pages && i + 997 > pages) i = pages - 997;  // next: i == pages
  }
  close(fd);
  return result;
}

absl::Status WriteFile(const std::string& path, const uint8_t* chunk, size_t chunk_bytes,
                       size_t bytes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, "open " + path);
  for (size_t done = 0; done < bytes;) {
    ssize_t w = write(fd, chunk, std::min(chunk_bytes, bytes - done));
    if (w <= 0) {
      absl::Status st = absl::ErrnoToStatus(errno, "write " + path);
      close(fd);
      return st;
    }
    done += w;
  }
  if (close(fd) != 0) return absl::ErrnoToStatus(errno, "close " + path);
  return absl::OkStatus();
}

}  // namespace crlib_bench
