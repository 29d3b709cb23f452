// /proc parsing: the read side of everything the kernel shows about a task.
#ifndef CRLIB_SYS_PROC_H_
#define CRLIB_SYS_PROC_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sys/unique_fd.h"

namespace crlib::sys {

// Reads a whole (small, /proc-style) file.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Reads `size` bytes at `address` of process `pid` through `mem_fd`, its
// open /proc/PID/mem; OutOfRange where nothing is mapped.
absl::Status ReadProcessMemory(int mem_fd, pid_t pid, uint64_t address, void* buffer, size_t size);
absl::StatusOr<std::string> ReadLink(const std::string& path);

// One line of /proc/PID/maps.
struct MapsEntry {
  uint64_t start = 0, end = 0;
  bool read = false, write = false, exec = false, shared = false;
  uint64_t offset = 0;
  uint32_t dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // may be empty, "[heap]", "/x (deleted)" ...
  // The two-letter VmFlags codes ("rd wr mr mw me ac nr"), only from smaps.
  std::string vm_flags;
  // "ProtectionKey:" of smaps (pkey_mprotect), 0 when absent.
  int protection_key = 0;
};
absl::StatusOr<std::vector<MapsEntry>> ParseMaps(absl::string_view text);
absl::StatusOr<std::vector<MapsEntry>> ReadMaps(pid_t pid);
// The same from /proc/PID/smaps, with `vm_flags` filled. The kernel walks
// every mapping's page tables to produce the counters that come with it,
// so it costs time in populated pages: read it once per dump.
absl::StatusOr<std::vector<MapsEntry>> ParseSmaps(absl::string_view text);
absl::StatusOr<std::vector<MapsEntry>> ReadSmaps(pid_t pid);

// The value of "Key:" in /proc/PID/status, or NotFound.
absl::StatusOr<std::string> StatusField(absl::string_view status, absl::string_view key);

// A hexadecimal "Key:" of /proc/PID/status (SigIgn, CapEff ...) as a mask.
absl::StatusOr<uint64_t> StatusMask(absl::string_view status, absl::string_view key);

// Fields of /proc/PID/stat, split after the comm field; index 0 is field 3
// (state) in proc(5) numbering.
absl::StatusOr<std::vector<std::string>> ReadStatFields(pid_t pid);

// One lock as /proc/locks and the "lock:" lines of /proc/PID/fdinfo/N show
// it: "1: POSIX  ADVISORY  WRITE 7584 fe:00:10953325 5 14".
struct LockLine {
  bool waiter = false;  // "1: -> FLOCK ...": a request blocked on the lock before it
  std::string kind;     // FLOCK, POSIX, OFDLCK, LEASE, DELEG ...
  std::string mode;     // ADVISORY; for leases ACTIVE, BREAKING ...
  std::string type;     // READ, WRITE, UNLCK
  int64_t pid = 0;      // -1 for OFD locks
  uint32_t major = 0, minor = 0;
  uint64_t inode = 0;
  uint64_t start = 0;
  uint64_t end = UINT64_MAX;  // last byte; UINT64_MAX: "EOF"
};

// Parses one such line, without its "lock:" prefix; InvalidArgument if it
// does not have that form.
absl::StatusOr<LockLine> ParseLockLine(absl::string_view line);

// Thread IDs in /proc/PID/task.
absl::StatusOr<std::vector<pid_t>> ListThreads(pid_t pid);
// Open descriptor numbers in /proc/PID/fd.
absl::StatusOr<std::vector<int>> ListFds(pid_t pid);
// A descriptor of ours on the open file description process `pid` holds
// as `fd` (pidfd_getfd): to ask it what /proc does not tell.
absl::StatusOr<UniqueFd> TakeFd(pid_t pid, int fd);
// PIDs whose parent is `pid` (from /proc/PID/task/*/children).
absl::StatusOr<std::vector<pid_t>> ListChildren(pid_t pid);

// Signals whose handler is not SIG_DFL (SigIgn | SigCgt), bit (n-1) for
// signal n, from the text of /proc/PID/status.
absl::StatusOr<uint64_t> NonDefaultSignals(absl::string_view status);

// Resource limits from /proc/PID/limits, indexed by RLIMIT_*; unlimited
// is RLIM_INFINITY. Unlike prlimit(2) on another process it needs no
// CAP_SYS_RESOURCE when the process belongs to another user.
struct Limit {
  uint64_t cur = 0, max = 0;
};
absl::StatusOr<std::vector<Limit>> ReadLimits(pid_t pid);

bool ProcessExists(pid_t pid);

// How long a restore waits for the kernel to free a TID that no task holds.
inline constexpr std::chrono::seconds kTidReleaseWait{1};

// Whether a clone3 with set_tid = `tid` that failed with EEXIST is worth
// trying again; if so, sleeps a little first. The kernel frees a dead
// thread's number only at the end of that thread's own release_task, after
// it has removed the task (kill() finds nothing) and after it has told the
// parent that its process ended: right after waitpid() the TID of a thread
// of the reaped process may still be allocated, for microseconds or, on a
// loaded machine, milliseconds. True while no task holds `tid` and
// `deadline` has not passed; false as soon as a task holds it. Preserves
// errno.
bool AwaitTidRelease(pid_t tid, std::chrono::steady_clock::time_point deadline);

}  // namespace crlib::sys

#endif  // CRLIB_SYS_PROC_H_
