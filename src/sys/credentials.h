// A thread's credentials, and the one sequence of system calls that gives
// a thread exactly a given set of them: in a traced thread through remote
// calls (restore) or in the calling thread only (opening files with the
// credentials of the process they are for).
#ifndef CRLIB_SYS_CREDENTIALS_H_
#define CRLIB_SYS_CREDENTIALS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace crlib::sys {

// What the kernel keeps per thread in its `struct cred`. Capability sets
// have bit n for capability n.
struct Credentials {
  uint32_t uid = 0, euid = 0, suid = 0, fsuid = 0;
  uint32_t gid = 0, egid = 0, sgid = 0, fsgid = 0;
  std::vector<uint32_t> groups;  // supplementary groups
  uint64_t cap_inheritable = 0;
  uint64_t cap_permitted = 0;
  uint64_t cap_effective = 0;
  uint64_t cap_bounding = 0;
  uint64_t cap_ambient = 0;
  uint32_t securebits = 0;
  bool operator==(const Credentials&) const = default;
};

// Runs system calls in one thread: the calling one, or a traced one.
class SyscallRunner {
 public:
  virtual ~SyscallRunner() = default;
  // Copies `size` bytes (at most 4096) where the thread can read them and
  // returns their address there. Valid until the next Stage.
  virtual absl::StatusOr<uint64_t> Stage(const void* data, size_t size) = 0;
  // Runs system call `nr`; a failure is an error status naming `what`.
  virtual absl::StatusOr<int64_t> Call(const std::string& what, long nr,
                                       std::array<uint64_t, 6> args) = 0;
};

// Gives the thread of `runner` exactly `creds`: supplementary groups, the
// bounding set lowered to `cap_bounding`, the four uids and gids, the
// securebits, the effective, permitted and inheritable sets, then the
// ambient set. The thread must hold CAP_SETUID, CAP_SETGID and CAP_SETPCAP
// when this starts; capabilities in `creds` it does not hold make capset
// fail (EPERM), the bounding set is only ever lowered. Errors name the
// call and its arguments.
absl::Status SetCredentials(SyscallRunner& runner, const Credentials& creds);

// SetCredentials for the calling thread alone, with raw system calls:
// glibc's wrappers would change every thread of the process.
absl::Status SetThisThreadCredentials(const Credentials& creds);

// Whether this process holds capability `cap` (CAP_*) in its effective
// set, from /proc/self/status.
absl::StatusOr<bool> WeHoldCapability(int cap);

}  // namespace crlib::sys

#endif  // CRLIB_SYS_CREDENTIALS_H_
