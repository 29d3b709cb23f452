#include "sys/credentials.h"

#include <linux/capability.h>
#include <linux/prctl.h>
#include <linux/securebits.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "sys/proc.h"

namespace crlib::sys {
namespace {

// The calling thread, with raw system calls.
class ThisThreadRunner : public SyscallRunner {
 public:
  absl::StatusOr<uint64_t> Stage(const void* data, size_t size) override {
    staged_.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
    return reinterpret_cast<uint64_t>(staged_.data());
  }
  absl::StatusOr<int64_t> Call(const std::string& what, long nr,
                               std::array<uint64_t, 6> a) override {
    long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (r < 0) return Errno("%s", what);
    return r;
  }

 private:
  std::vector<uint8_t> staged_;
};

// setfsuid/setfsgid report no error: they return the previous value
// whatever happens. An invalid ID (-1) changes nothing and returns the
// current one, which tells whether the change took.
absl::Status SetFsId(SyscallRunner& runner, const char* name, long nr, uint32_t id) {
  CRLIB_RETURN_IF_ERROR(runner.Call(name, nr, {id}).status());
  CRLIB_ASSIGN_OR_RETURN(int64_t now, runner.Call(name, nr, {0xffffffffu}));
  if (static_cast<uint32_t>(now) != id) {
    return absl::PermissionDeniedError(absl::StrFormat("%s(%d) left it at %d", name, id, now));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SetCredentials(SyscallRunner& runner, const Credentials& c) {
  CRLIB_ASSIGN_OR_RETURN(uint64_t groups,
                         runner.Stage(c.groups.data(), c.groups.size() * sizeof(uint32_t)));
  CRLIB_RETURN_IF_ERROR(runner
                            .Call(absl::StrFormat("setgroups(%s)", absl::StrJoin(c.groups, ",")),
                                  SYS_setgroups, {c.groups.size(), groups})
                            .status());
  // The bounding set can only be lowered, and only with CAP_SETPCAP,
  // which the capset below may take away: first.
  CRLIB_ASSIGN_OR_RETURN(std::string last_text, ReadFile("/proc/sys/kernel/cap_last_cap"));
  int last_cap = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(last_text), &last_cap) || last_cap > 63) {
    return absl::DataLossError("unparsable /proc/sys/kernel/cap_last_cap: " + last_text);
  }
  for (int cap = 0; cap <= last_cap; ++cap) {
    if (c.cap_bounding & (uint64_t{1} << cap)) continue;
    CRLIB_RETURN_IF_ERROR(runner
                              .Call(absl::StrFormat("prctl(PR_CAPBSET_DROP, %d)", cap), SYS_prctl,
                                    {PR_CAPBSET_DROP, static_cast<uint64_t>(cap)})
                              .status());
  }
  // With SECBIT_NO_SETUID_FIXUP the kernel leaves the capability sets
  // alone while the IDs change (leaving uid 0 would otherwise clear them,
  // and fsuid 0 the file-system ones), so the thread keeps CAP_SETUID for
  // setfsuid and CAP_SETPCAP for the image's own securebits; capset then
  // sets the recorded sets exactly.
  const uint64_t fixup_off = SECBIT_NO_SETUID_FIXUP | SECBIT_KEEP_CAPS;
  CRLIB_RETURN_IF_ERROR(runner
                            .Call("prctl(PR_SET_SECUREBITS, NO_SETUID_FIXUP|KEEP_CAPS)", SYS_prctl,
                                  {PR_SET_SECUREBITS, fixup_off})
                            .status());
  CRLIB_RETURN_IF_ERROR(
      runner.Call(absl::StrFormat("setresgid(%d, %d, %d)", c.gid, c.egid, c.sgid), SYS_setresgid,
                  {c.gid, c.egid, c.sgid})
          .status());
  CRLIB_RETURN_IF_ERROR(SetFsId(runner, "setfsgid", SYS_setfsgid, c.fsgid));
  CRLIB_RETURN_IF_ERROR(
      runner.Call(absl::StrFormat("setresuid(%d, %d, %d)", c.uid, c.euid, c.suid), SYS_setresuid,
                  {c.uid, c.euid, c.suid})
          .status());
  CRLIB_RETURN_IF_ERROR(SetFsId(runner, "setfsuid", SYS_setfsuid, c.fsuid));
  CRLIB_RETURN_IF_ERROR(runner
                            .Call(absl::StrFormat("prctl(PR_SET_SECUREBITS, 0x%x)", c.securebits),
                                  SYS_prctl, {PR_SET_SECUREBITS, c.securebits})
                            .status());
  // Ambient capabilities the thread inherited must go; capset would drop
  // only those leaving the permitted or inheritable set.
  CRLIB_RETURN_IF_ERROR(runner
                            .Call("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", SYS_prctl,
                                  {PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL})
                            .status());
  struct {
    __user_cap_header_struct header;
    __user_cap_data_struct data[2];
  } caps{};
  caps.header.version = _LINUX_CAPABILITY_VERSION_3;
  caps.header.pid = 0;  // the calling thread
  for (int i = 0; i < 2; ++i) {
    caps.data[i].effective = static_cast<uint32_t>(c.cap_effective >> (32 * i));
    caps.data[i].permitted = static_cast<uint32_t>(c.cap_permitted >> (32 * i));
    caps.data[i].inheritable = static_cast<uint32_t>(c.cap_inheritable >> (32 * i));
  }
  CRLIB_ASSIGN_OR_RETURN(uint64_t at, runner.Stage(&caps, sizeof(caps)));
  CRLIB_RETURN_IF_ERROR(
      runner
          .Call(absl::StrFormat("capset(effective 0x%x, permitted 0x%x, inheritable 0x%x)",
                                c.cap_effective, c.cap_permitted, c.cap_inheritable),
                SYS_capset, {at, at + offsetof(decltype(caps), data)})
          .status());
  for (int cap = 0; cap <= last_cap; ++cap) {
    if (!(c.cap_ambient & (uint64_t{1} << cap))) continue;
    CRLIB_RETURN_IF_ERROR(runner
                              .Call(absl::StrFormat("prctl(PR_CAP_AMBIENT_RAISE, %d)", cap),
                                    SYS_prctl,
                                    {PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE,
                                     static_cast<uint64_t>(cap)})
                              .status());
  }
  return absl::OkStatus();
}

absl::Status SetThisThreadCredentials(const Credentials& creds) {
  ThisThreadRunner runner;
  return SetCredentials(runner, creds);
}

absl::StatusOr<bool> WeHoldCapability(int cap) {
  CRLIB_ASSIGN_OR_RETURN(std::string status, ReadFile("/proc/self/status"));
  CRLIB_ASSIGN_OR_RETURN(uint64_t effective, StatusMask(status, "CapEff"));
  return (effective >> cap) & 1;
}

}  // namespace crlib::sys
