#include "task/uncarried_state.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cerrno>
#include <string>
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

}  // namespace

absl::Status RefuseUncarriedProcState(pid_t pid, absl::Span<const pid_t> tids) {
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
    CRLIB_ASSIGN_OR_RETURN(std::vector<std::string> stat, sys::ReadStatFields(tid));
    uint64_t flags = 0;
    if (stat.size() > 6 && absl::SimpleAtoi(stat[6], &flags) &&
        (flags & kIoFlusherTaskFlags) == kIoFlusherTaskFlags) {
      return absl::UnimplementedError(absl::StrFormat(
          "thread %d of pid %d is an I/O flusher (PR_SET_IO_FLUSHER); it is not restored", tid,
          pid));
    }
  }
  // The policy of each mapping, or the main thread's task policy where
  // the mapping has none; "default" for neither. One node or many, a
  // restore would give the default.
  CRLIB_ASSIGN_OR_RETURN(std::string numa, sys::ReadFile(absl::StrCat("/proc/", pid, "/numa_maps")));
  for (absl::string_view line : absl::StrSplit(numa, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 2 || f[1] == "default") continue;
    return absl::UnimplementedError(absl::StrFormat(
        "pid %d has a NUMA memory policy (%s at 0x%s in numa_maps; set_mempolicy or mbind); "
        "memory policies are not restored",
        pid, f[1], f[0]));
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

namespace {

// Memory protection keys the process holds (pkey_alloc) although no
// mapping uses them: restore does not rebuild the allocation bitmap, so a
// later pkey_alloc could hand out a key the process believes is its own.
// The kernel shows the bitmap nowhere; the free keys are found by taking
// them all (pkey_alloc with PKEY_DISABLE_ACCESS, which leaves a free
// key's PKRU bits as the kernel initialises them) and giving them back.
absl::Status RefuseAllocatedPkeys(Tracee* t) {
  constexpr int kPkeys = 16;  // x86: key 0 is the default, always allocated
  std::vector<int64_t> taken;
  absl::Status st;
  for (int i = 1; i < kPkeys; ++i) {
    absl::StatusOr<int64_t> key = t->Syscall(SYS_pkey_alloc, {0, PKEY_DISABLE_ACCESS});
    if (!key.ok()) {
      st = key.status();
      break;
    }
    if (*key < 0) {  // ENOSPC: none left; EINVAL/ENOSYS: no pkeys here
      if (*key != -ENOSPC && taken.empty()) return absl::OkStatus();
      break;
    }
    taken.push_back(*key);
  }
  uint32_t mine = 0;
  for (int64_t key : taken) {
    mine |= 1u << key;
    absl::StatusOr<int64_t> freed = t->Syscall(SYS_pkey_free, {static_cast<uint64_t>(key)});
    if (st.ok() && !freed.ok()) st = freed.status();
  }
  CRLIB_RETURN_IF_ERROR(st);
  for (int key = 1; key < kPkeys; ++key) {
    if (mine & (1u << key)) continue;
    return absl::UnimplementedError(absl::StrFormat(
        "pid %d holds memory protection key %d (pkey_alloc); the allocation of protection "
        "keys is not restored",
        t->tid(), key));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RefuseSelfOnlyState(Tracee* t, uint64_t buf) {
  CRLIB_RETURN_IF_ERROR(RefuseAllocatedPkeys(t));
  CRLIB_RETURN_IF_ERROR(
      t->CheckedSyscall("prctl(PR_GET_TSC)", SYS_prctl, {PR_GET_TSC, buf, 0, 0, 0}).status());
  int tsc = 0;
  CRLIB_RETURN_IF_ERROR(t->ReadMemory(buf, &tsc, sizeof(tsc)));
  if (tsc == PR_TSC_SIGSEGV) {
    return absl::UnimplementedError(absl::StrFormat(
        "thread %d cannot read the time stamp counter (PR_SET_TSC, PR_TSC_SIGSEGV); it is not "
        "restored",
        t->tid()));
  }
  return absl::OkStatus();
}

}  // namespace crlib
