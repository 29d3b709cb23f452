#include "task/uncarried_state.h"

#include <cpuid.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <unistd.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "sys/kernel.h"
#include "sys/proc.h"

namespace crlib {

namespace {

// PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE, the task flags PR_SET_IO_FLUSHER
// sets (include/linux/sched.h), in field 9 of /proc/PID/stat.
constexpr uint64_t kIoFlusherTaskFlags = 0x00080000 | 0x00100000;
// PF_MCE_PROCESS (PR_MCE_KILL set) and PF_MCE_EARLY, in the same field.
constexpr uint64_t kMceProcessTaskFlag = 0x00000080;
constexpr uint64_t kMceEarlyTaskFlag = 0x08000000;

// The PKRU every process gets at exec (arch/x86/mm/pkeys.c): key 0 open,
// keys 1-15 access-disabled. Its xstate component number.
constexpr uint32_t kInitPkru = 0x55555554;
constexpr unsigned kXstatePkru = 9;
constexpr int kNtX86Xstate = 0x202;  // NT_X86_XSTATE

// A speculation control the thread chose with PR_SET_SPECULATION_CTRL, as
// /proc/PID/status words it ("thread mitigated", "conditional force
// disabled" ...); "" for the system's default.
std::string ChosenSpeculation(absl::string_view status, absl::string_view key) {
  absl::StatusOr<std::string> v = sys::StatusField(status, key);
  if (!v.ok()) return "";
  if (absl::StartsWith(*v, "thread ") && *v != "thread vulnerable") return *v;
  if (*v == "conditional disabled" || *v == "conditional force disabled") return *v;
  return "";
}

// The whole lines in the first 4 KiB of `path`.
absl::StatusOr<std::string> ReadHead(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open %s", path);
  std::string head(4096, '\0');
  ssize_t n = read(fd, head.data(), head.size());
  const int saved = errno;
  close(fd);
  if (n < 0) return ErrnoError(saved, absl::StrCat("read of ", path));
  head.resize(static_cast<size_t>(n));
  head.resize(head.rfind('\n') == std::string::npos ? 0 : head.rfind('\n') + 1);
  return head;
}

// PKRU of stopped thread `tid`, from the standard-format XSAVE area
// (PTRACE_GETREGSET NT_X86_XSTATE); nullopt on CPUs without protection
// keys. A component in its init state (XSTATE_BV bit 9 clear) is 0.
absl::StatusOr<std::optional<uint32_t>> ReadPkru(pid_t tid) {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 4))) {  // OSPKE
    return std::nullopt;
  }
  __cpuid_count(0xd, kXstatePkru, eax, ebx, ecx, edx);
  const uint32_t offset = ebx;
  std::vector<uint8_t> area(offset + 8 > 4096 ? offset + 8 : 4096);
  iovec iov{area.data(), area.size()};
  if (ptrace(PTRACE_GETREGSET, tid, kNtX86Xstate, &iov) != 0) {
    return Errno("ptrace(GETREGSET, NT_X86_XSTATE) on tid %d", tid);
  }
  if (iov.iov_len < offset + 4) return std::nullopt;
  uint64_t xstate_bv;
  memcpy(&xstate_bv, area.data() + 512, sizeof(xstate_bv));
  uint32_t pkru = 0;
  if (xstate_bv & (uint64_t{1} << kXstatePkru)) memcpy(&pkru, area.data() + offset, sizeof(pkru));
  return pkru;
}

}  // namespace

absl::Status RefuseUncarriedProcState(pid_t pid, absl::Span<const pid_t> tids,
                                      const std::string* main_numa_maps) {
  for (pid_t tid : tids) {
    const std::string dir = absl::StrCat("/proc/", pid, "/task/", tid);
    CRLIB_ASSIGN_OR_RETURN(std::string status, sys::ReadFile(dir + "/status"));
    for (const char* key : {"Speculation_Store_Bypass", "SpeculationIndirectBranch"}) {
      std::string chosen = ChosenSpeculation(status, key);
      if (chosen.empty()) continue;
      return absl::UnimplementedError(absl::StrFormat(
          "thread %d of pid %d has a speculation control of its own (%s: %s, "
          "PR_SET_SPECULATION_CTRL); it is not restored",
          tid, pid, key, chosen));
    }
    // pkey_alloc gives the new key's rights to PKRU (access, unless asked
    // otherwise), and the kernel shows the allocation bitmap nowhere: keys
    // 1-15 with other rights than exec gives them mean keys were taken.
    CRLIB_ASSIGN_OR_RETURN(std::optional<uint32_t> pkru, ReadPkru(tid));
    if (pkru && (*pkru & ~3u) != (kInitPkru & ~3u)) {
      return absl::UnimplementedError(absl::StrFormat(
          "thread %d of pid %d has protection key rights of its own (PKRU 0x%08x, not 0x%08x: "
          "keys taken with pkey_alloc); the allocation of protection keys is not restored",
          tid, pid, *pkru, kInitPkru));
    }
    CRLIB_ASSIGN_OR_RETURN(std::vector<std::string> stat, sys::ReadStatFields(tid));
    uint64_t flags = 0;
    if (stat.size() > 6 && absl::SimpleAtoi(stat[6], &flags) &&
        (flags & kIoFlusherTaskFlags) == kIoFlusherTaskFlags) {
      return absl::UnimplementedError(absl::StrFormat(
          "thread %d of pid %d is an I/O flusher (PR_SET_IO_FLUSHER); it is not restored", tid,
          pid));
    }
    if (flags & kMceProcessTaskFlag) {
      return absl::UnimplementedError(absl::StrFormat(
          "thread %d of pid %d has a memory-failure kill policy of its own (PR_MCE_KILL, %s); it "
          "is not restored",
          tid, pid, flags & kMceEarlyTaskFlag ? "early" : "late"));
    }
  }
  // PR_SET_MEMORY_MERGE: KSM for every present and future mapping (only
  // those carry the VMA flag `mg`, which restore does give back).
  if (absl::StatusOr<std::string> ksm = sys::ReadFile(absl::StrCat("/proc/", pid, "/ksm_stat"));
      ksm.ok() && sys::StatusField(*ksm, "ksm_merge_any").value_or("") == "yes") {
    return absl::UnimplementedError(absl::StrFormat(
        "pid %d merges all its memory with KSM (PR_SET_MEMORY_MERGE); it is not restored", pid));
  }
  // The policy of each mapping, or the thread's task policy where the
  // mapping has none; "default" for neither. One node or many, a restore
  // would give the default. Every mapping through the main thread's file;
  // for the other threads (their task policy) only its first page: the
  // kernel walks the page tables of the mappings it prints, and mappings
  // near the start (the executable) seldom have a policy of their own.
  auto refuse_policies = [&](pid_t tid, absl::string_view numa) -> absl::Status {
    for (absl::string_view line : absl::StrSplit(numa, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 2 || f[1] == "default") continue;
      return absl::UnimplementedError(absl::StrFormat(
          "thread %d of pid %d has a NUMA memory policy (%s at 0x%s in numa_maps; set_mempolicy "
          "or mbind); memory policies are not restored",
          tid, pid, f[1], f[0]));
    }
    return absl::OkStatus();
  };
  if (main_numa_maps != nullptr) CRLIB_RETURN_IF_ERROR(refuse_policies(pid, *main_numa_maps));
  for (pid_t tid : tids) {
    const std::string path = absl::StrCat("/proc/", pid, "/task/", tid, "/numa_maps");
    const bool whole = tid == pid && main_numa_maps == nullptr;
    absl::StatusOr<std::string> read = whole ? sys::ReadFile(path) : ReadHead(path);
    if (!read.ok() && StatusErrno(read.status()) == ENOENT) continue;  // a kernel without NUMA
    CRLIB_ASSIGN_OR_RETURN(std::string numa, std::move(read));
    CRLIB_RETURN_IF_ERROR(refuse_policies(tid, numa));
  }
  return absl::OkStatus();
}

absl::Status RefuseMdwe(Tracee* t) {
  CRLIB_ASSIGN_OR_RETURN(int64_t mdwe, t->Syscall(SYS_prctl, {sys::kPrGetMdwe, 0, 0, 0, 0}));
  if (mdwe <= 0) return absl::OkStatus();  // off, or a kernel without it (-EINVAL)
  return absl::UnimplementedError(absl::StrFormat(
      "pid %d denies itself writable executable memory (PR_SET_MDWE, flags 0x%x); crlib's "
      "dump and restore need such memory in the process, and the setting cannot be undone",
      t->tid(), mdwe));
}

absl::Status RefuseSelfOnlyState(Tracee* t, uint64_t buf) {
  CRLIB_RETURN_IF_ERROR(
      t->CheckedSyscall("prctl(PR_GET_TSC)", SYS_prctl, {PR_GET_TSC, buf, 0, 0, 0}).status());
  int tsc = 0;
  CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &tsc, sizeof(tsc)));
  // Seccomp's strict mode turns the TSC off itself, and restoring the
  // mode does so again.
  CRLIB_ASSIGN_OR_RETURN(std::string status,
                         sys::ReadFile(absl::StrCat("/proc/", t->tid(), "/status")));
  if (tsc == PR_TSC_SIGSEGV && sys::StatusField(status, "Seccomp").value_or("") != "1") {
    return absl::UnimplementedError(absl::StrFormat(
        "thread %d cannot read the time stamp counter (PR_SET_TSC, PR_TSC_SIGSEGV); it is not "
        "restored",
        t->tid()));
  }
  return absl::OkStatus();
}

}  // namespace crlib
